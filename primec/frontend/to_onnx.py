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
from primec.frontend.to_onnx_rules import (
    _HINTS,
    _IGNORED,
    _POISON,
    _RULES,
    _bind,
    _shape,
    _target_name,
)

STEP_MODULE = "primec.nn.network.StepModule"


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
