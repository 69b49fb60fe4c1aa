"""The text form of a `TileRecord` attribute value, read back (the printer writes it):

tile<rows 0:25, outputs 0:8>                                        after tile
tile<rows 0:25, outputs 0:8, macro 0, array 1, at (0, 16)>          after place
tile<rows 0:25, outputs 0:8, macro 0, array 1, at (0, 16), queue 3> after schedule
"""

from __future__ import annotations

from collections.abc import Callable

from primec.core.ir import UNSET, TileRecord
from primec.core.tokens import _Tokens


def read_tile(t: _Tokens, integer: Callable[[], int]) -> TileRecord:
    """One `tile<...>` value; `integer` reads one integer token."""
    t.expect("ident", "tile")
    t.expect("punct", "<")
    rows = _range(t, integer, "rows")
    t.expect("punct", ",")
    outputs = _range(t, integer, "outputs")
    place = (UNSET, UNSET, UNSET, UNSET)
    queue = UNSET
    if t.accept("punct", ","):  # placed (a tile is placed before it is queued)
        place = _place(t, integer)
        if t.accept("punct", ","):
            t.expect("ident", "queue")
            queue = integer()
    t.expect("punct", ">")
    return TileRecord(rows, outputs, *place, queue)


def _range(t: _Tokens, integer: Callable[[], int], word: str) -> tuple[int, int]:
    t.expect("ident", word)
    start = integer()
    t.expect("punct", ":")
    return start, integer()


def _place(t: _Tokens, integer: Callable[[], int]) -> tuple[int, int, int, int]:
    t.expect("ident", "macro")
    macro = integer()
    t.expect("punct", ",")
    t.expect("ident", "array")
    array = integer()
    t.expect("punct", ",")
    t.expect("ident", "at")
    t.expect("punct", "(")
    row = integer()
    t.expect("punct", ",")
    col = integer()
    t.expect("punct", ")")
    return macro, array, row, col
