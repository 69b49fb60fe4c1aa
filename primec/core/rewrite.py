"""Small helpers the passes share to build new nodes: fresh value names, weight nodes, attrs."""

from __future__ import annotations

from typing import Any

import numpy as np

from primec.core.ir import Graph, Loc, Node, Value, Weight, sorted_attrs
from primec.core.ops import OPS, canonical_attrs
from primec.errors import PrimecError


class Namer:
    """Hands out value names that no value of the graph (or earlier call) uses."""

    def __init__(self, graph: Graph) -> None:
        self.taken = {v.name for v in graph.inputs}
        self.taken |= {v.name for node in graph.nodes for v in node.outputs}

    def fresh(self, hint: str) -> str:
        """`hint`, or `hint_N` if taken."""
        name, counter = hint, 1
        while name in self.taken:
            name, counter = f"{hint}_{counter}", counter + 1
        self.taken.add(name)
        return name


def result(op: str, inputs: tuple[Value, ...], name: str, loc: Loc, **attrs: Any) -> Node:
    """A one-result node whose result type comes from the op's shape rule."""
    full = canonical_attrs(OPS[op], attrs)
    (type_,) = OPS[op].infer(tuple(v.type for v in inputs), full)
    return Node(op, inputs, (Value(name, type_),), sorted_attrs(full), loc)


def weight_node(name: str, array: np.ndarray, loc: Loc) -> Node:
    """A `weight` node holding `array`."""
    value = Weight.of(array)
    return Node("weight", (), (Value(name, value.type),), sorted_attrs({"value": value}), loc)


def with_attrs(node: Node, **changes: Any) -> Node:
    """The node with some attributes replaced."""
    attrs = node.attr_dict
    attrs.update(changes)
    return Node(node.op, node.inputs, node.outputs, sorted_attrs(attrs), node.loc)


def constant(node: Node, value: Value, producers: dict[str, Node], ops: tuple[str, ...]) -> Node:
    """The node that defines operand `value` of `node`, which must be one of `ops` (a constant)."""
    producer = producers.get(value.name)
    if producer is not None and producer.op in ops:
        return producer
    found = "a graph input" if producer is None else f"op {producer.op}"
    raise PrimecError(
        f"{node.op} operand %{value.name} must be a constant ({' or '.join(ops)}), not {found}",
        where=f"node {node.op} -> %{node.outputs[0].name}, loc {node.loc}",
        hint="primec maps fixed weights only; export the model in eval mode",
    )


def layer_name(node: Node) -> str:
    """How reports and messages name a layer: its source location, else its result."""
    return node.loc.path or node.outputs[0].name
