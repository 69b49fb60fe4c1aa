"""Export: a step function captured by `torch.export` -> an ONNX step graph in primec's convention.

The program's inputs are the step input then the states; its outputs are the readout's value
then the next states, in the same order (`primec.nn.StepModule`). ATen ops become standard ONNX
ops, `torch.ops.primec.*` become `primec`-domain ops with their function bodies, every node
records its torch module path (`primec.loc`). The graph describes one timestep, so its size and
the time to write it do not depend on T; T is one metadata entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from torch.fx import Node

from primec import __version__
from primec.errors import PrimecError
from primec.frontend import convention as cv
from primec.frontend.problems import Problem, Unsupported, raise_if_any

STEP_MODULE = "primec.nn.network.StepModule"
_POISON = "<unsupported>"


@dataclass(frozen=True)
class StepFacts:
    """The time-loop facts that go with a step function, and the names of its states."""

    timesteps: int | None
    input_encoding: str | None
    states: tuple[str, ...] = ()

    @staticmethod
    def of(facts: dict) -> StepFacts:
        """From the dict `SNN.step_facts()` gives (and a .pt2 stores); missing keys stay None."""
        timesteps, encoding = facts.get("timesteps"), facts.get("input_encoding")
        states = facts.get("states", [])
        if not (
            (timesteps is None or (isinstance(timesteps, int) and not isinstance(timesteps, bool)))
            and (encoding is None or isinstance(encoding, str))
            and isinstance(states, list)
            and all(isinstance(name, str) for name in states)
        ):
            raise PrimecError(
                "the step's time-loop facts are malformed: timesteps must be an integer, "
                "input_encoding a string and states a list of names",
                hint="save the step with primec.nn.save_step",
            )
        return StepFacts(timesteps, encoding, tuple(states))


def sanitize(name: str) -> str:
    """A value name that the IR accepts: [A-Za-z0-9_.-]+."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "v"


def program_to_onnx(program: torch.export.ExportedProgram, facts: StepFacts) -> onnx.ModelProto:
    """Translate a step program to ONNX; every untranslatable node is reported at once."""
    writer = _Writer(program, facts)
    writer.run()
    raise_if_any(writer.problems, "cannot export the step to ONNX", "export")
    return writer.model()


def _pair(value: Any) -> list[int]:
    values = [value] if isinstance(value, int) else list(value)
    return values * 2 if len(values) == 1 else values


