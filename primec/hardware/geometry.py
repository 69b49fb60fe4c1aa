"""Pair geometry, declared once: how a differential pair (one signed weight, w ∝ G+ - G-) sits
in an array row. Every module that turns pairs into physical columns, or columns back into
pairs, asks `PAIR` instead of writing "two columns, G+ first" again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairGeometry:
    """A pair takes `columns` adjacent columns; G+ is column `positive` of them, G- `negative`."""

    columns: int = 2
    positive: int = 0
    negative: int = 1

    def pairs_in(self, columns: int) -> int:
        """Whole pairs that `columns` physical columns hold."""
        return columns // self.columns

    def width(self, pairs: int) -> int:
        """Physical columns that `pairs` pairs take."""
        return self.columns * pairs

    def column(self, first: int, pair: int) -> int:
        """The first column of pair `pair` of a tile whose pairs start at column `first`."""
        return first + self.columns * pair

    def split(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G+, G-) of a [rows, columns] block of cells, each [rows, pairs] (views)."""
        return block[:, self.positive :: self.columns], block[:, self.negative :: self.columns]

    def place(self, block: np.ndarray, g_pos: np.ndarray, g_neg: np.ndarray) -> None:
        """Write [rows, pairs] G+ and G- into a [rows, columns] block of cells, in place."""
        block[:, self.positive :: self.columns] = g_pos
        block[:, self.negative :: self.columns] = g_neg


PAIR = PairGeometry()
