"""tile: split each crossbar matrix into tiles that fit one array.

A tile holds up to `array.rows` matrix rows and `target.pairs_per_row` outputs (one differential
pair per output; `primec.hardware.geometry.PAIR` says how a pair sits in the columns). The splits are full blocks first, the remainder last; tiles are numbered
row block by row block, output blocks inside (`place` may split a tile's outputs further).

Which rows and outputs are kept (`row_map`, `col_map`):
    programmed  rows and outputs whose mask is empty are dropped before splitting: no cell,
                no row driver, no ADC is spent on them.
    as_formed   all rows and outputs stay where they are: the weights *are* the cells, and a
                model bound to a chip (`bind_device_map`) was bound before its mask was
                trained, so its layout cannot depend on the mask. An emptied row is reset and
                never driven; it still occupies its cells.

Requires: a verified graph after map-pairs (every crossbar has its encoding).
Ensures: every crossbar has row_map, col_map and `tiles`, one record per tile with its rows and
outputs; a layer whose tiles need more cells than all arrays of the target hold is refused with
the numbers; outputs are unchanged up to the order of floating-point sums.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from primec.core.ir import Graph, Node, Weight
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.geometry import PAIR
from primec.hardware.mapping import tile_ranges, tile_records
from primec.hardware.target import Target

log = logging.getLogger(__name__)


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Give every crossbar its tile grid."""
    nodes = tuple(_tile(n, target) if n.op == "crossbar" else n for n in graph.nodes)
    return graph.replace(nodes=nodes)


def _tile(node: Node, target: Target) -> Node:
    if node.attr("encoding") == "unset":
        raise PrimecError(
            f"layer {layer_name(node)} has no pair encoding yet",
            where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
            hint="run map-pairs before tile",
        )
    mask = node.attr("mask").array()
    if node.attr("mode") == "programmed":
        rows, outputs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    else:
        rows, outputs = np.arange(mask.shape[0]), np.arange(mask.shape[1])
        _keeps_emptied(node, mask)
    _check_fits(node, len(rows), len(outputs), target)
    return with_attrs(
        node,
        row_map=Weight.of(rows.astype(np.int64)),
        col_map=Weight.of(outputs.astype(np.int64)),
        tiles=tile_records(tile_ranges(len(rows), len(outputs), target)),
    )


def _keeps_emptied(node: Node, mask: np.ndarray) -> None:
    """As formed, emptied rows and outputs are not dropped; say so when there are any."""
    rows, outputs = int((~mask.any(axis=1)).sum()), int((~mask.any(axis=0)).sum())
    if rows or outputs:
        log.debug(
            "layer %s keeps %d emptied row(s) and %d emptied output(s): as formed, its cells "
            "are where the weights already are",
            layer_name(node),
            rows,
            outputs,
        )


def _check_fits(node: Node, rows: int, outputs: int, target: Target) -> None:
    """A layer that needs more arrays than the whole target has cannot fit, however split."""
    cells = rows * PAIR.width(outputs)
    needed = math.ceil(cells / target.cells_per_array)
    if needed <= target.arrays:
        return
    raise PrimecError(
        f"layer {layer_name(node)} cannot fit the target {target.name} even when split: its "
        f"{rows} x {outputs} matrix needs {cells:,} cells ({rows} rows x {PAIR.width(outputs)} columns, "
        f"two per signed weight), at least {needed} arrays of {target.array.rows} x "
        f"{target.array.cols}, but the target has {target.arrays} "
        f"({target.chip.macros} macros x {target.chip.arrays_per_macro} arrays)",
        where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
        hint="use a target with more macros, or prune/shrink the layer",
    )