def _shape(node: Node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


class _Writer:
    def __init__(self, program: torch.export.ExportedProgram, facts: StepFacts) -> None:
        self.program = program
        self.facts = facts
        self.signature = program.graph_signature
        self.strip = "net." if self._root_type() == STEP_MODULE else ""
        self.names: dict[str, Any] = {}
        self.taken: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.functions: set[str] = set()
        self.problems: list[Problem] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.readout = ""
        self.readout_op = ""
        self.state_pairs: list[tuple[str, str]] = []

    def _root_type(self) -> str:
        for node in self.program.graph.nodes:
            stack = node.meta.get("nn_module_stack")
            if stack:
                return next(iter(stack.values()))[1]
        return ""

    # --- naming and emission ---------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """A value name based on `hint` that is not taken yet."""
        base = sanitize(hint)
        name, counter = base, 1
        while name in self.taken:
            name, counter = f"{base}_{counter}", counter + 1
        self.taken.add(name)
        return name

    def loc(self, node: Node) -> str:
        """The torch module path a node came from, without the StepModule prefix."""
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        path = list(stack.values())[-1][0]
        return path[len(self.strip) :] if path.startswith(self.strip) else path

    def module_type(self, node: Node) -> str:
        """The class name of the module a node came from."""
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][1].rsplit(".", 1)[-1] if stack else ""

    def emit(
        self,
        op_type: str,
        inputs: list[str],
        loc: str,
        results: tuple[str, ...] = ("",),
        domain: str = "",
        stem: str = "",
        **attrs: Any,
    ) -> list[str]:
        """Add one ONNX node at `loc`; outputs are named STEM.RESULT, STEM defaulting to `loc`."""
        stem = stem or loc or op_type.lower()
        outputs = [self.fresh(f"{stem}.{r}" if r else stem) for r in results]
        node = oh.make_node(op_type, inputs, outputs, name=outputs[0], domain=domain, **attrs)
        node.metadata_props.add(key=cv.NODE_LOC, value=loc)
        self.nodes.append(node)
        if domain == cv.DOMAIN:
            self.functions.add(op_type)
        return outputs

    def constant(self, array: np.ndarray, hint: str) -> str:
        """Add an initializer; returns its name."""
        name = self.fresh(hint)
        self.initializers[name] = array
        return name

    def value(self, arg: Any) -> str:
        """The ONNX name of an fx argument (a node, or None for an absent optional input)."""
        if arg is None:
            return ""
        return self.names[arg.name]

    # --- the walk --------------------------------------------------------------------------

    def run(self) -> None:
        """Translate inputs, every call, outputs; check the time-loop facts."""
        self.parameters()
        self.user_inputs()
        for node in self.program.graph.nodes:
            if node.op == "call_function":
                self.call(node)
        self.user_outputs()
        self.check_facts()

    def parameters(self) -> None:
        """Every used parameter, buffer and constant becomes an initializer."""
        tensors = {**self.program.state_dict, **self.program.constants}
        lifted = {
            **self.signature.inputs_to_parameters,
            **self.signature.inputs_to_buffers,
            **self.signature.inputs_to_lifted_tensor_constants,
        }
        used = {n.name for n in self.program.graph.nodes if n.op == "placeholder" and n.users}
        for placeholder, fqn in lifted.items():
            if placeholder not in used:
                continue  # e.g. BatchNorm's num_batches_tracked
            name = self.fresh(fqn[len(self.strip) :] if fqn.startswith(self.strip) else fqn)
            self.names[placeholder] = name
            self.initializers[name] = tensors[fqn].detach().cpu().numpy()

    def user_inputs(self) -> None:
        """The step input `x`, then the states under their names."""
        placeholders = {n.name: n for n in self.program.graph.nodes if n.op == "placeholder"}
        user = list(self.signature.user_inputs)
        states = list(self.facts.states)
        if len(states) != len(user) - 1:
            states = user[1:]
        for name, hint in zip(user, ["x", *states], strict=True):
            self.names[name] = self.fresh(hint)
            self.inputs.append(_value_info(self.names[name], _shape(placeholders[name])))

    def call(self, node: Node) -> None:
        """Translate one op call, or record why it cannot be translated."""
        target = _target_name(node)
        if target in _IGNORED:
            return
        rule = _RULES.get(target)
        try:
            if rule is None:
                raise Unsupported(f"op {target} is not supported", _HINTS.get(target, ""))
            self.names[node.name] = rule(self, node, _bind(node))
        except Unsupported as exc:
            self.names[node.name] = _POISON
            where = f"{self.loc(node)} ({self.module_type(node)})" if self.loc(node) else ""
            self.problems.append(Problem(exc.what, node.name, where, exc.hint))

    def user_outputs(self) -> None:
        """The readout's value, then the next states; check the step's shape."""
        output = next(n for n in self.program.graph.nodes if n.op == "output")
        returned = list(output.args[0])
        results = [self.value(arg) for arg in returned]
        state_inputs = [v.name for v in self.inputs[1:]]
        if len(results) != 1 + len(state_inputs):
            self.problems.append(
                Problem(
                    f"the step returns {len(results)} values for {len(state_inputs)} states",
                    hint="return (readout value, next states) in the order the states came in "
                    "(primec.nn.StepModule does)",
                )
            )
            return
        if self.signature.buffers_to_mutate:
            mutated = ", ".join(sorted(self.signature.buffers_to_mutate.values()))
            self.problems.append(
                Problem(
                    f"the step updates module buffers in place ({mutated})",
                    hint="carry neuron state through step()'s states, not in buffers",
                )
            )
        if results[0] != _POISON and results[0] != self.readout:
            self.problems.append(
                Problem(
                    "the step's first output is not a readout's value",
                    hint="end the network with a primec.nn readout (MeanReadout, ExpTanhReadout)",
                )
            )
        self.write_outputs(results, [_shape(arg) for arg in returned], state_inputs)

    def write_outputs(
        self, results: list[str], shapes: list[tuple[int, ...]], state_inputs: list[str]
    ) -> None:
        """Declare the graph outputs and pair each state with its next value."""
        written: set[str] = set()
        for index, (name, shape) in enumerate(zip(results, shapes, strict=True)):
            if name in written:
                # ONNX outputs are distinct values: a value returned twice gets a copy.
                name = self.emit("Identity", [name], "", ("copy",), stem=name)[0]
            written.add(name)
            self.outputs.append(_value_info(name, shape))
            if index:
                self.state_pairs.append((state_inputs[index - 1], name))

    def check_facts(self) -> None:
        """Problems for missing time-loop facts or a missing readout."""
        if self.facts.timesteps is None or self.facts.input_encoding is None:
            self.problems.append(
                Problem(
                    "the time-loop facts (timesteps, input encoding) are missing",
                    hint="save the step with primec.nn.save_step(net, path), which records them",
                )
            )
        if not self.readout:
            self.problems.append(
                Problem(
                    "the step has no readout",
                    hint="end the network with a primec.nn readout (MeanReadout, ExpTanhReadout)",
                )
            )

    def model(self) -> onnx.ModelProto:
        """The ONNX model: graph, used functions, metadata."""
        graph = oh.make_graph(
            self.nodes,
            "step",
            self.inputs,
            self.outputs,
            [numpy_helper.from_array(a, n) for n, a in self.initializers.items()],
        )
        model = oh.make_model(
            graph,
            opset_imports=cv.opset_imports(),
            functions=[cv.function(name) for name in sorted(self.functions)],
            ir_version=cv.IR_VERSION,
            producer_name="primec",
            producer_version=__version__,
        )
        meta = {
            cv.META_CONVENTION: cv.CONVENTION_VERSION,
            cv.META_TIMESTEPS: str(self.facts.timesteps),
            cv.META_READOUT: self.readout_kind,
            cv.META_ENCODING: str(self.facts.input_encoding),
            cv.META_STATES: json.dumps(self.state_pairs),
        }
        oh.set_model_props(model, meta)
        return model

    @property
    def readout_kind(self) -> str:
        """`mean` or `exp_tanh`, from the readout op found."""
        kinds = {"ReadoutMean": "mean", "ReadoutExpTanh": "exp_tanh"}
        return kinds[self.readout_op]


def _value_info(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape[1:]])


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

Rule = Callable[[_Writer, Node, dict[str, Any]], Any]


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
        attrs = {key: int(a[key]) if kind == "int" else a[key] for key, kind in op.attrs}
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
    "primec.integrator.default": _primec("Integrator"),
    "primec.supermask.default": _primec("Supermask"),
    "primec.readout_mean.default": _primec("ReadoutMean"),
    "primec.readout_exp_tanh.default": _primec("ReadoutExpTanh"),
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
