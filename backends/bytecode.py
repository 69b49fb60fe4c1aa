"""Simulator bytecode (`.pbc`): a `Program` in the primec container (`docs/isa.md`).

Sections: META (JSON: name, T, buffers, inputs, states, outputs, target and its hash), PROG
(the instruction stream), TENS (row/column maps and periphery constants), COND (per-array cell
conductances, uS), NEUR (neuron parameter records), EXIT (the early-exit table, JSON or null),
DBUG (per instruction: IR value, op, source location).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from primec.backends.container import (
    ContainerError,
    json_bytes,
    pack,
    read_bytes,
    read_tensors,
    require,
    tensors_bytes,
    unpack,
)
from primec.backends.isa import decode_program, encode_program
from primec.backends.program import DebugEntry, Program, program_from_header, program_header
from primec.backends.validate import validate

from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes
from primec.hardware.earlyexit import ExitTable

MAGIC = b"PRIMEPBC"
VERSION = 1
_ARRAY_NAME = re.compile(r"m(\d+)\.a(\d+)")


def encode(program: Program) -> bytes:
    """The bytes of a .pbc file (deterministic: same program, same bytes)."""
    validate(program, "the bytecode being written")  # never write a file that reads back wrong
    header = program_header(program)
    arrays = {f"m{m}.a{a}": cells for (m, a), cells in program.arrays.items()}
    return pack(
        MAGIC,
        VERSION,
        [
            (b"META", json_bytes(header)),
            (b"PROG", encode_program(program.instrs)),
            (b"TENS", tensors_bytes(program.tensors)),
            (b"COND", tensors_bytes(arrays)),
            (b"NEUR", json_bytes(list(program.neurons))),
            (b"EXIT", json_bytes(program.exit_table.to_dict() if program.exit_table else None)),
            (b"DBUG", json_bytes([[d.value, d.op, d.loc] for d in program.debug])),
        ],
    )


def decode(data: bytes, where: str = "<bytes>") -> Program:
    """Read and validate a .pbc; every malformation gets one clear `PrimecError`."""
    sections = unpack(data, MAGIC, VERSION, where)
    try:
        program = _program(sections, where)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise ContainerError(
            f"malformed bytecode: {type(exc).__name__}: {exc}", where=where
        ) from exc
    validate(program, where, ContainerError)
    return program


def _program(sections: dict[bytes, bytes], where: str) -> Program:
    header = json.loads(require(sections, b"META", where))
    table = json.loads(require(sections, b"EXIT", where))
    debug = [DebugEntry(*entry) for entry in json.loads(require(sections, b"DBUG", where))]
    neurons = tuple(json.loads(require(sections, b"NEUR", where)))
    instrs = decode_program(require(sections, b"PROG", where), where)
    arrays = {
        _array_key(name, where): cells
        for name, cells in read_tensors(require(sections, b"COND", where), where).items()
    }
    return program_from_header(
        header,
        instrs=instrs,
        debug=tuple(debug),
        tensors=read_tensors(require(sections, b"TENS", where), where),
        arrays=arrays,
        neurons=neurons,
        exit_table=_exit_table(table, header.get("timesteps"), where),
    )


def _exit_table(table: Any, timesteps: Any, where: str) -> ExitTable | None:
    """The EXIT section's table, a per-step list checked against the header's T (when T is an
    integer; a malformed T is the validator's error); one error naming the file."""
    if table is None:
        return None
    try:
        return ExitTable.from_dict(table, timesteps if type(timesteps) is int else None)
    except PrimecError as exc:
        raise ContainerError(
            f"early-exit table: {exc.message}", where=where, hint=exc.hint
        ) from exc


def _array_key(name: str, where: str) -> tuple[int, int]:
    match = _ARRAY_NAME.fullmatch(name)
    if match is None:
        raise ContainerError(
            f"conductance section has an entry {name!r} that names no array", where=where
        )
    return int(match.group(1)), int(match.group(2))


def write(program: Program, path: str | Path) -> None:
    """Write a .pbc atomically."""
    atomic_write_bytes(path, encode(program))


def read(path: str | Path) -> Program:
    """Read a .pbc file."""
    return decode(read_bytes(path, "bytecode"), str(path))
