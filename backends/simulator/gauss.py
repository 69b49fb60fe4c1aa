"""Keyed standard normals for read noise: counter-based, so a draw is a function of what it
belongs to and of nothing else (not of the batch, the chips beside it, or which other draws
were made).

Draw e of bit plane k of Read i in the stream of one (chip, sample, step) row:

- bits: the draw's first 64-bit word is SplitMix64 (Steele, Lea and Flood, OOPSLA'14; Java's
  `SplittableRandom`) at position e + 1 of the stream whose seed is the block key of (read,
  plane), itself Philox4x32-10 (Salmon et al., SC'11; the counter-based generator of Random123,
  cuRAND and JAX) of the counter (0, i, k, 0) under the row's 64-bit stream key
  (`noise.stream_seed(seed, 2, chip, sample, step)`): two multiplies per draw, and a
  different, independent seed per (row, read, plane);
- the normal: the 256-layer ziggurat of Marsaglia and Tsang in the form numpy's
  `Generator.standard_normal` uses (one 64-bit word: 8 bits of layer, 1 of sign, 52 of mantissa;
  about 98.5% of draws return after one multiply and compare), exact in distribution; the rare
  rejections take more words from Philox4x32-10 with the counters (e, i, k, attempt >= 1),
  which no block key uses.

So the normals a read needs can be drawn for only the column reads that carry noise (a nonzero
variance), in any order, in bulk or one at a time, with the same values.
"""

from __future__ import annotations

import math

import llvmlite.ir
import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

LOW32 = 0xFFFFFFFF
MANTISSA = 0x000FFFFFFFFFFFFF
ZIGGURAT_R = 3.6541528853610088  # the base strip's right edge
ZIGGURAT_V = 0.00492867323399  # every strip's area


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ki, wi, fi) of the 256-layer normal ziggurat for 52-bit mantissas: strip i accepts a
    mantissa below ki[i] at once, its abscissa is mantissa x wi[i], fi[i] its lower height."""
    scale = 2.0**52
    ki, wi, fi = np.zeros(256, np.int64), np.zeros(256), np.zeros(256)
    edge = previous = ZIGGURAT_R
    width = ZIGGURAT_V / math.exp(-0.5 * edge * edge)
    ki[0], wi[0], fi[0] = int(edge / width * scale), width / scale, 1.0
    wi[255], fi[255] = edge / scale, math.exp(-0.5 * edge * edge)
    for i in range(254, 0, -1):
        edge = math.sqrt(-2.0 * math.log(ZIGGURAT_V / edge + math.exp(-0.5 * edge * edge)))
        ki[i + 1] = int(edge / previous * scale)
        previous = edge
        fi[i], wi[i] = math.exp(-0.5 * edge * edge), edge / scale
    return ki, wi, fi


KI, WI, FI = ziggurat_tables()
# The first try's tables indexed by a word's low 9 bits (strip and sign): -x is x x -1 exactly.
SIGNED_WI = np.concatenate([WI, -WI])
SIGNED_KI = np.concatenate([KI, KI])
GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment
TWO52_BITS = np.uint64(0x4330000000000000)  # 2^52's bits: OR a 52-bit m in, get 2^52 + m


@numba.njit(cache=True, nogil=True, inline="always")
def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of the counter (c0..c3) under the key (k0, k1), all uint32 as uint64."""
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & np.uint64(LOW32),
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & np.uint64(LOW32),
        )
        k0 = (k0 + np.uint64(0x9E3779B9)) & np.uint64(LOW32)
        k1 = (k1 + np.uint64(0xBB67AE85)) & np.uint64(LOW32)
    return c0, c1, c2, c3


@numba.njit(cache=True, nogil=True)
def block_key(key, read, plane):
    """The seed of (read, plane)'s first words in the stream `key` (uint64)."""
    a, b, _, _ = philox(
        np.uint64(0),
        np.uint64(read),
        np.uint64(plane),
        np.uint64(0),
        key & np.uint64(LOW32),
        key >> np.uint64(32),
    )
    return (a << np.uint64(32)) | b


@numba.njit(cache=True, nogil=True)
def first_word(block, draw):
    """SplitMix64's output at position draw + 1 of the stream seeded `block`."""
    return _mix(block + np.uint64(draw + 1) * GAMMA)


@numba.njit(cache=True, nogil=True)
def _mix(z):
    """SplitMix64's output function of its state z."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@intrinsic
def _as_float(typingctx, bits):
    """The float64 whose IEEE bits are the uint64 `bits`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.DoubleType())

    return types.float64(types.uint64), codegen


@numba.njit(cache=True, nogil=True)
def _uniform(word):
    """A double in [0, 1) from a word's top 53 bits (numpy's `next_double`)."""
    return np.float64(word >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True)
