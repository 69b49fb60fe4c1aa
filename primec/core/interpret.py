"""The reference interpreter: one NumPy implementation per op, which defines what the op means.

Values carry a leading batch dimension. Arithmetic runs in float64 whatever the storage dtype,
so that comparisons against a float64 PyTorch reference are exact up to summation order
(see docs/ir.md, "Numerics").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from primec.core.counter_rng import draw_index
from primec.core.ir import Graph, Node, Weight
from primec.errors import PrimecError

Array = np.ndarray
SAMPLE_OFFSET = "sample_offset"  # run-time context of `sample_bernoulli`: the batch's first sample
Impl = Callable[[list[Array], dict[str, Any]], tuple[Array, ...]]


def _pad_hw(x: Array, padding: tuple[int, int], value: float = 0.0) -> Array:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(
    x: Array, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)
) -> Array:
    """[B,C,H,W] -> [B,C,Ho,Wo,kh,kw] views of every (dilated, strided) window."""
    kh, kw = kernel
    dh, dw = dilation
    span = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return span[:, :, :: stride[0], :: stride[1], ::dh, ::dw]


def supermask_keep(scores: Array, sparsity: float) -> Array:
    """The boolean mask of kept synapses: |scores| >= the k-th smallest, k = 1 + round(sparsity*(n-1))."""
    magnitude = np.abs(scores).reshape(-1)
    k = 1 + round(sparsity * (magnitude.size - 1))
    kth = np.partition(magnitude, k - 1)[k - 1]
    return np.abs(scores) >= kth


def supermask(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    weight, scores = inputs
    return (weight * attrs["gain"] * supermask_keep(scores, attrs["sparsity"]),)


def conv2d(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    x, w = inputs
    groups = attrs["groups"]
    out_per_group, in_per_group = w.shape[0] // groups, w.shape[1]
    windows = _windows(
        _pad_hw(x, attrs["padding"]), w.shape[2:], attrs["stride"], attrs["dilation"]
    )
    parts = []
    for g in range(groups):
        patch = windows[:, g * in_per_group : (g + 1) * in_per_group]
        kernel = w[g * out_per_group : (g + 1) * out_per_group]
        parts.append(np.einsum("bchwpq,ocpq->bohw", patch, kernel, optimize=True))
    return (np.concatenate(parts, axis=1),)


def conv_transpose2d(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    x, w = inputs
    groups = attrs["groups"]
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    oph, opw = attrs["output_padding"]
    batch, channels, height, width = x.shape
    kh, kw = w.shape[2:]
    in_per_group, out_per_group = channels // groups, w.shape[1]
    full_h = (height - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (width - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((batch, out_per_group * groups, full_h, full_w), dtype=np.float64)
    for g in range(groups):
        xg = x[:, g * in_per_group : (g + 1) * in_per_group]
        wg = w[g * in_per_group : (g + 1) * in_per_group]
        # Every input pixel scatters its kernel-weighted copy: one (p, q) offset at a time.
        contributions = np.einsum("bchw,copq->bopqhw", xg, wg, optimize=True)
        for p in range(kh):
            for q in range(kw):
                rows = slice(p * dh, p * dh + (height - 1) * sh + 1, sh)
                cols = slice(q * dw, q * dw + (width - 1) * sw + 1, sw)
                full[:, g * out_per_group : (g + 1) * out_per_group, rows, cols] += contributions[
                    :, :, p, q
                ]
    out_h = full_h - 2 * ph
    out_w = full_w - 2 * pw
    return (full[:, :, ph : ph + out_h, pw : pw + out_w],)


def linear(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    x, w = inputs
    return (x @ w.T,)


def _per_channel(param: Array, ndim: int) -> Array:
    return param.reshape((1, -1) + (1,) * (ndim - 2))


def affine(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    x, scale, shift = inputs
    return (x * _per_channel(scale, x.ndim) + _per_channel(shift, x.ndim),)


def batch_norm(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    x, gamma, beta, mean, var = (inputs[0], *(_per_channel(p, inputs[0].ndim) for p in inputs[1:]))
    return ((x - mean) / np.sqrt(var + attrs["eps"]) * gamma + beta,)


def avg_pool2d(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    (x,) = inputs
    windows = _windows(_pad_hw(x, attrs["padding"]), attrs["kernel"], attrs["stride"])
    return (windows.mean(axis=(4, 5)),)


def max_pool2d(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    (x,) = inputs
    windows = _windows(_pad_hw(x, attrs["padding"], -np.inf), attrs["kernel"], attrs["stride"])
    return (windows.max(axis=(4, 5)),)


def leaky(x: Array, slope: float) -> Array:
    """LeakyReLU with `slope` for negative values (slope 1.0 is the identity)."""
    return x if slope == 1.0 else np.where(x >= 0, x, slope * x)


def neuron_values(attrs: dict[str, Any]) -> dict[str, Any]:
    """A neuron's attributes with tensor-valued parameters as their arrays (broadcast to U)."""
    return {k: v.array() if isinstance(v, Weight) else v for k, v in attrs.items()}


