"""Certified float32 sums for ideal mode, with per-neuron exact repair.

A fused hidden layer (`fused.py`) whose accumulator one convolution tile writes computes its
crossbar sums in float32 (a plain sum of products: no Winograd or FFT, so Higham's bound
|fl(S) - S| <= gamma_n sum |x| |w| holds) instead of float64. The fused kernel carries, per
neuron, a rigorous bound e on the distance of its membrane from the exact one (the float64
membrane of the exact path) and flags every neuron whose membrane lies within e of the
threshold. Each flagged neuron is then replayed from step 0 in float64 (its receptive field's
exact inputs, kept for the batch's steps, times the float64 weights: exact sums), through the
layer's scale steps and `digital._membrane`, so its membrane, spike and error bound become exact
(e = 0) before the spike is used. Every spike of the layer is therefore the exact path's; the
layers that feed a readout or an output are not certified and stay on the float64 path.

Only where the analysis holds: ideal mode (no non-ideality), the CPU and the fused kernels, one
tile per accumulator (a conv tile with every row driven, no dilation, a power-of-two quantum,
no drift gain), a LeakyReLU slope in [0, 1], one product per read (not plane by plane) and at
most `MAX_STEPS` steps (the replay starts from step 0). Anything else runs the exact path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F
from primec.backends.isa import Read
from primec.backends.simulator.digital import _leaky, _membrane
from primec.backends.simulator.fused import FusedLayer, _pool_sample, run_fused

UNIT = 2.0**-24  # float32's unit roundoff
SAFETY = 2.0  # on top of Higham's gamma
MAX_STEPS = 64  # the replay from step 0 is cheap while T is small
# Per-step margins of the float64 bound arithmetic: relative growth and the roundings of the
# float64 scale and update steps (both paths round, each by at most 2^-53 of a magnitude).
GROW = 1.0 + 2.0**-45
REL = 2.0**-48
TINY = 2.0**-1000  # underflow
# A step whose |sums| could reach this (largest level x largest ||w_c||_1) sums in float64:
# float32 partial sums must not overflow (float32's largest is about 2^128).
HUGE = 2.0**120


@dataclass(frozen=True)
class CertifiedLayer:
    """A fused layer whose sums run in float32: what the read and the repair need."""

    read: int  # index of the Read that writes the layer's accumulator
    fused: FusedLayer
    weight32: torch.Tensor  # [outputs, C, kh, kw] float32
    weight64: torch.Tensor  # [outputs, C, kh, kw] the exact path's float64 weights
    norms: torch.Tensor  # [outputs]: SAFETY x gamma x ||w_c||_1 x quantum (float64)
    stride: tuple[int, int]
    quantum: float  # the read's input quantum (a power of two)
    positions: int  # output positions per channel
    params: dict[str, Any]  # the Lif's neuron parameters


@dataclass
class _State:
    """One certified layer's state over a batch: its input levels of every step so far
    ([steps, rows, C, Hp, Wp], as the exact path reads them), the current step's sum bounds
    [rows, outputs] and the membranes' error bounds."""

    steps: int
    history: torch.Tensor | None = None
    step: int = 0
    bound: torch.Tensor | None = None
    error: torch.Tensor | None = None


def gamma(n: int) -> float:
    """Higham's gamma_n for float32."""
    return n * UNIT / (1 - n * UNIT)


