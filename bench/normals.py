"""Keyed read-noise normals per nanosecond: `gauss.draw_row` against an earlier form.

`sparse._convert` calls `draw_row` once per (row, plane, output row) for all outputs o of the
row's windows j, draw o x positions + j. This times that call pattern for the PRIME classifier's
two shapes (layer 2: 64 outputs x 144 positions in rows of 12, about 15.9 M draws a batch;
layer 1: 12 outputs x 1024 positions in rows of 32, about 6 M), every window drawn, the current
kernel against `previous_draw_normals` (one position at a time, the loop as it was before it
was made branch-free, kept here verbatim, with the rejected draws' old path), interleaved in
one process, median CPU time of `--repeats` rounds; it first checks that both give the same
bytes. Each draw's time includes its share of the call and of adding the normals into a result
(about 0.7 ns).

    .venv/bin/python bench/normals.py             # about 20 s
    .venv/bin/python bench/normals.py --repeats 21
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np
from primec.backends.simulator.gauss import (
    KI,
    MANTISSA,
    WI,
    _longer_run,
    block_key,
    draw_row,
    first_word,
    row_work,
)

SHAPES = {"layer-2": (64, 144, 12), "layer-1": (12, 1024, 32)}  # (outputs, positions, row)
ROWS = 64  # (row, plane) blocks per timed call


# Not cached: these inline `gauss` functions, and numba keys a cache to its own file only
# (`backends/simulator/kernelcache.py`); compiling them takes a few seconds.
@numba.njit(nogil=True)
def previous_draw_normals(key, block, read, plane, j, positions, out, work):
    """The bulk draw of one position before it was made branch-free, with `_rejected` as it
    was then (`gauss._longer_run`, now the fallback of the fast `_rejected`): the reference for
    speed."""
    rejects, scratch = work
    count = 0
    for o in range(len(out)):
        r = first_word(block, o * positions + j)
        idx = np.int64(r & np.uint64(0xFF))
        rabs = np.int64((r >> np.uint64(9)) & np.uint64(MANTISSA))
        x = np.float64(rabs) * WI[idx]
        out[o] = -x if (r >> np.uint64(8)) & np.uint64(1) else x
        rejects[count] = o
        count += rabs >= KI[idx]
    for t in range(count):
        draw = rejects[t] * positions + j
        out[rejects[t]] = _longer_run(key, draw, read, plane, first_word(block, draw), scratch)


@numba.njit(nogil=True)
def sweep_previous(keys, outputs, positions, width, out):
    """Every draw of a (row, plane) block for each key, position by position into one
    normals array as `sparse._convert` takes them; out [keys, positions, outputs] += them."""
    work = (np.empty(outputs, dtype=np.int64), np.empty(64, dtype=np.uint64))
    normals = np.empty(outputs)
    for row in range(len(keys)):
        block = block_key(keys[row], 3, row % 8)
        for j in range(positions):
            previous_draw_normals(keys[row], block, 3, row % 8, j, positions, normals, work)
            for o in range(outputs):
                out[row, j, o] += normals[o]


@numba.njit(nogil=True)
def sweep_current(keys, outputs, positions, width, out):
    """`sweep_previous` with `gauss.draw_row`, an output row of `width` windows at a time."""
    work = row_work(width, outputs)
    normals = np.empty((width, outputs))
    every = np.uint64(2**width - 1)
    for row in range(len(keys)):
        block = block_key(keys[row], 3, row % 8)
        for j0 in range(0, positions, width):
            draw_row(keys[row], block, 3, row % 8, every, j0, positions, normals, work)
            for w in range(width):
                for o in range(outputs):
                    out[row, j0 + w, o] += normals[w, o]


def measure(repeats: int) -> dict[str, dict[str, float]]:
    """CPU ns per draw of both kernels on each shape (median over interleaved rounds; CPU
    time, not wall time, so that a neighbour taking the core is not counted)."""
    keys = np.random.default_rng(0).integers(0, 2**63, ROWS, dtype=np.int64).astype(np.uint64)
    sweeps = {"previous": sweep_previous, "current": sweep_current}
    results = {}
    for shape, (outputs, positions, width) in SHAPES.items():
        out = {name: np.zeros((ROWS, positions, outputs)) for name in sweeps}
        for name, sweep in sweeps.items():
            sweep(keys, outputs, positions, width, out[name])  # compiles; checked here
        assert out["previous"].tobytes() == out["current"].tobytes(), shape
        times = {name: [] for name in sweeps}
        for _ in range(repeats):
            for name, sweep in sweeps.items():
                started = time.process_time()
                sweep(keys, outputs, positions, width, out[name])
                times[name].append(time.process_time() - started)
        draws = ROWS * outputs * positions
        ns = {name: statistics.median(t) / draws * 1e9 for name, t in times.items()}
        results[shape] = ns | {"speed-up": ns["previous"] / ns["current"]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    for shape, row in measure(args.repeats).items():
        outputs, positions, _ = SHAPES[shape]
        print(
            f"{shape} ({outputs} outputs x {positions} positions): "
            f"previous {row['previous']:.2f} ns/draw, current {row['current']:.2f} ns/draw, "
            f"{row['speed-up']:.2f}x"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