def ziggurat(words, count):
    """A standard normal from the 64-bit words[:count], taken in numpy's order
    (`random_standard_normal`): the first word of a try picks strip and abscissa; a wedge or
    tail test takes one or two uniforms more. Returns the normal and the words it took, or
    (0, -1) when they ran out."""
    n = 0
    while n < count:
        r = words[n]
        n += 1
        idx = np.int64(r & np.uint64(0xFF))
        rabs = np.int64((r >> np.uint64(9)) & np.uint64(MANTISSA))
        x = np.float64(rabs) * WI[idx]
        if (r >> np.uint64(8)) & np.uint64(1):
            x = -x
        if rabs < KI[idx]:
            return x, n
        if idx == 0:
            return _tail(words, count, n, (rabs >> 8) & 1)
        if n == count:
            break
        u = _uniform(words[n])
        n += 1
        if (FI[idx - 1] - FI[idx]) * u + FI[idx] < np.exp(-0.5 * x * x):
            return x, n
    return 0.0, -1


@numba.njit(cache=True, nogil=True)
def _tail(words, count, n, negative):
    """Marsaglia's tail beyond the base strip's edge, two uniforms per try."""
    while n + 1 < count:
        xx = -(1.0 / ZIGGURAT_R) * np.log1p(-_uniform(words[n]))
        yy = -np.log1p(-_uniform(words[n + 1]))
        n += 2
        if yy + yy > xx * xx:
            return (-(ZIGGURAT_R + xx) if negative else ZIGGURAT_R + xx), n
    return 0.0, -1


@numba.njit(cache=True, nogil=True)
def keyed_normal(key, block, draw, read, plane):
    """Draw `draw` of (read, plane) in stream `key` whose block key is `block`. (The tables are
    compile-time constants and the arguments scalars: no array is passed, so nothing is
    reference-counted on this path.)"""
    r = first_word(block, draw)
    idx = np.int64(r & np.uint64(0xFF))
    rabs = np.int64((r >> np.uint64(9)) & np.uint64(MANTISSA))
    if rabs < KI[idx]:
        x = np.float64(rabs) * WI[idx]
        return -x if (r >> np.uint64(8)) & np.uint64(1) else x
    return _rejected(key, draw, read, plane, r, np.empty(0, dtype=np.uint64))


@numba.njit(cache=True, nogil=True, _nrt=False)  # no reference counts (`sparse.HELPER`)
def draw_row(key, block, read, plane, windows, j0, positions, out, work):
    """out[w, o] = draw o x positions + j0 + w of (read, plane), for every o and every window w
    whose bit is set in `windows` (uint64), as `keyed_normal` draws them (work: `row_work`'s
    arrays). Per window the first words in one pass, their first tries in another, both free
    of branches so that they run four draws at a time (AVX2); the rejected ones of all the
    windows are then redrawn together, their Philox words four at a time too."""
    words, rejected, pairs, scratch = work
    count = 0
    for w in range(out.shape[0]):
        if (windows >> np.uint64(w)) & np.uint64(1) == 0:
            continue
        misses = _first_tries(block, j0 + w, positions, out, w, words)
        if misses:
            count = _collect(words, misses, w, rejected, count)
    if count:
        _redraw(key, block, read, plane, j0, positions, out, (rejected, count), pairs, scratch)


