"""choose-drive: decide how each crossbar's rows are driven, from what its input values can be.

Every crossbar input is traced back to where its values come from:

    lif spikes                  levels {0, 1}                  quantum 1
    window sum of n cells       levels 0 .. n*L                quantum q      (sum_pool2d)
    window mean of n cells      levels 0 .. n*L                quantum q/n    (avg_pool2d)
    im2col, flatten, reshape, max pool, a state: the levels of their input
    a step input                spikes (meta input_encoding = "spikes"): {0, 1};
                                otherwise integer multiples of meta input_quantum (default 1)
                                with the target's input bits

A binary input (top level 1) is driven in one read (`binary`); a multi-level input bit-serially
with planes = bit length of the top level, one read per plane (`bit_serial`). For values traced
inside the graph this is exact by construction; step inputs are checked when they arrive (the
interpreter refuses a value that is not an integer level in range).

Requires: a verified graph after lower-crossbar.
Ensures: every crossbar has drive, planes and input_quantum set; outputs are unchanged.
"""

from __future__ import annotations

import logging

from primec.core.ir import Graph, Node
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target

log = logging.getLogger(__name__)

PASS_THROUGH = ("im2col", "flatten", "reshape", "max_pool2d")
POOLS = ("sum_pool2d", "avg_pool2d")
SPIKE_ENCODINGS = ("spikes", "binary")

Levels = tuple[float, int]  # (quantum, top level): values are k * quantum, k in 0..top


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Set drive, planes and input_quantum on every crossbar."""
    tracer = _Tracer(graph, target)
    # A crossbar already driven (analog-input) keeps its drive.
    chosen = tuple(n.op == "crossbar" and n.attr("drive") == "unset" for n in graph.nodes)
    nodes = tuple(tracer.drive(n) if c else n for n, c in zip(graph.nodes, chosen, strict=True))
    return graph.replace(nodes=nodes)


class _Tracer:
    def __init__(self, graph: Graph, target: Target) -> None:
        self.graph = graph
        self.target = target
        self.producers = graph.producers()
        self.next_state = {s.input: s.output for s in graph.states}

    def drive(self, node: Node) -> Node:
        levels = self.levels(node.inputs[0].name, frozenset())
        if levels is None:
            raise PrimecError(
                f"cannot drive layer {layer_name(node)} exactly: its input %{node.inputs[0].name} "
                "does not come from spikes, pooled spikes or a step input",
                where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
                hint="crossbar inputs must be spikes, their pools, or integer-valued step inputs",
            )
        quantum, top = levels
        planes = max(1, top.bit_length())
        drive = "binary" if planes == 1 else "bit_serial"
        return with_attrs(node, drive=drive, planes=planes, input_quantum=quantum)

    def levels(self, name: str, seen: frozenset[str]) -> Levels | None:
        """The levels a value can take, or None when they are not known."""
        if name in self.next_state:
            # A state holds what its next value held one step earlier (zero at the start).
            return None if name in seen else self.levels(self.next_state[name], seen | {name})
        producer = self.producers.get(name)
        if producer is None:
            return self.step_input()
        if producer.op == "lif":
            return (1.0, 1) if name == producer.outputs[0].name else None
        if producer.op == "sample_bernoulli":  # z keeps one of its input's values
            return (
                self.levels(producer.inputs[0].name, seen)
                if name == producer.outputs[0].name
                else None
            )
        if producer.op in PASS_THROUGH:
            return self.levels(producer.inputs[0].name, seen)
        if producer.op in POOLS:
            return self.pooled(producer, seen)
        log.debug(
            "levels of %%%s unknown: op %s is no spike, pool or step input", name, producer.op
        )
        return None

    def pooled(self, pool: Node, seen: frozenset[str]) -> Levels | None:
        inner = self.levels(pool.inputs[0].name, seen)
        if inner is None:
            return None
        quantum, top = inner
        kh, kw = pool.attr("kernel")
        cells = kh * kw
        return (quantum if pool.op == "sum_pool2d" else quantum / cells), top * cells

    def step_input(self) -> Levels:
        if self.graph.meta_value("input_encoding") in SPIKE_ENCODINGS:
            return 1.0, 1
        quantum = float(self.graph.meta_value("input_quantum", 1.0))
        return quantum, 2**self.target.input.bits - 1
