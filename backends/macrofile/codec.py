"""The macro file's codec: a `Program` and its programming plan to the bytes of a `.pmac` (a zip
of a JSON manifest and `.npy` arrays) and back, with the instruction JSON of the schedule.

JSON manifest and `.npy` arrays (`docs/macro-format.md`), readable with standard tools.

It carries the same `Program` as the bytecode (so `primec simulate` runs this very file), plus
what the chip's programmer needs per array: the operation on every cell pair (keep, reset,
program) and, for programmed pairs, target conductances, the write-verify tolerance and an
estimated pulse count. Every other member's sha256 is in the manifest (and every member has the
zip's CRC-32); reading checks structure, checksums and cross-references before anything trusts
the file, and writing checks the cross-references, so no file is written that would not read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from primec.backends.container import read_bytes
from primec.backends.isa import INSTRUCTIONS, Instr
from primec.backends.macrofile.pairs import PAIR_CODES, estimated_pulses, pair_operations
from primec.backends.macrofile.validate import (
    MacroFileError,
    adc_settings,
    check_settings,
    validate,
)
from primec.backends.program import DebugEntry, Program, program_from_header, program_header

from primec.archive import UntrustedZip, parse_npy
from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes, npy_bytes, zip_bytes
from primec.hardware.earlyexit import ExitTable

MAGIC_PREFIX = b"PK\x03\x04"


FORMAT = "primec-macro"


VERSION = 1


_OPCODE_OF_NAME = {cls.__name__.lower(): cls for cls in INSTRUCTIONS.values()}


def instruction_json(instr: Instr) -> dict[str, Any]:
    return {"op": type(instr).__name__.lower()} | {
        f.name: _plain(getattr(instr, f.name)) for f in fields(instr)
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def instruction(index: int, record: Any, where: str) -> Instr:
    """Schedule entry `index` as an instruction, every field of the type the ISA declares."""
    cls = _OPCODE_OF_NAME.get(record.get("op")) if isinstance(record, dict) else None
    if cls is None:
        raise MacroFileError(
            f"schedule entry {index} is not a known instruction: {str(record)[:80]}",
            where=where,
            hint=f"known ops: {', '.join(sorted(_OPCODE_OF_NAME))}",
        )
    values = {}
    for f in fields(cls):
        value = record.get(f.name)
        if not _has_type(value, f.type):
            raise MacroFileError(
                f"schedule entry {index} ({record['op']}): field {f.name} must be {f.type}, got {value!r}",
                where=where,
            )
        values[f.name] = tuple(value) if f.type.startswith("tuple") else value
    return cls(**values)


def _has_type(value: Any, kind: str) -> bool:
    """Whether a JSON value has an instruction field's type (`int`, `float`, `str`, `tuple[...]`)."""
    if kind.startswith("tuple["):
        element = kind.removeprefix("tuple[").removesuffix(", ...]")
        return isinstance(value, list) and all(_has_type(v, element) for v in value)
    if isinstance(value, bool):  # JSON true/false are no numbers here
        return False
    return isinstance(value, {"int": int, "float": int | float, "str": str}[kind])


def encode(program: Program) -> bytes:
    """The bytes of a .pmac file (deterministic)."""
    validate(program, "the macro file being written")  # never write a file that reads back wrong
    params = program.meta["target_parameters"]
    members: dict[str, bytes] = {}
    arrays = []
    for (macro, array), operations in sorted(pair_operations(program).items()):
        cells = program.arrays[(macro, array)]
        stem = f"arrays/m{macro}.a{array}"
        members[f"{stem}.conductance_us.npy"] = npy_bytes(cells)
        members[f"{stem}.pairs.npy"] = npy_bytes(operations)
        members[f"{stem}.pulses.npy"] = npy_bytes(estimated_pulses(cells, operations, params))
        arrays.append(
            {
                "macro": macro,
                "array": array,
                "prefix": stem,
                "pairs": {
                    name: int((operations == code).sum()) for name, code in PAIR_CODES.items()
                },
            }
        )
    for name, tensor in sorted(program.tensors.items()):
        members[f"tensors/{name}.npy"] = npy_bytes(tensor)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "program": program_header(program),
        "schedule": [instruction_json(i) for i in program.instrs],
        "debug": [[d.value, d.op, d.loc] for d in program.debug],
        "neurons": list(program.neurons),
        "early_exit": program.exit_table.to_dict() if program.exit_table else None,
        "adc": adc_settings(program),
        "write_verify_tolerance_us": params["cells.write_verify_tolerance_us"],
        "arrays": arrays,
        "tensors": sorted(program.tensors),
        "checksums": {
            name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())
        },
    }
    members["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return zip_bytes(members)


def decode(data: bytes, where: str = "<bytes>") -> Program:
    """Read and validate a .pmac; every problem gets one clear `MacroFileError`."""
    members = read_members(data, where)
    manifest = _manifest(members, where)
    program = _program(manifest, members, where)
    validate(program, where)
    check_settings(manifest, program, where)
    check_pair_members(manifest, members, program, where)
    return program


def read_members(data: bytes, where: str) -> dict[str, bytes]:
    """The manifest, then only the members its checksums list, each within the size limits."""
    with UntrustedZip(data, where, error=_unreadable) as archive:
        if "manifest.json" not in archive.names:
            raise MacroFileError("manifest.json is missing", where=where)
        listed = _listed(archive.read("manifest.json"))
        # Whatever the manifest does not vouch for must not reach a chip, nor be inflated.
        unlisted = [n for n in archive.names if n != "manifest.json" and n not in listed]
        if unlisted:
            raise MacroFileError(
                f"member {unlisted[0]} is not listed in the manifest's checksums", where=where
            )
        return archive.read_all()


def _unreadable(message: str, where: str = "") -> MacroFileError:
    return MacroFileError(
        f"not a readable macro file (corrupted, or not a zip): {message}",
        where=where,
        hint="recompile the model or copy the file again",
    )


def _listed(manifest: bytes) -> set[str]:
    """The member names a manifest's checksum table lists (none if it cannot be read)."""
    try:
        checksums = json.loads(manifest).get("checksums")
    except (ValueError, RecursionError, AttributeError):
        return set()
    return set(checksums) if isinstance(checksums, dict) else set()


def _manifest(members: dict[str, bytes], where: str) -> dict[str, Any]:
    if "manifest.json" not in members:
        raise MacroFileError("manifest.json is missing", where=where)
    try:
        manifest = json.loads(members["manifest.json"])
    except (ValueError, RecursionError) as exc:
        raise MacroFileError(f"manifest.json is not valid JSON: {exc}", where=where) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise MacroFileError(f"not a primec macro file (format {found!r})", where=where)
    if manifest.get("version") != VERSION:
        raise MacroFileError(
            f"macro file version {manifest.get('version')} is not supported (this primec reads {VERSION})",
            where=where,
            hint="recompile the model",
        )
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict):
        raise MacroFileError("manifest.json has no checksums table", where=where)
    for name, digest in checksums.items():
        if name not in members:
            raise MacroFileError(f"member {name} listed in the manifest is missing", where=where)
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise MacroFileError(f"checksum mismatch in {name}: the file is corrupted", where=where)
    # Whatever the manifest does not vouch for must not reach a chip.
    unlisted = sorted(set(members) - set(checksums) - {"manifest.json"})
    if unlisted:
        raise MacroFileError(
            f"member {unlisted[0]} is not listed in the manifest's checksums", where=where
        )
    return manifest


