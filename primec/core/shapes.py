"""The shape rules and attribute checks of the ops in `primec.core.ops`, one function per op.

Each takes the operand types and the op's attributes and returns the result types, or raises
`ShapeError` with a message a user understands.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from primec.core.ir import TensorType, Weight


class ShapeError(ValueError):
    """An op's operands or attributes do not fit its shape rule."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ShapeError(message)


def same(types: tuple[TensorType, ...], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    return (types[0],)


def weight_shape(types, attrs):
    return (attrs["value"].type,)


def supermask_shape(types, attrs):
    weight, scores = types
    _require(
        weight.shape == scores.shape, f"supermask scores {scores} must match the weight {weight}"
    )
    _require(
        0.0 <= attrs["sparsity"] < 1.0,
        f"supermask sparsity must be in [0, 1), got {attrs['sparsity']}",
    )
    return (weight,)


_POSITIVE_WINDOW = ("kernel", "stride", "dilation", "input_dilation")
_PADDINGS = ("padding", "output_padding")


def _check_window(attrs: dict[str, Any], paddings: int = 2) -> None:
    """Window attributes: two values each; sizes, strides and dilations >= 1, paddings >= 0."""
    for name in (*_POSITIVE_WINDOW, *_PADDINGS):
        if name not in attrs:
            continue
        value, count = attrs[name], paddings if name == "padding" else 2
        low = 0 if name in _PADDINGS else 1
        _require(
            len(value) == count and all(v >= low for v in value),
            f"{name} must be {count} integers >= {low}, got {list(value)}",
        )


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_shape(types, attrs):
    _check_window(attrs)
    x, w = types
    _require(len(x.shape) == 3, f"conv2d input must be [C,H,W], got {x}")
    _require(len(w.shape) == 4, f"conv2d weight must be [O,C/groups,kH,kW], got {w}")
    groups = attrs["groups"]
    _require(
        x.shape[0] == w.shape[1] * groups,
        f"conv2d input has {x.shape[0]} channels, weight expects {w.shape[1] * groups}",
    )
    _require(
        w.shape[0] % groups == 0,
        f"conv2d: {w.shape[0]} output channels not divisible by groups={groups}",
    )
    sizes = [
        _conv_out(
            x.shape[1 + i],
            w.shape[2 + i],
            attrs["stride"][i],
            attrs["padding"][i],
            attrs["dilation"][i],
        )
        for i in range(2)
    ]
    _require(
        min(sizes) >= 1,
        f"conv2d output would be empty ({sizes}) for input {x} and kernel {w.shape[2:]}",
    )
    return (TensorType((w.shape[0], *sizes), x.dtype),)


def conv_transpose2d_shape(types, attrs):
    _check_window(attrs)
    x, w = types
    _require(len(x.shape) == 3, f"conv_transpose2d input must be [C,H,W], got {x}")
    _require(len(w.shape) == 4, f"conv_transpose2d weight must be [C,O/groups,kH,kW], got {w}")
    groups = attrs["groups"]
    _require(
        x.shape[0] == w.shape[0],
        f"conv_transpose2d input has {x.shape[0]} channels, weight expects {w.shape[0]}",
    )
    sizes = [
        (x.shape[1 + i] - 1) * attrs["stride"][i]
        - 2 * attrs["padding"][i]
        + attrs["dilation"][i] * (w.shape[2 + i] - 1)
        + attrs["output_padding"][i]
        + 1
        for i in range(2)
    ]
    _require(min(sizes) >= 1, f"conv_transpose2d output would be empty ({sizes})")
    return (TensorType((w.shape[1] * groups, *sizes), x.dtype),)


def linear_shape(types, attrs):
    x, w = types
    _require(len(x.shape) == 1, f"linear input must be a vector [K], got {x} (flatten it first)")
    _require(len(w.shape) == 2, f"linear weight must be [M,K], got {w}")
    _require(
        w.shape[1] == x.shape[0],
        f"linear weight {w} does not take an input of {x.shape[0]} features",
    )
    return (TensorType((w.shape[0],), x.dtype),)


def broadcast_shape(types, attrs):
    a, b = types
    _require(
        len(b.shape) <= len(a.shape), f"second operand {b} has more dimensions than the first {a}"
    )
    tail = a.shape[len(a.shape) - len(b.shape) :]
    ok = all(db in (1, da) for da, db in zip(tail, b.shape, strict=True))
    _require(ok, f"{b} does not broadcast onto {a}")
    return (a,)


def channel_params_shape(types, attrs):
    x, *params = types
    _require(len(x.shape) >= 1, "per-channel op needs at least one dimension")
    for p in params:
        _require(p.shape == (x.shape[0],), f"per-channel parameter must be [{x.shape[0]}], got {p}")
    return (x,)


def pool_shape(types, attrs):
    _check_window(attrs)
    (x,) = types
    _require(len(x.shape) == 3, f"pooling input must be [C,H,W], got {x}")
    sizes = [
        _conv_out(x.shape[1 + i], attrs["kernel"][i], attrs["stride"][i], attrs["padding"][i], 1)
        for i in range(2)
    ]
    _require(min(sizes) >= 1, f"pooling output would be empty ({sizes}) for input {x}")
    return (TensorType((x.shape[0], *sizes), x.dtype),)


def flatten_shape(types, attrs):
    (x,) = types
    return (TensorType((x.size,), x.dtype),)


def reshape_shape(types, attrs):
    (x,) = types
    shape = tuple(attrs["shape"])
    _require(
        all(d >= 1 for d in shape), f"reshape target {list(shape)} must have positive dimensions"
    )
    target = TensorType(shape, x.dtype)
    _require(target.size == x.size, f"cannot reshape {x} ({x.size} elements) to {list(shape)}")
    return (target,)


def lif_shape(types, attrs):
    current, membrane, spike = types
    _require(
        membrane.shape == current.shape, f"lif membrane {membrane} must match its input {current}"
    )
    _require(
        spike.shape == current.shape, f"lif spike state {spike} must match its input {current}"
    )
    neuron_params("lif", attrs, current.shape)
    _require(
        attrs.get("reset_timing") != "at_once" or attrs.get("reset") == "subtract",
        f"lif reset_timing=at_once needs reset=subtract, got reset={attrs.get('reset')}",
    )
    return (current, current)


NEURON_PARAMS = ("keep", "threshold", "v_reset", "v_leak", "input_gain")


def neuron_params(op: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Every tensor-valued neuron parameter broadcasts to the neuron's shape, finite."""
    for name in NEURON_PARAMS:
        value = attrs.get(name)
        if not isinstance(value, Weight):
            continue
        found = value.type.shape
        fits = len(found) <= len(shape) and all(
            f in (1, s) for f, s in zip(reversed(found), reversed(shape), strict=False)
        )
        _require(
            fits,
            f"{op} {name} has shape {list(found)}, which does not broadcast to the neuron's shape "
            f"{list(shape)} (per channel of [C,H,W]: [C,1,1]; per neuron: {list(shape)})",
        )
        _require(
            value.data is None or bool(np.isfinite(value.data).all()),
            f"{op} {name} holds NaN or infinite values",
        )


def integrator_shape(types, attrs):
    current, membrane = types
    _require(
        membrane.shape == current.shape,
        f"integrator membrane {membrane} must match its input {current}",
    )
    neuron_params("integrator", attrs, current.shape)
    return (current,)


def readout_mean_shape(types, attrs):
    x, total, count = types
    _require(total.shape == x.shape, f"readout_mean sum {total} must match its input {x}")
    _require(count.shape == (1,), f"readout_mean count must be [1], got {count}")
    return (x, x, count)


def readout_exp_shape(types, attrs):
    x, acc = types
    _require(acc.shape == x.shape, f"readout_exp_tanh accumulator {acc} must match its input {x}")
    return (x, x)


def sample_bernoulli_shape(types, attrs):
    q, step = types
    k, seed = attrs["k"], attrs["seed"]
    _require(k >= 1, f"sample_bernoulli k must be >= 1, got {k}")
    _require(0 <= seed < 2**32, f"sample_bernoulli seed must be in [0, 2^32), got {seed}")
    _require(
        len(q.shape) == 1 and q.shape[0] % k == 0,
        f"sample_bernoulli candidates must be [channels*k] with k={k}, got {q}",
    )
    _require(step.shape == (1,), f"sample_bernoulli step must be [1], got {step}")
    return (TensorType((q.shape[0] // k,), q.dtype), step)


# ---- mapping ops (docs/mapping.md): introduced by the passes between import and placement ----

EMPTY_MAP = Weight.of(np.zeros(0, dtype=np.int64))  # a crossbar's row/col map before tiling
DRIVES = ("unset", "binary", "bit_serial")
EMPTY_CELLS = Weight.of(np.zeros((0, 0), dtype=np.float64))  # a crossbar's pairs before map-pairs


def masked_weight_shape(types, attrs):
    formed, mask = attrs["formed"].type, attrs["mask"].type
    _require(mask.shape == formed.shape, f"masked_weight mask {mask} must match formed {formed}")
    _require(mask.dtype == "bool", f"masked_weight mask must be bool, got {mask}")
    return (formed,)


def im2col_shape(types, attrs):
    _check_window(attrs, paddings=4)
    (x,) = types
    _require(len(x.shape) == 3, f"im2col input must be [C,H,W], got {x}")
    _require(len(attrs["padding"]) == 4, "im2col padding is [top, left, bottom, right]")
    _require(min(attrs["padding"]) >= 0, f"im2col padding must be >= 0, got {attrs['padding']}")
    kernel, sizes = attrs["kernel"], []
    for i in range(2):
        dilated = (x.shape[1 + i] - 1) * attrs["input_dilation"][i] + 1
        padded = dilated + attrs["padding"][i] + attrs["padding"][2 + i]
        sizes.append(_conv_out(padded, kernel[i], attrs["stride"][i], 0, attrs["dilation"][i]))
    _require(min(sizes) >= 1, f"im2col output would be empty ({sizes}) for input {x}")
    return (TensorType((sizes[0] * sizes[1], x.shape[0] * kernel[0] * kernel[1]), x.dtype),)


def crossbar_shape(types, attrs):
    (x,) = types
    formed, mask = attrs["formed"].type, attrs["mask"].type
    _require(len(x.shape) == 2, f"crossbar input must be [P,R] (positions x rows), got {x}")
    _require(
        len(formed.shape) == 2 and formed.shape[0] == x.shape[1],
        f"crossbar matrix {formed} must be [R,O] with R = {x.shape[1]} rows",
    )
    _require(mask.shape == formed.shape and mask.dtype == "bool", f"crossbar mask {mask} bad")
    _check_drive(attrs)
    _check_pairs(attrs)
    _check_tiles(attrs)
    return (TensorType((formed.shape[1], x.shape[0]), x.dtype),)


def _check_drive(attrs):
    drive, planes = attrs["drive"], attrs["planes"]
    _require(drive != "unset" or planes == 0, "crossbar planes are set only with a drive")
    _require(drive == "unset" or planes >= 1, f"crossbar drive {drive} needs planes >= 1")
    _require(drive != "binary" or planes == 1, "a binary crossbar drive has exactly 1 plane")
    _require(attrs["input_quantum"] > 0, "crossbar input_quantum must be positive")
    _require(attrs["us_per_unit"] > 0, "crossbar us_per_unit must be positive")


def _check_pairs(attrs):
    encoded = attrs["encoding"] != "unset"
    for name in ("g_pos_us", "g_neg_us"):
        cells = attrs[name].type
        if not encoded:
            _require(cells.size == 0, f"crossbar {name} is set only with its pair encoding")
            continue
        want = TensorType(attrs["formed"].type.shape, "f64")
        _require(cells == want, f"crossbar {name} {cells} must be {want}, one cell per weight")


def _check_tiles(attrs):
    tiles = attrs["tiles"]
    rows, outputs = attrs["row_map"].type.size, attrs["col_map"].type.size
    for tile in tiles:
        (r0, r1), (o0, o1) = tile.rows, tile.outputs
        _require(0 <= r0 < r1 <= rows, f"crossbar tile rows {r0}:{r1} must lie in [0, {rows}]")
        _require(0 <= o0 < o1 <= outputs, f"crossbar tile outputs {o0}:{o1} outside [0, {outputs}]")
        _require(tile.placed or tile.queue < 0, "a crossbar tile is placed before it is queued")
        where = (tile.macro, tile.array, tile.row, tile.col)
        _require(min(where) >= 0 or not tile.placed, f"crossbar tile place {where} is negative")
        _require(tile.queue >= -1, f"crossbar tile queue {tile.queue} is negative")
    for name, flags in (
        ("placed", {t.placed for t in tiles}),
        ("queued", {t.queue >= 0 for t in tiles}),
    ):
        _require(len(flags) <= 1, f"crossbar tiles are {name} all together or not at all")
    area = sum((t.rows[1] - t.rows[0]) * (t.outputs[1] - t.outputs[0]) for t in tiles)
    _require(
        not tiles or area == rows * outputs,
        f"crossbar tiles hold {area} of the {rows} x {outputs} mapped weights; they must hold "
        "each exactly once",
    )
