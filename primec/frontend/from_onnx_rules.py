"""Import rules: how each ONNX op (standard, and primec's neuron ops) becomes IR nodes, and the
hints given for ops that have none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper as oh
from onnx import numpy_helper

from primec.core.ir import Value, Weight
from primec.core.ops import OPS
from primec.frontend import convention as cv
from primec.frontend.problems import Unsupported

if TYPE_CHECKING:
    from primec.frontend.from_onnx import _Importer


def float32_value(value: float) -> float:
    """The shortest decimal that a float32 attribute stands for (0.2, not 0.20000000298)."""
    return float(str(np.float32(value)))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    values = {a.name: oh.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _fixed_shape(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """The per-sample shape of a value [batch, ...] whose other dimensions are all known."""
    dims = info.type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    return shape if len(dims) >= 1 and all(d > 0 for d in shape) else None


def _op_name(node: onnx.NodeProto) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain else node.op_type


# --- translation rules: one per ONNX op -------------------------------------------------------

Rule = Callable[["_Importer", onnx.NodeProto, str], list[Value]]


def _symmetric_pads(attrs: dict[str, Any]) -> tuple[int, int]:
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise Unsupported(f"auto_pad={attrs['auto_pad']}", "give explicit pads")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise Unsupported(f"asymmetric or non-2-d pads {pads}", "pad the same on both sides")
    return pads[0], pads[1]


def _conv_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "stride": tuple(attrs.get("strides", (1, 1))),
        "padding": _symmetric_pads(attrs),
        "dilation": tuple(attrs.get("dilations", (1, 1))),
        "groups": int(attrs.get("group", 1)),
    }


def _has_bias(node: onnx.NodeProto) -> bool:
    return len(node.input) > 2 and bool(node.input[2])


def _product_name(node: onnx.NodeProto) -> str:
    """The name of a layer's result before its bias is added (the ONNX name is the sum's)."""
    return f"{node.output[0]}.nobias" if _has_bias(node) else node.output[0]


def _with_bias(imp: _Importer, y: Value, node: onnx.NodeProto, loc: str, shape: tuple) -> Value:
    if not _has_bias(node):
        return y
    bias = imp.constant(node.input[2], "the bias").reshape(shape)
    return imp.op("add", y, imp.weight(bias, loc, node.input[2]), loc=loc, name=node.output[0])


def _conv(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    attrs = _attrs(node)
    x, w = imp.value(node.input[0], loc), imp.value(node.input[1], loc)
    y = imp.op("conv2d", x, w, loc=loc, name=_product_name(node), **_conv_attrs(attrs))
    return [_with_bias(imp, y, node, loc, (-1, 1, 1))]


def _conv_transpose(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    attrs = _attrs(node)
    if "output_shape" in attrs:
        raise Unsupported("ConvTranspose with output_shape", "give output_padding instead")
    x, w = imp.value(node.input[0], loc), imp.value(node.input[1], loc)
    conv = _conv_attrs(attrs) | {"output_padding": tuple(attrs.get("output_padding", (0, 0)))}
    y = imp.op("conv_transpose2d", x, w, loc=loc, name=_product_name(node), **conv)
    return [_with_bias(imp, y, node, loc, (-1, 1, 1))]


def _gemm(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    attrs = _attrs(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise Unsupported("Gemm with transA or alpha/beta != 1", "export nn.Linear as is")
    x = imp.value(node.input[0], loc)
    if attrs.get("transB", 0):
        w = imp.value(node.input[1], loc)
    else:
        w = imp.weight(imp.constant(node.input[1], "Gemm's B without transB").T, loc, node.input[1])
    y = imp.op("linear", x, w, loc=loc, name=_product_name(node))
    return [_with_bias(imp, y, node, loc, (-1,))]


def _matmul(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    x = imp.value(node.input[0], loc)
    w = imp.weight(imp.constant(node.input[1], "MatMul's second operand").T, loc, node.input[1])
    return [imp.op("linear", x, w, loc=loc, name=node.output[0])]


def _operand(imp: _Importer, name: str, like: Value, loc: str, negate: bool = False) -> Value:
    """A binary op's second operand; a constant loses a leading batch dimension of size 1."""
    if not imp.is_constant(name):
        if negate:
            raise Unsupported("Sub of two computed tensors", "subtract a constant only")
        return imp.value(name, loc)
    array = imp.constants[name]
    if like.name in imp.batched and array.ndim == len(like.type.shape) + 1:
        if array.shape[0] != 1:
            raise Unsupported(f"constant {name!r} varies along the batch dimension")
        array = array[0]
    return imp.weight(-array if negate else array, loc, name)


