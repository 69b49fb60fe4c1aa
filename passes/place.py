"""place: put every tile on an array of a macro, packing small tiles together.

Tiles are packed by `primec.hardware.mapping.pack`: as-formed tiles first, then programmed ones; tallest
first; each into the free rectangle of an open array it fits best (guillotine cuts), a new
array only when none fits. Arrays fill macros in order. The result is deterministic and, for the
as-formed tiles, the same as `primec.hardware.devicemap.bind_device_map` computes from the layer shapes.

With a device map bound to the target (`--device-map`): placement uses only the macros the map
covers; a tile goes where the fewest stuck cells lie under it among the open arrays (moves are
listed in the graph meta `placement_moves`, the stuck cells left under tiles in
`stuck_cells_under_tiles`); every kept as-formed weight must equal G+ - G- of the cells it
lands on, within `cells.map_tolerance_us`, or the pass names the first that does not; and the
kept as-formed pairs' conductances (`g_pos_us`, `g_neg_us`) become those measured cells, the
one refinement of map-pairs' decision that needs to know where a pair lands.

Requires: a verified graph after tile (every crossbar has its tile grid).
Ensures: every tile record has its macro, array, row and col (a tile split over arrays becomes
one record per piece); graph meta has arrays_used and macros_used; running out of arrays names
the layer, the limit and the amount the model needs. Outputs are unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from primec.core.ir import Graph, Node, TileRecord, Weight, sorted_attrs
from primec.core.rewrite import layer_name, with_attrs
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.devicemap import DeviceMap
from primec.hardware.geometry import PAIR
from primec.hardware.mapping import (
    AS_FORMED,
    PROGRAMMED,
    ArraysFull,
    Layout,
    Move,
    TileRange,
    layer_tiles,
    pack,
    weight_position,
)
from primec.hardware.target import Target


def run(graph: Graph, target: Target, choices: Choices = NO_CHOICES) -> Graph:
    """Assign every tile its macro, array, row and column."""
    layers = _placement_order(graph)
    tiles = [t for i, n in enumerate(layers) for t in layer_tiles(i, _ranges(n), _group(n))]
    device_map = choices.device_map
    stuck = None if device_map is None else device_map.stuck_tables()
    limit = choices.macro_limit(target) * target.chip.arrays_per_macro
    try:
        layout = pack(tiles, target, stuck, limit)
    except ArraysFull as full:
        _out_of_arrays(full, layers, tiles, target, choices, stuck)
    if device_map is not None:
        for i, node in enumerate(layers):
            _check_cells(node, i, layout, device_map, target)
    placed = {id(node): _placed(node, i, layout, device_map) for i, node in enumerate(layers)}
    nodes = tuple(placed.get(id(node), node) for node in graph.nodes)
    meta = dict(graph.meta) | {
        "arrays_used": layout.arrays_used,
        "macros_used": math.ceil(layout.arrays_used / target.chip.arrays_per_macro),
        "placement_moves": tuple(_describe(m, layers) for m in layout.moves),
        "stuck_cells_under_tiles": layout.stuck_under_tiles,
    }
    return graph.replace(nodes=nodes, meta=sorted_attrs(meta))


def _placement_order(graph: Graph) -> list[Node]:
    crossbars = [n for n in graph.nodes if n.op == "crossbar"]
    for node in crossbars:
        if not node.attr("tiles") and node.attr("mask").array().any():
            raise PrimecError(
                f"layer {layer_name(node)} has no tiles yet",
                where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
                hint="run tile before place",
            )
    return sorted(crossbars, key=_group)  # stable: graph order within each group


def _group(node: Node) -> int:
    return AS_FORMED if node.attr("mode") == "as_formed" else PROGRAMMED


def _ranges(node: Node) -> list[TileRange]:
    return [(*tile.rows, *tile.outputs) for tile in node.attr("tiles")]


def _pieces(node: Node, index: int, layout: Layout):
    """(tile range, slot) of every placed piece of the layer's tiles, in tile order."""
    for t, (r0, r1, c0, _) in enumerate(_ranges(node)):
        for piece in layout.pieces[(index, t)]:
            first = c0 + piece.first
            yield (r0, r1, first, first + piece.pairs), piece.slot


def _placed(node: Node, index: int, layout: Layout, chip: DeviceMap | None) -> Node:
    tiles = tuple(
        TileRecord((r0, r1), (c0, c1), slot.macro, slot.array, slot.row, slot.col)
        for (r0, r1, c0, c1), slot in _pieces(node, index, layout)
    )
    if chip is not None and node.attr("mode") == "as_formed":
        node = _measured_pairs(node, index, layout, chip)
    return with_attrs(node, tiles=tiles)


