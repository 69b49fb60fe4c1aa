"""The verifier: a graph is well formed or it gets one error that names the node, its source
location and shows the IR around it.

Checks: every value defined once and before use (graph inputs first, then nodes in order, so
data flow is acyclic by construction); every op known, with its operand count, attributes of
the declared kinds and shapes that follow its shape rule; outputs defined; state pairs typed
alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from primec.core.ir import Graph, Node, TensorType
from primec.core.ops import OPS, REQUIRED, OpDef, ShapeError, attr_type_ok, kind_name
from primec.core.text import graph_lines, node_line
from primec.errors import PrimecError


class VerifyError(PrimecError):
    """The graph is not well formed."""


MAX_TIMESTEPS = 1 << 20  # far above any SNN's T; bounds every loop over time


def _timesteps(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TIMESTEPS


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


# The time-loop facts every later stage relies on: key -> (check, what it must be).
META_CHECKS = {
    "timesteps": (_timesteps, f"an integer 1..{MAX_TIMESTEPS}"),
    "input_quantum": (_positive_number, "a positive finite number"),
    "readout": (lambda v: isinstance(v, str), "a string"),
    "input_encoding": (lambda v: isinstance(v, str), "a string"),
}


def ir_context(graph: Graph, index: int) -> str:
    """The printed IR around node `index`, that node marked with `>`."""
    printed = graph_lines(graph)
    at = node_line(graph, index) - 1
    window = range(max(0, at - 2), min(len(printed), at + 3))
    return "\n".join(("> " if i == at else "  ") + printed[i] for i in window)


def verify(graph: Graph, lines: Sequence[int] | None = None, source: str = "") -> Graph:
    """Check the graph; return it unchanged or raise `VerifyError`.

    `lines` gives each node's line in the file it was parsed from; without it, lines refer to
    the canonical printed form.
    """
    _Verifier(graph, lines, source).run()
    return graph


class _Verifier:
    def __init__(self, graph: Graph, lines: Sequence[int] | None, source: str) -> None:
        self.graph = graph
        self.lines = lines
        self.source = source or f"@{graph.name}"
        self.defined: dict[str, TensorType] = {}

    def fail(self, message: str, index: int | None = None, hint: str = "") -> None:
        if index is None:
            raise VerifyError(message, where=self.source, hint=hint)
        node = self.graph.nodes[index]
        line = self.lines[index] if self.lines else node_line(self.graph, index)
        where = f"{self.source}:{line}: node {index} ({node.op}, loc {node.loc})"
        raise VerifyError(message, where=where, hint=hint, context=self.context(index))

    def context(self, index: int) -> str:
        return ir_context(self.graph, index)

    def run(self) -> None:
        self.meta()
        for value in self.graph.inputs:
            self.define(value.name, value.type, None)
        for index, node in enumerate(self.graph.nodes):
            self.node(index, node)
        self.outputs()
        self.states()

    def meta(self) -> None:
        keys = [key for key, _ in self.graph.meta]
        if len(set(keys)) != len(keys):
            self.fail(f"graph meta repeats a key: {keys}")
        for key, value in self.graph.meta:
            check = META_CHECKS.get(key)
            if check is not None and not check[0](value):
                self.fail(f"graph meta {key} must be {check[1]}, got {value!r}")

    def define(self, name: str, type_: TensorType, index: int | None) -> None:
        if name in self.defined:
            self.fail(
                f"value %{name} is defined twice",
                index,
                "rename one of them: every value is defined once",
            )
        if any(d < 1 for d in type_.shape):
            self.fail(f"value %{name} has a non-positive dimension: {type_}", index)
        self.defined[name] = type_

    def node(self, index: int, node: Node) -> None:
        op = OPS.get(node.op)
        if op is None:
            self.fail(f"unknown op {node.op!r}; known ops: {', '.join(sorted(OPS))}", index)
        if len(node.inputs) != len(op.inputs):
            self.fail(
                f"{node.op} takes {len(op.inputs)} operands ({', '.join(op.inputs) or 'none'}), got {len(node.inputs)}",
                index,
            )
        if len(node.outputs) != len(op.outputs):
            self.fail(
                f"{node.op} has {len(op.outputs)} results ({', '.join(op.outputs)}), got {len(node.outputs)}",
                index,
            )
        for value in node.inputs:
            self.use(index, value.name, value.type)
        attrs = self.attrs(index, node, op)
        self.shapes(index, node, op, attrs)
        for value in node.outputs:
            self.define(value.name, value.type, index)

    def use(self, index: int, name: str, type_: TensorType) -> None:
        if name not in self.defined:
            self.fail(
                f"value %{name} is used before it is defined",
                index,
                "define it earlier, or pass it in as a graph input",
            )
        if self.defined[name] != type_:
            self.fail(
                f"value %{name} is used as {type_} but defined as {self.defined[name]}", index
            )

    def attrs(self, index: int, node: Node, op: OpDef) -> dict:
        given = node.attr_dict
        names = [k for k, _ in node.attrs]
        if names != sorted(set(names)):
            self.fail("attributes must be unique and sorted by name", index)
        for attr in op.attrs:
            if attr.name not in given and attr.optional:
                continue  # absent means the default (ops.Attr)
            if attr.name not in given:
                if attr.default is REQUIRED:
                    self.fail(
                        f"{node.op} needs attribute {attr.name!r} ({kind_name(attr.kind)})", index
                    )
                self.fail(
                    f"{node.op} attribute {attr.name!r} is missing (canonical graphs spell out every attribute)",
                    index,
                )
            value = given[attr.name]
            if not attr_type_ok(attr.kind, value):
                self.fail(
                    f"{node.op} attribute {attr.name!r} must be {kind_name(attr.kind)}, got {type(value).__name__} {value!r}",
                    index,
                )
            if attr.choices and value not in attr.choices:
                self.fail(
                    f"{node.op} attribute {attr.name!r} must be one of {', '.join(attr.choices)}, got {value!r}",
                    index,
                )
        unknown = sorted(set(given) - {a.name for a in op.attrs})
        if unknown:
            known = ", ".join(a.name for a in op.attrs) or "none"
            self.fail(
                f"{node.op} has no attribute {', '.join(map(repr, unknown))}; it takes: {known}",
                index,
            )
        return given

    def shapes(self, index: int, node: Node, op: OpDef, attrs: dict) -> None:
        try:
            expected = op.infer(tuple(v.type for v in node.inputs), attrs)
        except ShapeError as exc:
            self.fail(f"shape mismatch: {exc}", index)
        declared = tuple(v.type for v in node.outputs)
        if declared != tuple(expected):
            want = ", ".join(map(str, expected))
            got = ", ".join(map(str, declared))
            self.fail(f"shape mismatch: {node.op} gives {want}, the node declares {got}", index)

    def outputs(self) -> None:
        names = [v.name for v in self.graph.outputs]
        if len(set(names)) != len(names):
            self.fail(f"graph outputs repeat a value: {names}")
        for value in self.graph.outputs:
            if value.name not in self.defined:
                self.fail(f"graph output %{value.name} is never defined")
            if self.defined[value.name] != value.type:
                self.fail(
                    f"graph output %{value.name} is declared {value.type} but defined as {self.defined[value.name]}"
                )

    def states(self) -> None:
        inputs = {v.name: v.type for v in self.graph.inputs}
        outputs = {v.name: v.type for v in self.graph.outputs}
        seen: set[str] = set()
        for state in self.graph.states:
            if state.input not in inputs:
                self.fail(f"state %{state.input} is not a graph input")
            if state.output not in outputs:
                self.fail(
                    f"state %{state.input} takes its next value from %{state.output}, which is not a graph output"
                )
            if inputs[state.input] != outputs[state.output]:
                self.fail(
                    f"state %{state.input} is {inputs[state.input]} but its next value %{state.output} is {outputs[state.output]}"
                )
            if state.input in seen:
                self.fail(f"state %{state.input} is declared twice")
            seen.add(state.input)
