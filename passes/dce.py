"""Dead-code elimination: drop nodes whose results nothing reads.

Requires: a verified graph.
Ensures: every node has at least one result that a later node or the graph's outputs read;
the order of the remaining nodes is unchanged.
"""

from __future__ import annotations

from typing import Any

from primec.core.ir import Graph
from primec.hardware.choices import NO_CHOICES, Choices


def run(graph: Graph, target: Any = None, choices: Choices = NO_CHOICES) -> Graph:
    """Remove nodes none of whose results are used."""
    live = {v.name for v in graph.outputs}
    kept = []
    for node in reversed(graph.nodes):
        if not any(v.name in live for v in node.outputs):
            continue
        kept.append(node)
        live.update(v.name for v in node.inputs)
    return graph.replace(nodes=tuple(reversed(kept)))
