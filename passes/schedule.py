"""schedule: order one timestep's work: array reads, partial-sum accumulation, neuron updates.

The step's nodes form a dataflow DAG (networkx); its topological generations are the order in
which work can start. Nodes are reordered by generation (stable within one), so every layer runs
as soon as its inputs exist. Crossbars of one generation are independent: they form one *phase*
and run together, one queue per array; a tile record's `queue` is its read-queue index, its
place in its array's queue (node order, then tile order). A tile read costs positions x planes
array reads. As each read finishes, the periphery adds the tile's partial sums into the layer's
outputs in tile order (row block ascending, docs/mapping.md), then applies input_scale;
affines, neuron updates and readouts follow in node order.

Requires: a verified graph after place (every tile has its array).
Ensures: nodes in generation order; every crossbar has `phase` and every tile its `queue`;
graph meta `phases`, `reads_per_timestep` (array reads) and `read_cycles_per_timestep` (the
longest array queue of each phase, summed). Outputs are unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import networkx as nx

from primec.core.ir import Graph, Node, sorted_attrs
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target


def run(graph: Graph, target: Target | None = None, choices: Choices = NO_CHOICES) -> Graph:
    """Order the nodes by generation and give every crossbar its phase and read-queue indices."""
    generations = _generations(graph)
    order = sorted(range(len(graph.nodes)), key=lambda i: (generations[i], i))
    phase_of = {
        g: p
        for p, g in enumerate(
            sorted({generations[i] for i in order if graph.nodes[i].op == "crossbar"})
        )
    }
    queues: dict[tuple[int, int, int], int] = defaultdict(int)  # (phase, macro, array) -> reads
    indices: dict[tuple[int, int, int], int] = defaultdict(int)  # next read-queue index
    nodes: list[Node] = []
    for i in order:
        node = graph.nodes[i]
        if node.op == "crossbar":
            node = _queued(node, phase_of[generations[i]], queues, indices)
        nodes.append(node)
    cycles = defaultdict(int)
    for (phase, _, _), reads in queues.items():
        cycles[phase] = max(cycles[phase], reads)
    meta = dict(graph.meta) | {
        "phases": len(phase_of),
        "reads_per_timestep": sum(queues.values()),
        "read_cycles_per_timestep": sum(cycles.values()),
    }
    return graph.replace(nodes=tuple(nodes), meta=sorted_attrs(meta))


def _generations(graph: Graph) -> dict[int, int]:
    """The topological generation of every node of the dataflow DAG."""
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(graph.nodes)))
    producer = {v.name: i for i, node in enumerate(graph.nodes) for v in node.outputs}
    for i, node in enumerate(graph.nodes):
        dag.add_edges_from((producer[v.name], i) for v in node.inputs if v.name in producer)
    return {i: g for g, layer in enumerate(nx.topological_generations(dag)) for i in layer}


def _queued(node: Node, phase: int, queues: dict, indices: dict) -> Node:
    tiles = node.attr("tiles")
    if not all(tile.placed for tile in tiles):
        raise PrimecError(
            f"layer {layer_name(node)} is not placed yet",
            where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
            hint="run place before schedule",
        )
    reads = node.inputs[0].type.shape[0] * node.attr("planes")
    queued = []
    for tile in tiles:
        key = (phase, tile.macro, tile.array)
        queued.append(replace(tile, queue=indices[key]))
        indices[key] += 1
        queues[key] += reads
    return with_attrs(node, phase=phase, tiles=tuple(queued))
