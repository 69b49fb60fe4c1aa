"""analog-input: drive signed analog step inputs (pixels) bit-serially, exactly.

An analog encoding declares the range of its values (`ANALOG_RANGES`: `analog_repeat`, the
FSVAE's pixels, lies in [-1, 1)). Row drivers apply only non-negative levels, so a layer that
reads the step input x reads x - low instead, in levels of

    quantum = (high - low) / 2^bits, rounded down to a power of two  (bits: the target's input bits)

so that every x = low + k * quantum, k in 0 .. 2^bits - 1, is one exact level k. Zero padding
still pads with 0 in the shifted input, where the layer needs x = 0, so the layer's result is
corrected by a constant computed once from the weights:

    W . gather0(x) = W . gather0(x - low) + low * W . gather0(1)      (gather0: zero padding)

    x  ->  add(x, -low)  ->  gather  ->  crossbar (bit_serial, 2^bits levels of quantum)
                                              ->  add(., low * W . gather0(1))  ->  the old result

The quantum is written into the graph (meta `input_quantum`, `input_offset`) for the simulator's
input check; values off the grid or outside the range are refused when they arrive.

Requires: a verified graph after lower-crossbar (gathers are `im2col` or `reshape`).
Ensures: every crossbar that reads the step input is driven (`drive`, `planes`, `input_quantum`
set, left alone by choose-drive); outputs change only by the order of floating-point sums.
Graphs with another input encoding are returned unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from primec.core import interpret
from primec.core.ir import Graph, Node, Value
from primec.core.rewrite import Namer, result, weight_node, with_attrs
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target

ANALOG_RANGES = {"analog_repeat": (-1.0, 1.0)}  # the declared range of each analog encoding
GATHERS = ("im2col", "reshape")


def input_quantum(low: float, high: float, bits: int) -> float:
    """The largest power of two q with 2^bits levels of q spanning [low, high) at most."""
    return 2.0 ** math.floor(math.log2((high - low) / 2**bits))


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Shift the step input of every layer that reads it; correct the layer's result."""
    declared = ANALOG_RANGES.get(graph.meta_value("input_encoding"))
    if declared is None:
        return graph
    low, high = declared
    quantum = input_quantum(low, high, target.input.bits)
    steps = {v.name for v in graph.step_inputs}
    gathers = {id(n): n for n in graph.nodes if n.op in GATHERS and n.inputs[0].name in steps}
    fed = {n.outputs[0].name for n in gathers.values()}
    namer, shifted = Namer(graph), {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if id(node) in gathers:
            x = node.inputs[0]
            if x.name not in shifted:
                shifted[x.name] = _shift(x, -low, node, namer, nodes)
            nodes.append(Node(node.op, (shifted[x.name],), node.outputs, node.attrs, node.loc))
        elif node.op == "crossbar" and node.inputs[0].name in fed:
            gather = next(g for g in gathers.values() if g.outputs[0] == node.inputs[0])
            nodes += _corrected(node, gather, low, quantum, target.input.bits, namer)
        else:
            nodes.append(node)
    if not shifted:
        return graph
    meta = dict(graph.meta) | {"input_quantum": quantum, "input_offset": low}
    return graph.replace(nodes=tuple(nodes), meta=tuple(sorted(meta.items())))


def _shift(x: Value, offset: float, at: Node, namer: Namer, nodes: list[Node]) -> Value:
    """Append add(x, offset) (and its constant); the shifted value."""
    offset_node = weight_node(
        namer.fresh(f"{x.name}.offset"), np.array([offset], np.float32), at.loc
    )
    add = result("add", (x, offset_node.outputs[0]), namer.fresh(f"{x.name}.shifted"), at.loc)
    nodes += [offset_node, add]
    return add.outputs[0]


def _corrected(
    node: Node, gather: Node, low: float, quantum: float, bits: int, namer: Namer
) -> list[Node]:
    """The crossbar driven bit-serially, then + low * W . gather0(1) into its old result."""
    ones = np.ones((1, *gather.inputs[0].type.shape))
    (rows,) = interpret.IMPLS[gather.op]([ones], gather.attr_dict)
    (product,) = interpret.crossbar([rows], node.attr_dict)
    correction = (low * product[0]).astype(np.float32)
    raw = Value(namer.fresh(f"{node.outputs[0].name}.raw"), node.outputs[0].type)
    driven = with_attrs(node, drive="bit_serial", planes=bits, input_quantum=quantum)
    driven = Node(driven.op, driven.inputs, (raw,), driven.attrs, driven.loc)
    fix = weight_node(namer.fresh(f"{node.outputs[0].name}.offset_fix"), correction, node.loc)
    add = Node("add", (raw, fix.outputs[0]), node.outputs, (), node.loc)
    return [driven, fix, add]