def equals(value: Any, number: float) -> bool:
    """Whether a parameter is the one number `number` (a tensor never is: it takes the general
    path, which is the same arithmetic)."""
    return not isinstance(value, np.ndarray) and value == number


def lif(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array, Array]:
    current, membrane, spike = inputs
    attrs = neuron_values(attrs)
    keep, threshold, reset = attrs["keep"], attrs["threshold"], attrs["reset"]
    v_reset, v_leak = attrs.get("v_reset", 0.0), attrs.get("v_leak", 0.0)

    def zero(u: Array) -> Array:
        return u * (1.0 - spike) if equals(v_reset, 0.0) else u * (1.0 - spike) + v_reset * spike

    resets = {"zero": zero, "subtract": lambda u: u - threshold * spike, "none": lambda u: u}

    def leak(u: Array) -> Array:
        return keep * u if equals(v_leak, 0.0) else v_leak + keep * (u - v_leak)

    gain = attrs.get("input_gain", 1.0)
    drive = current if equals(gain, 1.0) else gain * current
    fire = np.greater if attrs["strict"] else np.greater_equal
    if attrs["reset_timing"] == "at_once":
        still = fire(membrane, threshold).astype(np.float64)
        charged = (leak(membrane) + drive) - threshold * still
        fired = fire(charged, threshold).astype(np.float64)
        return fired, leaky(charged - (fired - still) * threshold, attrs["slope"])
    if attrs["reset_timing"] == "before_leak":
        u = leak(resets[reset](membrane)) + drive
    elif attrs["reset_timing"] == "after_leak":
        u = resets[reset](leak(membrane)) + drive
    else:
        u = resets[reset](leak(membrane) + drive)
    u = leaky(u, attrs["slope"])
    return fire(u, threshold).astype(np.float64), u


