"""The sparse bit-plane kernel (`planes.py` runs it): a plane's inputs are 0 or 1, so each
output position's current (and variance) is the sum of the weight rows of its window's set
inputs, about 9% of the window on the PRIME classifier. Per (row, plane, output row): gather
the set inputs (bit masks, sorted by column), sum each window's rows, then per window with a
set input draw the normals, convert to ADC codes, shift-add. Where an output row has fewer
windows than twice the channels (PRIME's second layer) and the sums are int32, each input row's
set inputs are listed once per plane instead, and each window gathers its rows from its kh
input rows (no sort; 7-9% off that layer's kernel time).

The sums are int32: the weights and variances of a plane read are int32 multiples of a
power-of-two quantum on which every sum of a window fits (`grid.int32_grid`), so any order gives
the convolution's bits, and sum x quantum is the float64 sum the torch path makes. (Float64
weights with quanta 1 run the same code: an ideal read plane by plane, as ADC calibration
makes.) (Float32 sums with a per-code error bound and exact repair of the codes near a rounding
boundary were tried: the sums got faster, the bound check per code cost more than they saved.)
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros
from primec.backends.simulator.gauss import block_key, draw_row, row_work

# The kernel's helpers never allocate: every array they touch is `sparse_reads`'s (or its
# caller's), held for the whole call. So they run without numba's reference counts, which cost
# an atomic count per array argument of every output row's conversion and of every window read.
HELPER = {"cache": True, "nogil": True, "_nrt": False}


@numba.njit(cache=True, nogil=True)
def sparse_reads(levels, weights, geometry, planes, noise, adc, total):
    """levels [n, C, H, W] (float64 input levels, rounded half to even here as torch's `round`
    does; a gather's padded source map, W < 64); weights = (multiples
    [groups, C x kh x kw + 1, outputs'] (int32, or float64), quanta [groups, 2]): G+ - G-,
    then the variances with read noise (the last row zero), in multiples of each group's current
    and variance quanta; geometry (stride, kernel, output height and width); noise = (the rows' stream keys
    (empty: no read noise), read); adc = (codes per current unit per output (empty: no ADC),
    2^(B-1)). Row a reads with group a % groups (rows are sample-major, a group per chip).
    total [n, outputs, P] <- the shift-add of the planes' currents through noise and ADC, with
    the ADC back in current units (the codes' sum / codes per unit: one IEEE division, as
    torch's `div_`)."""
    multiples, quanta = weights
    channels, height, width = levels.shape[1:]
    masks = np.empty((channels, height), dtype=np.uint64)
    outputs, positions = total.shape[1:]
    entries = (  # one output row's set inputs, sorted by column: x, weight row base, offsets
        np.empty(channels * geometry[2] * width, dtype=np.int64),
        np.empty(channels * geometry[2] * width, dtype=np.int64),
        np.empty(width + 1, dtype=np.int64),
        np.empty(width + 1, dtype=np.int64),
    )
    work = (
        np.empty((geometry[5], multiples.shape[-1]), dtype=multiples.dtype),  # a row's window sums
        np.empty(channels * geometry[2] * geometry[3] + 4, dtype=np.int64),  # its set rows
        np.empty((geometry[5], outputs)),  # an output row's normals
        np.empty((positions, outputs)),  # the row's shift-add, position-major
        row_work(geometry[5], outputs),  # the normals' work
    )
    keys, read = noise
    pointwise = geometry[:4] == (1, 1, 1, 1)
    # int32 sums are exact in any order. Where an output row has fewer windows than twice the
    # channels, gathering each window's rows input row by input row (`_gathered_plane`) costs
    # less than sorting the output row's set inputs (`_plane`). Float64 sums keep their order.
    gathered = multiples.dtype == np.dtype(np.int32) and geometry[5] < 2 * channels
    cells = (
        np.empty((height, width + 1), np.int64),
        np.empty((height, channels * width), np.int64),
    )
    rounded = np.empty((channels, height, width), dtype=np.int64)
    for a in range(levels.shape[0]):
        work[3][:] = 0.0
        largest = _rounded(levels[a], rounded)
        key = keys[a] if len(keys) else np.uint64(0)
        for k in range(planes):
            if largest >> k == 0:
                break  # this and every higher plane of the row is zero: it adds nothing
            block = block_key(key, read, k) if len(keys) else np.uint64(0)
            group = a % len(multiples)
            plane = (key, block, read, k, len(keys) > 0, quanta[group, 0], quanta[group, 1])
            if pointwise:
                _pointwise_plane(rounded, k, multiples[group], work, plane, adc)
                continue
            if gathered:
                _input_cells(rounded, k, geometry[2] * geometry[3], cells)
                _gathered_plane(cells, multiples[group], geometry, work, plane, adc)
                continue
            _bit_masks(rounded, k, masks)
            _plane(masks, multiples[group], geometry, entries, work, plane, adc)
        _written(work[3], adc[0], total[a])


@numba.njit(**HELPER)
def _rounded(levels, out):
    """out <- levels rounded half to even, as int64 (torch's `round().to(torch.int64)`);
    returns the largest."""
    largest = np.int64(np.rint(levels[0, 0, 0]))
    for c in range(levels.shape[0]):
        for y in range(levels.shape[1]):
            for x in range(levels.shape[2]):
                out[c, y, x] = np.int64(np.rint(levels[c, y, x]))
                largest = max(largest, out[c, y, x])
    return largest


@numba.njit(**HELPER)
def _written(shift_add, scales, out):
    """out [outputs, P] <- the row's shift-add [P, outputs], divided by each output's codes per
    current unit when the ADC is on (scales not empty)."""
    for o in range(out.shape[0]):
        if len(scales) == 0:
            for j in range(out.shape[1]):
                out[o, j] = shift_add[j, o]
            continue
        scale = scales[o]
        for j in range(out.shape[1]):
            out[o, j] = shift_add[j, o] / scale


@numba.njit(**HELPER)
def _bit_masks(levels, k, masks):
    """masks[c, y]: bit x set where bit k of levels[c, y, x] is."""
    for c in range(levels.shape[0]):
        for y in range(levels.shape[1]):
            m = np.uint64(0)
            for x in range(levels.shape[2]):
                m |= np.uint64((levels[c, y, x] >> k) & 1) << np.uint64(x)
            masks[c, y] = m


@numba.njit(**HELPER)
def _plane(masks, weights, geometry, entries, work, plane, adc):
    """One plane of one row, position by position: the sum of the weights (and variances)
    of the window's set inputs, then noise and ADC, into the row's shift-add. A window
    without a set input reads no current and no noise: codes 0, nothing to add."""
    sh, sw, kh, kw, out_h, out_w = geometry
    sums, rows = work[0], work[1]
    xs, bases, offsets, _ = entries
    width = len(offsets) - 1
    for oy in range(out_h):
        if _row_entries(masks, oy * sh, kh, kw, entries) == 0:
            continue
        read = np.uint64(0)  # bit ox: the window at ox has a set input
        for ox in range(out_w):
            x0 = ox * sw
            first, last = offsets[x0], offsets[min(x0 + kw, width)]
            n = last - first
            for t in range(n):
                rows[t] = bases[first + t] + xs[first + t] - x0
            read |= _read_window(weights, rows, n, sums, ox)
        # An output row at a time: the conversion's setup once per row, not per position.
        _convert(sums, read, plane, adc, work, oy * out_w)


@numba.njit(**HELPER)
def _input_cells(levels, k, size, cells):
    """Per input row y, its set inputs of plane k in column order, branch-free: offsets[y, x]
    where column x's begin (x = W: their count), and each one's weight row for a window whose
    left column is 0 and top row is y, c x size + x (size: kh x kw)."""
    offsets, rows = cells
    channels, height, width = levels.shape
    for y in range(height):
        n = 0
        for x in range(width):
            offsets[y, x] = n
            for c in range(channels):
                rows[y, n] = c * size + x
                n += (levels[c, y, x] >> k) & 1
        offsets[y, width] = n


@numba.njit(**HELPER)
def _gathered_plane(cells, weights, geometry, work, plane, adc):
    """`_plane` on int32 weights, each window's rows gathered from its kh input rows' set
    inputs (`_input_cells`): row c x size + x of input row oy x sh + ky is weight row (c, ky,
    x - x0) of the window whose left column is x0. The sums are exact in any order."""
    sh, sw, kh, kw, out_h, out_w = geometry
    sums, rows = work[0], work[1]
    offsets, cell_rows = cells
    width = offsets.shape[1] - 1
    for oy in range(out_h):
        read = np.uint64(0)  # bit ox: the window at ox has a set input
        for ox in range(out_w):
            x0 = ox * sw
            x1, n = min(x0 + kw, width), 0
            for ky in range(kh):
                y = oy * sh + ky
                for t in range(offsets[y, x0], offsets[y, x1]):
                    rows[n] = cell_rows[y, t] + ky * kw - x0
                    n += 1
            read |= _read_window(weights, rows, n, sums, ox)
        if read:
            _convert(sums, read, plane, adc, work, oy * out_w)


@numba.njit(**HELPER)
def _pointwise_plane(levels, k, weights, work, plane, adc):
    """`_plane` of a 1 x 1 kernel at stride 1 (a tile of rows, the classifier's): a window is
    one input position, its set inputs the channels whose level has bit k, gathered straight
    from the levels without a branch (no bit masks, no sort)."""
    sums, rows = work[0], work[1]
    channels, height, width = levels.shape
    for y in range(height):
        read = np.uint64(0)  # bit x: the window at x has a set input
        for x in range(width):
            n = 0
            for c in range(channels):
                rows[n] = c
                n += (levels[c, y, x] >> k) & 1
            read |= _read_window(weights, rows, n, sums, x)
        if read:
            _convert(sums, read, plane, adc, work, y * width)


@numba.njit(**HELPER)
def _row_entries(masks, y, kh, kw, entries):
    """The set inputs of input rows y .. y + kh - 1, sorted by column x (a counting sort):
    xs, the weight row of (c, ky, kx = 0) in bases, and offsets[x] where column x's begin.
    Returns their number."""
    xs, bases, offsets, cursor = entries
    for x in range(len(offsets)):
        offsets[x] = 0
    for c in range(masks.shape[0]):
        for ky in range(kh):
            m = masks[c, y + ky]
            while m:
                offsets[trailing_zeros(m) + 1] += 1
                m &= m - np.uint64(1)  # the lowest set bit cleared
    for x in range(1, len(offsets)):
        offsets[x] += offsets[x - 1]
    for x in range(len(offsets)):
        cursor[x] = offsets[x]
    for c in range(masks.shape[0]):
        for ky in range(kh):
            m = masks[c, y + ky]
            while m:
                x = trailing_zeros(m)
                xs[cursor[x]], bases[cursor[x]] = x, (c * kh + ky) * kw
                cursor[x] += 1
                m &= m - np.uint64(1)
    return offsets[-1]


@numba.njit(cache=True, nogil=True, inline="always")
def _read_window(weights, rows, n, sums, ox):
    """Window ox's sums from its n set rows (rows[:n], padded with the weights' zero row to a
    multiple of four); returns its bit in the output row's read mask, or 0 where it has no set
    input (then it reads nothing: no current, no noise, codes 0)."""
    if n == 0:
        return np.uint64(0)
    for t in range(n, n + 3):
        rows[t] = len(weights) - 1
    _window_sum(weights, rows, n, sums, ox)
    return np.uint64(1) << np.uint64(ox)


@numba.njit(cache=True, nogil=True, inline="always")
def _window_sum(weights, rows, n, sums, ox):
    """sums[ox] = the sum of weights[rows[:n]] (rows padded with zero rows to a multiple of
    four), four rows per pass over sums[ox]."""
    r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
    for o in range(sums.shape[1]):
        sums[ox, o] = (weights[r0, o] + weights[r1, o]) + (weights[r2, o] + weights[r3, o])
    for t in range(4, n, 4):
        r0, r1, r2, r3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
        for o in range(sums.shape[1]):
            sums[ox, o] += (weights[r0, o] + weights[r1, o]) + (weights[r2, o] + weights[r3, o])


@numba.njit(**HELPER)
def _convert(sums, read, plane, adc, work, j0):
    """The positions j0 + ox of one output row whose bit ox is set in `read`: sums[ox]
    [outputs'] in their quanta (exact float64 sums) through noise (sqrt(variance) x normal +
    current, two roundings, as the torch path) and the ADC (round half to even, clip), then
    the row's shift-add [P, outputs] at j0 + ox + 2^k x codes."""
    key, block, stream_read, k, noise, current, variance = plane
    normals, total = work[2], work[3]
    if noise:
        draw_row(key, block, stream_read, k, read, j0, len(total), normals, work[4])
    weight = np.float64(1 << k)
    for ox in range(len(sums)):
        if (read >> np.uint64(ox)) & np.uint64(1) == 0:
            continue
        _currents(sums, ox, noise, current, variance, normals)
        _shift_add(normals, ox, adc, weight, total, j0 + ox)


@numba.njit(cache=True, nogil=True, inline="always")
def _currents(sums, w, noise, current, variance, values):
    """values[w, o] <- output o's current (x its quantum) at window w with its noise
    (values[w, o] holds its normal): without a branch, so four outputs at a time; a zero
    variance reads no noise. (Rows by index, not as views: a view costs a reference count.)"""
    outputs = values.shape[1]
    if not noise:
        for o in range(outputs):
            values[w, o] = sums[w, o] * current
        return
    for o in range(outputs):
        value = sums[w, o] * current
        noisy = np.sqrt(sums[w, outputs + o] * variance) * values[w, o] + value
        values[w, o] = noisy if sums[w, outputs + o] > 0 else value


@numba.njit(cache=True, nogil=True, inline="always")
def _shift_add(values, w, adc, weight, total, j):
    """total[j, o] += 2^k x values[w, o], through the ADC when it is on: codes rounded half to
    even and clipped to -top .. top - 1 (rounding first: the bounds are integers)."""
    scales, top = adc
    if len(scales) == 0:
        for o in range(values.shape[1]):
            total[j, o] = total[j, o] + values[w, o] * weight
        return
    for o in range(values.shape[1]):
        code = np.rint(values[w, o] * scales[o])
        code = -top if code < -top else (top - 1 if code > top - 1 else code)
        total[j, o] = total[j, o] + code * weight
