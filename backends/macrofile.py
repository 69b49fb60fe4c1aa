"""The macro programming file (`.pmac`): everything a macro and its controller need, as a zip of a
JSON manifest and `.npy` arrays (`docs/macro-format.md`), readable with standard tools.

It carries the same `Program` as the bytecode (so `primec simulate` runs this very file), plus
what the chip's programmer needs per array: the operation on every cell pair (keep, reset,
program) and, for programmed pairs, target conductances, the write-verify tolerance and an
estimated pulse count. Every member's sha256 is in the manifest; `validate` checks structure,
checksums and cross-references before anything trusts the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from primec.backends.isa import INSTRUCTIONS, Instr, Read
from primec.backends.program import DebugEntry, Program

from primec.earlyexit import ExitTable
from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes, npy_bytes, zip_bytes

MAGIC_PREFIX = b"PK\x03\x04"
FORMAT = "primec-macro"
VERSION = 1
PAIR_UNUSED, PAIR_KEEP, PAIR_RESET, PAIR_PROGRAM = 0, 1, 2, 3
PAIR_CODES = {
    "unused": PAIR_UNUSED,
    "keep": PAIR_KEEP,
    "reset": PAIR_RESET,
    "program": PAIR_PROGRAM,
}
_OPCODE_OF_NAME = {cls.__name__.lower(): cls for cls in INSTRUCTIONS.values()}


class MacroFileError(PrimecError):
    """A macro file that is malformed, corrupted or inconsistent."""


def _instruction_json(instr: Instr) -> dict[str, Any]:
    return {"op": type(instr).__name__.lower()} | {
        f.name: _plain(getattr(instr, f.name)) for f in fields(instr)
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _instruction(record: dict[str, Any]) -> Instr:
    cls = _OPCODE_OF_NAME[record["op"]]
    values = {
        f.name: tuple(record[f.name]) if f.type.startswith("tuple") else record[f.name]
        for f in fields(cls)
    }
    return cls(**values)


def pair_operations(program: Program) -> dict[tuple[int, int], np.ndarray]:
    """Per array [rows, cols/2]: what the programmer does to each pair (PAIR_* codes)."""
    params = program.meta["target_parameters"]
    off = params["cells.g_off_us"]
    modes = {layer["value"]: layer["mode"] for layer in program.meta["layers"]}
    ops = {
        key: np.zeros((cells.shape[0], cells.shape[1] // 2), dtype=np.uint8)
        for key, cells in program.arrays.items()
    }
    for index, instr in enumerate(program.instrs):
        if not isinstance(instr, Read):
            continue
        rows, cols = len(program.tensors[instr.rows]), len(program.tensors[instr.cols])
        block = program.arrays[(instr.macro, instr.array)][
            instr.row0 : instr.row0 + rows, instr.col0 : instr.col0 + 2 * cols
        ]
        reset = (block[:, 0::2] == off) & (block[:, 1::2] == off)
        kept = PAIR_KEEP if modes[program.debug[index].value] == "as_formed" else PAIR_PROGRAM
        region = ops[(instr.macro, instr.array)][
            instr.row0 : instr.row0 + rows, instr.col0 // 2 : instr.col0 // 2 + cols
        ]
        region[...] = np.where(reset, PAIR_RESET, kept)
    return ops


def estimated_pulses(
    targets: np.ndarray, operations: np.ndarray, params: dict[str, Any]
) -> np.ndarray:
    """Write-verify pulses per cell to move a formed cell to its target, one tolerance per pulse."""
    start = params["cells.formed_mean_us"]
    per_pair = np.repeat(operations == PAIR_PROGRAM, 2, axis=1)
    steps = np.ceil(np.abs(targets - start) / params["cells.write_verify_tolerance_us"])
    return np.where(per_pair, steps, 0).astype(np.int64)


def encode(program: Program) -> bytes:
    """The bytes of a .pmac file (deterministic)."""
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
        "program": {
            "name": program.name,
            "timesteps": program.timesteps,
            "buffers": [list(s) for s in program.buffers],
            "inputs": list(program.inputs),
            "states": [list(s) for s in program.states],
            "outputs": list(program.outputs),
            "meta": program.meta,
        },
        "schedule": [_instruction_json(i) for i in program.instrs],
        "debug": [[d.value, d.op, d.loc] for d in program.debug],
        "neurons": list(program.neurons),
        "early_exit": program.exit_table.to_dict() if program.exit_table else None,
        "adc": {
            "bits": params["adc.bits"],
            "full_scale_ua": params["adc.full_scale_ua"],
            "read_voltage_v": params["read.voltage_v"],
        },
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
    members = _members(data, where)
    manifest = _manifest(members, where)
    program = _program(manifest, members, where)
    validate(program, where)
    return program


def _members(data: bytes, where: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise MacroFileError(f"not a readable macro file (zip): {exc}", where=where) from exc


def _manifest(members: dict[str, bytes], where: str) -> dict[str, Any]:
    if "manifest.json" not in members:
        raise MacroFileError("manifest.json is missing", where=where)
    try:
        manifest = json.loads(members["manifest.json"])
    except ValueError as exc:
        raise MacroFileError(f"manifest.json is not valid JSON: {exc}", where=where) from exc
    if manifest.get("format") != FORMAT:
        raise MacroFileError(
            f"not a primec macro file (format {manifest.get('format')!r})", where=where
        )
    if manifest.get("version") != VERSION:
        raise MacroFileError(
            f"macro file version {manifest.get('version')} is not supported (this primec reads {VERSION})",
            where=where,
            hint="recompile the model",
        )
    for name, digest in manifest["checksums"].items():
        if name not in members:
            raise MacroFileError(f"member {name} listed in the manifest is missing", where=where)
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise MacroFileError(f"checksum mismatch in {name}: the file is corrupted", where=where)
    return manifest


def _npy(members: dict[str, bytes], name: str, where: str) -> np.ndarray:
    if name not in members:
        raise MacroFileError(f"member {name} is missing", where=where)
    try:
        return np.load(io.BytesIO(members[name]), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise MacroFileError(
            f"member {name} is not a valid .npy array: {exc}", where=where
        ) from exc


def _program(manifest: dict[str, Any], members: dict[str, bytes], where: str) -> Program:
    try:
        head = manifest["program"]
        instrs = tuple(_instruction(record) for record in manifest["schedule"])
        arrays = {
            (a["macro"], a["array"]): _npy(members, f"{a['prefix']}.conductance_us.npy", where)
            for a in manifest["arrays"]
        }
        table = manifest["early_exit"]
        return Program(
            name=head["name"],
            timesteps=head["timesteps"],
            buffers=tuple(tuple(s) for s in head["buffers"]),
            inputs=tuple(head["inputs"]),
            states=tuple(tuple(s) for s in head["states"]),
            outputs=tuple(head["outputs"]),
            instrs=instrs,
            debug=tuple(DebugEntry(*d) for d in manifest["debug"]),
            tensors={
                name: _npy(members, f"tensors/{name}.npy", where) for name in manifest["tensors"]
            },
            arrays=arrays,
            neurons=tuple(manifest["neurons"]),
            meta=head["meta"],
            exit_table=ExitTable.from_dict(table) if table else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MacroFileError(
            f"malformed manifest: {type(exc).__name__}: {exc}", where=where
        ) from exc


def validate(program: Program, where: str) -> None:
    """Cross-references: every read names an existing array, its rows and pairs fit inside it,
    and its row and column maps point into the buffers it reads and writes."""
    if len(program.debug) != len(program.instrs):
        raise MacroFileError(
            f"debug table has {len(program.debug)} entries for {len(program.instrs)} instructions",
            where=where,
        )
    for index, instr in enumerate(program.instrs):
        if isinstance(instr, Read):
            _check_read(program, index, instr, where)


def _check_read(program: Program, index: int, read: Read, where: str) -> None:
    at = f"instruction {index} (read of layer {program.debug[index].loc or program.debug[index].value})"
    key = (read.macro, read.array)
    if key not in program.arrays:
        raise MacroFileError(
            f"{at} reads macro {read.macro} array {read.array}, which the file does not contain",
            where=where,
        )
    for name in (read.rows, read.cols):
        if name not in program.tensors:
            raise MacroFileError(
                f"{at} refers to map {name!r}, which the file does not contain", where=where
            )
    rows, cols = program.tensors[read.rows], program.tensors[read.cols]
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
    source_rows = program.buffers[read.src][-1]
    outputs = program.buffers[read.dst][0]
    if rows.size and (rows.min() < 0 or rows.max() >= source_rows):
        raise MacroFileError(
            f"{at}: row map points outside the layer's {source_rows} input rows (found {rows.min()}..{rows.max()})",
            where=where,
        )
    if cols.size and (cols.min() < 0 or cols.max() >= outputs):
        raise MacroFileError(
            f"{at}: column map points outside the layer's {outputs} outputs (found {cols.min()}..{cols.max()})",
            where=where,
        )


def write(program: Program, path: str | Path) -> None:
    """Write a .pmac atomically."""
    atomic_write_bytes(path, encode(program))


def read(path: str | Path) -> Program:
    """Read and validate a .pmac file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PrimecError(f"cannot read macro file: {exc}", where=str(path)) from exc
    return decode(data, str(path))


