"""A certified hidden layer over every step of a batch at once (layer-major, `layermajor.py`).

`certified.py` runs a layer one step at a time: the membranes of the whole batch go through
memory every step, and a flagged neuron is replayed from step 0. Here the layer's float32 sums
of all T steps are known before its first update (its inputs do not depend on its own state),
so one kernel takes each row through all T steps while its membranes, error bounds and spike
history stay in cache, pools each step's spikes as it goes, and repairs a flagged neuron in
place, replaying it in float64 only from its last exact anchor: step 0, the step after its last
spike (a reset to zero before the leak makes keep U - keep U = +0 on both paths, whatever U
was) or the step after its last repair. The update and its error bound are `certified`'s
(`_neuron`), so the spikes are the same as there: the exact path's.
"""

from __future__ import annotations

import numba
import numpy as np
from primec.backends.simulator.certified import REL, _neuron, lif_step
from primec.backends.simulator.fused import row_drive
from primec.backends.simulator.levels import sparse_sums


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def lif_over_time(sums, bounds, scaling, neuron, replay, outputs):
    """Every step of a certified layer, a row at a time.

    sums: (chunks, (height, width) of the output map, channels_last, sparse): the approximate
    sums (float32, or float64 when exact), a list of [k, B, C, P] arrays (channels-last: [k, B,
    P, C]) for steps 0..k-1, k..2k-1, ...; or, where `sparse` (weights [Cin, kh, kw, C] float64)
    is not empty, none: each row's exact sums are made here from its levels
    (`levels.sparse_sums`, channels-last; no bound, no flag: `_exact_update`); bounds:
    (largest [T, B] input level per row and step, norms [C]: the sum bound per unit level,
    the quantum included); scaling: (quantum, factors, gain = prod
    |factors|); neuron: (keep, threshold, slope, strict); replay: (levels [T x B, Cin, Hp, Wp]
    float64, weights [C, Cin, kh, kw] float64, stride); outputs: (pooled [T, B, C, Ho/kh,
    Wo/kw], pool kernel (kh, kw), a layer without a pool passes (1, 1) and gets its spikes;
    spikes [T, B, C x P] when traced, else empty; drives: (coverage, binary, counts [T, B]
    int64): the next read's row drives of each pooled row, `fused.row_drives`'s sums, counted
    as it is written; an empty coverage counts none). Returns the flagged (repaired)
    neuron-steps."""
    chunks, (height, width), last, sparse = sums
    largest, norms = bounds
    pooled, kernel, traced, drives = outputs
    (steps, rows), channels = largest.shape, len(norms)
    positions = height * width
    size = channels * positions
    u, e, exact_sums = np.empty(size), np.empty(size), np.empty(size)
    # spikes[t + 1]: after step t; spikes[0]: the zero state before step 0.
    spikes = np.empty((steps + 1, size))
    # Flags per group of neurons (`_row_step`): a channel, or a position, whichever is more.
    near = np.empty(max(channels, positions), dtype=np.int64)
    field = _field(replay)
    # Per neuron, its last repair: the step after it, and the exact membrane and spike then.
    exact = (np.empty(size, dtype=np.int64), np.empty(size), np.empty(size))
    repaired = 0
    for b in range(rows):
        u[:], e[:], spikes[0], exact[0][:] = 0.0, 0.0, 0.0, 0
        for t in range(steps):
            s = spikes[t + 1]
            state = (u, spikes[t], s, e)
            bounds_t = (scaling, largest[t, b], norms, last)
            if sparse.size:
                shape = (height, width, field[4])
                sparse_sums(field[0][t * rows + b], sparse, field[3], shape, exact_sums)
                flagged, group = _exact_update(state, exact_sums, scaling, neuron), 1
            else:
                acc = chunks[t // len(chunks[0])][t % len(chunks[0]), b].ravel()
                flagged, group = _update(state, acc, bounds_t, neuron, near)
            if flagged:
                at = (t, b, (channels, positions, width), group, last)
                repaired += _repair(at, (u, e, near), field, (spikes, exact), scaling, neuron)
            _pool_row(s, width, pooled[t, b], kernel, last)
            if drives[0].size:
                drives[2][t, b] = row_drive(pooled[t, b].ravel(), drives[0], drives[1])
        if traced.size:
            _trace(spikes, traced[:, b], channels, last)
    return repaired


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _repair(at, row, field, history, scaling, neuron):
    """Replay every flagged neuron of a row's step (`_replay`) in the groups (of `group`
    neurons each) `near` counts: its membrane, spike and error bound (0) become the exact ones,
    and it becomes its own anchor. Returns how many."""
    t, b, (channels, positions, width), group, last = at
    u, e, near = row
    spikes, exact = history
    s, threshold, repaired = spikes[t + 1], neuron[1], 0
    for g in np.flatnonzero(near[: len(u) // group]):
        for j in range(g * group, (g + 1) * group):
            if abs(u[j] - threshold) > e[j]:
                continue
            repaired += 1
            c, local = (j % channels, j // channels) if last else (j // positions, j % positions)
            where = (t, b, c, j, local, width)
            u[j], s[j] = _replay(field, where, history, scaling, neuron)
            e[j] = 0.0
            exact[0][j], exact[1][j], exact[2][j] = t + 1, u[j], s[j]
    return repaired


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _exact_update(state, sums, scaling, neuron):
    """`_update` on exact sums (a sparse layer's): the same operations, and no bound (the
    membranes are the exact ones), so no flag; returns 0."""
    u, before, after, _ = state
    quantum, factors, _ = scaling
    params, strict = (neuron[0], neuron[1], neuron[2]), neuron[3]
    factor, current = 1.0, sums
    if len(factors) == 1:
        factor = factors[0]
    else:
        current, quantum = np.empty(len(sums)), 1.0
        _scaled(sums, scaling[0], factors, current)
    for j in range(len(u)):
        u[j], fired = lif_step(u[j], before[j], (current[j] * quantum) * factor, params, strict)
        after[j] = 1.0 if fired else 0.0
    return 0


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _update(state, acc, bounds, neuron, near):
    """One row's step on its sums `acc`: the scaling (in the update's loop where there is one
    factor: x 1.0 is exact, an unused quantum is free), then `_row_step`; returns the count of
    membranes within e of the threshold, each group's in `near`, and the group's size."""
    (quantum, factors, gain), largest, norms, last = bounds
    params, strict = (neuron[0], neuron[1], neuron[2]), neuron[3]
    if len(factors) == 1:
        return _row_step(
            state, acc, (quantum, factors[0]), (gain, largest, norms), params, strict, near, last
        )
    current = np.empty(len(acc))
    _scaled(acc, quantum, factors, current)
    return _row_step(state, current, (1.0, 1.0), (gain, largest, norms), params, strict, near, last)


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _row_step(state, sums, scale, bounds, params, strict, near, last):
    """One row's step, a group at a time: `certified._channel` on the sums times the scale
    (quantum, factor), with the spikes before and after the step in two arrays (the row's
    spike history) and each channel's sum bound (gain x (the row's largest level x its norm),
    with `certified`'s margin, as there). A group is a run of neurons with one bound: a
    channel (channels-first), or a position's channels (channels-last, their bounds in
    turn); where every channel has the same bound (an exact layer's zero), any run of P.
    Writes each group's count of membranes within e of the threshold into `near`; returns the
    total and the group's size."""
    u, before, after, e = state
    gain, largest, norms = bounds
    channels = len(norms)
    bound = np.empty(channels)
    for c in range(channels):
        bound[c] = (gain * (largest * norms[c])) * (1.0 + REL)
    uniform = bound.min() == bound.max()
    if last and not uniform:
        return _positions_step(state, sums, scale, bound, (params, strict), near), channels
    size, total = len(u) // channels, 0
    for c in range(channels):
        a, z = c * size, (c + 1) * size
        plane = (u[a:z], before[a:z], after[a:z], e[a:z])
        near[c] = _plane_step(plane, sums[a:z], scale, bound[c], params, strict)
        total += near[c]
    return total, size


@numba.njit(inline="always", error_model="numpy", boundscheck=False)
def _plane_step(plane, sums, scale, bound, params, strict):
    """`certified._channel` on one channel: the current is the sum in float64 times the
    quantum, then the factor (a rounding after each, as `CrossbarReads.read` and
    `DigitalPeriphery.scale` round); returns how many membranes lie within e of the
    threshold."""
    u, before, after, e = plane
    quantum, factor = scale
    near = 0
    for j in range(len(u)):
        current = (np.float64(sums[j]) * quantum) * factor
        u[j], after[j], e[j], close = _neuron(u[j], before[j], e[j], current, bound, params, strict)
        near += close
    return near


@numba.njit(inline="always", error_model="numpy", boundscheck=False)
def _positions_step(state, sums, scale, bound, neuron, near):
    """`_plane_step` on a channels-last row [P x C], a position at a time (its channels in the
    inner loop, which vectorises), channel c's sum bound bound[c]; each position's count in
    `near`, the total returned."""
    u, before, after, e = state
    quantum, factor = scale
    params, strict = neuron
    channels, total = len(bound), 0
    for p in range(len(near)):
        count = 0
        for c in range(channels):
            j = p * channels + c
            current = (np.float64(sums[j]) * quantum) * factor
            value, spike, error, close = _neuron(
                u[j], before[j], e[j], current, bound[c], params, strict
            )
            u[j], after[j], e[j] = value, spike, error
            count += close
        near[p] = count
        total += count
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _scaled(acc, quantum, factors, out):
    """The layer's current: the sums in float64, times the read's quantum (when not 1) and the
    scale factors in order, a rounding after each, as `CrossbarReads.read` and
    `DigitalPeriphery.scale` do."""
    for j in range(len(out)):
        out[j] = np.float64(acc[j])
    if quantum != 1.0:
        for j in range(len(out)):
            out[j] = out[j] * quantum
    for f in factors:
        for j in range(len(out)):
            out[j] = out[j] * f


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _replay(field, where, history, scaling, neuron):
    """The exact membrane and spike of neuron j (the `local`-th of channel c), row b, after
    step t: from its last anchor to t, each step's exact sum (its receptive field times the
    float64 weights) through the scaling and `fused._update`'s operations in order. The anchor
    is the latest of: step 0 (zero state), the step after its last spike (keep U - keep U is +0
    on both paths, whatever U was) and the step after its last repair (its exact state then)."""
    levels, weights, offsets, stride, columns = field
    t, b, c, j, local, width = where
    y, x = local // width, local % width
    quantum, factors, _ = scaling
    keep, threshold, slope, strict = neuron
    spikes, (repaired, exact_u, exact_s) = history
    rows = levels.shape[0] // (spikes.shape[0] - 1)
    start, u, s = repaired[j], 0.0, 0.0
    if start:
        u, s = exact_u[j], exact_s[j]
    for k in range(t - 1, start - 1, -1):
        if spikes[k + 1, j]:
            start, u, s = k + 1, 0.0, 1.0
            break
    for k in range(start, t + 1):
        top_left = y * stride[0] * columns + x * stride[1]
        current = _field_sum(levels[k * rows + b], weights[c], offsets, top_left)
        if quantum != 1.0:
            current = current * quantum
        for f in factors:
            current = current * f
        kept = u * keep
        value = kept + (-1.0 * kept) * s + current
        if slope != 1.0:
            value = value if value > 0.0 else value * slope
        u = value
        fired = value > threshold if strict else value >= threshold
        s = 1.0 if fired else 0.0
    return u, s


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _field(replay):
    """The replay's levels [T x B, Cin x Hp x Wp] and weights [C, Cin x kh x kw] flat, and each
    weight's offset in a row's levels from its receptive field's top left corner."""
    levels, weights, stride = replay
    inputs, height, columns = levels.shape[1:]
    kh, kw = weights.shape[2:]
    offsets = np.empty(inputs * kh * kw, dtype=np.int64)
    for c in range(inputs):
        for p in range(kh):
            for q in range(kw):
                offsets[(c * kh + p) * kw + q] = (c * height + p) * columns + q
    flat = levels.reshape(levels.shape[0], inputs * height * columns)
    return flat, weights.reshape(weights.shape[0], offsets.size), offsets, stride, columns


# Reassociation and contraction are safe here: every product and partial sum is exact.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)
def _field_sum(levels, weights, offsets, top_left):
    """One receptive field of a row's flat levels times a channel's flat weights: exact
    products and sums (`certified._exact_sums`), so any order (one loop, which vectorises)."""
    total = 0.0
    for i in range(len(offsets)):
        total += levels[top_left + offsets[i]] * weights[i]
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _pool_row(s, width, out, kernel, last):
    """Window sums of one row's spikes (flat [C x H x width], channels-last [H x width x C];
    0 or 1: exact in any order) into out [C, H/kh, width/kw]; 2 x 2 windows written out (LLVM
    vectorises them)."""
    channels, height, columns = out.shape
    kh, kw = kernel
    if last:
        _pool_last(s, width, out, kh, kw)
        return
    plane = len(s) // channels
    for c in range(channels):
        for y in range(height):
            top = c * plane + y * kh * width
            if kh == 2 and kw == 2:
                for x in range(columns):
                    left = top + 2 * x
                    out[c, y, x] = (s[left] + s[left + 1]) + (s[left + width] + s[left + width + 1])
                continue
            for x in range(columns):
                total = 0.0
                for p in range(kh):
                    for q in range(kw):
                        total += s[top + p * width + x * kw + q]
                out[c, y, x] = total


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _pool_last(s, width, out, kh, kw):
    """`_pool_row` on channels-last spikes [H x width x C]."""
    channels, height, columns = out.shape
    below = width * channels
    for y in range(height):
        for x in range(columns):
            corner = (y * kh * width + x * kw) * channels
            if kh == 2 and kw == 2:
                for c in range(channels):
                    left = corner + c
                    top = s[left] + s[left + channels]
                    out[c, y, x] = top + (s[left + below] + s[left + below + channels])
                continue
            for c in range(channels):
                total = 0.0
                for p in range(kh):
                    for q in range(kw):
                        total += s[corner + (p * width + q) * channels + c]
                out[c, y, x] = total


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _trace(spikes, traced, channels, last):
    """A row's spikes of every step (after it: spikes[1:]) into traced [T, C x P]."""
    if not last:
        traced[:] = spikes[1:]
        return
    positions = traced.shape[1] // channels
    for t in range(traced.shape[0]):
        for p in range(positions):
            for c in range(channels):
                traced[t, c * positions + p] = spikes[t + 1, p * channels + c]
