"""Export rules: how each ATen op (and each `torch.ops.primec.*` neuron op) of a step becomes
ONNX nodes in primec's convention, and the hints given for ops that have none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.fx import Node

from primec.frontend import convention as cv
from primec.frontend.problems import Unsupported

if TYPE_CHECKING:
    from primec.frontend.to_onnx import _Writer

_POISON = "<unsupported>"


def _pair(value: Any) -> list[int]:
    values = [value] if isinstance(value, int) else list(value)
    return values * 2 if len(values) == 1 else values


def _shape(node: Node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


def _target_name(node: Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def _bind(node: Node) -> dict[str, Any]:
    """The op's arguments by name, defaults filled in from its schema."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {"args": node.args}
    bound: dict[str, Any] = {}
    for index, argument in enumerate(schema.arguments):
        if index < len(node.args):
            bound[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


# --- translation rules: one per ATen / primec op ----------------------------------------------

Rule = Callable[["_Writer", Node, dict[str, Any]], Any]


def _conv(w: _Writer, node: Node, a: dict[str, Any], transposed: bool) -> str:
    kernel = _shape(a["weight"])[2:]
    if len(kernel) != 2:
        raise Unsupported(f"{len(kernel)}-d convolution", "primec maps 2-d convolutions")
    padding = _pair(a["padding"])
    attrs = {
        "kernel_shape": list(kernel),
        "strides": _pair(a["stride"]),
        "pads": padding + padding,
        "dilations": _pair(a["dilation"]),
        "group": int(a["groups"]),
    }
    if transposed:
        attrs["output_padding"] = _pair(a["output_padding"])
    inputs = [w.value(a["input"]), w.value(a["weight"])]
    inputs += [w.value(a["bias"])] if a.get("bias") is not None else []
    op = "ConvTranspose" if transposed else "Conv"
    return w.emit(op, inputs, w.loc(node), (op.lower(),), **attrs)[0]


def _convolution(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    if not a["transposed"] and any(_pair(a["output_padding"])):
        raise Unsupported("convolution with output_padding but not transposed")
    return _conv(w, node, a, bool(a["transposed"]))


def _linear(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    rank = len(_shape(a["input"]))
    if rank != 2:
        raise Unsupported(
            f"linear layer on a {rank}-d input", "flatten the input to [batch, features] first"
        )
    inputs = [w.value(a["input"]), w.value(a["weight"])]
    inputs += [w.value(a["bias"])] if a.get("bias") is not None else []
    return w.emit("Gemm", inputs, w.loc(node), ("linear",), transB=1)[0]


def _operand(w: _Writer, node: Node, arg: Any) -> str:
    if isinstance(arg, Node):
        return w.value(arg)
    return w.constant(np.array(arg, dtype=np.float32), f"{w.loc(node) or 'const'}.const")


def _binary(op_type: str) -> Rule:
    def rule(w: _Writer, node: Node, a: dict[str, Any]) -> str:
        """Translate one Add/Sub/Mul call."""
        if a.get("alpha", 1) != 1:
            raise Unsupported(f"{op_type.lower()} with alpha={a['alpha']}")
        inputs = [_operand(w, node, a["self"]), _operand(w, node, a["other"])]
        return w.emit(op_type, inputs, w.loc(node), (op_type.lower(),))[0]

    return rule


def _batch_norm_inputs(w: _Writer, node: Node, a: dict[str, Any]) -> list[str]:
    channels = _shape(a["input"])[1]
    defaults = {"weight": np.ones(channels, np.float32), "bias": np.zeros(channels, np.float32)}
    names = [w.value(a["input"])]
    for key in ("weight", "bias"):
        given = a[key]
        names.append(
            w.value(given)
            if given is not None
            else w.constant(defaults[key], f"{w.loc(node)}.{key}")
        )
    return names + [w.value(a["running_mean"]), w.value(a["running_var"])]


def _batch_norm(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    if a.get("training"):
        raise Unsupported("BatchNorm in training mode", "call model.eval() before exporting")
    if a["running_mean"] is None:
        raise Unsupported("BatchNorm without running statistics", "track_running_stats=True")
    inputs = _batch_norm_inputs(w, node, a)
    return w.emit(
        "BatchNormalization", inputs, w.loc(node), ("batch_norm",), epsilon=float(a["eps"])
    )[0]


def _batch_norm_legit(w: _Writer, node: Node, a: dict[str, Any]) -> tuple[str, str, str]:
    return (_batch_norm(w, node, a), _POISON, _POISON)


def _pool_common(a: dict[str, Any]) -> dict[str, Any]:
    if a.get("ceil_mode"):
        raise Unsupported("pooling with ceil_mode=True", "use ceil_mode=False (floor)")
    kernel = _pair(a["kernel_size"])
    padding = _pair(a["padding"])
    return {
        "kernel_shape": kernel,
        "strides": _pair(a["stride"]) if a["stride"] else kernel,
        "pads": padding + padding,
    }


def _avg_pool(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    attrs = _pool_common(a)
    if a.get("divisor_override") is not None:
        raise Unsupported("average pooling with divisor_override")
    if any(attrs["pads"]) and not a["count_include_pad"]:
        raise Unsupported(
            "padded average pooling that does not count the padding", "count_include_pad=True"
        )
    return w.emit(
        "AveragePool",
        [w.value(a["self"])],
        w.loc(node),
        ("avg_pool",),
        count_include_pad=1,
        **attrs,
    )[0]


def _max_pool(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    attrs = _pool_common(a)
    if any(d != 1 for d in _pair(a["dilation"])):
        raise Unsupported("dilated max pooling")
    return w.emit("MaxPool", [w.value(a["self"])], w.loc(node), ("max_pool",), **attrs)[0]


def _reshape(w: _Writer, node: Node, source: Node) -> str:
    before, after = _shape(source), _shape(node)
    if before[0] != after[0]:
        raise Unsupported(
            f"reshape {list(before)} -> {list(after)} mixes samples of the batch",
            "keep the batch dimension first and untouched",
        )
    shape = w.constant(
        np.array([-1, *after[1:]], dtype=np.int64), f"{w.loc(node) or 'reshape'}.shape"
    )
    return w.emit("Reshape", [w.value(source), shape], w.loc(node), ("reshape",))[0]


def _flatten(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    rank = len(_shape(a["self"]))
    start, end = a["start_dim"] % rank, a["end_dim"] % rank
    if start == 1 and end == rank - 1:
        return w.emit("Flatten", [w.value(a["self"])], w.loc(node), ("flatten",), axis=1)[0]
    return _reshape(w, node, a["self"])


def _view(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    return _reshape(w, node, a["self"])


def _leaky_relu(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    slope = float(a["negative_slope"])
    return w.emit("LeakyRelu", [w.value(a["self"])], w.loc(node), ("leaky_relu",), alpha=slope)[0]


def _relu(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    return w.emit("Relu", [w.value(a["self"])], w.loc(node), ("relu",))[0]


def _dropout(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    if a["train"] and a["p"] > 0:
        raise Unsupported("dropout in training mode", "call model.eval() before exporting")
    return w.value(a["input"])


def _same(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    source = a.get("self", a.get("input"))
    dtype = a.get("dtype")
    if dtype is not None and dtype != torch.float32:
        raise Unsupported(f"conversion to {dtype}", "keep the step in float32")
    return w.value(source)


def _getitem(w: _Writer, node: Node, a: dict[str, Any]) -> str:
    source, index = node.args
    produced = w.names[source.name]
    return _POISON if produced == _POISON else produced[index]


def _primec(name: str) -> Rule:
    """Rule for a `torch.ops.primec.*` op: one primec-domain ONNX node, parameters as attributes."""
    op = cv.PRIMEC_OPS[name]

    def rule(w: _Writer, node: Node, a: dict[str, Any]) -> Any:
        """Translate one primec op call."""
        tensors = [w.value(arg) for arg in node.args[: len(op.inputs)]]
        attrs = {
            key: int(a[key]) if kind in ("int", "integer") else a[key] for key, kind in op.attrs
        }
        outputs = w.emit(name, tensors, w.loc(node), op.outputs, domain=cv.DOMAIN, **attrs)
        if name.startswith("Readout"):
            w.readout, w.readout_op = outputs[0], name
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    return rule


_RULES: dict[str, Rule] = {
    "aten.conv2d.default": lambda w, n, a: _conv(w, n, a, False),
    "aten.conv_transpose2d.input": lambda w, n, a: _conv(w, n, a, True),
    "aten.convolution.default": _convolution,
    "aten.linear.default": _linear,
    "aten.add.Tensor": _binary("Add"),
    "aten.sub.Tensor": _binary("Sub"),
    "aten.mul.Tensor": _binary("Mul"),
    "aten.batch_norm.default": _batch_norm,
    "aten._native_batch_norm_legit_no_training.default": _batch_norm_legit,
    "aten.avg_pool2d.default": _avg_pool,
    "aten.max_pool2d.default": _max_pool,
    "aten.flatten.using_ints": _flatten,
    "aten.view.default": _view,
    "aten.reshape.default": _view,
    "aten._unsafe_view.default": _view,
    "aten.unflatten.int": _view,
    "aten.leaky_relu.default": _leaky_relu,
    "aten.relu.default": _relu,
    "aten.dropout.default": _dropout,
    "aten.clone.default": _same,
    "aten.alias.default": _same,
    "aten.detach.default": _same,
    "aten.contiguous.default": _same,
    "aten.lift_fresh_copy.default": _same,
    "aten.to.dtype": _same,
    "aten._to_copy.default": _same,
    "getitem": _getitem,
    "primec.lif.default": _primec("LIF"),
    "primec.lif_general.default": _primec("LIFGeneral"),
    "primec.integrator.default": _primec("Integrator"),
    "primec.lif_tensor.default": _primec("LIFTensor"),
    "primec.integrator_tensor.default": _primec("IntegratorTensor"),
    "primec.supermask.default": _primec("Supermask"),
    "primec.readout_mean.default": _primec("ReadoutMean"),
    "primec.readout_exp_tanh.default": _primec("ReadoutExpTanh"),
    "primec.sample_bernoulli.default": _primec("SampleBernoulli"),
}

_IGNORED = {
    "aten._assert_tensor_metadata.default",
    "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default",
    "_assert_async",
}

_NEURON_HINT = (
    "a neuron written with plain tensor ops: use a primec.nn neuron (LIF, PrimeCell, Leaky, IF, "
    "FSVAELIF) so that it exports as one primec.LIF op"
)
_TRAINING_BN_HINT = "BatchNorm in training mode: call model.eval() before exporting"
_UNFOLDED_BN_HINT = (
    "looks like an unfolded BatchNorm: use nn.BatchNorm2d in eval mode (one BatchNormalization)"
)
_HINTS = {
    **dict.fromkeys(
        [
            "aten.gt.Scalar",
            "aten.gt.Tensor",
            "aten.ge.Scalar",
            "aten.ge.Tensor",
            "aten.heaviside.default",
            "aten.where.self",
            "aten.rsub.Scalar",
            "aten.sign.default",
        ],
        _NEURON_HINT,
    ),
    **dict.fromkeys(
        ["aten.sqrt.default", "aten.rsqrt.default", "aten.div.Tensor", "aten.var_mean.correction"],
        _UNFOLDED_BN_HINT,
    ),
    **dict.fromkeys(
        [
            "aten._native_batch_norm_legit.default",
            "aten._native_batch_norm_legit_functional.default",
            "aten.native_batch_norm.default",
        ],
        _TRAINING_BN_HINT,
    ),
    "aten.native_dropout.default": "dropout in training mode: call model.eval() before exporting",
    "aten.conv2d.padding": "give the convolution's padding as numbers, not 'same'/'valid'",
    "aten.max_pool2d_with_indices.default": "use nn.MaxPool2d without return_indices",
}
