"""map-pairs: signed weights become differential conductance pairs (G+, G-).

Output o of a crossbar is a pair of columns: weight w = (G+ - G-) / us_per_unit. A pruned
synapse (mask false) is a pair reset to the off state on both cells, so it adds nothing.

    as_formed   the formed weight *is* G+ - G- in uS (us_per_unit = 1): kept pairs keep their
                as-formed conductances, nothing is programmed. A weight beyond the pair window
                g_max_us - g_off_us cannot come from any pair and is refused.
    programmed  weights are scaled so that the largest |w| fills as much of the window as a
                power-of-two scale allows: us_per_unit = 2^floor(log2((g_max_us - g_off_us) /
                max |w|)); G+ = g_off + max(w, 0) us_per_unit, G- alike.

Requires: a verified graph after choose-drive (every crossbar has a drive).
Ensures: every crossbar has encoding "differential" and its us_per_unit; outputs are unchanged
(the interpreter computes with the weights, the pairs are what the chip holds).
"""

from __future__ import annotations

import math

import numpy as np

from primec.core.ir import Graph, Node
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.mapping import weight_position
from primec.hardware.target import Target


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Give every crossbar its pair encoding and conductance scale."""
    window = target.cells.g_max_us - target.cells.g_off_us
    nodes = tuple(_pairs(n, window) if n.op == "crossbar" else n for n in graph.nodes)
    return graph.replace(nodes=nodes)


def _pairs(node: Node, window: float) -> Node:
    if node.attr("drive") == "unset":
        raise PrimecError(
            f"layer {layer_name(node)} has no drive yet",
            where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
            hint="run choose-drive before map-pairs",
        )
    kept = np.abs(node.attr("formed").array()) * node.attr("mask").array()
    largest = float(kept.max(initial=0.0))
    if node.attr("mode") == "programmed":
        # A power of two: scaling to conductance and back is then exact, so an ideal read of a
        # programmed pair gives the weight bit for bit.
        scale = 2.0 ** math.floor(math.log2(window / largest)) if largest > 0 else 1.0
        return with_attrs(node, encoding="differential", us_per_unit=scale)
    if largest > window:
        _too_large(node, kept, window)
    return with_attrs(node, encoding="differential", us_per_unit=1.0)


def _too_large(node: Node, kept: np.ndarray, window: float) -> None:
    row, col = np.unravel_index(int(np.argmax(kept)), kept.shape)
    index = weight_position(
        node.attr("kind"), node.attr("weight_shape"), node.attr("groups"), int(row), int(col)
    )
    raise PrimecError(
        f"layer {layer_name(node)}: as-formed weight {list(index)} = {float(kept[row, col]):.4g} uS "
        f"exceeds the pair window g_max_us - g_off_us = {window:.4g} uS; no cell pair can hold it",
        where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
        hint="as-formed weights are in uS; check their units or the target's g_max_us",
    )
