"""Import: an ONNX step graph in primec's convention -> primec IR.

Standard ONNX ops map to IR ops (Conv -> conv2d + bias add, Gemm -> linear, ...), `primec`-domain
ops to the neuron ops, initializers to `weight` nodes. Every IR node gets its source location:
the node's `primec.loc` metadata, else its ONNX name. Every node that cannot be imported is
collected, and one error lists them all with a suggested fix where one exists.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from primec.core.builder import GraphBuilder
from primec.core.ir import Graph, TensorType, Value
from primec.core.ops import ShapeError
from primec.errors import PrimecError
from primec.frontend import convention as cv
from primec.frontend.from_onnx_rules import (
    _HINTS,
    _RULES,
    _fixed_shape,
    _op_name,
)
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
