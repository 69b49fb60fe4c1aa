"""How layers become crossbar matrices, tiles and array slots: the one layout both the passes and
`bind_device_map` use, so a model bound to a chip compiles back onto exactly those cells.

Matrix rows (docs/mapping.md): conv row r = (c*kh + p)*kw + q (weight.reshape(O, -1) order),
linear row r = input feature r; output o = output channel/feature. A transposed conv is the conv
of its zero-dilated input with the flipped kernel: its row (c, p, q) holds w[c, o, kh-1-p, kw-1-q].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from primec.core.ir import Node, TileRecord
from primec.errors import PrimecError
from primec.hardware.geometry import PAIR
from primec.hardware.target import Target

AS_FORMED, PROGRAMMED = 0, 1  # placement groups: as-formed tiles are placed first
log = logging.getLogger(__name__)


def matrix_index(kind: str, shape: tuple[int, ...], groups: int = 1) -> np.ndarray:
    """[R, O] flat index into the layer's weight tensor for each matrix entry (-1: no synapse)."""
    if kind == "linear":
        outputs, inputs = shape
        return np.arange(outputs)[None, :] * inputs + np.arange(inputs)[:, None]
    if kind == "conv2d":
        outputs, per_group, kh, kw = shape
        channels, out_per_group = per_group * groups, outputs // groups
    else:
        channels, out_per_group, kh, kw = shape
        outputs, per_group = out_per_group * groups, channels // groups
    c, p, q = (a.reshape(-1, 1) for a in np.indices((channels, kh, kw)))
    o = np.arange(outputs)[None, :]
    if kind == "conv2d":
        index = ((o * per_group + c % per_group) * kh + p) * kw + q
    else:
        index = ((c * out_per_group + o % out_per_group) * kh + (kh - 1 - p)) * kw + (kw - 1 - q)
    return np.where(c // per_group == o // out_per_group, index, -1)


def layer_matrix(kind: str, weight: np.ndarray, groups: int = 1) -> np.ndarray:
    """The layer's weight tensor as its crossbar matrix [R, O] (zero where no synapse)."""
    if groups == 1:
        return np.ascontiguousarray(_ungrouped_matrix(kind, weight))
    index = matrix_index(kind, weight.shape, groups)
    return np.where(index >= 0, weight.reshape(-1)[np.maximum(index, 0)], 0).astype(weight.dtype)


def _ungrouped_matrix(kind: str, weight: np.ndarray) -> np.ndarray:
    if kind == "linear":
        return weight.T
    if kind == "conv2d":
        return weight.reshape(weight.shape[0], -1).T
    flipped = weight[:, :, ::-1, ::-1]
    return flipped.transpose(0, 2, 3, 1).reshape(-1, weight.shape[1])


def matrix_shape(kind: str, shape: tuple[int, ...], groups: int = 1) -> tuple[int, int]:
    """(R rows, O outputs) of a layer's crossbar matrix."""
    if kind == "linear":
        return shape[1], shape[0]
    if kind == "conv2d":
        return shape[1] * groups * shape[2] * shape[3], shape[0]
    return shape[0] * shape[2] * shape[3], shape[1] * groups


def weight_position(kind: str, shape: tuple[int, ...], groups: int, row: int, output: int) -> tuple:
    """The weight-tensor index of matrix entry (row, output), for messages."""
    flat = int(matrix_index(kind, shape, groups)[row, output])
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def block_splits(count: int, block: int) -> tuple[int, ...]:
    """Boundaries 0, block, 2 block, ..., count: full blocks first, the remainder last."""
    if count == 0:
        return ()
    return (*range(0, count, block), count)


TileRange = tuple[int, int, int, int]  # row start, row stop, output start, output stop


def tile_ranges(rows: int, outputs: int, target: Target) -> list[TileRange]:
    """Split a matrix into tiles that fit one array (one pair per output), row blocks outer."""
    row_splits = block_splits(rows, target.array.rows)
    out_splits = block_splits(outputs, target.pairs_per_row)
    row_blocks = zip(row_splits, row_splits[1:], strict=False)
    return [
        (r0, r1, c0, c1)
        for r0, r1 in row_blocks
        for c0, c1 in zip(out_splits, out_splits[1:], strict=False)
    ]


def tile_records(ranges: list[TileRange]) -> tuple[TileRecord, ...]:
    """The IR records of tile ranges, not placed yet."""
    return tuple(TileRecord((r0, r1), (c0, c1)) for r0, r1, c0, c1 in ranges)


@dataclass(frozen=True)
class PlacedTile:
    """One placed tile of a crossbar, decoded from its `TileRecord` (docs/mapping.md).

    Physical row `row + i` of the array is driven with crossbar input row `rows[i]`; the pair at
    column `PAIR.column(col, j)` holds output `outputs[j]`. Tiles are listed in accumulation
    order; `queue` is the tile's read-queue index (-1 before schedule). A `Slot`, by contrast,
    is a position on an array.
    """

    index: int
    rows: np.ndarray
    outputs: np.ndarray
    macro: int
    array: int
    row: int
    col: int
    queue: int


def placed_tiles(node: Node) -> list[PlacedTile]:
    """The tiles of a placed `crossbar` node, in accumulation order: the one decoder of tiles."""
    row_map, col_map = node.attr("row_map").array(), node.attr("col_map").array()
    tiles = node.attr("tiles")
    if not all(tile.placed for tile in tiles):
        raise PrimecError(
            f"crossbar {node.outputs[0].name} is not tiled and placed",
            where=f"loc {node.loc}",
            hint="compile through the tile and place passes first",
        )
    return [
        PlacedTile(
            index,
            row_map[slice(*tile.rows)],
            col_map[slice(*tile.outputs)],
            *(tile.macro, tile.array, tile.row, tile.col, tile.queue),
        )
        for index, tile in enumerate(tiles)
    ]


@dataclass(frozen=True)
class Tile:
    """One tile to place: `rows` x `pairs` cell pairs of tile `index` of layer `layer`."""

    layer: int
    index: int
    rows: int
    pairs: int
    group: int

    @property
    def cols(self) -> int:
        """Physical columns the tile's pairs take."""
        return PAIR.width(self.pairs)


def layer_tiles(layer: int, ranges: list[TileRange], group: int) -> list[Tile]:
    """The tiles of one layer, in tile order."""
    return [Tile(layer, i, r1 - r0, c1 - c0, group) for i, (r0, r1, c0, c1) in enumerate(ranges)]


@dataclass(frozen=True)
class Slot:
    """Where a tile sits: macro, array within the macro, first row and first column."""

    macro: int
    array: int
    row: int
    col: int


@dataclass(frozen=True)
class Piece:
    """The part of a tile on one array: its pairs [first, first + pairs), all of its rows."""

    slot: Slot
    first: int
    pairs: int


@dataclass(frozen=True)
class Move:
    """A tile placed away from the packer's first choice because of stuck cells there."""

    tile: Tile
    first: Slot
    chosen: Slot
    stuck_first: int
    stuck_chosen: int


@dataclass
class Layout:
    """The result of packing: the pieces of every tile, arrays opened, stuck-cell moves."""

    pieces: dict[tuple[int, int], tuple[Piece, ...]]
    arrays_used: int
    moves: list[Move]
    stuck_under_tiles: int


class ArraysFull(PrimecError):
    """Placement ran out of arrays; `tile` is the first tile that did not fit."""

    def __init__(self, tile: Tile, limit: int) -> None:
        super().__init__(f"no array left for tile {tile.index} of layer {tile.layer}")
        self.tile = tile
        self.limit = limit


def pack(
    tiles: list[Tile], target: Target, stuck: np.ndarray | None = None, limit: int | None = None
) -> Layout:
    """Place tiles onto arrays: longest side first, best short-side fit into free rectangles.

    A tile that fits no free rectangle of the open arrays, but whose outputs fit side by side
    into free rectangles tall enough for its rows, is split into pieces there before a new array
    is opened. Deterministic: the order is (group, longer side, shorter side, layer, index) and
    ties go to the lowest array, row, column. With `stuck` (summed-area tables of stuck cells,
    one per array), a tile whose first choice covers stuck cells goes to the position with the
    fewest of them anywhere in the free rectangles (nearest the first choice on ties); if that
    costs the room the model needs, placement ignores them. `limit` caps the arrays.
    """
    limit = target.arrays if limit is None else limit
    order = sorted(tiles, key=_packing_order)
    if stuck is not None:
        try:
            return _Packer(target, stuck, limit, avoid=True).run(order)
        except ArraysFull as full:
            log.debug(
                "stuck cells not avoided: tile %d of layer %d then finds no array within %d",
                full.tile.index,
                full.tile.layer,
                limit,
            )
    return _Packer(target, stuck, limit, avoid=False).run(order)


def _packing_order(tile: Tile) -> tuple:
    longer, shorter = max(tile.rows, tile.cols), min(tile.rows, tile.cols)
    return tile.group, -longer, -shorter, tile.layer, tile.index


Fit = tuple[int, int, int, int, int, int]  # short leftover, long leftover, array, row, col, rect


class _Packer:
    def __init__(self, target: Target, stuck: np.ndarray | None, limit: int, avoid: bool) -> None:
        self.target = target
        self.stuck = stuck
        self.limit = limit
        self.avoid = avoid
        self.free: list[list[tuple[int, int, int, int]]] = []  # per array: (row, col, h, w)
        self.pieces: dict[tuple[int, int], tuple[Piece, ...]] = {}
        self.moves: list[Move] = []
        self.stuck_total = 0

    def run(self, tiles: list[Tile]) -> Layout:
        for tile in tiles:
            self.pieces[(tile.layer, tile.index)] = self.place(tile)
        return Layout(self.pieces, len(self.free), self.moves, self.stuck_total)

    def place(self, tile: Tile) -> tuple[Piece, ...]:
        fits = self.fits(tile)
        if not fits:
            spread = self.spread(tile)
            if spread:
                return spread
            self.open_array(tile)
            fits = self.fits(tile)
        first = fit = min(fits)
        spot = first[2:5]
        stuck_first = self.stuck_at(tile, *spot)
        if self.avoid and stuck_first > 0:
            fit, spot = self.least_stuck(tile, sorted(fits))
        stuck_here = self.stuck_at(tile, *spot)
        if spot != first[2:5]:
            moved = Move(tile, self.slot(*first[2:5]), self.slot(*spot), stuck_first, stuck_here)
            self.moves.append(moved)
        self.stuck_total += stuck_here
        self.cut(fit, spot, tile)
        return (Piece(self.slot(*spot), 0, tile.pairs),)

    def rects(self):
        """(array, index, rectangle) of every free rectangle."""
        for array, rects in enumerate(self.free):
            yield from ((array, i, rect) for i, rect in enumerate(rects))

    def fits(self, tile: Tile) -> list[Fit]:
        found = []
        for array, i, (row, col, h, w) in self.rects():
            if h >= tile.rows and w >= tile.cols:
                short, long = sorted((h - tile.rows, w - tile.cols))
                found.append((short, long, array, row, col, i))
        return found

    def spread(self, tile: Tile) -> tuple[Piece, ...]:
        """The tile's outputs split over free rectangles tall enough for its rows, widest first."""
        if sum(pairs for pairs, _ in self.tall(tile)) < tile.pairs:
            return ()
        pieces: list[Piece] = []
        done = 0
        while done < tile.pairs:
            pairs, fit = min(self.tall(tile), key=lambda t: (-t[0], t[1][2:]))
            part = Tile(
                tile.layer, tile.index, tile.rows, min(pairs, tile.pairs - done), tile.group
            )
            self.stuck_total += self.stuck_at(part, *fit[2:5])
            self.cut(fit, fit[2:5], part)
            pieces.append(Piece(self.slot(*fit[2:5]), done, part.pairs))
            done += part.pairs
        return tuple(pieces)

    def tall(self, tile: Tile) -> list[tuple[int, Fit]]:
        """(pairs that fit, fit) of every free rectangle with room for the tile's rows."""
        return [
            (PAIR.pairs_in(w), (0, 0, array, row, col, i))
            for array, i, (row, col, h, w) in self.rects()
            if h >= tile.rows and w >= PAIR.columns
        ]

    def open_array(self, tile: Tile) -> None:
        if len(self.free) >= self.limit:
            raise ArraysFull(tile, self.limit)
        self.free.append([(0, 0, self.target.array.rows, self.target.array.cols)])

    def stuck_at(self, tile: Tile, array: int, row: int, col: int) -> int:
        if self.stuck is None:
            return 0
        return int(self.windows(array, row, col, tile.rows, tile.cols, tile)[0, 0])

    def windows(self, array: int, row: int, col: int, h: int, w: int, tile: Tile) -> np.ndarray:
        """Stuck cells under the tile at every position inside the h x w rectangle at (row, col)."""
        s = self.stuck[array]
        top, left = slice(row, row + h - tile.rows + 1), slice(col, col + w - tile.cols + 1)
        bottom = slice(row + tile.rows, row + h + 1)
        right = slice(col + tile.cols, col + w + 1)
        return s[bottom, right] - s[top, right] - s[bottom, left] + s[top, left]

    def least_stuck(self, tile: Tile, fits: list[Fit]) -> tuple[Fit, tuple[int, int, int]]:
        """The position with the fewest stuck cells; then the packer's preference, then nearest."""
        best = None
        for rank, fit in enumerate(fits):
            _, _, array, row, col, index = fit
            _, _, h, w = self.free[array][index]
            counts = self.windows(array, row, col, h, w, tile).astype(np.int64)
            # A pair is two adjacent columns (2k, 2k+1): tiles start on even columns only.
            odd = (col + np.arange(counts.shape[1])) % 2 == 1
            counts[:, odd] = np.iinfo(np.int64).max // 4
            least = int(counts.min())
            distance = np.add.outer(np.arange(counts.shape[0]), np.arange(counts.shape[1]))
            nearest = np.argmin(np.where(counts == least, distance, h + w))
            dy, dx = (int(v) for v in np.unravel_index(nearest, counts.shape))
            key = (least, rank, dy + dx)
            if best is None or key < best[0]:
                best = (key, fit, (array, row + dy, col + dx))
        return best[1], best[2]

    def cut(self, fit: Fit, spot: tuple[int, int, int], tile: Tile) -> None:
        """Guillotine cuts of the used free rectangle around the tile."""
        _, _, array, _, _, index = fit
        rect = self.free[array].pop(index)
        at_corner = spot[1:] == rect[:2]
        pieces = _corner_pieces(rect, tile) if at_corner else _inner_pieces(rect, spot[1:], tile)
        self.free[array].extend(p for p in pieces if p[2] > 0 and p[3] > 0)

    def slot(self, array: int, row: int, col: int) -> Slot:
        per_macro = self.target.chip.arrays_per_macro
        return Slot(array // per_macro, array % per_macro, row, col)


def _corner_pieces(rect: tuple[int, int, int, int], tile: Tile) -> list[tuple[int, int, int, int]]:
    """The tile at the rectangle's corner: the larger leftover piece stays whole."""
    row, col, h, w = rect
    below, right = h - tile.rows, w - tile.cols
    if below * w > right * h:
        return [(row, col + tile.cols, tile.rows, right), (row + tile.rows, col, below, w)]
    return [(row, col + tile.cols, h, right), (row + tile.rows, col, below, tile.cols)]


def _inner_pieces(rect: tuple[int, int, int, int], at: tuple[int, int], tile: Tile) -> list:
    """The tile inside the rectangle: full-height strips left and right, then above and below."""
    row, col, h, w = rect
    y, x = at
    return [
        (row, col, h, x - col),
        (row, x + tile.cols, h, col + w - x - tile.cols),
        (row, x, y - row, tile.cols),
        (y + tile.rows, x, row + h - y - tile.rows, tile.cols),
    ]
