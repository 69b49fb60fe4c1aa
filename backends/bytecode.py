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

from primec.earlyexit import ExitTable
from primec.fileio import atomic_write_bytes

MAGIC = b"PRIMEPBC"
VERSION = 1
_ARRAY_NAME = re.compile(r"m(\d+)\.a(\d+)")


def encode(program: Program) -> bytes:
    """The bytes of a .pbc file (deterministic: same program, same bytes)."""
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
    """Read a .pbc; every malformation gets one clear `PrimecError`."""
    sections = unpack(data, MAGIC, VERSION, where)
    try:
        header = json.loads(require(sections, b"META", where))
        table = json.loads(require(sections, b"EXIT", where))
        debug = [DebugEntry(*entry) for entry in json.loads(require(sections, b"DBUG", where))]
        neurons = tuple(json.loads(require(sections, b"NEUR", where)))
    except (ValueError, TypeError) as exc:
        raise ContainerError(f"malformed metadata section: {exc}", where=where) from exc
    instrs = decode_program(require(sections, b"PROG", where), where)
    arrays = {
        _array_key(name, where): cells
        for name, cells in read_tensors(require(sections, b"COND", where), where).items()
    }
    if len(debug) != len(instrs):
        raise ContainerError(
            f"debug table has {len(debug)} entries for {len(instrs)} instructions", where=where
        )
    return program_from_header(
        header,
        instrs=instrs,
        debug=tuple(debug),
        tensors=read_tensors(require(sections, b"TENS", where), where),
        arrays=arrays,
        neurons=neurons,
        exit_table=ExitTable.from_dict(table, header.get("timesteps")) if table else None,
    )


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
