"""map-pairs: signed weights become differential conductance pairs (G+, G-), decided here.

Output o of a crossbar is a pair of cells per row: weight w = (G+ - G-) / us_per_unit. A pruned
synapse (mask false) is a pair reset to the off state on both cells, so it adds nothing. The
pass writes each pair's conductances into the IR (`g_pos_us`, `g_neg_us`: [rows, outputs] in
uS, float64); the backend only reads them.

    as_formed   the formed weight *is* G+ - G- in uS (us_per_unit = 1): kept pairs keep their
                as-formed cells, nothing is programmed. Without a device map the cells are
                centred on the formed mean, G+/- = formed_mean_us +/- w/2 (G+ - G- = w exactly
                in float64), the centre moved towards the middle of [g_off_us, g_max_us] just
                enough for a large |w| to keep both cells in range; with one, `place` puts in
                the measured cells the pair lands on. A weight beyond the pair window g_max_us -
                g_off_us fits no pair and is refused.
    programmed  weights are scaled so that the largest |w| fills as much of the window as a
                power-of-two scale allows: us_per_unit = 2^floor(log2((g_max_us - g_off_us) /
                max |w|)); G+ = g_off + max(w, 0) us_per_unit, G- alike.

Requires: a verified graph after choose-drive (every crossbar has a drive).
Ensures: every crossbar has encoding "differential", its us_per_unit and its pairs' G+ and G-;
outputs are unchanged (the interpreter computes with the weights, the pairs are what the chip
holds).
"""

from __future__ import annotations

import math

import numpy as np

from primec.core.ir import Graph, Node, Weight
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.mapping import weight_position
from primec.hardware.target import Target


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Give every crossbar its pair encoding and conductance scale."""
    nodes = tuple(_pairs(n, target) if n.op == "crossbar" else n for n in graph.nodes)
    return graph.replace(nodes=nodes)


def _pairs(node: Node, target: Target) -> Node:
    scale = _scale(node, target.cells.g_max_us - target.cells.g_off_us)
    g_pos, g_neg = pair_conductances(
        node.attr("formed").array(), node.attr("mask").array(), node.attr("mode"), scale, target
    )
    return with_attrs(
        node,
        encoding="differential",
        us_per_unit=scale,
        g_pos_us=Weight.of(g_pos),
        g_neg_us=Weight.of(g_neg),
    )


def pair_conductances(
    weights: np.ndarray, mask: np.ndarray, mode: str, us_per_unit: float, target: Target
) -> tuple[np.ndarray, np.ndarray]:
    """(G+, G-) in uS, float64, of weights [rows, outputs] (see the module docstring)."""
    w = weights.astype(np.float64)
    off = target.cells.g_off_us
    if mode == "as_formed":
        centre = as_formed_centres(w, target)
        g_pos, g_neg = centre + w / 2, centre - w / 2
    else:
        g_pos = off + np.maximum(w, 0.0) * us_per_unit
        g_neg = off + np.maximum(-w, 0.0) * us_per_unit
    return np.where(mask, g_pos, off), np.where(mask, g_neg, off)


def as_formed_centres(w: np.ndarray, target: Target) -> np.ndarray:
    """Each as-formed pair's centre: the formed mean, moved just enough to keep both cells in range.

    A pair centred on the formed mean holds |w| up to twice the mean's distance to the nearer end
    of [g_off_us, g_max_us]; a larger weight (still within the pair window) moves its centre to
    g_off_us + |w|/2 or g_max_us - |w|/2, so that one cell sits at the end and G+ - G- stays w.
    """
    cells = target.cells
    half = np.abs(w) / 2
    return np.clip(cells.formed_mean_us, cells.g_off_us + half, cells.g_max_us - half)


def _scale(node: Node, window: float) -> float:
    """us_per_unit of one crossbar: 1 as formed, the power-of-two fill of the window programmed."""
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
        return 2.0 ** math.floor(math.log2(window / largest)) if largest > 0 else 1.0
    if largest > window:
        _too_large(node, kept, window)
    return 1.0


def _too_large(node: Node, kept: np.ndarray, window: float) -> None:
    row, output = np.unravel_index(int(np.argmax(kept)), kept.shape)
    index = weight_position(
        node.attr("kind"), node.attr("weight_shape"), node.attr("groups"), int(row), int(output)
    )
    raise PrimecError(
        f"layer {layer_name(node)}: as-formed weight {list(index)} = {float(kept[row, output]):.4g} uS "
        f"exceeds the pair window g_max_us - g_off_us = {window:.4g} uS; no cell pair can hold it",
        where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
        hint="as-formed weights are in uS; check their units or the target's g_max_us",
    )