def _measured_pairs(node: Node, index: int, layout: Layout, chip: DeviceMap) -> Node:
    """On a bound chip, a kept as-formed pair *is* the measured cells it lands on (pruned pairs
    stay reset to g_off, as map-pairs decided)."""
    mask = node.attr("mask").array()
    row_map, col_map = node.attr("row_map").array(), node.attr("col_map").array()
    g_pos, g_neg = (np.array(node.attr(name).array()) for name in ("g_pos_us", "g_neg_us"))
    for (r0, r1, c0, c1), slot in _pieces(node, index, layout):
        block = np.ix_(row_map[r0:r1], col_map[c0:c1])
        rows = chip.g[slot.macro, slot.array, slot.row : slot.row + r1 - r0]
        cells = rows[:, slot.col : slot.col + PAIR.width(c1 - c0)].astype(np.float64)
        measured_pos, measured_neg = PAIR.split(cells)
        kept = mask[block]
        g_pos[block] = np.where(kept, measured_pos, g_pos[block])
        g_neg[block] = np.where(kept, measured_neg, g_neg[block])
    return with_attrs(node, g_pos_us=Weight.of(g_pos), g_neg_us=Weight.of(g_neg))


def _describe(move: Move, layers: list[Node]) -> str:
    a, b = move.first, move.chosen
    return (
        f"{layer_name(layers[move.tile.layer])} tile {move.tile.index}: macro {a.macro} array "
        f"{a.array} at ({a.row}, {a.col}) with {move.stuck_first} stuck cells -> macro {b.macro} "
        f"array {b.array} at ({b.row}, {b.col}) with {move.stuck_chosen}"
    )


def _out_of_arrays(
    full: ArraysFull, layers, tiles, target: Target, choices: Choices, stuck
) -> None:
    needed = pack(tiles, target, stuck, limit=len(tiles)).arrays_used
    per_macro = target.chip.arrays_per_macro
    cells = sum(t.rows * t.cols for t in tiles)
    tile = full.tile
    layer = layers[tile.layer]
    macros = math.ceil(needed / per_macro)
    limit = choices.macro_limit(target)
    raise PrimecError(
        f"layer {layer_name(layer)} does not fit: its tile {tile.index} "
        f"({tile.rows} x {tile.cols} cells) finds no free array. Limit: {limit} "
        f"macro(s) ({choices.limit_reason(target)}) = {limit * per_macro} array(s) of "
        f"{target.array.rows} x {target.array.cols} cells; the model needs {macros} macros "
        f"({needed} arrays for {cells:,} cells)",
        where=f"node crossbar -> %{layer.outputs[0].name}, loc {layer.loc}",
        hint=f"allow at least {macros} macros",
    )


def _check_cells(node: Node, index: int, layout: Layout, chip: DeviceMap, target: Target) -> None:
    """Every kept as-formed weight must equal G+ - G- of its cells."""
    if node.attr("mode") != "as_formed":
        return
    formed, mask = node.attr("formed").array(), node.attr("mask").array()
    row_map, col_map = node.attr("row_map").array(), node.attr("col_map").array()
    tolerance = target.cells.map_tolerance_us
    bad: list[tuple] = []
    for (r0, r1, c0, c1), slot in _pieces(node, index, layout):
        block = np.ix_(row_map[r0:r1], col_map[c0:c1])
        cells = chip.pair_weights(slot, r1 - r0, c1 - c0)
        off = mask[block] & (np.abs(formed[block] - cells) > tolerance)
        bad += [
            (slot, row_map[r0 + i], col_map[c0 + j], i, j)
            for i, j in zip(*np.nonzero(off), strict=True)
        ]
    if bad:
        _mismatch(node, bad, chip, tolerance)


def _mismatch(node: Node, bad: list[tuple], chip: DeviceMap, tolerance: float) -> None:
    slot, matrix_row, matrix_output, i, j = bad[0]
    row, col = slot.row + int(i), PAIR.column(slot.col, int(j))
    g_pos, g_neg = (
        float(chip.g[slot.macro, slot.array, row, col + c]) for c in (PAIR.positive, PAIR.negative)
    )
    index = weight_position(
        node.attr("kind"),
        node.attr("weight_shape"),
        node.attr("groups"),
        int(matrix_row),
        int(matrix_output),
    )
    weight = float(node.attr("formed").array()[matrix_row, matrix_output])
    raise PrimecError(
        f"layer {layer_name(node)}: weight {list(index)} = {weight:.6g} uS, but its cells at "
        f"macro {slot.macro}, array {slot.array}, row {row}, columns {col}/{col + 1} hold "
        f"G+ - G- = {g_pos:.6g} - {g_neg:.6g} = {g_pos - g_neg:.6g} uS (tolerance {tolerance} uS); "
        f"{len(bad)} kept weight(s) of this layer differ",
        where=f"node crossbar -> %{node.outputs[0].name}, loc {node.loc}",
        hint="bind the model to this device map (primec.nn.bind_device_map) and train again, "
        "or compile without --device-map",
    )
