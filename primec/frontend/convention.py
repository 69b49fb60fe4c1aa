"""primec's ONNX convention: the `primec` op domain, its function bodies and the metadata keys.

Documented for other tools in docs/onnx.md. Each primec op carries an ONNX function body made
of standard ops, so onnxruntime runs a primec ONNX file as it is; the body follows the IR op's
equation (`primec/core/ops.py`) operation by operation, so float32 results match PyTorch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import FunctionProto, NodeProto, TensorProto
from onnx import helper as oh

from primec.frontend import neuron_bodies as nb
from primec.frontend.neuron_bodies import const, ref
from primec.frontend.onnx_hash import int64, mix32

DOMAIN = "primec"
DOMAIN_VERSION = 1
OPSET = 21
IR_VERSION = 10
CONVENTION_VERSION = "1"

META_CONVENTION = "primec.convention"
META_TIMESTEPS = "primec.timesteps"
META_READOUT = "primec.readout"
META_ENCODING = "primec.input_encoding"
META_STATES = "primec.states"
NODE_LOC = "primec.loc"


@dataclass(frozen=True)
class PrimecOp:
    """One op of the `primec` domain and the IR op it stands for."""

    name: str
    ir_op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, str], ...]  # (name, kind): kind is float, int or string


_LIF_IO = (("current", "membrane", "spike"), ("spike_out", "membrane_out"))
_LIF_ATTRS = (
    ("keep", "float"),
    ("threshold", "float"),
    ("strict", "int"),
    ("reset", "string"),
    ("reset_timing", "string"),
    ("slope", "float"),
)

# The parameters that the tensor forms of the neuron ops take as inputs, in order.
TENSOR_PARAMS = {
    "LIFTensor": ("keep", "threshold", "v_reset", "v_leak", "input_gain"),
    "IntegratorTensor": ("keep",),
}

PRIMEC_OPS: dict[str, PrimecOp] = {
    op.name: op
    for op in (
        PrimecOp("LIF", "lif", _LIF_IO[0], _LIF_IO[1], _LIF_ATTRS),
        PrimecOp(
            "LIFGeneral",
            "lif",
            *_LIF_IO,
            (*_LIF_ATTRS, ("v_reset", "float"), ("v_leak", "float"), ("input_gain", "float")),
        ),
        PrimecOp(
            "Integrator",
            "integrator",
            ("current", "membrane"),
            ("membrane_out",),
            (("keep", "float"), ("slope", "float")),
        ),
        # Tensor-valued parameters (per channel or per neuron) are inputs, initializers in a
        # primec file, each broadcast (NumPy rules) to the membrane.
        PrimecOp(
            "LIFTensor",
            "lif",
            (*_LIF_IO[0], *TENSOR_PARAMS["LIFTensor"]),
            _LIF_IO[1],
            tuple(a for a in _LIF_ATTRS if a[0] not in ("keep", "threshold")),
        ),
        PrimecOp(
            "IntegratorTensor",
            "integrator",
            ("current", "membrane", *TENSOR_PARAMS["IntegratorTensor"]),
            ("membrane_out",),
            (("slope", "float"),),
        ),
        PrimecOp(
            "Supermask",
            "supermask",
            ("weight", "scores"),
            ("y",),
            (("sparsity", "float"), ("gain", "float")),
        ),
        PrimecOp(
            "ReadoutMean",
            "readout_mean",
            ("x", "sum", "count"),
            ("mean", "sum_out", "count_out"),
            (),
        ),
        PrimecOp(
            "ReadoutExpTanh",
            "readout_exp_tanh",
            ("x", "acc"),
            ("y", "acc_out"),
            (("decay", "float"),),
        ),
        PrimecOp(
            "SampleBernoulli",
            "sample_bernoulli",
            ("q", "step"),
            ("z", "step_out"),
            (("k", "integer"), ("seed", "integer")),
        ),
    )
}


def _supermask_body() -> list[NodeProto]:
    # k = 1 + round(sparsity*(n-1)) in double precision, Round being half-to-even as in Python.
    return [
        ref("sparsity", "float"),
        ref("gain", "float"),
        oh.make_node("Constant", [], ["flat_shape"], value_ints=[-1]),
        oh.make_node(
            "Constant", [], ["one_d"], value=oh.make_tensor("one_d", TensorProto.DOUBLE, [], [1.0])
        ),
        oh.make_node("Constant", [], ["one_i"], value_ints=[1]),
        oh.make_node("Abs", ["scores"], ["magnitude"]),
        oh.make_node("Reshape", ["magnitude", "flat_shape"], ["flat"]),
        oh.make_node("Size", ["scores"], ["n"]),
        oh.make_node("Cast", ["n"], ["n_d"], to=TensorProto.DOUBLE),
        oh.make_node("Sub", ["n_d", "one_d"], ["n_minus_one"]),
        oh.make_node("Cast", ["sparsity"], ["sparsity_d"], to=TensorProto.DOUBLE),
        oh.make_node("Mul", ["sparsity_d", "n_minus_one"], ["position"]),
        oh.make_node("Round", ["position"], ["rounded"]),
        oh.make_node("Cast", ["rounded"], ["rounded_i"], to=TensorProto.INT64),
        oh.make_node("Reshape", ["rounded_i", "one_i"], ["rounded_1"]),
        oh.make_node("Add", ["rounded_1", "one_i"], ["k"]),
        oh.make_node("TopK", ["flat", "k"], ["smallest", "smallest_at"], largest=0, sorted=1),
        oh.make_node("ReduceMax", ["smallest"], ["kth"], keepdims=0),
        oh.make_node("GreaterOrEqual", ["magnitude", "kth"], ["kept"]),
        oh.make_node("Cast", ["kept"], ["mask"], to=TensorProto.FLOAT),
        oh.make_node("Mul", ["weight", "gain"], ["scaled"]),
        oh.make_node("Mul", ["scaled", "mask"], ["y"]),
    ]


def _readout_mean_body() -> list[NodeProto]:
    # count is [N, 1]; it is reshaped to [N, 1, ..., 1] so that it divides an x of any rank.
    return [
        const("one", 1.0),
        oh.make_node("Constant", [], ["batch"], value_ints=[-1]),
        oh.make_node("Constant", [], ["one_i"], value_ints=[1]),
        oh.make_node("Add", ["sum", "x"], ["sum_out"]),
        oh.make_node("Add", ["count", "one"], ["count_out"]),
        oh.make_node("Shape", ["x"], ["x_shape"]),
        oh.make_node("Size", ["x_shape"], ["rank"]),
        oh.make_node("Sub", ["rank", "one_i"], ["ones_count"]),
        oh.make_node(
            "ConstantOfShape",
            ["ones_count"],
            ["ones"],
            value=oh.make_tensor("one", TensorProto.INT64, [1], [1]),
        ),
        oh.make_node("Concat", ["batch", "ones"], ["count_shape"], axis=0),
        oh.make_node("Reshape", ["count_out", "count_shape"], ["count_b"]),
        oh.make_node("Div", ["sum_out", "count_b"], ["mean"]),
    ]


def _readout_exp_tanh_body() -> list[NodeProto]:
    return [
        ref("decay", "float"),
        oh.make_node("Mul", ["acc", "decay"], ["decayed"]),
        oh.make_node("Add", ["decayed", "x"], ["acc_out"]),
        oh.make_node("Tanh", ["acc_out"], ["y"]),
    ]


def _sample_bernoulli_body() -> list[NodeProto]:
    # sample = the row in the batch; channel = 0..C-1; step = the step counter; all int64.
    shape_rows = [oh.make_node("Constant", [], [n], value_ints=v) for n, v in _SAMPLER_SHAPES]
    return [
        ref("k", "integer"),
        ref("seed", "integer"),
        const("one", 1.0),
        int64("zero_i", 0),
        int64("one_i", 1),
        int64("half", 1 << 16),
        int64("word", 1 << 32),
        *shape_rows,
        oh.make_node("Shape", ["q"], ["q_shape"]),
        oh.make_node("Gather", ["q_shape", "zero_i"], ["batch"]),
        oh.make_node("Gather", ["q_shape", "one_i"], ["width"]),
        oh.make_node("Div", ["width", "k"], ["channels"]),
        oh.make_node("Range", ["zero_i", "batch", "one_i"], ["rows"]),
        oh.make_node("Reshape", ["rows", "column"], ["sample"]),
        oh.make_node("Range", ["zero_i", "channels", "one_i"], ["channel_row"]),
        oh.make_node("Reshape", ["channel_row", "row"], ["channel"]),
        oh.make_node("Cast", ["step"], ["step_i"], to=TensorProto.INT64),
        *mix32("channel", "h1"),
        oh.make_node("BitwiseXor", ["h1", "step_i"], ["k2"]),
        *mix32("k2", "h2"),
        oh.make_node("BitwiseXor", ["h2", "sample"], ["k3"]),
        *mix32("k3", "h3"),
        oh.make_node("BitwiseXor", ["h3", "seed"], ["k4"]),
        *mix32("k4", "h4"),
        oh.make_node("Mod", ["h4", "k"], ["index"]),
        oh.make_node("Unsqueeze", ["index", "last"], ["index3"]),
        oh.make_node("Reshape", ["k", "one_d"], ["k_1"]),
        oh.make_node("Concat", ["minus_one", "k_1"], ["per_channel"], axis=0),
        oh.make_node("Concat", ["rows_1", "per_channel"], ["grouped"], axis=0),
        oh.make_node("Reshape", ["q", "grouped"], ["q3"]),
        oh.make_node("GatherElements", ["q3", "index3"], ["z3"], axis=2),
        oh.make_node("Squeeze", ["z3", "last"], ["z"]),
        oh.make_node("Add", ["step", "one"], ["step_out"]),
    ]


# Shape constants of the sampler body: [N, 1] samples, [1, C] channels, [N, C, k] candidates.
_SAMPLER_SHAPES = (("column", [-1, 1]), ("row", [1, -1]), ("last", [2]), ("one_d", [1]))
_SAMPLER_SHAPES += (("minus_one", [-1]), ("rows_1", [0]))


_BODIES = {
    "LIF": lambda: nb.lif_body(PRIMEC_OPS["LIF"].attrs),
    "LIFGeneral": lambda: nb.lif_general_body(PRIMEC_OPS["LIFGeneral"].attrs),
    "Integrator": lambda: nb.integrator_body(PRIMEC_OPS["Integrator"].attrs),
    "LIFTensor": lambda: nb.lif_general_body(PRIMEC_OPS["LIFTensor"].attrs),
    "IntegratorTensor": lambda: nb.integrator_body(PRIMEC_OPS["IntegratorTensor"].attrs),
    "Supermask": _supermask_body,
    "ReadoutMean": _readout_mean_body,
    "ReadoutExpTanh": _readout_exp_tanh_body,
    "SampleBernoulli": _sample_bernoulli_body,
}


def function(name: str) -> FunctionProto:
    """The ONNX function that defines primec op `name` in standard ONNX ops."""
    op = PRIMEC_OPS[name]
    return oh.make_function(
        DOMAIN,
        name,
        list(op.inputs),
        list(op.outputs),
        _BODIES[name](),
        [oh.make_opsetid("", OPSET)],
        attributes=[a for a, _ in op.attrs],
    )


def opset_imports() -> list[onnx.OperatorSetIdProto]:
    """The opsets a primec ONNX file imports: standard ONNX and the primec domain."""
    return [oh.make_opsetid("", OPSET), oh.make_opsetid(DOMAIN, DOMAIN_VERSION)]