@numba.njit(cache=True, nogil=True)
def row_work(windows, outputs):
    """`draw_row`'s work arrays for rows of up to `windows` windows of `outputs` draws."""
    return (
        np.empty(outputs, dtype=np.int64),
        np.empty((2, windows * outputs + 1), dtype=np.int64),
        np.empty((2, windows * outputs), dtype=np.uint64),
        np.empty(64, dtype=np.uint64),
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _first_tries(block, j, positions, out, w, words):
    """out[w, o] = draw o x positions + j's first try; words[o] = 1 where it was rejected.
    Returns how many were ((2^52 + m) - 2^52 is the mantissa m exactly, and m x -w is
    -(m x w))."""
    state = block + np.uint64(j + 1) * GAMMA  # SplitMix64's state at draw j
    step = np.uint64(positions) * GAMMA  # and from draw o x positions + j to the next
    for o in range(len(words)):
        words[o] = np.int64(_mix(state))  # the first word, for the next pass
        state += step
    misses = 0
    for o in range(len(words)):
        r = np.uint64(words[o])
        strip = r & np.uint64(0x1FF)  # the layer and the sign
        rabs = (r >> np.uint64(9)) & np.uint64(MANTISSA)
        out[w, o] = (_as_float(rabs | TWO52_BITS) - 2.0**52) * SIGNED_WI[strip]
        miss = np.int64(rabs) >= SIGNED_KI[strip]
        words[o] = miss
        misses += miss
    return misses


@numba.njit(cache=True, nogil=True, inline="always")
def _collect(flags, misses, w, rejected, count):
    """Appends (w, o) for each of the `misses` flagged o to rejected[:, count:], scanning only
    as far as the last of them (a branch taken about once per window: cheaper than a
    branch-free pass over every flag)."""
    o, end = 0, count + misses
    while count < end:
        if flags[o]:
            rejected[0, count], rejected[1, count] = w, o
            count += 1
        o += 1
    return count


@numba.njit(cache=True, nogil=True)
def _redraw(key, block, read, plane, j0, positions, out, rejected, pairs, scratch):
    """out[w, o] for each of the rejected (w, o): Philox's first words for all of them in one
    pass, then each one's decision."""
    windows, count = rejected
    for t in range(count):
        draw = windows[1, t] * positions + j0 + windows[0, t]
        pairs[0, t], pairs[1, t] = _attempt_one(key, draw, read, plane)
    for t in range(count):
        w, o = windows[0, t], windows[1, t]
        draw = o * positions + j0 + w
        first = first_word(block, draw)
        out[w, o] = _decide(key, draw, read, plane, first, pairs[0, t], pairs[1, t], scratch)


@numba.njit(cache=True, nogil=True)
def _rejected(key, draw, read, plane, first, scratch):
    """The rare draw whose first word the fast strip test rejects (about 1.5%), out of line:
    its words after the first come two per Philox call with counter (draw, read, plane,
    attempt >= 1); `_decide` takes the first call's two."""
    second, third = _attempt_one(key, draw, read, plane)
    return _decide(key, draw, read, plane, first, second, third, scratch)


@numba.njit(cache=True, nogil=True, inline="always")
def _attempt_one(key, draw, read, plane):
    """The two words of Philox's first call for a rejected draw (attempt 1). The counters are
    below 2^32, so the masks change nothing; they let the compiler see 32-bit products."""
    low = np.uint64(LOW32)
    a, b, c, d = philox(
        np.uint64(draw) & low,
        np.uint64(read) & low,
        np.uint64(plane) & low,
        np.uint64(1),
        key & low,
        key >> np.uint64(32),
    )
    return (a << np.uint64(32)) | b, (c << np.uint64(32)) | d


@numba.njit(cache=True, nogil=True)
def _decide(key, draw, read, plane, first, second, third, scratch):
    """A rejected draw from its first word and attempt 1's two words, which nearly always
    decide it, as `ziggurat` takes them (written out here for speed: a wedge's uniform and,
    failing it, the next try's first word, or the tail's two uniforms); a longer run goes
    through `_longer_run`."""
    idx = np.int64(first & np.uint64(0xFF))
    rabs = np.int64((first >> np.uint64(9)) & np.uint64(MANTISSA))
    if idx == 0:
        xx = -(1.0 / ZIGGURAT_R) * np.log1p(-_uniform(second))
        yy = -np.log1p(-_uniform(third))
        if yy + yy > xx * xx:
            return -(ZIGGURAT_R + xx) if (rabs >> 8) & 1 else ZIGGURAT_R + xx
        return _longer_run(key, draw, read, plane, first, scratch)
    x = np.float64(rabs) * WI[idx]
    if (first >> np.uint64(8)) & np.uint64(1):
        x = -x
    if (FI[idx - 1] - FI[idx]) * _uniform(second) + FI[idx] < np.exp(-0.5 * x * x):
        return x
    idx = np.int64(third & np.uint64(0xFF))
    rabs = np.int64((third >> np.uint64(9)) & np.uint64(MANTISSA))
    if rabs < KI[idx]:
        x = np.float64(rabs) * WI[idx]
        return -x if (third >> np.uint64(8)) & np.uint64(1) else x
    return _longer_run(key, draw, read, plane, first, scratch)


# With reference counts on (it allocates for a long run), though `draw_row`'s have them off.
@numba.njit(cache=True, nogil=True, _nrt=True)
def _longer_run(key, draw, read, plane, first, scratch):
    """`_rejected`'s draw by `ziggurat` on as many words as its run of rejections takes (in
    `scratch` while it is long enough)."""
    size = 3
    while True:
        words = scratch if size <= len(scratch) else np.empty(size, dtype=np.uint64)
        words[0] = first
        for attempt in range(1, (size + 1) // 2):
            a, b, c, d = philox(
                np.uint64(draw),
                np.uint64(read),
                np.uint64(plane),
                np.uint64(attempt),
                key & np.uint64(LOW32),
                key >> np.uint64(32),
            )
            words[2 * attempt - 1] = (a << np.uint64(32)) | b
            words[2 * attempt] = (c << np.uint64(32)) | d
        x, used = ziggurat(words, size)
        if used > 0:
            return x
        size = 4 * size - 3


@numba.njit(cache=True, nogil=True)
def _fill(keys, read, plane, size, out):
    for row in range(len(keys)):
        block = block_key(keys[row], read, plane)
        for e in range(size):
            out[row, e] = keyed_normal(keys[row], block, e, read, plane)


def keyed_normals(keys: np.ndarray, read: int, plane: int, size: int) -> np.ndarray:
    """[rows, size] float64: draws 0 .. size - 1 of (read, plane) in each row's stream."""
    out = np.empty((len(keys), size))
    _fill(np.asarray(keys, dtype=np.uint64), read, plane, size, out)
    return out