def summary(path: str | Path) -> str:
    """What `primec inspect model.pmac` prints: arrays, pair operations, layers, exit table."""
    program = read(path)
    manifest = json.loads(_members(Path(path).read_bytes(), str(path))["manifest.json"])
    lines = [
        f"macro file {path}: model {program.name}, target {program.meta['target']} (#{program.meta['target_hash']}), T={program.timesteps}"
    ]
    for array in manifest["arrays"]:
        pairs = array["pairs"]
        lines.append(
            f"  macro {array['macro']} array {array['array']}: keep {pairs['keep']:,}, reset {pairs['reset']:,}, program {pairs['program']:,}, unused {pairs['unused']:,} pairs"
        )
    for layer in program.meta["layers"]:
        lines.append(
            f"  layer {layer['layer']}: {layer['kind']} {layer['mode']}, drive {layer['drive']} x{layer['planes']}, quantum {layer['input_quantum']:g}, gain {layer['gain']:g}"
        )
    adc = manifest["adc"]
    lines.append(
        f"  ADC {adc['bits']} bits, full scale {adc['full_scale_ua']:g} uA at {adc['read_voltage_v']:g} V read"
    )
    table = program.exit_table
    lines.append(f"  early exit: {describe_table(table)}")
    lines.append(
        f"  schedule: {len(program.instrs)} instructions per timestep, {math.fsum(1 for i in program.instrs if isinstance(i, Read)):.0f} tile reads"
    )
    return "\n".join(lines)


def describe_table(table: ExitTable | None) -> str:
    """An early-exit table in words."""
    if table is None:
        return "none (all T steps)"
    return f"{table.rule}, threshold {table.threshold:.4g}, temperature {table.temperature:g}, min steps {table.min_steps}, max steps {table.max_steps or 'T'}"