def integrator(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    current, membrane = inputs
    keep = neuron_values(attrs)["keep"]
    return (leaky(keep * membrane + current, attrs["slope"]),)


def readout_mean(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array, Array, Array]:
    x, total, count = inputs
    total, count = total + x, count + 1.0
    return total / count.reshape((-1,) + (1,) * (x.ndim - 1)), total, count


def readout_exp_tanh(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array, Array]:
    x, acc = inputs
    acc = attrs["decay"] * acc + x
    return np.tanh(acc), acc


def sample_bernoulli(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array, Array]:
    q, step = inputs
    k = attrs["k"]
    batch, channels = q.shape[0], q.shape[1] // k
    sample = np.arange(batch, dtype=np.int64)[:, None] + attrs.get(SAMPLE_OFFSET, 0)
    steps = step.astype(np.int64).reshape(batch, 1)
    index = draw_index(attrs["seed"], sample, steps, np.arange(channels, dtype=np.int64), k)
    chosen = np.take_along_axis(q.reshape(batch, channels, k), index[..., None], axis=2)
    return chosen[..., 0], step + 1.0


# ---- mapping ops (docs/mapping.md) ----

# x / input_quantum must be an integer level; a quantum such as 1/9 makes x*9 land within a few
# ulps of one, never further.
LEVEL_TOLERANCE = 1e-9


def masked_weight(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    return (_effective(attrs),)


def _effective(attrs: dict[str, Any]) -> Array:
    # The same operations, in the same order, as `supermask`: weight * gain * mask.
    formed = attrs["formed"].array().astype(np.float64)
    return formed * attrs["gain"] * attrs["mask"].array()


def sum_pool2d(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    (x,) = inputs
    windows = _windows(_pad_hw(x, attrs["padding"]), attrs["kernel"], attrs["stride"])
    return (windows.sum(axis=(4, 5)),)


def im2col(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    (x,) = inputs
    sh, sw = attrs["input_dilation"]
    batch, channels, height, width = x.shape
    z = np.zeros((batch, channels, (height - 1) * sh + 1, (width - 1) * sw + 1))
    z[:, :, ::sh, ::sw] = x
    top, left, bottom, right = attrs["padding"]
    z = np.pad(z, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = _windows(z, attrs["kernel"], attrs["stride"], attrs["dilation"])
    _, _, out_h, out_w, kh, kw = windows.shape
    rows = windows.transpose(0, 2, 3, 1, 4, 5)
    return (rows.reshape(batch, out_h * out_w, channels * kh * kw),)


def crossbar(inputs: list[Array], attrs: dict[str, Any]) -> tuple[Array]:
    (x,) = inputs
    _check_levels(x, attrs)
    weight = _effective(attrs)
    product = _tiled_product(x, weight, attrs) if attrs["tiles"] else x @ weight
    return (np.swapaxes(product, -1, -2) * attrs["input_scale"],)


def _check_levels(x: Array, attrs: dict[str, Any]) -> None:
    """The chosen drive must represent every input exactly: integer levels in [0, 2^planes)."""
    if attrs["drive"] == "unset":
        return
    quantum, top = attrs["input_quantum"], 2 ** attrs["planes"] - 1
    levels = x / quantum
    off_grid = np.abs(levels - np.round(levels)) > LEVEL_TOLERANCE * np.maximum(1.0, levels)
    bad = off_grid | (levels < 0) | (np.round(levels) > top)
    if not bad.any():
        return
    raise PrimecError(
        f"crossbar input {float(x[bad].flat[0])!r} is not an integer multiple of {quantum!r} in "
        f"[0, {top * quantum!r}]: {attrs['planes']} bit plane(s) cannot drive it exactly",
        hint="give the step input as integer counts (or set graph meta input_quantum)",
    )


def _tiled_product(x: Array, weight: Array, attrs: dict[str, Any]) -> Array:
    """x @ weight tile by tile: each tile's rows and outputs; partials added in tile order."""
    row_map, col_map = attrs["row_map"].array(), attrs["col_map"].array()
    product = np.zeros((*x.shape[:-1], weight.shape[1]))
    for tile in attrs["tiles"]:
        tile_rows, tile_outputs = row_map[slice(*tile.rows)], col_map[slice(*tile.outputs)]
        product[..., tile_outputs] += x[..., tile_rows] @ weight[np.ix_(tile_rows, tile_outputs)]
    return product


IMPLS: dict[str, Impl] = {
    "supermask": supermask,
    "conv2d": conv2d,
    "conv_transpose2d": conv_transpose2d,
    "linear": linear,
    "add": lambda inputs, attrs: (inputs[0] + inputs[1],),
    "mul": lambda inputs, attrs: (inputs[0] * inputs[1],),
    "affine": affine,
    "batch_norm": batch_norm,
    "avg_pool2d": avg_pool2d,
    "max_pool2d": max_pool2d,
    "flatten": lambda inputs, attrs: (inputs[0].reshape(inputs[0].shape[0], -1),),
    "reshape": lambda inputs, attrs: (inputs[0].reshape((inputs[0].shape[0], *attrs["shape"])),),
    "leaky_relu": lambda inputs, attrs: (leaky(inputs[0], attrs["slope"]),),
    "lif": lif,
    "integrator": integrator,
    "readout_mean": readout_mean,
    "readout_exp_tanh": readout_exp_tanh,
    "sample_bernoulli": sample_bernoulli,
    "masked_weight": masked_weight,
    "sum_pool2d": sum_pool2d,
    "im2col": im2col,
    "crossbar": crossbar,
}


def register(op: str, impl: Impl) -> None:
    """Give a (pass-introduced) op its reference implementation; each op has exactly one."""
    if op in IMPLS:
        raise ValueError(f"op {op!r} already has an implementation")
    IMPLS[op] = impl


@dataclass(frozen=True)
class StepResult:
    """What one step produced: the graph's outputs and, if traced, every per-sample value."""

    outputs: dict[str, Array]
    values: dict[str, Array]


def _apply(node: Node, env: Mapping[str, Array], sample_offset: int = 0) -> tuple[Array, ...]:
    if node.op == "weight":
        return (node.attr("value").array().astype(np.float64),)
    impl = IMPLS.get(node.op)
    if impl is None:
        raise PrimecError(
            f"the interpreter has no implementation of op {node.op!r}", where=str(node.loc)
        )
    attrs = (
        node.attr_dict if not sample_offset else {**node.attr_dict, SAMPLE_OFFSET: sample_offset}
    )
    return impl([env[v.name] for v in node.inputs], attrs)


def constants(graph: Graph) -> dict[str, Array]:
    """Values that depend on weights only (not on inputs or states), unbatched, computed once."""
    known: dict[str, Array] = {}
    for node in graph.nodes:
        if all(v.name in known for v in node.inputs):
            known.update(
                (v.name, r) for v, r in zip(node.outputs, _apply(node, known), strict=True)
            )
    return known


def run_step(
    graph: Graph,
    feeds: Mapping[str, Array],
    trace: bool = False,
    consts: Mapping[str, Array] | None = None,
    sample_offset: int = 0,
) -> StepResult:
    """Run one timestep: `feeds` holds every graph input (step inputs and states), batched.

    Constant values (weights and what depends only on them) stay unbatched: every op takes its
    weight operands per sample. Pass `consts` from `constants()` to avoid recomputing them.
    """
    consts = constants(graph) if consts is None else consts
    env: dict[str, Array] = {k: np.asarray(v, dtype=np.float64) for k, v in feeds.items()}
    env.update(consts)
    for node in graph.nodes:
        if node.outputs[0].name in consts:
            continue
        results = _apply(node, env, sample_offset)
        env.update((v.name, r) for v, r in zip(node.outputs, results, strict=True))
    outputs = {v.name: env[v.name] for v in graph.outputs}
    values = {k: v for k, v in env.items() if k not in consts} if trace else {}
    return StepResult(outputs, values)


def zero_states(graph: Graph, batch: int) -> dict[str, Array]:
    """Every state at its initial value (zero)."""
    types = {v.name: v.type for v in graph.inputs}
    return {s.input: np.zeros((batch, *types[s.input].shape)) for s in graph.states}


def run(
    graph: Graph, inputs: Mapping[str, Array], trace: bool = False, sample_offset: int = 0
) -> dict[str, Array]:
    """Run the step graph over time. `inputs` maps each step input to [B, T, ...].

    Returns every step output as [B, T, ...]; with `trace`, every per-sample value too.
    """
    step_names = [v.name for v in graph.step_inputs]
    missing = sorted(set(step_names) - set(inputs))
    if missing:
        raise PrimecError(f"missing step inputs: {missing}")
    first = np.asarray(inputs[step_names[0]])
    batch, steps = first.shape[:2]
    states = zero_states(graph, batch)
    consts = constants(graph)
    history: dict[str, list[Array]] = {}
    for t in range(steps):
        feeds = {name: np.asarray(inputs[name])[:, t] for name in step_names} | states
        result = run_step(graph, feeds, trace, consts, sample_offset)
        for name, value in (result.values if trace else result.outputs).items():
            history.setdefault(name, []).append(value)
        states = {s.input: result.outputs[s.output] for s in graph.states}
    return {name: np.stack(values, axis=1) for name, values in history.items()}
