"""The macro file's validator: every cross-reference of a program checked before a file is
written or trusted (buffers, tensors, neuron records, arrays, row and column maps, exit table).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from primec.backends.isa import Instr, Read
from primec.backends.lower import NEURON_FIELDS
from primec.backends.program import Program

from primec.errors import PrimecError

_KINDS = {"pool": ("avg", "sum", "max"), "binary": ("add", "mul")}


_NEURON_FIELDS = {"lif": NEURON_FIELDS, "integrate": ("keep", "slope")}


class MacroFileError(PrimecError):
    """A macro file that is malformed, corrupted or inconsistent."""


def validate(program: Program, where: str) -> None:
    """Cross-references: buffers, tensors, neuron records and arrays that instructions name exist;
    every read's rows and pairs fit inside its array and its row and column maps point into the
    buffers it reads and writes; the early-exit table fits the readout."""
    if len(program.debug) != len(program.instrs):
        raise MacroFileError(
            f"debug table has {len(program.debug)} entries for {len(program.instrs)} instructions",
            where=where,
        )
    _check_header(program, where)
    _check_arrays(program, where)
    for index, instr in enumerate(program.instrs):
        _check_operands(program, index, instr, where)
        if isinstance(instr, Read):
            _check_read(program, index, instr, where)
    if program.exit_table is not None:
        classes = int(np.prod(program.buffers[program.readout]))
        try:
            program.exit_table.check(classes)
        except PrimecError as exc:
            raise MacroFileError(f"early-exit table: {exc.message}", where=where) from exc


def _check_header(program: Program, where: str) -> None:
    if not isinstance(program.timesteps, int) or program.timesteps < 1:
        raise MacroFileError(
            f"timesteps must be a positive integer, got {program.timesteps!r}", where=where
        )
    for number, shape in enumerate(program.buffers):
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise MacroFileError(
                f"buffer {number} has a malformed shape {list(shape)}", where=where
            )
    named = (*program.inputs, *program.outputs, *(b for pair in program.states for b in pair))
    bad = [b for b in named if not (isinstance(b, int) and 0 <= b < len(program.buffers))]
    if bad or not program.inputs or not program.outputs:
        raise MacroFileError(
            f"program inputs, outputs and states must name some of its {len(program.buffers)} buffers, found {bad or 'none'}",
            where=where,
        )


def _check_arrays(program: Program, where: str) -> None:
    params = program.meta.get("target_parameters", {}) if isinstance(program.meta, dict) else {}
    shape = (params.get("array.rows"), params.get("array.cols"))
    for (macro, array), cells in sorted(program.arrays.items()):
        if cells.shape != shape or cells.dtype != np.float64:
            raise MacroFileError(
                f"macro {macro} array {array} holds {cells.dtype} {list(cells.shape)} conductances; the target's arrays are float64 {list(shape)}",
                where=where,
            )


def _check_operands(program: Program, index: int, instr: Instr, where: str) -> None:
    """Every buffer number, tensor name and neuron record an instruction names exists."""
    op = type(instr).__name__.lower()
    at = f"instruction {index} ({op})"
    if op in _KINDS and instr.kind not in _KINDS[op]:
        raise MacroFileError(
            f"{at}: kind {instr.kind!r} is not one of {', '.join(_KINDS[op])}", where=where
        )
    for f in fields(instr):
        value = getattr(instr, f.name)
        if f.name == "params":
            _check_neuron(program, at, op, value, where)
        if f.name in instr.buffers() and not 0 <= value < len(program.buffers):
            raise MacroFileError(
                f"{at}: {f.name} names buffer {value}, but the program has {len(program.buffers)}",
                where=where,
            )
        if f.type == "str" and f.name != "kind" and value not in program.tensors:
            raise MacroFileError(
                f"{at} refers to tensor {value!r}, which the file does not contain", where=where
            )


def _check_neuron(program: Program, at: str, op: str, record: int, where: str) -> None:
    if not 0 <= record < len(program.neurons):
        raise MacroFileError(
            f"{at} uses neuron record {record}, but the file has {len(program.neurons)}",
            where=where,
        )
    found = program.neurons[record]
    missing = [
        name for name in _NEURON_FIELDS[op] if not isinstance(found, dict) or name not in found
    ]
    if missing:
        raise MacroFileError(
            f"{at}: neuron record {record} lacks {', '.join(missing)}", where=where
        )


def _check_read(program: Program, index: int, read: Read, where: str) -> None:
    at = f"instruction {index} (read of layer {program.debug[index].loc or program.debug[index].value})"
    key = (read.macro, read.array)
    if key not in program.arrays:
        raise MacroFileError(
            f"{at} reads macro {read.macro} array {read.array}, which the file does not contain",
            where=where,
        )
    rows, cols = program.tensors[read.rows], program.tensors[read.cols]
    source, target = program.buffers[read.src], program.buffers[read.dst]
    if rows.ndim != 1 or cols.ndim != 1 or rows.dtype.kind != "i" or cols.dtype.kind != "i":
        raise MacroFileError(f"{at}: row and column maps must be 1-D integer arrays", where=where)
    if len(source) != 2 or len(target) != 2:
        raise MacroFileError(
            f"{at} reads buffer {read.src} {list(source)} into buffer {read.dst} {list(target)}; a tile reads [positions, rows] into [outputs, positions]",
            where=where,
        )
    if read.planes < 1 or not read.quantum > 0:
        raise MacroFileError(
            f"{at}: needs at least one bit plane and a positive quantum, got {read.planes} and {read.quantum}",
            where=where,
        )
    if read.col0 % 2:
        # The periphery pairs columns (2k, 2k + 1); a tile off that grid has no pairs to read.
        raise MacroFileError(
            f"{at}: tile starts at column {read.col0}, off the pair grid (pairs are columns 2k, 2k + 1)",
            where=where,
        )
    height, width = program.arrays[key].shape
    if (
        read.row0 < 0
        or read.row0 + len(rows) > height
        or read.col0 < 0
        or read.col0 + 2 * len(cols) > width
    ):
        raise MacroFileError(
            f"{at}: tile rows {read.row0}..{read.row0 + len(rows) - 1}, columns {read.col0}..{read.col0 + 2 * len(cols) - 1} "
            f"fall outside the {height} x {width} array",
            where=where,
        )
    if rows.size and (rows.min() < 0 or rows.max() >= source[-1]):
        raise MacroFileError(
            f"{at}: row map points outside the layer's {source[-1]} input rows (found {rows.min()}..{rows.max()})",
            where=where,
        )
    if cols.size and (cols.min() < 0 or cols.max() >= target[0]):
        raise MacroFileError(
            f"{at}: column map points outside the layer's {target[0]} outputs (found {cols.min()}..{cols.max()})",
            where=where,
        )
