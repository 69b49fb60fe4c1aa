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

from primec.core import shapes as rules
from primec.core.ir import TensorType, TileRecord, Weight
from primec.core.shapes import DRIVES, EMPTY_CELLS, EMPTY_MAP
from primec.core.shapes import ShapeError as ShapeError  # re-exported: callers catch it here

REQUIRED = object()
FLOAT_DTYPES = ("f32", "f64")


def kind_name(kind: str) -> str:
    """An attribute kind as a message names it."""
    return "float, or a float weight broadcast to the neuron" if kind == "param" else kind


ATTR_KINDS = ("int", "float", "bool", "str", "ints", "floats", "weight", "tiles", "param")
# A neuron parameter (`param`): one float for the whole layer, or a float `weight` whose shape
# broadcasts (NumPy rules) to the neuron's per-sample shape: [C, 1, 1] per channel of a
# convolution's output, [C, H, W] or [N] per neuron. Scalars stay floats, so a graph without
# tensor-valued parameters prints and encodes exactly as before.


@dataclass(frozen=True)
class Attr:
    """One typed attribute of an op; `choices` restricts a `str` attribute.

    An `optional` attribute is absent from a node unless set (canonical graphs leave it out), and
    absent means `default`: a variant added to an op keeps every existing graph and artefact as
    it was.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    optional: bool = False


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


_CONV_ATTRS = (
    Attr("stride", "ints", (1, 1)),
    Attr("padding", "ints", (0, 0)),
    Attr("dilation", "ints", (1, 1)),
    Attr("groups", "int", 1),
)
_POOL_ATTRS = (Attr("kernel", "ints"), Attr("stride", "ints"), Attr("padding", "ints", (0, 0)))
_RESETS = ("zero", "subtract", "none")
_RESET_TIMINGS = ("before_leak", "after_leak", "after_input", "at_once")

OPS: dict[str, OpDef] = {
    op.name: op
    for op in (
        OpDef(
            "weight",
            (),
            ("y",),
            (Attr("value", "weight"),),
            rules.weight_shape,
            "y = value (a constant tensor held by reference)",
        ),
        OpDef(
            "supermask",
            ("weight", "scores"),
            ("y",),
            (Attr("sparsity", "float"), Attr("gain", "float", 1.0)),
            rules.supermask_shape,
            "Edge-popup supermask (PRIME): n = numel(scores); k = 1 + round(sparsity*(n-1)) (half to even);\n"
            "  mask = |scores| >= the k-th smallest |scores|; y = weight * gain * mask",
        ),
        OpDef(
            "conv2d",
            ("x", "w"),
            ("y",),
            _CONV_ATTRS,
            rules.conv2d_shape,
            "y[o,i,j] = sum_{c,p,q} w[o,c,p,q] * x_pad[g(o)*C/groups + c, i*stride+p*dilation, j*stride+q*dilation] (cross-correlation, zero padding)",
        ),
        OpDef(
            "conv_transpose2d",
            ("x", "w"),
            ("y",),
            (*_CONV_ATTRS[:3], Attr("output_padding", "ints", (0, 0)), Attr("groups", "int", 1)),
            rules.conv_transpose2d_shape,
            "y = the gradient of conv2d with weight w with respect to its input (PyTorch ConvTranspose2d); H_out = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1",
        ),
        OpDef("linear", ("x", "w"), ("y",), (), rules.linear_shape, "y[m] = sum_k w[m,k] * x[k]"),
        OpDef(
            "add",
            ("a", "b"),
            ("y",),
            (),
            rules.broadcast_shape,
            "y = a + b (b broadcast onto a, NumPy rules)",
        ),
        OpDef(
            "mul",
            ("a", "b"),
            ("y",),
            (),
            rules.broadcast_shape,
            "y = a * b (b broadcast onto a, NumPy rules)",
        ),
        OpDef(
            "affine",
            ("x", "scale", "shift"),
            ("y",),
            (),
            rules.channel_params_shape,
            "y[c,...] = x[c,...] * scale[c] + shift[c] (per-channel, digital periphery after the ADC)",
        ),
        OpDef(
            "batch_norm",
            ("x", "gamma", "beta", "mean", "var"),
            ("y",),
            (Attr("eps", "float", 1e-5),),
            rules.channel_params_shape,
            "y[c,...] = (x[c,...] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c] (inference statistics)",
        ),
        OpDef(
            "avg_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            rules.pool_shape,
            "y[c,i,j] = mean over the kernel window of x_pad (zero padding counted, floor mode)",
        ),
        OpDef(
            "max_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            rules.pool_shape,
            "y[c,i,j] = max over the kernel window of x_pad (padding never wins, floor mode)",
        ),
        OpDef(
            "flatten",
            ("x",),
            ("y",),
            (),
            rules.flatten_shape,
            "y = x flattened in row-major (C, H, W) order",
        ),
        OpDef(
            "reshape",
            ("x",),
            ("y",),
            (Attr("shape", "ints"),),
            rules.reshape_shape,
            "y = x reshaped (row-major) to `shape`",
        ),
        OpDef(
            "leaky_relu",
            ("x",),
            ("y",),
            (Attr("slope", "float", 0.01),),
            rules.same,
            "y = x if x >= 0 else slope * x",
        ),
        OpDef(
            "lif",
            ("current", "membrane", "spike"),
            ("spike_out", "membrane_out"),
            (
                Attr("keep", "param"),
                Attr("threshold", "param"),
                Attr("strict", "bool", True),
                Attr("reset", "str", "zero", _RESETS),
                Attr("reset_timing", "str", "before_leak", _RESET_TIMINGS),
                Attr("slope", "float", 1.0),
                Attr("v_reset", "param", 0.0, optional=True),
                Attr("v_leak", "param", 0.0, optional=True),
                Attr("input_gain", "param", 1.0, optional=True),
            ),
            rules.lif_shape,
            "Leaky integrate-and-fire, one timestep (states are the previous step's membrane U and spike s):\n"
            "  reset(U) = U*(1-s) + v_reset*s if reset=zero; U - threshold*s if reset=subtract; U if none\n"
            "  leak(U) = keep*U (v_leak=0), else v_leak + keep*(U - v_leak); I = input_gain*current\n"
            "  U' = leak(reset(U)) + I                (reset_timing=before_leak)\n"
            "  U' = reset(leak(U)) + I                (reset_timing=after_leak)\n"
            "  U' = reset(leak(U) + I)                (reset_timing=after_input)\n"
            "  U' = U' if U' >= 0 else slope*U'       (LeakyReLU on the membrane; slope=1: none)\n"
            "  s' = 1 if U' > threshold (strict) or U' >= threshold (not strict) else 0\n"
            "reset_timing=at_once (reset=subtract; snnTorch reset_delay=False): U is the membrane\n"
            "  after its reset; r = fire(U); H = (leak(U) + I) - threshold*r; s' = fire(H);\n"
            "  U' = LeakyReLU(H - (s' - r)*threshold).\n"
            "Outputs (s', U'). PRIME cell: keep=0.2, threshold=0.2, strict, zero, slope=0.1.\n"
            "keep, threshold, v_reset, v_leak, input_gain: one value, or a tensor broadcast to U\n"
            "(per channel [C,1,1], per neuron [C,H,W] or [N]); each product is elementwise.",
        ),
        OpDef(
            "integrator",
            ("current", "membrane"),
            ("membrane_out",),
            (Attr("keep", "param", 1.0), Attr("slope", "float", 1.0)),
            rules.integrator_shape,
            "Non-spiking integrator: U' = keep*U + current; U' = U' if U' >= 0 else slope*U'. Output U'.\n"
            "keep: one value, or a tensor broadcast to U (per channel or per neuron).",
        ),
        OpDef(
            "readout_mean",
            ("x", "sum", "count"),
            ("mean", "sum_out", "count_out"),
            (),
            rules.readout_mean_shape,
            "Running mean over timesteps: sum' = sum + x; count' = count + 1; mean = sum' / count'.",
        ),
        OpDef(
            "readout_exp_tanh",
            ("x", "acc"),
            ("y", "acc_out"),
            (Attr("decay", "float"),),
            rules.readout_exp_shape,
            "Exponentially weighted sum: acc' = decay*acc + x; y = tanh(acc'). After T steps\n"
            "acc' = sum_t decay^(T-1-t) x_t (the FSVAE readout).",
        ),
        OpDef(
            "sample_bernoulli",
            ("q", "step"),
            ("z", "step_out"),
            (Attr("k", "int"), Attr("seed", "int")),
            rules.sample_bernoulli_shape,
            "FSVAE latent sampler: 1 of k candidates per channel (q[c*k:(c+1)*k] are channel c's):\n"
            "  z[c] = q[c*k + draw(seed, sample, step, c)]; step_out = step + 1 (step starts at 0).\n"
            "  draw = lowbias32 counter hash mod k (primec/core/counter_rng.py); sample = the\n"
            "  sample's row in the batch plus the runner's sample offset. Digital periphery.",
        ),
        OpDef(
            "masked_weight",
            (),
            ("y",),
            (Attr("formed", "weight"), Attr("mask", "weight"), Attr("gain", "float")),
            rules.masked_weight_shape,
            "A pruned as-formed weight (fold-masks): y = formed * gain * mask.\n"
            "  formed: the as-formed weight G+ - G- (device units, uS); mask: kept synapses (bool);\n"
            "  gain: the periphery's scale. Pairs where mask is false are reset on the chip.",
        ),
        OpDef(
            "sum_pool2d",
            ("x",),
            ("y",),
            _POOL_ATTRS,
            rules.pool_shape,
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
            rules.im2col_shape,
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
                Attr("g_pos_us", "weight", EMPTY_CELLS),
                Attr("g_neg_us", "weight", EMPTY_CELLS),
                Attr("row_map", "weight", EMPTY_MAP),
                Attr("col_map", "weight", EMPTY_MAP),
                Attr("tiles", "tiles", ()),
                Attr("phase", "int", -1),
            ),
            rules.crossbar_shape,
            "One layer's matrix-vector products on memristor crossbars (docs/mapping.md):\n"
            "  W = formed * gain * mask  [R rows (inputs), O outputs];\n"
            "  y[o, p] = input_scale * sum_r x[p, r] * W[r, o]   (x: [P positions, R rows]).\n"
            "  With tiles, tile t holds rows row_map[tiles[t].rows] and outputs\n"
            "  col_map[tiles[t].outputs]; partial sums add in tile order.\n"
            "  drive/planes/input_quantum: x / input_quantum are integers in [0, 2^planes), driven one\n"
            "  bit plane per read. Output o is a pair of cells (G+, G-) = (g_pos_us, g_neg_us)[r, o]\n"
            "  in uS, set by map-pairs: (G+ - G-) / us_per_unit = formed * mask.",
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
        "tiles": lambda v: isinstance(v, tuple) and all(isinstance(x, TileRecord) for x in v),
        "param": lambda v: (
            isinstance(v, float) or (isinstance(v, Weight) and v.type.dtype in FLOAT_DTYPES)
        ),
    }
    return checks[kind](value)


def canonical_attrs(op: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and coerce ints to floats where a float is declared (for builders)."""
    result: dict[str, Any] = {}
    for attr in op.attrs:
        value = given.get(attr.name, attr.default)
        if value is REQUIRED or (attr.optional and attr.name not in given):
            continue
        if (
            attr.kind in ("float", "param")
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = float(value)
        if attr.kind in ("ints", "floats") and isinstance(value, list | tuple):
            value = tuple(float(v) if attr.kind == "floats" else v for v in value)
        result[attr.name] = value
    result.update({k: v for k, v in given.items() if op.attr_def(k) is None})
    return result