def _binary(ir_op: str, negate: bool = False) -> Rule:
    def rule(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
        """Translate one Add/Sub/Mul node."""
        first, second = node.input
        if imp.is_constant(first) and not imp.is_constant(second):
            if negate:
                raise Unsupported("Sub of a constant minus a computed tensor")
            first, second = second, first
        x = imp.value(first, loc)
        y = _operand(imp, second, x, loc, negate)
        return [imp.op(ir_op, x, y, loc=loc, name=node.output[0])]

    return rule


def _batch_norm(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    attrs = _attrs(node)
    if attrs.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
        raise Unsupported("BatchNorm in training mode", "call model.eval() before exporting")
    x = imp.value(node.input[0], loc)
    params = [
        imp.weight(imp.constant(n, "BatchNorm's parameters"), loc, n) for n in node.input[1:5]
    ]
    eps = float32_value(attrs.get("epsilon", 1e-5))
    return [imp.op("batch_norm", x, *params, loc=loc, name=node.output[0], eps=eps)]


def _pool_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    if attrs.get("ceil_mode", 0):
        raise Unsupported("pooling with ceil_mode=1", "use floor mode (ceil_mode=False)")
    if any(d != 1 for d in attrs.get("dilations", ())):
        raise Unsupported("dilated pooling")
    kernel = tuple(attrs["kernel_shape"])
    return {
        "kernel": kernel,
        "stride": tuple(attrs.get("strides", (1,) * len(kernel))),
        "padding": _symmetric_pads(attrs),
    }


def _avg_pool(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    attrs = _attrs(node)
    pool = _pool_attrs(attrs)
    if any(pool["padding"]) and not attrs.get("count_include_pad", 0):
        raise Unsupported("padded AveragePool without count_include_pad", "count_include_pad=True")
    x = imp.value(node.input[0], loc)
    return [imp.op("avg_pool2d", x, loc=loc, name=node.output[0], **pool)]


def _max_pool(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    if len([o for o in node.output if o]) > 1:
        raise Unsupported("MaxPool returning indices", "use nn.MaxPool2d without return_indices")
    pool = _pool_attrs(_attrs(node))
    return [
        imp.op("max_pool2d", imp.value(node.input[0], loc), loc=loc, name=node.output[0], **pool)
    ]


def _flatten(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    if _attrs(node).get("axis", 1) != 1:
        raise Unsupported("Flatten that does not keep the batch dimension", "flatten from axis 1")
    return [imp.op("flatten", imp.value(node.input[0], loc), loc=loc, name=node.output[0])]


def _reshape(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    x = imp.value(node.input[0], loc)
    target = [int(d) for d in imp.constant(node.input[1], "Reshape's shape")]
    per_sample = [
        x.type.shape[i] if d == 0 and i < len(x.type.shape) else d for i, d in enumerate(target[1:])
    ]
    if -1 in per_sample:
        known = int(np.prod([d for d in per_sample if d != -1]))
        per_sample[per_sample.index(-1)] = x.type.size // max(known, 1)
    if int(np.prod(per_sample)) != x.type.size:
        raise Unsupported(f"Reshape to {target} mixes samples of the batch", "keep the batch first")
    return [imp.op("reshape", x, loc=loc, name=node.output[0], shape=tuple(per_sample))]


def _leaky_relu(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    slope = float32_value(_attrs(node).get("alpha", 0.01))
    x = imp.value(node.input[0], loc)
    return [imp.op("leaky_relu", x, loc=loc, name=node.output[0], slope=slope)]


def _relu(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    return [
        imp.op("leaky_relu", imp.value(node.input[0], loc), loc=loc, name=node.output[0], slope=0.0)
    ]


def _identity(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    return [imp.value(node.input[0], loc)]


def _dropout(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    training = len(node.input) > 2 and node.input[2]
    if training and bool(np.asarray(imp.constant(node.input[2], "Dropout's training_mode"))):
        raise Unsupported("dropout in training mode", "call model.eval() before exporting")
    return [imp.value(node.input[0], loc)]


def _constant(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
    if len(node.attribute) != 1 or node.attribute[0].name not in _CONSTANT_KINDS:
        raise Unsupported("Constant without a numeric value")
    value = oh.get_attribute_value(node.attribute[0])
    dtype = _CONSTANT_KINDS[node.attribute[0].name]
    array = numpy_helper.to_array(value) if dtype is None else np.asarray(value, dtype=dtype)
    imp.constants[node.output[0]] = array
    return []


_CONSTANT_KINDS = {
    "value": None,
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
}


def _primec(name: str) -> Rule:
    """Rule for a primec-domain op: the IR op of the same meaning, attributes carried over."""
    op = cv.PRIMEC_OPS[name]

    def rule(imp: _Importer, node: onnx.NodeProto, loc: str) -> list[Value]:
        """Translate one primec-domain node."""
        given = _attrs(node)
        missing = [a for a, _ in op.attrs if a not in given]
        if missing or len(node.input) != len(op.inputs):
            raise Unsupported(f"primec.{name} needs inputs {op.inputs} and attributes {missing}")
        attrs = {a: _primec_attr(kind, given[a]) for a, kind in op.attrs}
        params = cv.TENSOR_PARAMS.get(name, ())
        operands = node.input[: len(op.inputs) - len(params)]
        for param, source in zip(params, node.input[len(operands) :], strict=True):
            attrs[param] = _tensor_param(imp, source, f"the {param} of primec.{name}")
        attrs = {a: v for a, v in attrs.items() if not _neutral(op.ir_op, a, v)}
        inputs = [imp.value(n, loc) for n in operands]
        result = imp.op(op.ir_op, *inputs, loc=loc, name=loc or node.name, **attrs)
        return list(result) if isinstance(result, tuple) else [result]

    return rule


def _tensor_param(imp: _Importer, source: str, what: str) -> float | Weight:
    """A neuron parameter given as a constant input: one value (any tensor of one element) as
    the float32 attribute it would be, else the tensor, float32, broadcast to the membrane."""
    array = np.asarray(imp.constant(source, what))
    if array.dtype.kind != "f":
        raise Unsupported(f"{what} must hold floats, got {array.dtype}")
    if not np.isfinite(array).all():
        raise Unsupported(f"{what} holds NaN or infinite values")
    if array.size == 1:
        return float32_value(float(array.reshape(-1)[0]))
    return Weight.of(np.ascontiguousarray(array, dtype=np.float32))


def _neutral(ir_op: str, name: str, value: Any) -> bool:
    """An optional IR attribute at its default: left out, as canonical graphs do."""
    attr = OPS[ir_op].attr_def(name)
    return attr is not None and attr.optional and isinstance(value, float) and value == attr.default


def _primec_attr(kind: str, value: Any) -> Any:
    if kind == "float":
        return float32_value(value)
    if kind == "int":
        return bool(value)
    if kind == "integer":
        if not isinstance(value, int):
            raise Unsupported(
                f"attribute {value!r} must be an integer", "give it as an INT attribute"
            )
        return value
    return value


_RULES: dict[tuple[str, str], Rule] = {
    ("", "Conv"): _conv,
    ("", "ConvTranspose"): _conv_transpose,
    ("", "Gemm"): _gemm,
    ("", "MatMul"): _matmul,
    ("", "Add"): _binary("add"),
    ("", "Sub"): _binary("add", negate=True),
    ("", "Mul"): _binary("mul"),
    ("", "BatchNormalization"): _batch_norm,
    ("", "AveragePool"): _avg_pool,
    ("", "MaxPool"): _max_pool,
    ("", "Flatten"): _flatten,
    ("", "Reshape"): _reshape,
    ("", "LeakyRelu"): _leaky_relu,
    ("", "Relu"): _relu,
    ("", "Identity"): _identity,
    ("", "Dropout"): _dropout,
    ("", "Constant"): _constant,
    **{(cv.DOMAIN, name): _primec(name) for name in cv.PRIMEC_OPS},
}

_NEURON_HINT = (
    "a neuron written with plain ops: export a primec.nn neuron, which becomes one primec.LIF"
)
_UNFOLDED_BN_HINT = "looks like an unfolded BatchNorm: export nn.BatchNorm2d in eval mode"
_HINTS = {
    **dict.fromkeys(
        ["Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Where", "Sign"], _NEURON_HINT
    ),
    **dict.fromkeys(["Sqrt", "Div", "ReduceMean", "Pow", "Reciprocal"], _UNFOLDED_BN_HINT),
    **dict.fromkeys(
        ["Loop", "Scan"],
        "the time loop was exported: export one timestep (`primec export` does)",
    ),
}
