"""The bulk read-noise normals (`gauss.draw_row`, the branch-free fast path `sparse.py` calls
per output row, rejected draws redrawn together) and the scalar `gauss.keyed_normal` against
their definition (`ziggurat`, which `test_planes.py` pins against numpy's, on the draw's first
word and its Philox words): the same float64 bits for every draw, rejected first tries (the
wedges, the tail, a second try) and the signs of zeros included, on the classifier's shapes
and on odd ones, with every window of a row drawn or only some."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from primec.backends.simulator.gauss import (
    KI,
    MANTISSA,
    block_key,
    draw_row,
    first_word,
    keyed_normal,
    philox,
    row_work,
    ziggurat,
)


@numba.njit
def _bulk(keys, read, plane, outputs, positions, width, every):
    """[keys, positions, outputs]: draw_row for every output row of `width` windows (positions
    j0 .. j0 + width - 1), as `_convert` calls it, drawing every window or every other one
    (the others stay NaN), and how many first words the fast test rejected."""
    out = np.full((len(keys), positions, outputs), np.nan)
    work = row_work(width, outputs)
    normals = np.empty((width, outputs))
    rejected = 0
    for row in range(len(keys)):
        block = block_key(keys[row], read, plane)
        for j0 in range(0, positions, width):
            windows = np.uint64(0)
            for w in range(width):
                if w % every == row % every:
                    windows |= np.uint64(1) << np.uint64(w)
            normals[:] = np.nan  # no value left over from the row before
            draw_row(keys[row], block, read, plane, windows, j0, positions, normals, work)
            for w in range(width):
                if (windows >> np.uint64(w)) & np.uint64(1) == 0:
                    continue
                out[row, j0 + w] = normals[w]
                for o in range(outputs):
                    r = first_word(block, o * positions + j0 + w)
                    mantissa = np.int64((r >> np.uint64(9)) & np.uint64(MANTISSA))
                    rejected += mantissa >= KI[np.int64(r & np.uint64(0xFF))]
    return out, rejected


@numba.njit
def _defined(key, block, draw, read, plane):
    """Draw `draw` by its definition: `ziggurat` (numpy's, `test_planes.py`) on the draw's
    first word and then Philox's words for attempts 1, 2, ... (far more than it takes)."""
    words = np.empty(81, dtype=np.uint64)
    words[0] = first_word(block, draw)
    for attempt in range(1, 41):
        a, b, c, d = philox(
            np.uint64(draw),
            np.uint64(read),
            np.uint64(plane),
            np.uint64(attempt),
            key & np.uint64(0xFFFFFFFF),
            key >> np.uint64(32),
        )
        words[2 * attempt - 1] = (a << np.uint64(32)) | b
        words[2 * attempt] = (c << np.uint64(32)) | d
    x, used = ziggurat(words, 81)
    return (x if used > 0 else np.nan), used  # (no equality then)


@numba.njit
def _scalar(keys, read, plane, outputs, positions):
    """The same draws one at a time by their definition, and by `keyed_normal`; and how many
    took more words than a first word and one Philox call (`gauss._longer_run`'s)."""
    out = np.empty((2, len(keys), positions, outputs))
    longer = 0
    for row in range(len(keys)):
        block = block_key(keys[row], read, plane)
        for j in range(positions):
            for o in range(outputs):
                draw = o * positions + j
                out[0, row, j, o], used = _defined(keys[row], block, draw, read, plane)
                out[1, row, j, o] = keyed_normal(keys[row], block, draw, read, plane)
                longer += used > 3
    return out, longer


@pytest.mark.parametrize(
    "outputs, positions, width, read, plane",
    [
        (64, 144, 12, 3, 1),  # the classifier's second conv layer
        (12, 1024, 32, 0, 0),  # its first
        (10, 1, 1, 4, 2),  # its tiles of rows
        (1, 7, 7, 2, 5),
        (5, 33, 11, 9, 7),
        (130, 3, 3, 1, 2),
        (3, 126, 63, 6, 0),  # the widest output row
    ],
)
@pytest.mark.parametrize("every", [1, 2], ids=["every-window", "every-other-window"])
def test_bulk_draws_are_the_scalar_definitions_bit_for_bit(
    outputs, positions, width, read, plane, every
):
    keys = np.random.default_rng(outputs).integers(0, 2**64, 24, dtype=np.uint64)
    bulk, rejected = _bulk(keys, read, plane, outputs, positions, width, every)
    (defined, scalar), longer = _scalar(keys, read, plane, outputs, positions)
    drawn = ~np.isnan(bulk)
    assert drawn.mean() == pytest.approx(1 / every, abs=0.02)
    assert bulk[drawn].tobytes() == defined[drawn].tobytes() == scalar[drawn].tobytes()
    assert defined.tobytes() == scalar.tobytes()
    # The slow path ran (about 1.5% of first words), on the largest rows runs longer than
    # `_decide` takes too (about 1 draw in 10^4: `_longer_run`, which allocates, called from
    # `draw_row`, which runs without reference counts), and values of both signs came out.
    draws = drawn.sum()
    assert rejected >= 0.005 * draws or draws < 1000
    assert longer > 0 or outputs * positions < 10_000
    assert (bulk < 0).any() and (bulk > 0).any()


def _word(strip: int, negative: int, mantissa: int) -> np.uint64:
    return np.uint64(strip | negative << 8 | mantissa << 9)


EDGE_WORDS = [  # first words at the fast test's edges: (strip, sign, 52-bit mantissa)
    _word(5, 0, 0),  # +0.0
    _word(5, 1, 0),  # -0.0
    *(_word(s, 1, int(KI[s]) - 1) for s in (0, 2, 7, 255)),  # the largest accepted
    *(_word(s, 0, int(KI[s])) for s in (0, 1, 7, 255)),  # the smallest rejected (KI[1] = 0)
    _word(255, 1, 2**52 - 1),
]


@pytest.mark.parametrize("word", EDGE_WORDS)
def test_first_words_at_the_edges_draw_as_defined(word) -> None:
    """Words SplitMix64 gives about once in 2^52 draws, made by inverting it: the block key
    whose draw 0 starts with `word`. A zero keeps its sign; a mantissa equal to the strip's
    bound takes the slow path."""
    block = np.uint64((_unmix(word) - 0x9E3779B97F4A7C15) % 2**64)  # draw 0: block + gamma
    assert first_word(block, 0) == word
    out = np.full((1, 1), np.nan)
    draw_row(np.uint64(1), block, 0, 0, np.uint64(1), 0, 1, out, row_work(1, 1))
    expected, _ = _defined(np.uint64(1), block, 0, 0, 0)
    assert out.tobytes() == np.float64(expected).tobytes()
    assert keyed_normal(np.uint64(1), block, 0, 0, 0) == expected
    if word >> np.uint64(9) == 0:
        assert out[0, 0] == 0.0 and np.signbit(out[0, 0]) == bool(word >> np.uint64(8))


def _unmix(z: np.uint64) -> int:
    """The SplitMix64 state whose output is z (its finaliser inverted)."""
    z = _unshift(int(z), 31) * pow(0x94D049BB133111EB, -1, 2**64) % 2**64
    z = _unshift(z, 27) * pow(0xBF58476D1CE4E5B9, -1, 2**64) % 2**64
    return _unshift(z, 30)


def _unshift(z: int, shift: int) -> int:
    """The x with x ^ (x >> shift) == z."""
    x = z
    for _ in range(64 // shift + 1):
        x = z ^ (x >> shift)
    return x