def _npy(members: dict[str, bytes], name: str, where: str) -> np.ndarray:
    if name not in members:
        raise MacroFileError(f"member {name} is missing", where=where)
    return parse_npy(members[name], f"{where}: member {name}", error=MacroFileError)


def _program(manifest: dict[str, Any], members: dict[str, bytes], where: str) -> Program:
    try:
        head = manifest["program"]
        instrs = tuple(instruction(n, r, where) for n, r in enumerate(manifest["schedule"]))
        arrays = {
            (a["macro"], a["array"]): _npy(members, f"{a['prefix']}.conductance_us.npy", where)
            for a in manifest["arrays"]
        }
        return program_from_header(
            head,
            instrs=instrs,
            debug=tuple(DebugEntry(*d) for d in manifest["debug"]),
            tensors={
                name: _npy(members, f"tensors/{name}.npy", where) for name in manifest["tensors"]
            },
            arrays=arrays,
            neurons=tuple(manifest["neurons"]),
            exit_table=_exit_table(manifest["early_exit"], where),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MacroFileError(
            f"malformed manifest: {type(exc).__name__}: {exc}", where=where
        ) from exc


def _exit_table(record: Any, where: str) -> ExitTable | None:
    if record is None:
        return None
    if not isinstance(record, dict):
        raise MacroFileError(
            f"early-exit table must be an object or null, got {record!r}", where=where
        )
    try:
        return ExitTable.from_dict(record)
    except PrimecError as exc:
        raise MacroFileError(
            f"early-exit table: {exc.message}", where=where, hint=exc.hint
        ) from exc


def check_pair_members(
    manifest: dict[str, Any], members: dict[str, bytes], program: Program, where: str
) -> None:
    """What the programmer is told to do (pairs, pulses) is what the conductances and the schedule
    imply, so the chip gets what the simulator runs."""
    try:
        expected = pair_operations(program)
        params = program.meta["target_parameters"]
    except (KeyError, TypeError) as exc:
        raise MacroFileError(
            f"malformed manifest: cannot derive pair operations ({exc})", where=where
        ) from exc
    for entry in manifest["arrays"]:
        key, stem = (entry["macro"], entry["array"]), entry["prefix"]
        operations = _npy(members, f"{stem}.pairs.npy", where)
        pulses = _npy(members, f"{stem}.pulses.npy", where)
        if not np.array_equal(operations, expected[key]) or operations.dtype != np.uint8:
            raise MacroFileError(
                f"{stem}.pairs.npy disagrees with the conductances and the schedule", where=where
            )
        if not np.array_equal(pulses, estimated_pulses(program.arrays[key], operations, params)):
            raise MacroFileError(
                f"{stem}.pulses.npy disagrees with the pair operations", where=where
            )
        counts = {name: int((operations == code).sum()) for name, code in PAIR_CODES.items()}
        if entry.get("pairs") != counts:
            raise MacroFileError(
                f"manifest pair counts of macro {key[0]} array {key[1]} are {entry.get('pairs')}, the file holds {counts}",
                where=where,
            )


def write(program: Program, path: str | Path) -> None:
    """Write a .pmac atomically."""
    atomic_write_bytes(path, encode(program))


def read(path: str | Path) -> Program:
    """Read and validate a .pmac file."""
    return decode(read_bytes(path, "macro file"), str(path))
