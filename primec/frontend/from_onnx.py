"""Import: an ONNX step graph in primec's convention -> primec IR.

Standard ONNX ops map to IR ops (Conv -> conv2d + bias add, Gemm -> linear, ...), `primec`-domain
ops to the neuron ops, initializers to `weight` nodes. Every IR node gets its source location:
the node's `primec.loc` metadata, else its ONNX name. Every node that cannot be imported is
collected, and one error lists them all with a suggested fix where one exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper as oh
from onnx import numpy_helper

from primec.core.builder import GraphBuilder
from primec.core.ir import Graph, TensorType, Value
from primec.core.ops import ShapeError
from primec.errors import PrimecError
from primec.frontend import convention as cv
from primec.frontend.problems import Problem, Unsupported, first_line, raise_if_any

READOUTS = ("mean", "exp_tanh")


def import_onnx(model: onnx.ModelProto, source: str = "") -> Graph:
    """The IR step graph of an ONNX model; raises one error listing every problem."""
    try:
        importer = _Importer(model)
        importer.run()
        raise_if_any(importer.problems, "cannot import the ONNX model", source or "ONNX model")
        return importer.builder.build()
    except _MALFORMED as exc:
        # A model from elsewhere can break the protobuf's invariants in ways no rule expects.
        raise PrimecError(
            f"cannot import the ONNX model: it is malformed ({type(exc).__name__}: "
            f"{first_line(exc)})",
            where=source or "ONNX model",
            hint="check it with onnx.checker.check_model; primec's convention is in docs/onnx.md",
        ) from exc


_MALFORMED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
    OverflowError,
    onnx.checker.ValidationError,
    onnx.shape_inference.InferenceError,
)


def float32_value(value: float) -> float:
    """The shortest decimal that a float32 attribute stands for (0.2, not 0.20000000298)."""
    return float(str(np.float32(value)))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    values = {a.name: oh.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _loc(node: onnx.NodeProto, index: int) -> str:
    for prop in node.metadata_props:
        if prop.key == cv.NODE_LOC and prop.value:
            return prop.value
    return node.name or f"{node.op_type}#{index}"


class _Importer:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.meta = {p.key: p.value for p in model.metadata_props}
        self.constants = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.builder = GraphBuilder("step")
        self.env: dict[str, Value] = {}
        self.batched: set[str] = set()
        self.poisoned: set[str] = set()
        self.problems: list[Problem] = []
        self._shapes: dict[str, tuple[int, ...]] | None = None

    # --- values ----------------------------------------------------------------------------

    def is_constant(self, name: str) -> bool:
        """Whether an ONNX name is an initializer or a Constant's output."""
        return name in self.constants

    def value(self, name: str, loc: str) -> Value:
        """The IR value of an ONNX name; an initializer becomes a `weight` node at first use."""
        if name not in self.env:
            if not self.is_constant(name):
                raise Unsupported(f"value {name!r} is used but never defined")
            self.env[name] = self.builder.weight(self.constants[name], loc=loc, name=name)
        return self.env[name]

    def weight(self, array: np.ndarray, loc: str, name: str) -> Value:
        """A weight made from a (transformed) constant."""
        return self.builder.weight(np.ascontiguousarray(array), loc=loc, name=name)

    def constant(self, name: str, what: str) -> np.ndarray:
        """The array of a name that must be constant (`what` names it in the error)."""
        if not self.is_constant(name):
            raise Unsupported(f"{what} must be a constant (an initializer)")
        return self.constants[name]

    def op(self, op: str, *inputs: Value, loc: str, name: str, **attrs: Any) -> Any:
        """Add an IR node; its results are batched when any operand is."""
        result = self.builder.op(op, *inputs, loc=loc, name=name, **attrs)
        results = result if isinstance(result, tuple) else (result,)
        if any(v.name in self.batched for v in inputs):
            self.batched.update(v.name for v in results)
        return result

    # --- the walk --------------------------------------------------------------------------

    def run(self) -> None:
        """Import inputs, nodes, outputs and time-loop facts, collecting problems."""
        states = self.state_pairs()
        self.graph_inputs(dict(states))
        for index, node in enumerate(self.graph.node):
            self.node(index, node)
        self.graph_outputs(states)
        self.time_facts()

    def state_pairs(self) -> list[tuple[str, str]]:
        """The (state input, next-state output) pairs from the metadata."""
        text = self.meta.get(cv.META_STATES)
        if text is None:
            self.meta_problem(
                f"the model does not say which inputs are neuron states ({cv.META_STATES})"
            )
            return []
        try:
            return [(str(i), str(o)) for i, o in json.loads(text)]
        except (ValueError, TypeError):
            self.meta_problem(f"{cv.META_STATES} is not a JSON list of [input, output]")
            return []

    def graph_inputs(self, states: dict[str, str]) -> None:
        """Step inputs first, then states, each with its per-sample shape."""
        inputs = [v for v in self.graph.input if v.name not in self.constants]
        unknown = sorted(set(states) - {v.name for v in inputs})
        if unknown:
            self.meta_problem(f"{cv.META_STATES} names states that are not graph inputs: {unknown}")
        ordered = [v for v in inputs if v.name not in states] + [
            v for v in inputs if v.name in states
        ]
        for info in ordered:
            shape = self.per_sample_shape(info)
            if shape is None:
                continue
            add = self.builder.state if info.name in states else self.builder.input
            self.env[info.name] = add(info.name, shape)
            self.batched.add(self.env[info.name].name)

    def per_sample_shape(self, info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
        """An input's shape without the batch dimension, or a problem."""
        shape = _fixed_shape(info)
        if shape is not None:
            return shape
        self.problems.append(
            Problem(
                f"input {info.name!r} needs a shape [batch, fixed sizes...]",
                loc="graph inputs",
                hint="give every dimension after the batch a fixed size",
            )
        )
        self.poisoned.add(info.name)
        return None

    def node(self, index: int, node: onnx.NodeProto) -> None:
        """Import one ONNX node, or record why it cannot be imported."""
        loc = _loc(node, index)
        rule = _RULES.get((node.domain or "", node.op_type))
        if rule is None:
            hint = _HINTS.get(
                node.op_type, f"primec imports: {', '.join(sorted(k for _, k in _RULES))}"
            )
            self.fail(node, loc, Unsupported(f"unsupported op {_op_name(node)}", hint))
            return
        if any(name in self.poisoned for name in node.input):
            self.poisoned.update(node.output)
            return
        try:
            results = rule(self, node, loc)
        except Unsupported as exc:
            self.fail(node, loc, exc)
            return
        except ShapeError as exc:
            self.fail(node, loc, Unsupported(f"shape mismatch: {exc}"))
            return
        self.env.update((name, v) for name, v in zip(node.output, results, strict=False) if name)

    def fail(self, node: onnx.NodeProto, loc: str, exc: Unsupported) -> None:
        """Record a problem; the node's outputs get stand-ins."""
        self.problems.append(Problem(exc.what, node.name, loc, exc.hint))
        for name in node.output:
            self.stand_in(name)

    def stand_in(self, name: str) -> None:
        """Give a failed node's output a typed placeholder, so that the nodes after it are
        still checked; without a known shape, the nodes that use it are skipped."""
        shape = self.inferred_shapes().get(name)
        if shape is None:
            self.poisoned.add(name)
            return
        self.env[name] = Value(f"{name}.unsupported", TensorType(shape))
        self.batched.add(self.env[name].name)

    def inferred_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes from ONNX shape inference (run once, only when a node failed)."""
        if self._shapes is None:
            inferred = onnx.shape_inference.infer_shapes(self.model).graph
            infos = [*inferred.value_info, *inferred.output]
            self._shapes = {i.name: s for i in infos if (s := _fixed_shape(i)) is not None}
        return self._shapes

    def graph_outputs(self, states: list[tuple[str, str]]) -> None:
        """Step outputs first, then each state's next value."""
        next_states = {o: i for i, o in states}
        names = [v.name for v in self.graph.output]
        if self.poisoned.intersection(names) or any(i not in self.env for i, _ in states):
            return
        undefined = [n for n in names if n not in self.env]
        unpaired = [o for o in next_states if o not in names]
        if undefined or unpaired:
            self.problems.append(
                Problem(
                    f"outputs not computed by the graph: {undefined + unpaired}",
                    loc="graph outputs",
                )
            )
            return
        for name in names:
            if name not in next_states:
                self.builder.output(self.env[name])
        for output, state in next_states.items():
            self.pair_state(self.env[state], self.env[output])

    def pair_state(self, state: Value, next_value: Value) -> None:
        """Make `next_value` the state's value at the next step."""
        if state.type != next_value.type:
            self.problems.append(
                Problem(
                    f"state {state.name} is {state.type} but its next value {next_value.name} "
                    f"is {next_value.type}",
                    loc="graph outputs",
                )
            )
        self.builder.set_state(state, next_value)

    def time_facts(self) -> None:
        """The time-loop facts from the metadata, into the graph's meta."""
        timesteps = self.meta.get(cv.META_TIMESTEPS, "")
        readout = self.meta.get(cv.META_READOUT, "")
        encoding = self.meta.get(cv.META_ENCODING, "")
        if not timesteps.isdigit() or int(timesteps) < 1:
            self.meta_problem(f"{cv.META_TIMESTEPS} must be a positive integer, got {timesteps!r}")
        if readout not in READOUTS:
            self.meta_problem(f"{cv.META_READOUT} must be one of {READOUTS}, got {readout!r}")
        if not encoding:
            self.meta_problem(f"{cv.META_ENCODING} is missing")
        self.builder.meta.update(
            timesteps=int(timesteps) if timesteps.isdigit() else 0,
            readout=readout,
            input_encoding=encoding,
        )

    def meta_problem(self, what: str) -> None:
        """Record a problem with the model's metadata."""
        self.problems.append(
            Problem(what, loc="model metadata", hint="the keys are listed in docs/onnx.md")
        )


def _fixed_shape(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """The per-sample shape of a value [batch, ...] whose other dimensions are all known."""
    dims = info.type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    return shape if len(dims) >= 1 and all(d > 0 for d in shape) else None


def _op_name(node: onnx.NodeProto) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain else node.op_type


# --- translation rules: one per ONNX op -------------------------------------------------------

Rule = Callable[[_Importer, onnx.NodeProto, str], list[Value]]


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
        inputs = [imp.value(n, loc) for n in node.input]
        result = imp.op(op.ir_op, *inputs, loc=loc, name=loc or node.name, **attrs)
        return list(result) if isinstance(result, tuple) else [result]

    return rule


def _primec_attr(kind: str, value: Any) -> Any:
    if kind == "float":
        return float32_value(value)
    if kind == "int":
        return bool(value)
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