def float32_weights(weight64: torch.Tensor, quantum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv tile's float32 weights [outputs, C, kh, kw] and, per output, what times a row's
    largest input level bounds |float32 sum x quantum - exact sum x quantum|: SAFETY x
    gamma_(n+2) x ||w_c||_1 x quantum, with n the products per sum and two more terms for the
    casts of the levels and weights to float32 (each within u of its value; exact for whole
    levels below 2^24 and float32 weights, counted anyway)."""
    weight32 = weight64.float()
    terms = weight64[0].numel() + 2
    return weight32, weight64.abs().sum((1, 2, 3)) * (SAFETY * gamma(terms) * quantum)


class CertifiedReads:
    """The Simulator's certified fast path (a mixin before `CrossbarReads`)."""

    program: Any
    noise: Any
    reads: dict
    schedule: list
    per_plane: bool
    plane_hook: Any
    repairs: int  # neuron-steps replayed in float64 since the simulator was made
    layer_major = False  # a layer-major batch is running (`layermajor.py`)
    _stacked_sums: Any

    def _certified_setup(self, layers: dict[int, FusedLayer]) -> None:
        """The certifiable layers among the fused `layers`, and the schedule that runs them."""
        self.repairs, self.fast, self._states = 0, False, {}
        self.certified: dict[int, CertifiedLayer] = {}
        if not self.noise.ideal:
            self.fast_schedule = self.schedule
            return
        for layer in layers.values():
            certified = self._certifiable(layer)
            if certified is not None:
                self.certified[certified.read] = certified
        by_scale = {c.fused.indices[0]: c for c in self.certified.values()}
        self._by_tile = {id(self.reads[c.read]): c for c in self.certified.values()}
        self.fast_schedule = [
            (i, by_scale[i], CertifiedReads.certified_fused) if i in by_scale else entry
            for entry in self.schedule
            for i in entry[:1]
        ]

    def _certifiable(self, layer: FusedLayer) -> CertifiedLayer | None:
        writers = [
            (i, ins)
            for i, ins in enumerate(self.program.instrs)
            if isinstance(ins, Read) and ins.dst == layer.scale.src
        ]
        if len(writers) != 1:
            return None
        i, read = writers[0]
        tile = self.reads[i]
        quantum = math.frexp(read.quantum)[0] == 0.5
        slope = 0.0 <= layer.slope <= 1.0
        if tile.conv is None or tile.chips != 1 or tile.gain is not None or not tile.writes_all:
            return None
        if tuple(tile.gather.dilation) != (1, 1) or not (quantum and slope):
            return None
        weight64 = tile.conv
        weight32, norms = float32_weights(weight64, read.quantum)
        positions = self.program.buffers[read.src][0]
        params = self.program.neurons[layer.lif.params]
        stride = tuple(tile.gather.stride)
        return CertifiedLayer(
            i, layer, weight32, weight64, norms, stride, read.quantum, positions, params
        )

    def _certified_schedule(self, steps: int) -> list:
        """At a batch's start: the schedule to run, and a fresh state for each certified layer."""
        # Plane-by-plane reads (ADC calibration reads ideal currents so) take the exact path.
        planes = self.per_plane or self.plane_hook is not None
        # A tile whose conv form was taken away after construction reads gathered rows.
        convs = all(self.reads[i].conv is not None for i in self.certified)
        self.fast = bool(self.certified) and steps <= MAX_STEPS and not planes and convs
        self._states = {i: _State(steps) for i in self.certified} if self.fast else {}
        return self.fast_schedule if self.fast else self.schedule

    def _certified_keep(self, keep: torch.Tensor) -> None:
        """Rows left the batch (early exit): keep the others' histories and bounds."""
        for state in self._states.values():
            state.history = state.history[:, keep]
            state.error = state.error[keep]

    def _product(self, tile: Any, x: torch.Tensor, samples_per_conv: int) -> torch.Tensor:
        layer = self._by_tile.get(id(tile)) if self.fast or self.layer_major else None
        if layer is None:
            return super()._product(tile, x, samples_per_conv)  # type: ignore[misc]
        if self.layer_major:
            return self._stacked_sums(layer, x)  # every step at once (`layermajor.py`)
        state = self._states[layer.read]
        if state.history is None:
            state.history = torch.empty((state.steps, *x.shape), dtype=torch.float64)
        state.history[state.step].copy_(x)
        state.step += 1
        largest = x.amax((1, 2, 3))
        state.bound = largest[:, None] * layer.norms[None, :]
        if float(largest.max()) * float(layer.weight64.abs().sum((1, 2, 3)).max()) >= HUGE:
            # Near float32's range: this step's sums in float64 (exact, within any bound).
            return super()._product(tile, x, samples_per_conv)  # type: ignore[misc]
        sums = F.conv2d(x.float(), layer.weight32, stride=layer.stride).flatten(2)
        # float32 sums go to the kernel as they are (it reads them into float64, exactly).
        return sums if layer.quantum == 1.0 else sums.double()

    def certified_fused(self, i: int, layer: CertifiedLayer, env: Any, counts: dict) -> None:
        """The fused layer with error bounds, flags and the exact repair of flagged neurons."""

        def kernel(acc: np.ndarray, u: np.ndarray, s: np.ndarray, pooled: np.ndarray) -> None:
            state = self._states[layer.read]
            if state.error is None:
                state.error = torch.zeros(u.shape, dtype=torch.float64)
            flags = np.empty(u.size, dtype=np.int64)
            f = layer.fused
            pool = (f.pool.kernel if f.pool else (1, 1), f.pool is not None)
            count = _lif_pool_certified(
                (acc, state.bound.numpy(), f.factors),
                (u, s, state.error.numpy()),
                (f.keep, f.threshold, f.slope),
                f.strict,
                (pooled, *pool),
                flags,
            )
            if count:
                self.repairs += count
                history = state.history[: state.step]
                _repair(layer, history, flags[:count], (u, s, state.error.numpy(), pooled))

        run_fused(layer.fused, env, self.program, counts, kernel)


def _repair(layer: CertifiedLayer, history: torch.Tensor, flat: np.ndarray, buffers: tuple) -> None:
    """Replay the flagged neurons (flat indices into [rows, neurons]) from step 0 in float64,
    the exact path's operations on the gathered subset, and set their membrane, spike and error
    bound (0) to the exact ones; the pooled spikes follow."""
    shape, pooled = buffers[0].shape, buffers[3]
    u, s, error = (b.reshape(len(b), -1) for b in buffers[:3])
    rows, j = np.divmod(flat, u.shape[1])
    membrane, spikes = exact_membranes(layer, history, rows, j)
    before = s[rows, j]
    u[rows, j], s[rows, j], error[rows, j] = membrane.numpy(), spikes.numpy(), 0.0
    f = layer.fused
    if f.pool is not None:
        c, y, x = np.unravel_index(j, shape[1:])
        kh, kw = f.pool.kernel
        np.add.at(pooled, (rows, c, y // kh, x // kw), spikes.numpy() - before)


def exact_membranes(
    layer: CertifiedLayer, history: torch.Tensor, rows: np.ndarray, j: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact membranes and spikes, after the last step of `history` [steps, rows, C, Hp,
    Wp], of the neurons j (flat in the layer's [outputs x positions]) of `rows`: each step's
    receptive field times the float64 weights (exact sums, as the exact path's convolution),
    the read's quantum and the scale factors in order, then `digital._membrane` and the
    LeakyReLU and threshold of `DigitalPeriphery.lif`."""
    f = layer.fused
    channel, position = np.divmod(j, layer.positions)
    columns = (history.shape[-1] - layer.weight64.shape[-1]) // layer.stride[1] + 1
    y, x = np.divmod(position, columns)
    currents = torch.empty((len(history), len(j)), dtype=torch.float64)
    where = (rows, channel, y * layer.stride[0], x * layer.stride[1])
    _exact_sums(history.numpy(), layer.weight64.numpy(), where, currents.numpy())
    if layer.quantum != 1.0:
        currents = currents * layer.quantum
    for factor in f.factors:
        currents = currents * factor
    membrane = spikes = torch.zeros(len(j), dtype=torch.float64)
    for current in currents:
        membrane = _leaky(_membrane(layer.params, membrane, spikes, current, False), f.slope)
        spikes = (torch.gt if f.strict else torch.ge)(membrane, f.threshold).double()
    return membrane, spikes


# Reassociation and contraction are safe here: every product and partial sum is exact.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _exact_sums(history, weights, where, out):
    """out [steps, k] = each neuron's receptive field (rows, channel, top, left) in the input
    levels of every step [steps, rows, C, Hp, Wp], times its float64 weights [outputs, C, kh,
    kw]: exact products and sums (fewer than 53 bits, `docs/simulator.md`), so any order, and
    any vectorisation, gives the exact path's convolution."""
    rows, channel, top, left = where
    kh, kw = weights.shape[2], weights.shape[3]
    for t in range(history.shape[0]):
        for k in range(len(rows)):
            total = 0.0
            w = weights[channel[k]]
            for c in range(weights.shape[1]):
                for p in range(kh):
                    for q in range(kw):
                        total += history[t, rows[k], c, top[k] + p, left[k] + q] * w[c, p, q]
            out[t, k] = total


@numba.njit(cache=True, nogil=True)
def _lif_pool_certified(sums, states, params, strict, pool, flags):
    """`fused._lif_pool` on approximate sums, with error bounds: sums = (acc [b, C, H, W],
    bound [b, outputs] of |acc - exact|, scale factors); states = (u, s, e), updated in place;
    pool = (pooled, kernel, on). Writes the flat indices of the neurons whose membrane lies
    within e of the threshold into `flags`; returns how many."""
    acc, bound, factors = sums
    u, s, e = states
    pooled, kernel, on = pool
    gain = 1.0
    for f in factors:
        gain *= abs(f)
    current = np.empty(u[0].size)
    positions = current.size // bound.shape[1]
    count = 0
    for n in range(u.shape[0]):
        current[:] = acc[n].ravel()
        for f in factors:
            for j in range(len(current)):
                current[j] = current[j] * f
        count = _update_certified(
            (u[n].ravel(), s[n].ravel(), e[n].ravel()),
            current,
            gain * bound[n],
            positions,
            params,
            strict,
            (flags, count, n * current.size),
        )
        if on:
            _pool_sample(s[n], pooled[n], kernel[0], kernel[1])
    return count


@numba.njit(cache=True, nogil=True)
def _update_certified(state, current, bound, positions, params, strict, flagged):
    """`fused._update` with the error bound e of each membrane, a channel (one sum bound) at a
    time; flags |U - threshold| <= e. A channel with a flag is scanned again for the indices."""
    u, s, e = state
    flags, count, offset = flagged
    threshold = params[1]
    for c in range(len(bound)):
        a, b = c * positions, (c + 1) * positions
        sums = bound[c] * (1.0 + REL)
        if _channel(u[a:b], s[a:b], e[a:b], current[a:b], sums, params, strict):
            for j in range(a, b):
                if abs(u[j] - threshold) <= e[j]:
                    flags[count] = offset + j
                    count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _channel(u, s, e, current, sums, params, strict):
    """One channel's update (`_neuron` on each membrane, in place). Returns how many membranes
    lie within e of the threshold. Branch-free (LLVM vectorises it)."""
    near = 0
    for j in range(len(u)):
        u[j], s[j], e[j], close = _neuron(u[j], s[j], e[j], current[j], sums, params, strict)
        near += close
    return near


@numba.njit(inline="always")
def _neuron(u, spiked, e, current, sums, params, strict):
    """One membrane's update and its error bound: e <- keep x e (none after a spike: keep U -
    keep U is 0 on both paths) + the scaled sum's bound `sums`, with margins for the roundings
    of both paths. Returns (U, spike, e, whether U lies within e of the threshold); the
    absolute values are written out, which vectorises where `abs` did not."""
    keep, threshold = params[0], params[1]
    decay = keep if keep >= 0.0 else -keep
    value, fired = lif_step(u, spiked, current, params, strict)
    size = current if current >= 0.0 else -current
    error = sums + REL * size + decay * e * (1.0 - spiked)
    size = value if value >= 0.0 else -value
    error = error * GROW + REL * size + TINY
    distance = value - threshold
    close = (distance if distance >= 0.0 else -distance) <= error
    return value, 1.0 if fired else 0.0, error, close


@numba.njit(inline="always")
def lif_step(u, spiked, current, params, strict):
    """`fused._update`'s operations on one membrane, in order: (U, whether it fires)."""
    keep, threshold, slope = params
    kept = u * keep
    value = kept + (-1.0 * kept) * spiked + current
    if slope != 1.0:
        value = value if value > 0.0 else value * slope
    return value, value > threshold if strict else value >= threshold
