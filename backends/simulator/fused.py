"""Fused hidden layers: a layer's scale steps, LIF update and spike pooling in one pass over
memory (a numba kernel on the CPU), instead of one torch pass per operation.

It computes the same IEEE operations, in the same order, as `DigitalPeriphery.scale`, `lif`
(`_membrane`, reset to zero before the leak) and `pool` (sum) do one tensor at a time, so its
results are bit-identical to theirs (`tests/test_simulator_fused.py` holds them against each
other); it only saves the memory traffic of the intermediate tensors. numba compiles without
fast-math, so no multiply and add are contracted into a fused multiply-add.

A chain `Scale (of an accumulator) -> Reshape -> Lif [-> Pool]` is fused when nothing outside it
reads its intermediate buffers (no other instruction, trace or program output), the Lif owns its
state tensors (`Simulator.own_states`), its parameters are scalars of the analysed kind (reset
to zero before the leak, none of the IR's variants) and the pool sums non-overlapping windows.
Anything else runs instruction by instruction, as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
from primec.backends.isa import Const, EndStep, ExitTest, Lif, Pool, Reshape, Scale
from primec.backends.program import Program
from primec.backends.simulator.grid import exact_product


@dataclass(frozen=True)
class FusedLayer:
    """One fused chain: its instructions and the scalars the kernel needs."""

    scale: Scale
    lif: Lif
    pool: Pool | None
    factors: np.ndarray  # the scale factors in the order `DigitalPeriphery.scale` applies them
    keep: float
    threshold: float
    strict: bool
    slope: float
    indices: tuple[int, ...]  # the instructions the chain replaces, in program order


def fused_layers(
    program: Program, own_states: set[int], trace: tuple[int, ...], accumulators: set[int]
) -> dict[int, FusedLayer]:
    """The chains of `program` that can run fused, keyed by the index of their Scale."""
    instrs = program.instrs
    readers = Counter(getattr(ins, name) for ins in instrs for name in ins.READS)
    private = {b for b, n in readers.items() if n == 1} - set(trace) - set(program.outputs)
    layers = {}
    for i in range(len(instrs) - 2):
        layer = _chain(program, i, own_states, private, accumulators)
        if layer is not None:
            layers[i] = layer
    return layers


def schedule(
    program: Program, layers: dict[int, FusedLayer], execute: dict[type, Callable], fused: Callable
) -> list[tuple[int, Any, Callable]]:
    """The executor's (index, instruction, method) list in program order: every instruction
    that runs (not ExitTest, EndStep or Const) with its method, a fused chain as one entry."""
    replaced = {j for layer in layers.values() for j in layer.indices}
    entries: list[tuple[int, Any, Callable]] = []
    for i, ins in enumerate(program.instrs):
        if i in layers:
            entries.append((i, layers[i], fused))
        elif not isinstance(ins, ExitTest | EndStep | Const) and i not in replaced:
            entries.append((i, ins, execute[type(ins)]))
    return entries


def _chain(
    program: Program, i: int, own_states: set[int], private: set[int], accumulators: set[int]
) -> FusedLayer | None:
    """The fused layer starting at instruction i, or None where the pattern does not hold."""
    scale, reshape, lif = program.instrs[i : i + 3]
    if not (
        isinstance(scale, Scale)
        and isinstance(reshape, Reshape)
        and isinstance(lif, Lif)
        and scale.src in accumulators
        and reshape.src == scale.dst
        and lif.current == reshape.dst
        and {scale.src, scale.dst, reshape.dst} <= private
        and i + 2 in own_states
    ):
        return None
    p = program.neurons[lif.params]
    if not _plain_lif(p) or len(program.buffers[reshape.dst]) != 3:
        return None
    pool = program.instrs[i + 3] if i + 3 < len(program.instrs) else None
    if not (isinstance(pool, Pool) and pool.src == lif.spike_out and _plain_pool(pool)):
        pool = None
    factors = exact_product(scale.factors)
    return FusedLayer(
        scale=scale,
        lif=lif,
        pool=pool,
        factors=np.array(factors, dtype=np.float64),
        keep=float(p["keep"]),
        threshold=float(p["threshold"]),
        strict=bool(p["strict"]),
        slope=float(p["slope"]),
        indices=tuple(range(i, i + (4 if pool else 3))),
    )


# The parameters the kernel was analysed for; a Lif with any other (a variant, a per-neuron
# parameter) runs unfused.
PLAIN_LIF = frozenset(("keep", "threshold", "strict", "reset", "reset_timing", "slope"))


def _plain_lif(p: dict[str, Any]) -> bool:
    """Scalar parameters, reset to zero before the leak, nothing beyond `PLAIN_LIF`."""
    scalars = all(isinstance(p[k], float | int) for k in ("keep", "threshold", "slope"))
    plain = p.keys() == PLAIN_LIF and p["reset"] == "zero" and p["reset_timing"] == "before_leak"
    return scalars and plain


def _plain_pool(pool: Pool) -> bool:
    """A sum over non-overlapping windows without padding."""
    return pool.kind == "sum" and tuple(pool.kernel) == tuple(pool.stride) and not any(pool.padding)


def run_fused(
    layer: FusedLayer, env: Any, program: Program, counts: dict, kernel: Callable | None = None
) -> None:
    """Execute the chain on a batch: updates the Lif's state tensors in place and sets every
    buffer the chain writes that anything reads (membrane, spikes, pooled spikes). `kernel`
    (accumulator, u, s, pooled as numpy arrays) replaces `_lif_pool` (`certified.py`)."""
    lif = layer.lif
    # States are the Lif's own (`Simulator.own_states`): updated in place, or in a contiguous copy.
    u, s = env[lif.membrane].contiguous(), env[lif.spike].contiguous()
    accumulator = env[layer.scale.src].contiguous()
    window = layer.pool.kernel if layer.pool else (1, 1)
    channels, height, width = u.shape[1:]
    pooled_shape = (u.shape[0], channels, height // window[0], width // window[1])
    pooled = torch.empty(pooled_shape, dtype=torch.float64)
    if kernel is not None:
        kernel(accumulator.numpy().reshape(u.shape), u.numpy(), s.numpy(), pooled.numpy())
    else:
        _lif_pool(
            accumulator.numpy().reshape(u.shape),
            layer.factors,
            u.numpy(),
            s.numpy(),
            (layer.keep, layer.threshold, layer.slope),
            layer.strict,
            pooled.numpy(),
            window,
            layer.pool is not None,
        )
    env[lif.membrane_out], env[lif.spike_out] = u, s
    if layer.pool is not None:
        env[layer.pool.dst] = pooled
    fused_counts(layer, (channels, height, width), counts)


def fused_counts(layer: FusedLayer, shape: tuple[int, int, int], counts: dict) -> None:
    """A fused layer's operations per row and step: its scale steps, neuron updates and pool
    adds, as the instructions it replaces count them."""
    neurons = shape[0] * shape[1] * shape[2]
    counts["digital_multiplies"] += neurons * len(layer.scale.factors)
    counts["neuron_updates"] += neurons
    if layer.pool is not None:
        kh, kw = layer.pool.kernel
        pooled = shape[0] * (shape[1] // kh) * (shape[2] // kw)
        counts["digital_adds"] += pooled * (kh * kw - 1)


@numba.njit(cache=True, nogil=True)
def _lif_pool(acc, factors, u, s, params, strict, pooled, kernel, pool):
    """acc, u, s [b, C, H, W] (float64, u and s updated in place); pooled [b, C, H/kh, W/kw].

    A sample at a time, so that the pool reads spikes still in cache; the update's loop is
    branch-free, which lets LLVM vectorise it, and applies the last scale factor itself (the
    one factor of most layers: no pass of its own)."""
    keep, threshold, slope = params
    current = np.empty(u[0].size)
    for n in range(u.shape[0]):
        source, last = acc[n].ravel(), 1.0  # x 1.0 is exact: no factor, no rounding
        if len(factors):
            last = factors[-1]
        if len(factors) > 1:
            current[:] = source
            source = current
            for f in factors[:-1]:
                # Scale: a rounding after each factor, in order.
                for j in range(len(current)):
                    current[j] = current[j] * f
        _update(u[n].ravel(), s[n].ravel(), (source, last), keep, threshold, slope, strict)
        if pool:
            _pool_sample(s[n], pooled[n], kernel[0], kernel[1])


@numba.njit(cache=True, nogil=True)
def _update(u, s, scaled, keep, threshold, slope, strict):
    """The LIF step of `digital._membrane` (reset to zero before the leak), its LeakyReLU and
    threshold, element by element, on the current source x factor (`scaled`: the last scale
    step's rounding)."""
    source, factor = scaled
    for j in range(len(u)):
        kept = u[j] * keep
        # torch: kept.addcmul_(kept, s, value=-1.0).add_(current)
        value = kept + (-1.0 * kept) * s[j] + source[j] * factor
        if slope != 1.0:
            value = value if value > 0.0 else value * slope
        u[j] = value
        fired = value > threshold if strict else value >= threshold
        s[j] = 1.0 if fired else 0.0


@numba.njit(cache=True, nogil=True)
def _pool_sample(s, out, kh, kw):
    """Window sums of one sample's [C, H, W] spikes (0 or 1: exact in any order); 2 x 2
    windows written out (about 2x faster)."""
    if kh == 2 and kw == 2:
        for ch in range(out.shape[0]):
            for y in range(out.shape[1]):
                top, bottom = s[ch, 2 * y], s[ch, 2 * y + 1]
                for x in range(out.shape[2]):
                    left = 2 * x
                    out[ch, y, x] = (top[left] + top[left + 1]) + (bottom[left] + bottom[left + 1])
        return
    out[:] = 0.0
    for ch in range(out.shape[0]):
        for y in range(out.shape[1]):
            for p in range(kh):
                for x in range(out.shape[2]):
                    for q in range(kw):
                        out[ch, y, x] += s[ch, y * kh + p, x * kw + q]


def row_drives(levels: torch.Tensor, coverage: torch.Tensor | None, binary: bool) -> torch.Tensor:
    """Per sample, the read pulses of a gather's source map [b, ...] of integer levels: the set
    bits of each level (the level itself when `binary`) times the (row, position) pairs that
    drive its pixel (`coverage`), summed; `CrossbarReads._driven` in one pass. The sums are of
    integers, exact in float64 in any order."""
    flat = levels.reshape(len(levels), -1)
    out = np.empty(len(flat), dtype=np.int64)
    # No coverage: a tile's own rows [b, P, rows], each (row, position) driven once.
    covered = np.ones(flat.shape[1]) if coverage is None else coverage.numpy()
    _row_drives(flat.contiguous().numpy(), covered, binary, out)
    return torch.from_numpy(out)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _row_drives(levels, coverage, binary, out):
    """`row_drive` on every row of levels [b, n]."""
    for n in range(levels.shape[0]):
        out[n] = row_drive(levels[n], coverage, binary)


# Reassociation is safe: the sums are of whole numbers below 2^53, exact in any order.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")
def row_drive(row, coverage, binary):
    """One row's read pulses; branch-free (LLVM vectorises it): zero levels add zero, as
    skipping them did."""
    total = 0.0
    if binary:
        for j in range(len(row)):
            total += row[j] * coverage[j]
    else:
        for j in range(len(row)):
            total += _set_bits(row[j]) * coverage[j]
    return np.int64(total)


@numba.njit(inline="always")
def _set_bits(level):
    """`CrossbarReads._bits` of one level: round half to even, clamp to the 16-bit table,
    popcount (bit tricks instead of a loop, so that it vectorises)."""
    v = np.int64(min(max(np.rint(level), 0.0), 65535.0))
    v = v - ((v >> 1) & 0x5555)
    v = (v & 0x3333) + ((v >> 2) & 0x3333)
    v = (v + (v >> 4)) & 0x0F0F
    return np.float64((v + (v >> 8)) & 0x1F)


def conv_into(
    x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], samples: int
) -> torch.Tensor:
    """F.conv2d of x in chunks of `samples`, each written straight into one output tensor (no
    concatenation). It is the kernel F.conv2d runs for float64 on the CPU (unfold + gemm)."""
    kernel = tuple(weight.shape[2:])
    height = (x.shape[2] - kernel[0]) // stride[0] + 1
    width = (x.shape[3] - kernel[1]) // stride[1] + 1
    out = x.new_empty((x.shape[0], weight.shape[0], height, width))
    for first in range(0, len(x), samples):
        part = slice(first, first + samples)
        torch._C._nn.thnn_conv2d(x[part], weight, kernel, None, stride, (0, 0), out=out[part])
    return out
