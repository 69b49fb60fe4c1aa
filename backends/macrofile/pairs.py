"""The programming plan of a macro file: what the programmer does to every cell pair (keep,
reset, program), per array and per layer, and the write-verify pulses it will take.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from primec.backends.isa import Read
from primec.backends.program import Program

from primec.hardware.geometry import PAIR

PAIR_UNUSED, PAIR_KEEP, PAIR_RESET, PAIR_PROGRAM = 0, 1, 2, 3


PAIR_CODES = {
    "unused": PAIR_UNUSED,
    "keep": PAIR_KEEP,
    "reset": PAIR_RESET,
    "program": PAIR_PROGRAM,
}


def pair_operations(program: Program) -> dict[tuple[int, int], np.ndarray]:
    """Per array [rows, cols/2]: what the programmer does to each pair (PAIR_* codes)."""
    params = program.meta["target_parameters"]
    off = params["cells.g_off_us"]
    modes = {layer["value"]: layer["mode"] for layer in program.meta["layers"]}
    ops = {
        key: np.zeros((cells.shape[0], PAIR.pairs_in(cells.shape[1])), dtype=np.uint8)
        for key, cells in program.arrays.items()
    }
    for index, instr in enumerate(program.instrs):
        if not isinstance(instr, Read):
            continue
        rows, cols = len(program.tensors[instr.rows]), len(program.tensors[instr.cols])
        block = program.arrays[(instr.macro, instr.array)][
            instr.row0 : instr.row0 + rows, instr.col0 : instr.col0 + PAIR.width(cols)
        ]
        g_pos, g_neg = PAIR.split(block)
        reset = (g_pos == off) & (g_neg == off)
        kept = PAIR_KEEP if modes[program.debug[index].value] == "as_formed" else PAIR_PROGRAM
        ops[(instr.macro, instr.array)][pair_region(program, instr)] = np.where(
            reset, PAIR_RESET, kept
        )
    return ops


def pair_region(program: Program, read: Read) -> tuple[slice, slice]:
    """The rows and pair columns of an array's pair grid that a tile occupies."""
    rows, pairs = len(program.tensors[read.rows]), len(program.tensors[read.cols])
    first = PAIR.pairs_in(read.col0)
    return slice(read.row0, read.row0 + rows), slice(first, first + pairs)


def layer_pairs(program: Program) -> dict[str, dict[str, int]]:
    """Per layer (its IR value): how many of its pairs are kept, reset and programmed."""
    operations = pair_operations(program)
    counts: dict[str, dict[str, int]] = {}
    for index, instr in enumerate(program.instrs):
        if not isinstance(instr, Read):
            continue
        region = operations[(instr.macro, instr.array)][pair_region(program, instr)]
        layer = counts.setdefault(program.debug[index].value, dict.fromkeys(PAIR_CODES, 0))
        for name, code in PAIR_CODES.items():
            layer[name] += int((region == code).sum())
    return counts


def estimated_pulses(
    targets: np.ndarray, operations: np.ndarray, params: dict[str, Any]
) -> np.ndarray:
    """Write-verify pulses per cell to move a formed cell to its target, one tolerance per pulse."""
    start = params["cells.formed_mean_us"]
    per_pair = np.repeat(operations == PAIR_PROGRAM, PAIR.columns, axis=1)
    steps = np.ceil(np.abs(targets - start) / params["cells.write_verify_tolerance_us"])
    return np.where(per_pair, steps, 0).astype(np.int64)
