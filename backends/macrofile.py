"""The macro programming file (`.pmac`): everything a macro and its controller need, as a zip of a
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
import io
import json
import zipfile
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from primec.backends.container import read_bytes
from primec.backends.isa import INSTRUCTIONS, Instr, Read
from primec.backends.lower import NEURON_FIELDS
from primec.backends.program import DebugEntry, Program, program_from_header, program_header

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
# Integer instruction fields that are no buffer numbers.
_NOT_BUFFERS = {"macro", "array", "row0", "col0", "planes", "outputs", "params"}
_KINDS = {"pool": ("avg", "sum", "max"), "binary": ("add", "mul")}
_NEURON_FIELDS = {"lif": NEURON_FIELDS, "integrate": ("keep", "slope")}


class MacroFileError(PrimecError):
    """A macro file that is malformed, corrupted or inconsistent."""


def _instruction_json(instr: Instr) -> dict[str, Any]:
    return {"op": type(instr).__name__.lower()} | {
        f.name: _plain(getattr(instr, f.name)) for f in fields(instr)
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _instruction(index: int, record: Any, where: str) -> Instr:
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
        ops[(instr.macro, instr.array)][_pair_region(program, instr)] = np.where(
            reset, PAIR_RESET, kept
        )
    return ops


def _pair_region(program: Program, read: Read) -> tuple[slice, slice]:
    """The rows and pair columns of an array's pair grid that a tile occupies."""
    rows, pairs = len(program.tensors[read.rows]), len(program.tensors[read.cols])
    return slice(read.row0, read.row0 + rows), slice(read.col0 // 2, read.col0 // 2 + pairs)


def layer_pairs(program: Program) -> dict[str, dict[str, int]]:
    """Per layer (its IR value): how many of its pairs are kept, reset and programmed."""
    operations = pair_operations(program)
    counts: dict[str, dict[str, int]] = {}
    for index, instr in enumerate(program.instrs):
        if not isinstance(instr, Read):
            continue
        region = operations[(instr.macro, instr.array)][_pair_region(program, instr)]
        layer = counts.setdefault(program.debug[index].value, dict.fromkeys(PAIR_CODES, 0))
        for name, code in PAIR_CODES.items():
            layer[name] += int((region == code).sum())
    return counts


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
    _check_pair_members(manifest, members, program, where)
    return program


def _members(data: bytes, where: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    # A damaged deflate stream raises zlib.error, a damaged method field NotImplementedError and
    # a damaged flag bit RuntimeError ("encrypted"): each is a corrupted file, not a crash.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        raise MacroFileError(
            f"not a readable macro file (corrupted, or not a zip): {exc}",
            where=where,
            hint="recompile the model or copy the file again",
        ) from exc


def _manifest(members: dict[str, bytes], where: str) -> dict[str, Any]:
    if "manifest.json" not in members:
        raise MacroFileError("manifest.json is missing", where=where)
    try:
        manifest = json.loads(members["manifest.json"])
    except ValueError as exc:
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
    try:
        return np.load(io.BytesIO(members[name]), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MacroFileError(
            f"member {name} is not a valid .npy array: {exc}", where=where
        ) from exc


def _program(manifest: dict[str, Any], members: dict[str, bytes], where: str) -> Program:
    try:
        head = manifest["program"]
        instrs = tuple(_instruction(n, r, where) for n, r in enumerate(manifest["schedule"]))
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
            program.exit_table.check(classes, program.timesteps)
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
        if f.type == "int" and f.name not in _NOT_BUFFERS and not 0 <= value < len(program.buffers):
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


def _check_pair_members(
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
    per_layer = layer_pairs(program)
    for layer in program.meta["layers"]:
        pairs = per_layer.get(layer["value"], dict.fromkeys(PAIR_CODES, 0))
        lines.append(
            f"  layer {layer['layer']}: {layer['kind']} {layer['mode']}, drive {layer['drive']} x{layer['planes']}, quantum {layer['input_quantum']:g}, gain {layer['gain']:g}; "
            f"pairs keep {pairs['keep']:,}, reset {pairs['reset']:,}, program {pairs['program']:,}"
        )
    adc = manifest["adc"]
    lines.append(
        f"  ADC {adc['bits']} bits, full scale {adc['full_scale_ua']:g} uA at {adc['read_voltage_v']:g} V read"
    )
    table = program.exit_table
    lines.append(f"  early exit: {describe_table(table)}")
    lines.append(
        f"  schedule: {len(program.instrs)} instructions per timestep, {sum(isinstance(i, Read) for i in program.instrs)} tile reads"
    )
    return "\n".join(lines)


def describe_table(table: ExitTable | None) -> str:
    """An early-exit table in words."""
    if table is None:
        return "none (all T steps)"
    threshold = (
        f"per-step thresholds {', '.join(f'{v:.4g}' for v in table.thresholds)}"
        if table.thresholds
        else f"threshold {table.threshold:.4g}"
    )
    stable = f", stable {table.stable} steps" if table.stable > 1 else ""
    return f"{table.rule}, {threshold}, temperature {table.temperature:g}, min steps {table.min_steps}, max steps {table.max_steps or 'T'}{stable}"
