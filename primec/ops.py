"""The op table: every op declared once, with its operands, typed attributes, shape rule and
equation. `interpret.py` gives each op its one reference implementation.

Shapes are per sample (the batch dimension is implicit). Neuron parameters use NIR's words
where NIR has one (`threshold`); `keep` is the fraction of the membrane kept per timestep
(NIR's `1 - dt/tau`), and `slope` the LeakyReLU slope applied to the membrane (1.0: none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from primec.ir import TensorType, Weight

REQUIRED = object()

ATTR_KINDS = ("int", "float", "bool", "str", "ints", "floats", "weight")


class ShapeError(ValueError):
    """An op's operands or attributes do not fit its shape rule."""


@dataclass(frozen=True)
class Attr:
    """One typed attribute of an op; `choices` restricts a `str` attribute."""

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpDef:
    """One op: operand and result names, attributes, shape rule and equation (`doc`)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[Attr, ...]
    infer: Callable[[tuple[TensorType, ...], dict[str, Any]], tuple[TensorType, ...]]
    doc: str

    def attr_def(self, name: str) -> Attr | None:
        """The declaration of one attribute, or None."""
        return next((a for a in self.attrs if a.name == name), None)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ShapeError(message)


def _same(types: tuple[TensorType, ...], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    return (types[0],)


def _weight_shape(types, attrs):
    return (attrs["value"].type,)


def _supermask_shape(types, attrs):
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


def _conv2d_shape(types, attrs):
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


def _conv_transpose2d_shape(types, attrs):
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


def _linear_shape(types, attrs):
    x, w = types
    _require(len(x.shape) == 1, f"linear input must be a vector [K], got {x} (flatten it first)")
    _require(len(w.shape) == 2, f"linear weight must be [M,K], got {w}")
    _require(
        w.shape[1] == x.shape[0],
        f"linear weight {w} does not take an input of {x.shape[0]} features",
    )
    return (TensorType((w.shape[0],), x.dtype),)


def _broadcast_shape(types, attrs):
    a, b = types
    _require(
        len(b.shape) <= len(a.shape), f"second operand {b} has more dimensions than the first {a}"
    )
    tail = a.shape[len(a.shape) - len(b.shape) :]
    ok = all(db in (1, da) for da, db in zip(tail, b.shape, strict=True))
    _require(ok, f"{b} does not broadcast onto {a}")
    return (a,)


def _channel_params_shape(types, attrs):
    x, *params = types
    _require(len(x.shape) >= 1, "per-channel op needs at least one dimension")
    for p in params:
        _require(p.shape == (x.shape[0],), f"per-channel parameter must be [{x.shape[0]}], got {p}")
    return (x,)


def _pool_shape(types, attrs):
    _check_window(attrs)
    (x,) = types
    _require(len(x.shape) == 3, f"pooling input must be [C,H,W], got {x}")
    sizes = [
        _conv_out(x.shape[1 + i], attrs["kernel"][i], attrs["stride"][i], attrs["padding"][i], 1)
        for i in range(2)
    ]
    _require(min(sizes) >= 1, f"pooling output would be empty ({sizes}) for input {x}")
    return (TensorType((x.shape[0], *sizes), x.dtype),)


def _flatten_shape(types, attrs):
    (x,) = types
    return (TensorType((x.size,), x.dtype),)


def _reshape_shape(types, attrs):
    (x,) = types
    shape = tuple(attrs["shape"])
    _require(
        all(d >= 1 for d in shape), f"reshape target {list(shape)} must have positive dimensions"
    )
    target = TensorType(shape, x.dtype)
    _require(target.size == x.size, f"cannot reshape {x} ({x.size} elements) to {list(shape)}")
    return (target,)


def _lif_shape(types, attrs):
    current, membrane, spike = types
    _require(
        membrane.shape == current.shape, f"lif membrane {membrane} must match its input {current}"
    )
    _require(
        spike.shape == current.shape, f"lif spike state {spike} must match its input {current}"
    )
    return (current, current)


def _integrator_shape(types, attrs):
    current, membrane = types
    _require(
        membrane.shape == current.shape,
        f"integrator membrane {membrane} must match its input {current}",
    )
    return (current,)


def _readout_mean_shape(types, attrs):
    x, total, count = types
    _require(total.shape == x.shape, f"readout_mean sum {total} must match its input {x}")
    _require(count.shape == (1,), f"readout_mean count must be [1], got {count}")
    return (x, x, count)


def _readout_exp_shape(types, attrs):
    x, acc = types
    _require(acc.shape == x.shape, f"readout_exp_tanh accumulator {acc} must match its input {x}")
    return (x, x)


# ---- mapping ops (docs/mapping.md): introduced by the passes between import and placement ----

EMPTY_MAP = Weight.of(np.zeros(0, dtype=np.int64))  # a crossbar's row/col map before tiling
DRIVES = ("unset", "binary", "bit_serial")
TILE_FIELDS = ("tile_macro", "tile_array", "tile_row", "tile_col", "tile_slot")  # one per tile


def _masked_weight_shape(types, attrs):
    formed, mask = attrs["formed"].type, attrs["mask"].type
    _require(mask.shape == formed.shape, f"masked_weight mask {mask} must match formed {formed}")
    _require(mask.dtype == "bool", f"masked_weight mask must be bool, got {mask}")
    return (formed,)


def _im2col_shape(types, attrs):
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


def _crossbar_shape(types, attrs):
    (x,) = types
    formed, mask = attrs["formed"].type, attrs["mask"].type
    _require(len(x.shape) == 2, f"crossbar input must be [P,R] (positions x rows), got {x}")
    _require(
        len(formed.shape) == 2 and formed.shape[0] == x.shape[1],
        f"crossbar matrix {formed} must be [R,O] with R = {x.shape[1]} rows",
    )
    _require(mask.shape == formed.shape and mask.dtype == "bool", f"crossbar mask {mask} bad")
    _check_drive(attrs)
    _check_tiles(attrs)
    return (TensorType((formed.shape[1], x.shape[0]), x.dtype),)


def _check_drive(attrs):
    drive, planes = attrs["drive"], attrs["planes"]
    _require(drive != "unset" or planes == 0, "crossbar planes are set only with a drive")
    _require(drive == "unset" or planes >= 1, f"crossbar drive {drive} needs planes >= 1")
    _require(drive != "binary" or planes == 1, "a binary crossbar drive has exactly 1 plane")
    _require(attrs["input_quantum"] > 0, "crossbar input_quantum must be positive")
    _require(attrs["us_per_unit"] > 0, "crossbar us_per_unit must be positive")


def _check_ranges(attrs, name, length):
    ranges = attrs[name]
    _require(len(ranges) % 2 == 0, f"crossbar {name} holds (start, stop) pairs")
    ok = all(0 <= a < b <= length for a, b in zip(ranges[::2], ranges[1::2], strict=True))
    _require(ok, f"crossbar {name} ranges must lie in [0, {length}] and be non-empty")
    return len(ranges) // 2


def _check_tiles(attrs):
    tiles = _check_ranges(attrs, "tile_rows", attrs["row_map"].type.size)
    outputs = _check_ranges(attrs, "tile_outputs", attrs["col_map"].type.size)
    _require(tiles == outputs, "crossbar tile_rows and tile_outputs need one range per tile")
    for name in TILE_FIELDS:
        _require(len(attrs[name]) in (0, tiles), f"crossbar {name} needs one entry per tile")


_CONV_ATTRS = (
    Attr("stride", "ints", (1, 1)),
    Attr("padding", "ints", (0, 0)),
    Attr("dilation", "ints", (1, 1)),
    Attr("groups", "int", 1),
)
_POOL_ATTRS = (Attr("kernel", "ints"), Attr("stride", "ints"), Attr("padding", "ints", (0, 0)))
_RESETS = ("zero", "subtract", "none")
_RESET_TIMINGS = ("before_leak", "after_leak")

OPS: dict[str, OpDef] = {
    op.name: op
    for op in (
        OpDef(
            "weight",
            (),
            ("y",),
            (Attr("value", "weight"),),
            _weight_shape,
            "y = value (a constant tensor held by reference)",
        ),
        OpDef(
            "supermask",
            ("weight", "scores"),
            ("y",),
            (Attr("sparsity", "float"), Attr("gain", "float", 1.0)),
            _supermask_shape,
            "Edge-popup supermask (PRIME): n = numel(scores); k = 1 + round(sparsity*(n-1)) (half to even);\n"
            "  mask = |scores| >= the k-th smallest |scores|; y = weight * gain * mask",
        ),
        OpDef(
            "conv2d",
            ("x", "w"),
            ("y",),
            _CONV_ATTRS,
            _conv2d_shape,
            "y[o,i,j] = sum_{c,p,q} w[o,c,p,q] * x_pad[g(o)*C/groups + c, i*stride+p*dilation, j*stride+q*dilation] (cross-correlation, zero padding)",
        ),
        OpDef(
            "conv_transpose2d",
            ("x", "w"),
            ("y",),
            (*_CONV_ATTRS[:3], Attr("output_padding", "ints", (0, 0)), Attr("groups", "int", 1)),
            _conv_transpose2d_shape,
            "y = the gradient of conv2d with weight w with respect to its input (PyTorch ConvTranspose2d); H_out = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1",
        ),
        OpDef("linear", ("x", "w"), ("y",), (), _linear_shape, "y[m] = sum_k w[m,k] * x[k]"),
        OpDef(
            "add",
            ("a", "b"),
            ("y",),
            (),
            _broadcast_shape,
            "y = a + b (b broadcast onto a, NumPy rules)",
        ),
        OpDef(
            "mul",
            ("a", "b"),
            ("y",),
            (),
            _broadcast_shape,
            "y = a * b (b broadcast onto a, NumPy rules)",
        ),
        OpDef(
            "affine",
            ("x", "scale", "shift"),
            ("y",),
            (),
            _channel_params_shape,
            "y[c,...] = x[c,...] * scale[c] + shift[c] (per-channel, digital periphery after the ADC)",
        ),
        OpDef(
            "batch_norm",
            ("x", "gamma", "beta", "mean", "var"),
            ("y",),
            (Attr("eps", "float", 1e-5),),
            _channel_params_shape,
            "y[c,...] = (x[c,...] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c] (inference statistics)",
        ),
        OpDef(
            "avg_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            _pool_shape,
            "y[c,i,j] = mean over the kernel window of x_pad (zero padding counted, floor mode)",
        ),
        OpDef(
            "max_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            _pool_shape,
            "y[c,i,j] = max over the kernel window of x_pad (padding never wins, floor mode)",
        ),
        OpDef(
            "flatten",
            ("x",),
            ("y",),
            (),
            _flatten_shape,
            "y = x flattened in row-major (C, H, W) order",
        ),
        OpDef(
            "reshape",
            ("x",),
            ("y",),
            (Attr("shape", "ints"),),
            _reshape_shape,
            "y = x reshaped (row-major) to `shape`",
        ),
        OpDef(
            "leaky_relu",
            ("x",),
            ("y",),
            (Attr("slope", "float", 0.01),),
            _same,
            "y = x if x >= 0 else slope * x",
        ),
        OpDef(
            "lif",
            ("current", "membrane", "spike"),
            ("spike_out", "membrane_out"),
            (
                Attr("keep", "float"),
                Attr("threshold", "float"),
                Attr("strict", "bool", True),
                Attr("reset", "str", "zero", _RESETS),
                Attr("reset_timing", "str", "before_leak", _RESET_TIMINGS),
                Attr("slope", "float", 1.0),
            ),
            _lif_shape,
            "Leaky integrate-and-fire, one timestep (states are the previous step's membrane U and spike s):\n"
            "  reset(U) = U*(1-s) if reset=zero; U - threshold*s if reset=subtract; U if reset=none\n"
            "  U' = keep*reset(U) + current           (reset_timing=before_leak)\n"
            "  U' = reset(keep*U) + current           (reset_timing=after_leak)\n"
            "  U' = U' if U' >= 0 else slope*U'       (LeakyReLU on the membrane; slope=1: none)\n"
            "  s' = 1 if U' > threshold (strict) or U' >= threshold (not strict) else 0\n"
            "Outputs (s', U'). PRIME cell: keep=0.2, threshold=0.2, strict, zero, slope=0.1.",
        ),
        OpDef(
            "integrator",
            ("current", "membrane"),
            ("membrane_out",),
            (Attr("keep", "float", 1.0), Attr("slope", "float", 1.0)),
            _integrator_shape,
            "Non-spiking integrator: U' = keep*U + current; U' = U' if U' >= 0 else slope*U'. Output U'.",
        ),
        OpDef(
            "readout_mean",
            ("x", "sum", "count"),
            ("mean", "sum_out", "count_out"),
            (),
            _readout_mean_shape,
            "Running mean over timesteps: sum' = sum + x; count' = count + 1; mean = sum' / count'.",
        ),
        OpDef(
            "readout_exp_tanh",
            ("x", "acc"),
            ("y", "acc_out"),
            (Attr("decay", "float"),),
            _readout_exp_shape,
            "Exponentially weighted sum: acc' = decay*acc + x; y = tanh(acc'). After T steps\n"
            "acc' = sum_t decay^(T-1-t) x_t (the FSVAE readout).",
        ),
        OpDef(
            "masked_weight",
            (),
            ("y",),
            (Attr("formed", "weight"), Attr("mask", "weight"), Attr("gain", "float")),
            _masked_weight_shape,
            "A pruned as-formed weight (fold-masks): y = formed * gain * mask.\n"
            "  formed: the as-formed weight G+ - G- (device units, uS); mask: kept synapses (bool);\n"
            "  gain: the periphery's scale. Pairs where mask is false are reset on the chip.",
        ),
        OpDef(
            "sum_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            _pool_shape,
            "y[c,i,j] = sum over the kernel window of x_pad (zero padding, floor mode): the window\n"
            "count that a folded average pool leaves to the next layer's input (lower-crossbar).",
        ),
        OpDef(
            "im2col",
            ("x",),
            ("y",),
            (
                Attr("kernel", "ints"),
                Attr("stride", "ints", (1, 1)),
                Attr("dilation", "ints", (1, 1)),
                Attr("padding", "ints", (0, 0, 0, 0)),
                Attr("input_dilation", "ints", (1, 1)),
            ),
            _im2col_shape,
            "Crossbar row gather (docs/mapping.md): z = x with input_dilation-1 zeros between\n"
            "  pixels, zero padded [top, left, bottom, right]; for output pixel (i, j) and row\n"
            "  r = (c*kh + p)*kw + q: y[i*Wo + j, r] = z[c, i*stride + p*dilation, j*stride + q*dilation].",
        ),
        OpDef(
            "crossbar",
            ("x",),
            ("y",),
            (
                Attr("formed", "weight"),
                Attr("mask", "weight"),
                Attr("gain", "float"),
                Attr("mode", "str", choices=("as_formed", "programmed")),
                Attr("kind", "str", choices=("conv2d", "conv_transpose2d", "linear")),
                Attr("weight_shape", "ints"),
                Attr("groups", "int", 1),
                Attr("input_scale", "float", 1.0),
                Attr("drive", "str", "unset", DRIVES),
                Attr("planes", "int", 0),
                Attr("input_quantum", "float", 1.0),
                Attr("encoding", "str", "unset", ("unset", "differential")),
                Attr("us_per_unit", "float", 1.0),
                Attr("row_map", "weight", EMPTY_MAP),
                Attr("col_map", "weight", EMPTY_MAP),
                Attr("tile_rows", "ints", ()),
                Attr("tile_outputs", "ints", ()),
                *(Attr(name, "ints", ()) for name in TILE_FIELDS),
                Attr("phase", "int", -1),
            ),
            _crossbar_shape,
            "One layer's matrix-vector products on memristor crossbars (docs/mapping.md):\n"
            "  W = formed * gain * mask  [R rows (inputs), O outputs];\n"
            "  y[o, p] = input_scale * sum_r x[p, r] * W[r, o]   (x: [P positions, R rows]).\n"
            "  With tiles, tile t holds rows row_map[tile_rows[2t]:tile_rows[2t+1]] and outputs\n"
            "  col_map[tile_outputs[2t]:tile_outputs[2t+1]]; partial sums add in tile order.\n"
            "  drive/planes/input_quantum: x / input_quantum are integers in [0, 2^planes), driven one\n"
            "  bit plane per read. Output o is the pair of columns (2j, 2j+1) = (G+, G-) of its tile.",
        ),
    )
}


def attr_type_ok(kind: str, value: Any) -> bool:
    """Whether a value has the attribute kind declared for it."""
    checks: dict[str, Callable[[Any], bool]] = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, float),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "ints": lambda v: (
            isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ),
        "floats": lambda v: isinstance(v, tuple) and all(isinstance(x, float) for x in v),
        "weight": lambda v: isinstance(v, Weight),
    }
    return checks[kind](value)


def canonical_attrs(op: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and coerce ints to floats where a float is declared (for builders)."""
    result: dict[str, Any] = {}
    for attr in op.attrs:
        value = given.get(attr.name, attr.default)
        if value is REQUIRED:
            continue
        if attr.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if attr.kind in ("ints", "floats") and isinstance(value, list | tuple):
            value = tuple(float(v) if attr.kind == "floats" else v for v in value)
        result[attr.name] = value
    result.update({k: v for k, v in given.items() if op.attr_def(k) is None})
    return result
