"""A mutation fuzzer over every reader of a file a user hands primec (issue 10).

Every such file is untrusted data: a reader must refuse it with a `PrimecError` (the CLI's one
clear message and exit 2), never let another exception out, never hang, never blow memory, and
what `primec check` accepts, `primec simulate` must run.

The seed corpus is made here, by code, from the tests' tiny models (`tests/ir_zoo.py`,
`tests/snn_models.py`): no file is checked in. Each case is a seed with one to three mutations
(random bytes, and structure-aware ones for zips, `.npy` headers, JSON, the bytecode container,
IR text, TOML and ONNX), fully determined by (seed, format, index), so any finding replays with
`bench/fuzz.py --replay FORMAT:INDEX`. A case runs the CLI in-process (`click.testing`) the way
a user would: `check` (and `inspect`) on it, and on an accepted artefact `simulate`, ideal and
with `--noise read=0.02,adc=8`; an accepted `.pir` is also compiled and simulated, an accepted
target or device map compiles a model.

`tests/test_fuzz.py` runs a few cases per format in `make test`; `bench/fuzz.py` runs the long
campaign in worker processes with a per-case time limit and reports peak memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import pickle
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# Source folders of primec's own code: the innermost frame in one of them names a crash.
PRIMEC_DIRS = tuple(str(REPO / d) + os.sep for d in ("primec", "backends", "passes"))
HANG_SECONDS = 20.0
MEMORY_LIMIT = 1 << 30  # peak RSS above this is a finding (issue 10: under 1 GiB)
CANARY = "primec-fuzz-canary"  # payloads create this file (relative to the case folder) if run
NOISE = "read=0.02,adc=8"
ARCH = f"{TESTS / 'snn_models.py'}:mlp_leaky"
BOMB_BYTES = 1536 << 20  # a zip member that inflates to 1.5 GiB of zeros
FORMATS = (
    "pbc",
    "pmac",
    "input",
    "pir",
    "pir-weights",
    "pt",
    "pt2",
    "torchscript",
    "onnx",
    "devicemap",
    "target",
    "nir",
)
NIR_DT = "1e-3"  # the timestep a NIR case is read with (`--dt`)


class CaseTimeout(BaseException):
    """Raised by the per-case alarm (a BaseException, so no reader's `except Exception` eats it)."""


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Finding:
    """What went wrong in one case: kind, the stage, signature and message."""

    kind: str  # uncaught | accepted-then-crash | accepted-then-refused | hang | memory | canary
    stage: str
    signature: str
    message: str
    trace: str = ""


@dataclass
class CaseResult:
    """One case: what it was, what each stage did, and the finding if any."""

    format: str
    index: int
    seed: str
    mutations: list[str]
    outcome: str = "refused"  # accepted | refused | crashed (the first stage) | hang
    stages: list[str] = field(default_factory=list)
    finding: Finding | None = None
    seconds: float = 0.0
    max_rss: int = 0  # this process's peak RSS after the case (bytes)
    rss_growth: int = 0  # how much the case raised that peak
    refusal: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        data = dataclasses.asdict(self)
        if self.finding is not None:
            data["finding"] = dataclasses.asdict(self.finding)
        return data


def signature(exc: BaseException, tb: Any = None) -> str:
    """Exception type + file:line of the innermost primec frame (else the innermost frame)."""
    frames = traceback.extract_tb(tb if tb is not None else exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(PRIMEC_DIRS)]
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    if ours:
        frame = ours[-1]
        return f"{name} at {os.path.relpath(frame.filename, REPO)}:{frame.lineno}"
    if frames:
        frame = frames[-1]
        return f"{name} at (no primec frame) {_short(frame.filename)}:{frame.lineno}"
    return f"{name} at (no frame)"


def _short(path: str) -> str:
    marker = "site-packages" + os.sep
    return path.split(marker, 1)[1] if marker in path else os.path.basename(path)


def max_rss() -> int:
    """This process's peak resident set size in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------
# raw containers: zip, npy, the bytecode container, TOML (writers that may lie on purpose)


@dataclass
class Member:
    """A zip member as written: name, stored payload, method, declared size and CRC."""

    name: str
    data: bytes
    method: int = 0  # 0 stored, 8 deflated
    size: int | None = None  # declared uncompressed size (None: the true one)
    crc: int | None = None
    raw: bool = False  # data is already compressed (size and crc given)


MEMBER_LIMIT = 16 << 20  # the harness decompresses no member past this (a bomb stays raw)


def zip_members(data: bytes) -> list[Member]:
    """Members of a zip in order (raises if zipfile cannot read the directory).

    A member that is large, a bomb an earlier mutation added, or unreadable stays as it is
    stored (raw), so the harness itself never inflates one."""
    members = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            method = 8 if info.compress_type == 8 else 0
            start = info.header_offset + 30
            name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
            start += name_len + extra_len
            raw = data[start : start + info.compress_size]
            kept = Member(info.filename, raw, method, info.file_size, info.CRC, raw=True)
            if info.file_size <= MEMBER_LIMIT and info.compress_size <= MEMBER_LIMIT:
                try:
                    with archive.open(info) as member:
                        content = member.read(MEMBER_LIMIT + 1)
                    if len(content) <= MEMBER_LIMIT:
                        kept = Member(info.filename, content, method)
                except Exception:  # a damaged member: keep its stored bytes
                    pass
            members.append(kept)
    return members


def write_zip(members: list[Member], align: int = 64) -> bytes:
    """A zip of the members exactly as given: duplicates, odd names and lying sizes included.

    Payloads are aligned to `align` bytes with an extra field, as torch writes them (its reader
    maps tensors in place)."""
    out = bytearray()
    central = bytearray()
    for m in members:
        name = m.name.encode("utf-8", "surrogatepass")
        if m.raw:
            payload, size, crc = m.data, m.size or 0, m.crc or 0
        else:
            payload = _deflate(m.data) if m.method == 8 else m.data
            size = len(m.data) if m.size is None else m.size
            crc = zlib.crc32(m.data) if m.crc is None else m.crc
        flags = 0x800 if not m.name.isascii() else 0
        offset = len(out)
        pad = (-(offset + 30 + len(name) + 4)) % align if align else 0
        extra = struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad if align else b""
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            m.method,
            0,
            0x21,
            crc & 0xFFFFFFFF,
            min(len(payload), 0xFFFFFFFF),
            min(size, 0xFFFFFFFF),
            len(name),
            len(extra),
        )
        out += name + extra + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            flags,
            m.method,
            0,
            0x21,
            crc & 0xFFFFFFFF,
            min(len(payload), 0xFFFFFFFF),
            min(size, 0xFFFFFFFF),
            len(name),
            0,
            0,
            0,
            0,
            0o644 << 16,
            offset,
        )
        central += name
    start = len(out)
    out += central
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0
    )
    return bytes(out)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@functools.lru_cache(maxsize=1)
def bomb() -> tuple[bytes, int]:
    """A raw deflate stream of BOMB_BYTES zeros (about 1.5 MB) and its CRC32.

    One 16 MiB block of zeros, compressed after a full flush, repeats byte for byte."""
    chunk = bytes(16 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = BOMB_BYTES // len(chunk)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return block * count + compressor.flush(), crc


def npy_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header dict and payload of a (trusted) .npy."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = reader(stream)
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": fortran,
        "shape": shape,
    }
    return header, data[stream.tell() :]


def read_npy(data: bytes) -> np.ndarray:
    """A (numbers-only) array from .npy bytes whose header matches its payload, else ValueError."""
    header, payload = npy_parts(data)
    dtype = np.dtype(header["descr"])
    count = 1
    for extent in header["shape"]:
        count *= int(extent)
    if dtype.hasobject or count * dtype.itemsize != len(payload):
        raise ValueError("header and payload disagree")
    order = "F" if header["fortran_order"] else "C"
    return np.frombuffer(payload, dtype, count).reshape(header["shape"], order=order).copy()


def npy_raw(header_text: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy with this header text verbatim (padded as numpy pads) and payload."""
    text = header_text.encode("latin1", "replace")
    fmt, base = ("<H", 10) if version[0] == 1 else ("<I", 12)
    pad = (-(base + len(text) + 1)) % 64
    text += b" " * pad + b"\n"
    if version[0] == 1 and len(text) > 0xFFFF:
        fmt, version = "<I", (2, 0)
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(text)) + text + payload


def npy_of(array: np.ndarray) -> bytes:
    """The .npy encoding of an array (numbers only)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npz_of(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (stored members) of the arrays."""
    return write_zip([Member(f"{k}.npy", npy_of(v), 8) for k, v in arrays.items()], align=0)


PBC_HEADER = struct.Struct("<8sHHI32s")
PBC_SECTION = struct.Struct("<4sQ")


def pbc_sections(data: bytes) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    """Magic, version and (tag, payload) sections of a bytecode container (raises if damaged)."""
    magic, version, _, count, _ = PBC_HEADER.unpack_from(data)
    offset, sections = PBC_HEADER.size, []
    for _ in range(count):
        tag, length = PBC_SECTION.unpack_from(data, offset)
        offset += PBC_SECTION.size
        if offset + length > len(data):
            raise ValueError("section past the end")
        sections.append((tag, data[offset : offset + length]))
        offset += length
    return magic, version, sections


def pbc_pack(
    magic: bytes,
    version: int,
    sections: list[tuple[bytes, bytes]],
    count: int | None = None,
    checksum: bool = True,
) -> bytes:
    """A bytecode container; with `checksum` the sha256 is right, so the reader looks inside."""
    import hashlib

    body = b"".join(PBC_SECTION.pack(t, len(p)) + p for t, p in sections)
    digest = hashlib.sha256(body).digest() if checksum else bytes(32)
    n = len(sections) if count is None else count
    return PBC_HEADER.pack(magic, version, 0, n & 0xFFFFFFFF, digest) + body


def tensor_records(payload: bytes) -> list[list[Any]]:
    """[name, dtype code, dims, raw bytes] of a (trusted) tensor section."""
    (count,), offset = struct.unpack_from("<I", payload), 4
    records = []
    sizes = {1: 4, 2: 8, 3: 8, 4: 1, 5: 4, 6: 1}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", payload, offset)
        name = payload[offset + 2 : offset + 2 + length]
        offset += 2 + length
        code, rank = struct.unpack_from("<BB", payload, offset)
        dims = list(struct.unpack_from(f"<{rank}Q", payload, offset + 2))
        offset += 2 + 8 * rank
        size = int(np.prod(dims, dtype=np.int64)) * sizes[code]
        records.append([name, code, dims, payload[offset : offset + size]])
        offset += size
    return records


def tensor_payload(records: list[list[Any]], count: int | None = None) -> bytes:
    """A tensor section from records (which may lie about anything)."""
    parts = [struct.pack("<I", (len(records) if count is None else count) & 0xFFFFFFFF)]
    for name, code, dims, raw in records:
        parts.append(struct.pack("<H", len(name) & 0xFFFF) + name)
        parts.append(struct.pack("<BB", code & 0xFF, len(dims) & 0xFF))
        parts.append(b"".join(struct.pack("<Q", d & 0xFFFFFFFFFFFFFFFF) for d in dims))
        parts.append(raw)
    return b"".join(parts)


def toml_text(data: dict[str, Any]) -> str:
    """A TOML document of tables of values (what target files hold), NaN and inf included."""
    lines = []
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in top.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for name, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_key(name)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value) if value != DEEP else "[" * 3000 + "1" + "]" * 3000
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


# ---------------------------------------------------------------------------------------------
# value pools and generic mutators

DEEP = "\x00deep\x00"  # replaced by deeply nested brackets after serialising
HUGE_DIGITS = "9" * 5000  # Python refuses int(str) of more than 4300 digits
INTERESTING_NUMBERS: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    0,
    1,
    -(2**63),
    2**63 - 1,
    2**64,
    10**30,
    1e308,
    -0.0,
    10.5,
    0.5,
    -1e-300,
    3e38,
    2**31,
    255,
    256,
]
INTERESTING_VALUES: list[Any] = [
    *INTERESTING_NUMBERS,
    "",
    "x",
    "../x",
    "nan",
    True,
    False,
    None,
    [],
    {},
    [1, 2],
    {"a": 1},
    [0] * 64,
    DEEP,
]


def _interesting(rng: random.Random) -> Any:
    """A fresh copy of a value from the pool (the pool itself never changes)."""
    value = rng.choice(INTERESTING_VALUES)
    return value if value is DEEP else json.loads(json.dumps(value, allow_nan=True))


def _expression() -> str:
    return f"__import__('pathlib').Path({CANARY!r}).touch() or 1"


def json_text(value: Any) -> str:
    """JSON as a careless writer would make it: NaN and Infinity allowed, DEEP made deep."""
    text = json.dumps(value, allow_nan=True)
    return text.replace(json.dumps(DEEP), "[" * 100000 + "]" * 100000)


def json_paths(value: Any, path: tuple = (), out: list | None = None, limit: int = 4000) -> list:
    """Paths (key tuples) of every node of a JSON value, up to `limit`."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(path)
    if isinstance(value, dict):
        for k, v in value.items():
            json_paths(v, (*path, k), out, limit)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            json_paths(v, (*path, i), out, limit)
    return out


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def mutate_json(value: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural change to a JSON value: a node replaced, dropped, duplicated or retyped."""
    paths = json_paths(value)
    path = rng.choice(paths)
    node = _get(value, path)
    where = "/".join(map(str, path)) or "(root)"
    choice = rng.random()
    if not path:
        return _interesting(rng), f"json root := {_show(node)}"
    parent = _get(value, path[:-1])
    key = path[-1]
    if choice < 0.15:
        del parent[key]
        return value, f"json drop {where}"
    if choice < 0.25 and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(node)))
        return value, f"json duplicate {where}"
    if choice < 0.35 and isinstance(parent, dict):
        parent[rng.choice(["extra", "format", "version", "expr_str", "as_expr", "__proto__"])] = (
            _interesting(rng)
        )
        return value, f"json add key next to {where}"
    if choice < 0.45 and isinstance(node, str):
        new = rng.choice([_expression(), node + "x", node[::-1], "m0.a0", "../" + node, "é" * 3])
        parent[key] = new
        return value, f"json {where} := {_show(new)}"
    if choice < 0.55 and isinstance(node, (int, float)) and not isinstance(node, bool):
        new = rng.choice([node + 1, node - 1, -node, node * 2, node * 1000, float(node) + 0.5])
        parent[key] = new
        return value, f"json {where} := {_show(new)}"
    if choice < 0.6:
        parent[key] = {"as_expr": {"expr_str": _expression(), "hint": {"as_int": 1}}}
        return value, f"json {where} := as_expr payload"
    new = _interesting(rng)
    parent[key] = new
    return value, f"json {where} := {_show(new)}"


def _show(value: Any) -> str:
    if value is DEEP:
        return "<deep nesting>"
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Random byte-level damage: flips, interesting bytes, insertions, deletions, truncation."""
    buf = bytearray(data)
    choice = rng.random()
    if not buf:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))), "bytes: random"
    if choice < 0.3:
        n = rng.choice([1, 1, 2, 4, 8])
        spots = [rng.randrange(len(buf)) for _ in range(n)]
        for i in spots:
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf), f"bytes: flip {n} bit(s) at {spots[0]}"
    if choice < 0.45:
        i = rng.randrange(len(buf))
        value = rng.choice([0, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x5B, 0x22])
        width = rng.choice([1, 2, 4, 8])
        buf[i : i + width] = bytes([value]) * width
        return bytes(buf), f"bytes: set {width} at {i} to {value:#x}"
    if choice < 0.6:
        i = rng.randrange(len(buf) + 1)
        ins = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4, 16, 100])))
        return bytes(buf[:i] + ins + buf[i:]), f"bytes: insert {len(ins)} at {i}"
    if choice < 0.75:
        i = rng.randrange(len(buf))
        n = rng.choice([1, 4, 16, 256])
        del buf[i : i + n]
        return bytes(buf), f"bytes: delete {n} at {i}"
    if choice < 0.88:
        n = rng.randrange(len(buf))
        return bytes(buf[:n]), f"bytes: truncate to {n}"
    i, j = sorted(rng.randrange(len(buf)) for _ in range(2))
    k = rng.randrange(len(buf))
    return bytes(buf[:k] + buf[i : j + 1] + buf[k:]), f"bytes: copy [{i}:{j}] to {k}"


def mutate_array(array: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """A semantically odd version of an array: bad values, another dtype or shape."""
    choice = rng.random()
    a = np.array(array, copy=True)
    if choice < 0.35 and a.size:
        flat = a.reshape(-1)
        value = rng.choice([np.nan, np.inf, -np.inf, -1, -1e38, 3e38, 1e6, 0.5, 10.5, 255, 256, 0])
        n = rng.choice([1, 1, flat.size])
        idx = [rng.randrange(flat.size) for _ in range(n)] if n < flat.size else slice(None)
        with np.errstate(all="ignore"):
            try:
                flat[idx] = value
            except (ValueError, OverflowError, TypeError):
                a = a.astype(np.float64)
                a.reshape(-1)[idx] = value
        return a, f"array values := {value}"
    if choice < 0.6:
        dtype = rng.choice(
            [
                "<f8",
                "<f2",
                "<i8",
                "<i4",
                "|u1",
                "|i1",
                "|b1",
                "<c8",
                "<m8[ns]",
                "<M8[s]",
                "<U3",
                "<u8",
            ]
        )
        with np.errstate(all="ignore"):
            try:
                out = a.astype(dtype)
            except (ValueError, TypeError, OverflowError):
                out = np.zeros(a.shape, dtype)
        return out, f"array dtype := {dtype}"
    if choice < 0.85:
        kind = rng.choice(
            ["extra-dim", "drop-dim", "shrink", "grow", "empty", "scalar", "transpose"]
        )
        if kind == "extra-dim":
            out = a[None]
        elif kind == "drop-dim" and a.ndim:
            out = a.reshape(a.shape[:-2] + (-1,)) if a.ndim > 1 else a[:1].reshape(())
        elif kind == "shrink" and a.ndim and a.shape[0] > 1:
            out = a[: a.shape[0] - 1]
        elif kind == "grow" and a.ndim:
            out = np.concatenate([a, a[:1]])
        elif kind == "empty" and a.ndim:
            out = a[:0]
        elif kind == "transpose" and a.ndim > 1:
            out = np.ascontiguousarray(a.T)
        else:
            out = a.reshape(-1)[:1].reshape(()) if a.size else np.zeros(())
        return out, f"array shape {list(a.shape)} -> {list(out.shape)} ({kind})"
    return np.array(rng.choice([0, -1, 2**40, "text", 1.5])), "array := odd scalar"


NPY_DESCRS = [
    "|O",
    "<U8",
    "|V16",
    ">f4",
    "<c8",
    "<m8[ns]",
    "<M8[s]",
    "|b1",
    "<f2",
    "<i8",
    "xyz",
    "|S0",
]


def mutate_npy(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Damage a .npy: its header (shape, dtype, order, syntax) or its payload."""
    try:
        header, payload = npy_parts(data)
    except Exception:  # not (any longer) a readable .npy: damage the bytes
        return mutate_bytes(data, rng)
    choice = rng.random()
    descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    if choice < 0.3:
        shape = rng.choice(
            [
                (2**62,),
                (10**12, 10**12),
                (-1,),
                (0,),
                (2**31, 2**31, 4),
                (1,) * 64,
                (),
                (*shape, 2),
                shape[1:],
                (HUGE_DIGITS,),
                (1.5,),
            ]
        )
        dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
        text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': ({dims}), }}"
        return npy_raw(text, payload), "npy header shape := " + _show(shape)
    if choice < 0.5:
        descr = rng.choice(NPY_DESCRS)
        text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
        return npy_raw(text, payload), f"npy header descr := {descr}"
    if choice < 0.6:
        text = rng.choice(
            [
                f"{{'descr': {descr!r}, 'fortran_order': 'yes', 'shape': {shape!r}, }}",
                f"{{'descr': {descr!r}, 'shape': {shape!r}, }}",
                f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, 'x': 1}}",
                "[" * 5000 + "]" * 5000,
                f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}",
                "{'descr': '<f4', 'fortran_order': False, 'shape': ("
                + "(" * 3000
                + "1"
                + ")" * 3000
                + ",), }",
                "{" + "'a" * 50 + "}",
                "__import__('os')",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1e999,), }",
            ]
        )
        return npy_raw(text, payload), "npy header text := " + _show(text)
    if choice < 0.7:
        version = rng.choice([(2, 0), (3, 0), (9, 9), (1, 1)])
        text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
        return npy_raw(text, payload, version if version[0] in (1, 2, 3) else (1, 0)) if version[
            0
        ] in (1, 2, 3) else b"\x93NUMPY\x09\x09" + data[8:], f"npy version := {version}"
    if choice < 0.8:
        n = rng.randrange(len(payload) + 1)
        extra = rng.choice([b"", b"\0" * 8, b"junk"])
        return data[: len(data) - len(payload)] + payload[
            :n
        ] + extra, f"npy payload cut to {n}+{len(extra)}"
    try:
        array = read_npy(data)
        new, what = mutate_array(array, rng)
        return npy_of(new), "npy " + what
    except Exception:
        return mutate_bytes(data, rng)


# ---------------------------------------------------------------------------------------------
# zip-level mutators (shared by every zip format)


def mutate_zip(
    data: bytes,
    rng: random.Random,
    member_mutator: Callable[[str, bytes, random.Random], tuple[bytes, str]] | None = None,
    after: Callable[[list[Member]], None] | None = None,
) -> tuple[bytes, str]:
    """One change to a zip: a member's content, or duplicates, odd names, lies, bombs."""
    try:
        members = zip_members(data)
    except Exception:
        return mutate_bytes(data, rng)
    if not members:
        return mutate_bytes(data, rng)
    choice = rng.random()
    i = rng.randrange(len(members))
    m = members[i]
    if choice < 0.45:
        mutator = member_mutator or default_member_mutator
        m.data, what = mutator(m.name, m.data, rng)
        if after is not None and rng.random() < 0.9:
            after(members)
        return write_zip(members), f"member {m.name}: {what}"
    if choice < 0.53:
        copy = Member(m.name, rng.choice([m.data, b"", mutate_bytes(m.data, rng)[0]]), m.method)
        first = rng.random() < 0.5
        members.insert(i if first else len(members), copy)
        return write_zip(members), f"duplicate member {m.name} ({'first' if first else 'last'})"
    if choice < 0.6:
        name = rng.choice(
            ["../x", "/abs/x", "a/../../x", "C:/x", "a\\..\\x", "", "a\x00b", m.name + "/", "é.npy"]
        )
        members.insert(rng.randrange(len(members) + 1), Member(name, m.data, m.method))
        return write_zip(members), f"add member {name!r}"
    if choice < 0.64:
        payload, crc = bomb()
        name = rng.choice([m.name, "unlisted.npy", "extra/bomb.bin"])
        lie = rng.choice([BOMB_BYTES, 1000])
        bombed = Member(name, payload, 8, size=lie, crc=crc, raw=True)
        if name == m.name:
            members[i] = bombed
        else:
            members.append(bombed)
        return write_zip(members), f"bomb member {name!r} ({BOMB_BYTES >> 20} MiB, declares {lie})"
    if choice < 0.69:
        m.size = rng.choice([2**32 - 2, 0, max(len(m.data) - 1, 0), len(m.data) * 1000])
        return write_zip(members), f"member {m.name} declares size {m.size}"
    if choice < 0.72:
        m.crc = rng.randrange(2**32)
        return write_zip(members), f"member {m.name} wrong crc"
    if choice < 0.8:
        del members[i]
        return write_zip(members), f"drop member {m.name}"
    if choice < 0.85:
        members.reverse()
        return write_zip(members), "reverse member order"
    if choice < 0.9:
        j = rng.randrange(len(members))
        m.data, members[j].data = members[j].data, m.data
        if after is not None:
            after(members)
        return write_zip(members), f"swap contents of {m.name} and {members[j].name}"
    if choice < 0.95:
        m.method = 8 - m.method
        return write_zip(members), f"member {m.name} method := {m.method}"
    new = rng.choice([m.name + "x", m.name.upper(), "x/" + m.name, m.name.replace("/", "//")])
    m.name = new
    return write_zip(members), f"rename member to {new}"


def default_member_mutator(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """By member kind: .npy arrays, JSON, or bytes."""
    if name.endswith(".npy") and rng.random() < 0.85:
        return mutate_npy(data, rng)
    if name.endswith(".json") and rng.random() < 0.85:
        try:
            value = json.loads(data)
        except ValueError:
            return mutate_bytes(data, rng)
        value, what = mutate_json(value, rng)
        return json_text(value).encode(), what
    return mutate_bytes(data, rng)


# ---------------------------------------------------------------------------------------------
# format-specific mutators


def mutate_pbc(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """The bytecode container: its section table, JSON sections, tensor sections, program."""
    try:
        magic, version, sections = pbc_sections(data)
    except Exception:
        return mutate_bytes(data, rng)
    choice = rng.random()
    checksum = rng.random() < 0.97
    tags = [t for t, _ in sections]
    i = rng.randrange(len(sections))
    tag, payload = sections[i]
    what: str
    if choice < 0.25 and any(t in (b"META", b"NEUR", b"EXIT", b"DBUG") for t in tags):
        i = rng.choice([k for k, t in enumerate(tags) if t in (b"META", b"NEUR", b"EXIT", b"DBUG")])
        tag, payload = sections[i]
        value, what = mutate_json(json.loads(payload), rng)
        sections[i] = (tag, json_text(value).encode())
    elif choice < 0.45 and b"PROG" in tags:
        i = tags.index(b"PROG")
        tag, payload = sections[i]
        k = tags.index(b"DBUG") if b"DBUG" in tags else None
        debug = json.loads(sections[k][1]) if k is not None else None
        new, what = mutate_program(payload, rng, debug if isinstance(debug, list) else None)
        sections[i] = (tag, new)
        if k is not None and isinstance(debug, list):
            sections[k] = (b"DBUG", json.dumps(debug).encode())
    elif choice < 0.65 and any(t in (b"TENS", b"COND") for t in tags):
        i = rng.choice([k for k, t in enumerate(tags) if t in (b"TENS", b"COND")])
        tag, payload = sections[i]
        new, what = mutate_tensors(payload, rng)
        sections[i] = (tag, new)
    elif choice < 0.72:
        del sections[i]
        what = "drop"
    elif choice < 0.78:
        sections.insert(
            rng.randrange(len(sections) + 1), (tag, rng.choice([payload, b"", b"null"]))
        )
        what = "duplicate"
    elif choice < 0.82:
        sections[i] = (
            rng.choice([b"XXXX", b"meta", b"\0\0\0\0", tags[(i + 1) % len(tags)]]),
            payload,
        )
        what = f"retag to {sections[i][0]!r}"
    elif choice < 0.86:
        sections.append((b"JUNK", bytes(rng.randrange(64))))
        what = "append unknown section"
    elif choice < 0.9:
        count = rng.choice([0, len(sections) - 1, len(sections) + 1, 2**32 - 1])
        return pbc_pack(magic, version, sections, count=count), f"section count := {count}"
    elif choice < 0.94:
        version = rng.choice([0, 2, 65535])
        what = f"version := {version}"
    elif choice < 0.97:
        body = pbc_pack(magic, version, sections)
        start = PBC_HEADER.size + sum(PBC_SECTION.size + len(p) for _, p in sections[:i]) + 4
        lie = rng.choice([0, len(payload) + 1, 2**63, 2**64 - 1])
        body = body[:start] + struct.pack("<Q", lie) + body[start + 8 :]
        import hashlib

        head = PBC_HEADER.pack(magic, version, 0, len(sections), hashlib.sha256(body[48:]).digest())
        return head + body[48:], f"section {tag!r} length := {lie}"
    else:
        new, what = mutate_bytes(payload, rng)
        sections[i] = (tag, new)
    return pbc_pack(
        magic, version, sections, checksum=checksum
    ), f"pbc {tag.decode(errors='replace')}: {what}" + ("" if checksum else " (stale checksum)")


def edit_parallel(lists: list[list[Any]], rng: random.Random) -> str:
    """Drop, duplicate or swap entry i of parallel lists alike (instructions and their debug
    entries), so that the file stays consistent in count and the reader looks further."""
    n = len(lists[0])
    i, j = rng.randrange(n), rng.randrange(n)
    op = rng.choice(["drop", "duplicate", "swap"])
    for entries in lists:
        if len(entries) != n:
            continue
        if op == "drop":
            del entries[i]
        elif op == "duplicate":
            entries.insert(i, entries[i])
        else:
            entries[i], entries[j] = entries[j], entries[i]
    return f"{op} instruction {i}" + (f" and {j}" if op == "swap" else "")


def mutate_program(
    payload: bytes, rng: random.Random, debug: list[Any] | None = None
) -> tuple[bytes, str]:
    """The instruction stream: one field of one instruction set to an odd value, instructions
    dropped, duplicated or swapped (with their debug entries), or bytes."""
    from primec.backends.isa import decode_program, encode_program

    try:
        instrs = list(decode_program(payload))
    except Exception:
        return mutate_bytes(payload, rng)
    if not instrs or rng.random() < 0.15:
        return mutate_bytes(payload, rng)
    if rng.random() < 0.25:
        what = edit_parallel([instrs] + ([debug] if debug is not None else []), rng)
        return encode_program(tuple(instrs)), what
    i = rng.randrange(len(instrs))
    instr = instrs[i]
    fields = dataclasses.fields(instr)
    if not fields:
        return mutate_bytes(payload, rng)
    f = rng.choice(fields)
    new = odd_field_value(getattr(instr, f.name), rng)
    try:
        instrs[i] = dataclasses.replace(instr, **{f.name: new})
        encoded = encode_program(tuple(instrs))
    except Exception:
        return mutate_bytes(payload, rng)
    return encoded, f"instr {i} {type(instr).__name__}.{f.name} := {_show(new)}"


def mutate_schedule(manifest: dict[str, Any], rng: random.Random) -> str:
    """A macro file's schedule: instruction records edited like the bytecode's program."""
    schedule, debug = manifest.get("schedule"), manifest.get("debug")
    if not isinstance(schedule, list) or not schedule:
        raise ValueError("no schedule")
    if rng.random() < 0.3:
        return "schedule: " + edit_parallel(
            [schedule] + ([debug] if isinstance(debug, list) else []), rng
        )
    i = rng.randrange(len(schedule))
    record = schedule[i]
    keys = [k for k in record if k != "op"] if isinstance(record, dict) else []
    if not keys:
        raise ValueError("no fields")
    key = rng.choice(keys)
    old = record[key]
    new = odd_field_value(tuple(old) if isinstance(old, list) else old, rng)
    record[key] = list(new) if isinstance(new, tuple) else new
    return f"schedule {i} {record.get('op')}.{key} := {_show(new)}"


def odd_field_value(old: Any, rng: random.Random) -> Any:
    """An odd value of the same type as `old` (what a hostile encoder can put in a field)."""
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return rng.choice([-1, 0, old + 1, old - 1, 2**31, 2**63 - 1, -(2**63), 10**6, 1000])
    if isinstance(old, float):
        return rng.choice([math.nan, math.inf, -math.inf, -old, 0.0, 1e308, 10.5, -1.0])
    if isinstance(old, str):
        return rng.choice(["", "missing", old + "x", "../" + old, "é"])
    if isinstance(old, tuple):
        if old and rng.random() < 0.6:
            k = rng.randrange(len(old))
            return old[:k] + (odd_field_value(old[k], rng),) + old[k + 1 :]
        return rng.choice([(), old + old[:1], old[:-1], (0,) * 8])
    return old


def mutate_tensors(payload: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A tensor section: a tensor's name, dtype code, dims, data or the count."""
    try:
        records = tensor_records(payload)
    except Exception:
        return mutate_bytes(payload, rng)
    if not records:
        return mutate_bytes(payload, rng)
    choice = rng.random()
    i = rng.randrange(len(records))
    rec = records[i]
    if choice < 0.3:
        dtype = {1: "<f4", 2: "<f8", 3: "<i8", 4: "|b1", 5: "<i4", 6: "|u1"}[rec[1]]
        array = (
            np.frombuffer(rec[3], dtype=dtype).reshape(rec[2]) if rec[1] in range(1, 7) else None
        )
        if array is None:
            return mutate_bytes(payload, rng)
        new, what = mutate_array(array, rng)
        codes = {"<f4": 1, "<f8": 2, "<i8": 3, "|b1": 4, "<i4": 5, "|u1": 6}
        descr = np.lib.format.dtype_to_descr(new.dtype) if new.dtype.names is None else "?"
        code = codes.get(descr, rng.choice([1, 2, 3]))
        if descr not in codes:
            new = np.zeros(new.shape, {1: "<f4", 2: "<f8", 3: "<i8"}[code])
        records[i] = [rec[0], code, list(new.shape), np.ascontiguousarray(new).tobytes()]
        return tensor_payload(records), f"tensor {rec[0]!r}: {what}"
    if choice < 0.5:
        rec[2] = odd_dims(rec[2], rng)
        return tensor_payload(records), f"tensor {rec[0]!r} dims := {rec[2]}"
    if choice < 0.6:
        rec[1] = rng.choice([0, 7, 255, 1, 2, 3, 4, 5, 6])
        return tensor_payload(records), f"tensor {rec[0]!r} dtype code := {rec[1]}"
    if choice < 0.75:
        name = rng.choice(
            [
                b"",
                b"m0.a0",
                b"m99.a0",
                b"m-1.a0",
                b"m" + b"9" * 30 + b".a0",
                b"mx",
                b"\xff\xfe",
                rec[0] + b"x",
            ]
        )
        rec[0] = name
        return tensor_payload(records), f"tensor name := {name!r}"
    if choice < 0.85:
        records.insert(i, list(rec))
        return tensor_payload(records), f"duplicate tensor {rec[0]!r}"
    if choice < 0.9:
        del records[i]
        return tensor_payload(records), f"drop tensor {rec[0]!r}"
    count = rng.choice([0, len(records) + 1, 2**32 - 1])
    return tensor_payload(records, count), f"tensor count := {count}"


def odd_dims(dims: list[int], rng: random.Random) -> list[int]:
    """Dims that lie: huge, zero, another rank."""
    return rng.choice(
        [
            [2**62],
            [2**32, 2**32],
            [0],
            [*dims, 1],
            dims[1:],
            [d + 1 for d in dims],
            [2**64 - 1] + dims[1:],
            [1] * 255,
            [],
        ]
    )


def mutate_pmac_member(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A macro-file member: the manifest's schedule or any JSON value, arrays as .npy."""
    if name == "manifest.json" and rng.random() < 0.35:
        try:
            manifest = json.loads(data)
            what = mutate_schedule(manifest, rng)
            return json_text(manifest).encode(), what
        except (ValueError, TypeError, AttributeError, KeyError):
            pass
    return default_member_mutator(name, data, rng)


def fix_pmac_checksums(members: list[Member]) -> None:
    """Recompute the manifest's checksums, so the reader looks past them."""
    import hashlib

    for m in members:
        if m.name == "manifest.json":
            try:
                manifest = json.loads(m.data)
                sums = manifest["checksums"]
                for other in members:
                    if other.name in sums:
                        sums[other.name] = hashlib.sha256(other.data).hexdigest()
                m.data = json_text(manifest).encode()
            except Exception:
                pass
            return


def mutate_pmac(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A macro file: a member (checksums then fixed, mostly), or the zip itself."""
    return mutate_zip(data, rng, mutate_pmac_member, fix_pmac_checksums)


def mutate_npz_arrays(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """An .npz re-made with one array made odd, an array dropped, or an extra one."""
    try:
        members = zip_members(data)
        if any(m.raw for m in members):
            raise ValueError("holds a bomb")
        arrays = {m.name: read_npy(m.data) for m in members}
    except Exception:
        return mutate_zip(data, rng)
    if not arrays:
        return mutate_zip(data, rng)
    names = list(arrays)
    name = rng.choice(names)
    choice = rng.random()
    if choice < 0.7:
        arrays[name], what = mutate_array(arrays[name], rng)
    elif choice < 0.8:
        del arrays[name]
        what = "dropped"
    elif choice < 0.9:
        arrays["extra.npy"] = np.zeros(rng.choice([1, 1000]))
        what = "extra array"
    else:
        arrays[name] = arrays[rng.choice(names)]
        what = "replaced by another array"
    return write_zip(
        [Member(k, npy_of(v), 8) for k, v in arrays.items()], align=0
    ), f"npz {name}: {what}"


def mutate_pir(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """IR text: lines deleted, duplicated or swapped; numbers, names, ops and types changed."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    choice = rng.random()
    i = rng.randrange(len(lines))
    if choice < 0.12:
        del lines[i]
        return "\n".join(lines).encode(), f"pir delete line {i + 1}"
    if choice < 0.18:
        lines.insert(i, lines[i])
        return "\n".join(lines).encode(), f"pir duplicate line {i + 1}"
    if choice < 0.23:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines).encode(), f"pir swap lines {i + 1}, {j + 1}"
    numbers = list(re.finditer(r"(?<![%#@\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text))
    if choice < 0.55 and numbers:
        m = rng.choice(numbers)
        new = rng.choice(
            [
                "10.5",
                "0",
                "-1",
                "99999999999999999999999",
                "1e400",
                "nan",
                "inf",
                "-inf",
                HUGE_DIGITS,
                "0.0",
                "2147483648",
                "-0",
            ]
        )
        return (
            text[: m.start()] + new + text[m.end() :]
        ).encode(), f"pir number at {m.start()} {m.group()} -> {_show(new)}"
    if choice < 0.63:
        m = rng.choice(list(re.finditer(r"\[[^\[\]]*\]", text)) or [None])
        if m is not None:
            deep = "[" * 5000 + "1" + "]" * 5000
            return (
                text[: m.start()] + deep + text[m.end() :]
            ).encode(), f"pir deep nesting at {m.start()}"
    if choice < 0.72:
        names = sorted(set(re.findall(r"%[A-Za-z0-9_.\-]+", text)))
        if len(names) > 1:
            a, b = rng.sample(names, 2)
            occurrences = [
                m.start() for m in re.finditer(re.escape(a) + r"(?![A-Za-z0-9_.\-])", text)
            ]
            k = rng.choice(occurrences)
            return (text[:k] + b + text[k + len(a) :]).encode(), f"pir {a} at {k} -> {b}"
    if choice < 0.8:
        from primec.core.ops import OPS

        ops = list(re.finditer(r"= ([a-z_0-9]+)\(", text))
        if ops:
            m = rng.choice(ops)
            new = rng.choice([*sorted(OPS), "nope"])
            return (
                text[: m.start(1)] + new + text[m.end(1) :]
            ).encode(), f"pir op {m.group(1)} -> {new}"
    if choice < 0.86:
        types = list(re.finditer(r"\b(f32|f64|i64|i32|b1|f16)\b", text))
        if types:
            m = rng.choice(types)
            new = rng.choice(["f32", "f64", "i64", "b1", "f16", "u8", "x"])
            return (
                text[: m.start()] + new + text[m.end() :]
            ).encode(), f"pir type {m.group()} -> {new}"
    if choice < 0.92:
        k = rng.randrange(len(text) + 1)
        junk = rng.choice(
            [
                "{",
                "}",
                "(",
                ")",
                "[",
                "]",
                ",",
                "=",
                "<-",
                "->",
                ":",
                '"',
                "%",
                "@",
                "#",
                "\\",
                "\x00",
                "é",
                "//",
                "\t",
                "\n",
                ' loc("x")',
            ]
        )
        return (text[:k] + junk + text[k:]).encode(), f"pir insert {junk!r} at {k}"
    return mutate_bytes(data, rng)


def mutate_target(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A target TOML: a value replaced, retyped or dropped (re-serialised), or the text damaged."""
    import tomllib

    if rng.random() < 0.6:
        try:
            doc = tomllib.loads(data.decode())
        except Exception:
            data, what = mutate_pir(data, rng)
            return data, "text" + what.removeprefix("pir")
        tables = [k for k, v in doc.items() if isinstance(v, dict) and v]
        if tables:
            table = rng.choice(tables)
            key = rng.choice(list(doc[table]))
            choice = rng.random()
            if choice < 0.15:
                del doc[table][key]
                return toml_text(doc).encode(), f"toml drop {table}.{key}"
            if choice < 0.2:
                del doc[table]
                return toml_text(doc).encode(), f"toml drop [{table}]"
            old = doc[table][key]
            if isinstance(old, (int, float)) and not isinstance(old, bool) and choice < 0.6:
                new = rng.choice(
                    [
                        0,
                        -1,
                        0.0,
                        -old,
                        old * 1000,
                        old / 1000,
                        2**63 - 1,
                        10**30,
                        math.nan,
                        math.inf,
                        1e-300,
                        10.5,
                        1,
                        2,
                        3,
                        65536,
                    ]
                )
            else:
                new = rng.choice(
                    [v for v in INTERESTING_VALUES if v is not None]
                    + ["differential", "normal", "bit_serial", "uniform"]
                )
            doc[table][key] = new
            return toml_text(doc).encode(), f"toml {table}.{key} := {_show(new)}"
    data, what = mutate_pir(data, rng)
    return data, "text" + what.removeprefix("pir")


def mutate_onnx(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """An ONNX model: attributes, initializer dims and data, nodes, metadata, opset, or bytes."""
    import onnx

    if rng.random() < 0.2:
        return mutate_bytes(data, rng)
    try:
        model = onnx.load_from_string(data)
    except Exception:
        return mutate_bytes(data, rng)
    graph = model.graph
    choice = rng.random()
    what = "nothing"
    if choice < 0.25 and graph.node:
        node = rng.choice(list(graph.node))
        if node.attribute:
            attr = rng.choice(list(node.attribute))
            if attr.ints:
                k = rng.randrange(len(attr.ints))
                attr.ints[k] = rng.choice([0, -1, 2**31, 2**62, 10**6])
                what = f"node {node.name} {attr.name}[{k}] := {attr.ints[k]}"
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([math.nan, math.inf, -1.0, 0.0, 1e30])
                what = f"node {node.name} {attr.name} := {attr.f}"
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([0, -1, 2**31, 2**62, 7])
                what = f"node {node.name} {attr.name} := {attr.i}"
            elif attr.type == onnx.AttributeProto.STRING:
                attr.s = rng.choice([b"", b"nope", b"\xff", b"subtract", b"zero"])
                what = f"node {node.name} {attr.name} := {attr.s!r}"
            else:
                node.attribute.remove(attr)
                what = f"node {node.name} drop attribute {attr.name}"
        else:
            node.op_type = rng.choice(["Relu", "Conv", "Nope", "Gemm", "MaxPool", "LIF"])
            what = f"node {node.name} op := {node.op_type}"
    elif choice < 0.45 and graph.initializer:
        init = rng.choice(list(graph.initializer))
        sub = rng.random()
        if sub < 0.4 and init.dims:
            k = rng.randrange(len(init.dims))
            init.dims[k] = rng.choice([0, -1, 2**40, init.dims[k] + 1])
            what = f"initializer {init.name} dims[{k}] := {init.dims[k]}"
        elif sub < 0.6:
            init.data_location = onnx.TensorProto.EXTERNAL
            ext = init.external_data.add()
            ext.key, ext.value = "location", rng.choice(["../secret", "/etc/passwd", "weights.bin"])
            what = f"initializer {init.name} external"
        elif sub < 0.8 and init.raw_data:
            init.raw_data = init.raw_data[: rng.randrange(len(init.raw_data))]
            what = f"initializer {init.name} raw_data truncated"
        else:
            arr = onnx.numpy_helper.to_array(init)
            new, what2 = mutate_array(arr, rng)
            try:
                init.CopyFrom(onnx.numpy_helper.from_array(new, init.name))
                what = f"initializer {init.name}: {what2}"
            except Exception:
                init.data_type = rng.choice([0, 8, 16, 99])
                what = f"initializer {init.name} data_type := {init.data_type}"
    elif choice < 0.55 and graph.node:
        k = rng.randrange(len(graph.node))
        del graph.node[k]
        what = f"drop node {k}"
    elif choice < 0.65 and model.metadata_props:
        prop = rng.choice(list(model.metadata_props))
        try:
            value, what2 = mutate_json(json.loads(prop.value), rng)
            prop.value = json_text(value)
        except ValueError:
            prop.value, what2 = rng.choice(["", "{", "null", "1e999"]), "junk"
        what = f"metadata {prop.key}: {what2}"
    elif choice < 0.72:
        for imp in model.opset_import:
            imp.version = rng.choice([0, 1, 99, -1])
        what = "opset versions changed"
    elif choice < 0.8 and (graph.input or graph.output):
        vi = rng.choice(list(graph.input) + list(graph.output))
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = rng.choice(list(dims))
            d.dim_value = rng.choice([0, 1, 2**40, 3])
            what = f"value {vi.name} dim := {d.dim_value}"
    elif choice < 0.88 and graph.node:
        node = rng.choice(list(graph.node))
        if node.input:
            k = rng.randrange(len(node.input))
            node.input[k] = rng.choice(
                ["", "missing", *[n.output[0] for n in graph.node if n.output]]
            )
            what = f"node {node.name} input[{k}] := {node.input[k]!r}"
    elif choice < 0.94:
        graph.node.extend([graph.node[0]] if graph.node else [])
        what = "duplicate first node"
    else:
        model.ir_version = rng.choice([0, 1, 99])
        what = f"ir_version := {model.ir_version}"
    try:
        return model.SerializeToString(), "onnx " + what
    except Exception:
        return mutate_bytes(data, rng)


def mutate_nir(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One HDF5 dataset of a NIR file (a parameter, a shape, a node type, the edges) made odd:
    bad values, dtype or shape for numbers (`mutate_array`), another or an unknown node type."""
    import h5py

    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        name = rng.choice(sorted(names))
        old = f[name][()]
        if name.endswith("/type"):
            new: Any = rng.choice(["LIF", "CubaLIF", "Scale", "Delay", "Output", "NoSuchNode", ""])
            what = f"type -> {new!r}"
        elif isinstance(old, bytes) or np.asarray(old).dtype == object:
            new, what = np.asarray([[b"input", b"nowhere"]], dtype=object), "edges -> dangling"
        else:
            new, what = mutate_array(np.asarray(old), rng)
        del f[name]
        f.create_dataset(
            name, data=new, dtype=h5py.string_dtype() if isinstance(new, str) else None
        )
    return buf.getvalue(), f"nir: {name} {what}"


def mutate_torch_member(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A torch archive member: JSON, a nested archive, the pickle, a storage's values, bytes."""
    if name.endswith(".json") or name.endswith("step_facts") or "extra/" in name:
        try:
            value, what = mutate_json(json.loads(data), rng)
            return json_text(value).encode(), what
        except ValueError:
            pass
    if name.endswith(".pkl") and rng.random() < 0.3:
        return payload_pickle(rng), "payload pickle (opens the canary file)"
    if name.endswith("model.pt") and data[:2] == b"PK":
        return mutate_zip(data, rng, mutate_torch_member)
    if (
        ("/data/" in name or "weight_" in name or "tensor_" in name)
        and len(data) % 4 == 0
        and data
        and rng.random() < 0.5
    ):
        values = np.frombuffer(data, "<f4").copy()
        value = rng.choice([np.nan, np.inf, -np.inf, 3e38, -1e38, 0.0])
        n = rng.choice([1, values.size])
        values[[rng.randrange(values.size) for _ in range(n)] if n == 1 else slice(None)] = value
        return values.tobytes(), f"storage values := {value}"
    return mutate_bytes(data, rng)


def payload_pickle(rng: random.Random) -> bytes:
    """A pickle that creates the canary file if anything unpickles it without restrictions."""
    return pickle.dumps(_Opens(CANARY), protocol=rng.choice([2, 4]))


class _Opens:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def mutate_torch(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A torch zip archive (.pt, .pt2, TorchScript)."""
    return mutate_zip(data, rng, mutate_torch_member)


# ---------------------------------------------------------------------------------------------
# seed corpus


@dataclass
class Seed:
    """One seed: its name, bytes, and what a case needs beside them."""

    name: str
    data: bytes
    extra: dict[str, Any] = field(default_factory=dict)


def _quiet(_: str) -> None:
    pass


class Corpus:
    """Seeds of every format, made by code on first use and kept in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seeds: dict[str, list[Seed]] = {}

    def seeds(self, fmt: str) -> list[Seed]:
        """The seeds of a format."""
        if fmt not in self._seeds:
            self._seeds[fmt] = getattr(self, "_seeds_" + fmt.replace("-", "_"))()
        return self._seeds[fmt]

    # --- the tiny target and compiled artefacts ----------------------------------------------

    @functools.cached_property
    def target_file(self) -> Path:
        """A small target (32 x 32 arrays, 8 macros) so artefacts and simulations stay tiny."""
        text = _default_target_file().read_text()
        for old, new in (
            ('name = "prime-40nm-256k"', 'name = "fuzz-tiny"'),
            ("rows = 512", "rows = 32"),
            ("cols = 512", "cols = 32"),
            ("macros = 64", "macros = 8"),
        ):
            text = text.replace(old, new, 1)
        path = self.folder / "fuzz-tiny.toml"
        path.write_text(text)
        return path

    @functools.cached_property
    def target(self) -> Any:
        from primec.hardware.target import load_target_file

        return load_target_file(self.target_file)

    @functools.cached_property
    def graphs(self) -> dict[str, Path]:
        """The tiny IR models as .pir + side .npz."""
        import ir_zoo

        from primec.core.text import save_graph

        paths = {}
        for name in ("tiny_conv", "tiny_mlp", "tiny_deconv"):
            path = self.folder / f"{name}.pir"
            save_graph(getattr(ir_zoo, name)(), path)
            paths[name] = path
        return paths

    @functools.cached_property
    def programs(self) -> dict[str, Any]:
        """The tiny models compiled for the tiny target (one with an early-exit table)."""
        from primec.pipeline import BackendOptions, ExitOptions, compile_model

        programs = {}
        exits = {
            "tiny_conv": ExitOptions(),
            "tiny_mlp": ExitOptions("max-softmax", 0.6, 2.0),
            "tiny_deconv": ExitOptions(),
        }
        for name, path in self.graphs.items():
            backend = BackendOptions(exits=exits[name])
            compiled = compile_model(path, target=self.target, log=_quiet, backend=backend)
            programs[name] = compiled.program
        return programs

    def input_for(self, name: str) -> bytes:
        """A valid input .npz (2 samples, labels) for a tiny model."""
        program = self.programs[name]
        rng = np.random.default_rng(0)
        x = rng.integers(0, 2, (2, program.timesteps, *program.input_shape)).astype(np.float32)
        classes = int(np.prod(program.buffers[program.readout]))
        return npz_of({"x": x, "y": np.arange(2, dtype=np.int64) % classes})

    def _artefact_seeds(self, kind: str) -> list[Seed]:
        from primec.backends import bytecode, macrofile

        encode = bytecode.encode if kind == "pbc" else macrofile.encode
        return [
            Seed(f"{name}.{kind}", encode(program), {"input": self.input_for(name)})
            for name, program in self.programs.items()
        ]

    def _seeds_pbc(self) -> list[Seed]:
        return self._artefact_seeds("pbc")

    def _seeds_pmac(self) -> list[Seed]:
        return self._artefact_seeds("pmac")

    def _seeds_input(self) -> list[Seed]:
        from primec.backends import bytecode

        seeds = []
        for name, program in self.programs.items():
            path = self.folder / f"{name}.pbc"
            path.write_bytes(bytecode.encode(program))
            seeds.append(Seed(f"{name}.input.npz", self.input_for(name), {"artefact": path}))
        # The same with a uint8 x and without labels.
        program = self.programs["tiny_conv"]
        x = np.ones((1, program.timesteps, *program.input_shape), np.uint8)
        seeds.append(
            Seed(
                "tiny_conv.u8.input.npz",
                npz_of({"x": x}),
                {"artefact": self.folder / "tiny_conv.pbc"},
            )
        )
        return seeds

    def _seeds_pir(self) -> list[Seed]:
        return [
            Seed(path.name, path.read_bytes(), {"side": path.with_suffix(".npz").read_bytes()})
            for path in self.graphs.values()
        ]

    def _seeds_pir_weights(self) -> list[Seed]:
        return [
            Seed(
                path.with_suffix(".npz").name,
                path.with_suffix(".npz").read_bytes(),
                {"text": path.read_bytes()},
            )
            for path in self.graphs.values()
        ]

    # --- model files ---------------------------------------------------------------------------

    @functools.cached_property
    def net(self) -> Any:
        import snn_models

        return snn_models.mlp_leaky().eval()

    def _seeds_pt(self) -> list[Seed]:
        import torch

        state = self.net.state_dict()
        seeds = []
        for name, content, kwargs in (
            ("state_dict.pt", state, {}),
            ("checkpoint.pt", {"state_dict": state, "epoch": 3}, {}),
            ("legacy.pt", state, {"_use_new_zipfile_serialization": False}),
            ("float64.pt", {k: v.double() for k, v in state.items()}, {}),
        ):
            buffer = io.BytesIO()
            torch.save(content, buffer, **kwargs)
            seeds.append(Seed(name, buffer.getvalue(), {"arch": ARCH}))
        return seeds

    def _seeds_pt2(self) -> list[Seed]:
        import primec.nn as pnn

        path = self.folder / "step.pt2"
        if not path.exists():
            pnn.save_step(self.net, path)
        return [Seed("step.pt2", path.read_bytes())]

    def _seeds_torchscript(self) -> list[Seed]:
        import snn_models
        import torch

        path = self.folder / "traced.pt"
        if not path.exists():
            with torch.no_grad():
                example = snn_models.example_input(self.net, batch=1, steps=2)
                torch.jit.trace(self.net, example, check_trace=False).save(str(path))
        return [Seed("traced.pt", path.read_bytes(), {"arch": ARCH})]

    def _seeds_onnx(self) -> list[Seed]:
        import snn_models

        return [Seed("step.onnx", snn_models.onnx_of(self.net).SerializeToString())]

    def _seeds_nir(self) -> list[Seed]:
        """A NIR graph primec writes (every op NIR expresses, from `tests/test_nir.py`) and one
        of the nodes only NIR has (SumPool2d, Scale, CubaLIF, CubaLI), both at --dt NIR_DT."""
        import nir
        import test_nir

        from primec.frontend.nir_export import write_nir
        from primec.frontend.nir_io import NirOptions

        written = self.folder / "expressible.nir"
        graph = test_nir.imported(test_nir.every_expressible_op())
        write_nir(graph, NirOptions(float(NIR_DT)), written)
        cuba = self.folder / "cuba.nir"
        nodes = _nir_cuba_nodes(nir, float(NIR_DT))
        names = list(nodes)
        edges = list(zip(names, names[1:], strict=False))
        nir.write(str(cuba), nir.NIRGraph(nodes=nodes, edges=edges))
        return [Seed(p.name, p.read_bytes()) for p in (written, cuba)]

    def _seeds_devicemap(self) -> list[Seed]:
        from primec.hardware.devicemap import save, synth

        seeds = []
        for macros in (1, 2):
            path = self.folder / f"chip{macros}.npz"
            save(synth(self.target, 7, macros), path)
            seeds.append(Seed(path.name, path.read_bytes()))
        return seeds

    def _seeds_target(self) -> list[Seed]:
        return [
            Seed("fuzz-tiny.toml", self.target_file.read_bytes()),
            Seed(
                "prime-40nm-256k.toml",
                _default_target_file().read_bytes(),
            ),
        ]


def _nir_cuba_nodes(nir: Any, dt: float) -> dict[str, Any]:
    """input [2, 6, 6] -> conv -> LIF -> SumPool2d -> Scale -> CubaLIF -> flatten -> affine ->
    CubaLI, with unit synaptic gains at dt (w_in = tau_syn/dt)."""
    rng = np.random.default_rng(0)

    def full(value: float, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(shape, value)

    hidden, out = (2, 2, 2), (4,)
    lif = {"tau": 2 * dt, "r": 2.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0}
    syn = {"tau_syn": 2 * dt, "tau_mem": 4 * dt, "r": 4.0, "v_leak": 0.0, "w_in": 2.0}
    return {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(
            input_shape=(6, 6),
            weight=rng.standard_normal((2, 2, 3, 3)).astype(np.float32),
            bias=np.zeros(2, np.float32),
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
        ),
        "lif": nir.LIF(**{k: full(v, (2, 4, 4)) for k, v in lif.items()}),
        "pool": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "scale": nir.Scale(scale=full(0.5, hidden)),
        "cuba": nir.CubaLIF(
            **{k: full(v, hidden) for k, v in syn.items()},
            v_threshold=full(1.0, hidden),
            v_reset=full(0.0, hidden),
        ),
        "flat": nir.Flatten(input_type={"input": np.array(hidden)}, start_dim=0),
        "fc": nir.Affine(
            weight=rng.standard_normal((4, 8)).astype(np.float32), bias=np.zeros(4, np.float32)
        ),
        "li": nir.CubaLI(**{k: full(v, out) for k, v in syn.items()}),
        "output": nir.Output(output_type={"output": np.array(out)}),
    }


MUTATORS: dict[str, list[tuple[float, Callable[[bytes, random.Random], tuple[bytes, str]]]]] = {
    "pbc": [(0.8, mutate_pbc), (0.2, mutate_bytes)],
    "pmac": [(0.8, mutate_pmac), (0.2, mutate_bytes)],
    "input": [(0.5, mutate_npz_arrays), (0.35, mutate_zip), (0.15, mutate_bytes)],
    "pir": [(0.85, mutate_pir), (0.15, mutate_bytes)],
    "pir-weights": [(0.5, mutate_npz_arrays), (0.35, mutate_zip), (0.15, mutate_bytes)],
    "pt": [(0.75, mutate_torch), (0.25, mutate_bytes)],
    "pt2": [(0.85, mutate_torch), (0.15, mutate_bytes)],
    "torchscript": [(0.8, mutate_torch), (0.2, mutate_bytes)],
    "onnx": [(0.85, mutate_onnx), (0.15, mutate_bytes)],
    "devicemap": [(0.5, mutate_npz_arrays), (0.35, mutate_zip), (0.15, mutate_bytes)],
    "target": [(0.9, mutate_target), (0.1, mutate_bytes)],
    "nir": [(0.8, mutate_nir), (0.2, mutate_bytes)],
}
SUFFIX = {
    "pbc": ".pbc",
    "pmac": ".pmac",
    "input": ".npz",
    "pir": ".pir",
    "pir-weights": ".npz",
    "pt": ".pt",
    "pt2": ".pt2",
    "torchscript": ".pt",
    "onnx": ".onnx",
    "devicemap": ".npz",
    "target": ".toml",
    "nir": ".nir",
}


def make_case(corpus: Corpus, fmt: str, index: int, seed: int = 0) -> tuple[Seed, bytes, list[str]]:
    """Case `index` of a format: a seed and its mutated bytes (the same for the same arguments)."""
    rng = random.Random(f"primec-fuzz:{seed}:{fmt}:{index}")
    seeds = corpus.seeds(fmt)
    base = seeds[rng.randrange(len(seeds))]
    data = base.data
    mutations = []
    weights = [w for w, _ in MUTATORS[fmt]]
    for _ in range(rng.choices([1, 2, 3], [0.7, 0.2, 0.1])[0]):
        (mutator,) = rng.choices([m for _, m in MUTATORS[fmt]], weights)
        try:
            data, what = mutator(data, rng)
        except Exception:  # a structure an earlier mutation broke: damage bytes instead
            data, what = mutate_bytes(data, rng)
        mutations.append(what)
    return base, data, mutations


# ---------------------------------------------------------------------------------------------
# running one case


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `CaseTimeout` in the main thread after `seconds` (no-op off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case ran past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Stage:
    """The outcome of one CLI command of a case."""

    def __init__(self, name: str, exit_code: int, output: str, exc_info: Any) -> None:
        self.name = name
        self.exit_code = exit_code
        self.output = output
        self.exc_info = exc_info

    @property
    def crashed(self) -> bool:
        return self.exc_info is not None and not isinstance(self.exc_info[1], SystemExit)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.crashed

    def finding(self, kind: str) -> Finding:
        exc, tb = self.exc_info[1], self.exc_info[2]
        return Finding(
            kind,
            self.name,
            signature(exc, tb),
            f"{type(exc).__name__}: {str(exc)[:300]}",
            "".join(traceback.format_exception(type(exc), exc, tb))[-4000:],
        )

    def refusal(self) -> str:
        lines = [ln for ln in self.output.splitlines() if ln.lower().startswith("error")]
        lines = lines or self.output.strip().splitlines()[-1:] or [""]
        return lines[0][:200]


def cli(name: str, *args: object) -> _Stage:
    """Run one primec command in-process."""
    from click.testing import CliRunner

    from primec.cli import main

    _RUNNING[0] = name
    result = CliRunner().invoke(main, [str(a) for a in args])
    return _Stage(name, result.exit_code, result.output, result.exc_info)


_RUNNING = ["?"]  # the command a case is in (names the stage of a hang)


def memoized_export() -> Callable[..., Any]:
    """`export_step` that traces each model structure with `torch.export` once, then reuses the
    trace with the new weights (the trace of a step does not depend on weight values, and
    tracing costs ~0.15 s a case). A `CaseRunner` swaps it in only while a case runs;
    `bench/fuzz.py --no-memo` does without it."""
    import copy

    from primec.nn import export_step as original

    cache: dict[Any, Any] = {}

    @functools.wraps(original)
    def export_step(net: Any, batch: int = 2) -> Any:
        try:
            key = (_structure(net), batch)
            hash(key)
        except Exception:
            return original(net, batch)
        cached = cache.get(key)
        if cached is None or cached.constants:
            program = original(net, batch)
            if len(cache) < 32:
                cache[key] = program
            return program
        fresh = copy.deepcopy(net).float().eval()
        values = {f"net.{k}": v for k, v in fresh.state_dict(keep_vars=True).items()}
        if not set(cached.state_dict) <= set(values):
            return original(net, batch)
        program = copy.copy(cached)
        program._state_dict = {k: values[k] for k in cached.state_dict}
        return program

    return export_step


def _structure(net: Any) -> tuple:
    simple = (int, float, str, bool, tuple, type(None))
    modules = tuple(
        (
            name,
            type(m).__qualname__,
            tuple(sorted((k, repr(v)) for k, v in vars(m).items() if isinstance(v, simple))),
        )
        for name, m in net.named_modules()
    )
    tensors = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in net.state_dict().items())
    return modules, tensors


class CaseRunner:
    """Runs cases of any format in one folder (its own working directory while it runs)."""

    def __init__(self, corpus: Corpus, workdir: Path, memo: bool = True) -> None:
        self.corpus = corpus
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.export_step = memoized_export() if memo else None
        self._warm: dict[str, list[CaseResult]] = {}

    def warm(self, fmt: str) -> list[CaseResult]:
        """Run a format's seeds unchanged, without a time limit: imports and first traces happen
        here, not in a case's 20 s (once per runner and format)."""
        if fmt not in self._warm:
            self._warm[fmt] = [
                self.run_data(fmt, seed, seed.data, CaseResult(fmt, -1, seed.name, []), 3600)
                for seed in self.corpus.seeds(fmt)
            ]
        return self._warm[fmt]

    def run(self, fmt: str, index: int, seed: int = 0, limit: float = HANG_SECONDS) -> CaseResult:
        """Make and run one case; a foreign exception, hang or canary becomes a finding."""
        base, data, mutations = make_case(self.corpus, fmt, index, seed)
        return self.run_data(fmt, base, data, CaseResult(fmt, index, base.name, mutations), limit)

    def run_data(
        self, fmt: str, base: Seed, data: bytes, result: CaseResult, limit: float = HANG_SECONDS
    ) -> CaseResult:
        """Run given bytes as a file of `fmt` made from `base`."""
        started = time.perf_counter()
        rss_before = max_rss()
        _RUNNING[0] = "?"
        case_dir = self.workdir / f"case-{os.getpid()}"
        case_dir.mkdir(exist_ok=True)
        cwd = os.getcwd()
        try:
            os.chdir(case_dir)
            with time_limit(limit), self._memo():
                getattr(self, "_run_" + fmt.replace("-", "_"))(case_dir, base, data, result)
        except CaseTimeout as exc:
            stage = _RUNNING[0]
            result.finding = Finding("hang", stage, f"hang in {stage}", str(exc))
            if result.outcome != "accepted":
                result.outcome = "hang"
        finally:
            os.chdir(cwd)
            canary = (case_dir / CANARY).exists()
            for path in case_dir.iterdir():
                path.unlink()
        result.seconds = time.perf_counter() - started
        result.max_rss = max_rss()
        result.rss_growth = result.max_rss - rss_before
        if canary:
            result.finding = Finding(
                "canary",
                "/".join(result.stages),
                "code execution: canary file created",
                "a payload ran",
            )
        elif result.finding is None and result.seconds > limit:
            last = result.stages[-1] if result.stages else "?"
            result.finding = Finding(
                "hang", last, f"slow: past {limit:.0f} s by {last}", f"{result.seconds:.1f} s"
            )
        elif (
            result.finding is None and result.max_rss > MEMORY_LIMIT and result.max_rss > rss_before
        ):
            result.finding = Finding(
                "memory",
                "/".join(result.stages),
                f"peak RSS over 1 GiB by {result.stages[-1] if result.stages else '?'}",
                f"peak RSS {result.max_rss >> 20} MiB",
            )
        return result

    # --- helpers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _memo(self) -> Iterator[None]:
        """While a case runs: the memoized trace, and torch's logger quiet (it logs each damaged
        archive at length)."""
        import logging

        import primec.frontend as fe

        logger = logging.getLogger("torch")
        saved, level = fe.export_step, logger.level
        fe.export_step = self.export_step or saved
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            fe.export_step = saved
            logger.setLevel(level)

    def _stage(self, result: CaseResult, stage: _Stage, first: bool) -> bool:
        """Record a stage; True if it accepted. The first stage decides accepted/refused."""
        result.stages.append(stage.name)
        if stage.crashed:
            accepted = result.outcome == "accepted" and not first
            result.finding = stage.finding("accepted-then-crash" if accepted else "uncaught")
            if first:
                result.outcome = "crashed"
            return False
        if first:
            result.outcome = "accepted" if stage.ok else "refused"
            if not stage.ok:
                result.refusal = stage.refusal()
        return stage.ok

    def _simulate(
        self, result: CaseResult, artefact: Path, input_bytes: bytes | None, checked: bool = True
    ) -> None:
        """Simulate an accepted artefact, ideal and noisy; a refusal here is a finding too.

        The seed's input is tried first, then 0/1 spikes (valid for any input driver)."""
        from primec.backends import read_artefact

        from primec.errors import PrimecError

        if not checked:  # what compile writes, check must accept
            stage = cli("check compiled", "check", artefact)
            result.stages.append(stage.name)
            if stage.crashed:
                result.finding = stage.finding("accepted-then-crash")
                return
            if not stage.ok:
                message = "compile wrote an artefact check refuses: " + _norm(stage.refusal())
                result.finding = Finding(
                    "accepted-then-refused", stage.name, message, stage.output[-500:]
                )
                return
        try:
            program = read_artefact(artefact)
            shape, steps = tuple(program.input_shape), int(program.timesteps)
            classes = int(np.prod(program.buffers[program.readout], dtype=np.float64))
        except PrimecError as exc:
            result.finding = Finding(
                "accepted-then-refused",
                "load",
                "read_artefact refuses what check accepted",
                str(exc)[:500],
            )
            return
        except Exception as exc:
            result.finding = Finding(
                "accepted-then-crash", "load", signature(exc), f"{type(exc).__name__}: {exc}"[:300]
            )
            return
        if steps * float(np.prod(shape, dtype=np.float64)) > 1_000_000:
            result.stages.append("simulate skipped (input too large)")
            return
        x = (np.random.default_rng(0).random((2, steps, *shape)) < 0.5).astype(np.float32)
        arrays = {"x": x}
        if 1 <= classes < 2**31:
            arrays["y"] = np.arange(2, dtype=np.int64) % classes
        candidates = ([input_bytes] if input_bytes is not None else []) + [npz_of(arrays)]
        data = artefact.parent / "in.npz"
        for name, extra in (("simulate", ()), ("simulate --noise", ("--noise", NOISE))):
            for k, candidate in enumerate(candidates):
                data.write_bytes(candidate)
                stage = cli(name, "simulate", artefact, "--input", data, *extra)
                if stage.ok or stage.crashed:
                    candidates = [candidate]
                    break
                if k + 1 < len(candidates):
                    continue
            result.stages.append(name)
            if stage.crashed:
                result.finding = stage.finding("accepted-then-crash")
                return
            if not stage.ok:
                message = "check accepts, simulate refuses: " + _norm(stage.refusal())
                result.finding = Finding(
                    "accepted-then-refused", name, message, stage.output[-500:]
                )
                return

    def _artefact(
        self, folder: Path, suffix: str, data: bytes, base: Seed, result: CaseResult
    ) -> None:
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        accepted = self._stage(result, cli("check", "check", path), True)
        if result.finding:
            return
        self._stage(result, cli("inspect", "inspect", path), False)  # a reader too
        if accepted and result.finding is None:
            self._simulate(result, path, base.extra.get("input"))

    # --- formats -----------------------------------------------------------------------------

    def _run_pbc(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._artefact(folder, ".pbc", data, base, result)

    def _run_pmac(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._artefact(folder, ".pmac", data, base, result)

    def _run_input(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "in.npz"
        path.write_bytes(data)
        stage = cli("simulate", "simulate", base.extra["artefact"], "--input", path)
        if self._stage(result, stage, True):
            self._stage(
                result,
                cli(
                    "simulate --noise",
                    "simulate",
                    base.extra["artefact"],
                    "--input",
                    path,
                    "--noise",
                    NOISE,
                ),
                False,
            )

    def _compile_and_simulate(
        self, folder: Path, result: CaseResult, source: Path, *flags: object
    ) -> None:
        out = folder / "out.pbc"
        stage = cli(
            "compile", "compile", source, "--emit", "bytecode", "-o", out, "--force", *flags
        )
        result.stages.append("compile")
        if stage.crashed:
            result.finding = stage.finding("accepted-then-crash")
            return
        if stage.ok:
            self._simulate(result, out, None, checked=False)

    def _run_pir(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "case.pir"
        path.write_bytes(data)
        path.with_suffix(".npz").write_bytes(base.extra["side"])
        self._read_ir(folder, path, result)

    def _run_pir_weights(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "case.pir"
        path.write_bytes(base.extra["text"])
        path.with_suffix(".npz").write_bytes(data)
        self._read_ir(folder, path, result)

    def _read_ir(self, folder: Path, path: Path, result: CaseResult) -> None:
        accepted = self._stage(result, cli("check", "check", path), True)
        if result.finding is None:
            self._stage(result, cli("inspect", "inspect", path), False)
        if accepted and result.finding is None:
            self._compile_and_simulate(folder, result, path, "--target", self.corpus.target_file)

    def _model(
        self, folder: Path, suffix: str, base: Seed, data: bytes, result: CaseResult
    ) -> None:
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        arch = ("--arch", base.extra["arch"]) if "arch" in base.extra else ()
        self._stage(result, cli("check", "check", path, *arch), True)

    def _run_pt(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._model(folder, ".pt", base, data, result)

    def _run_pt2(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._model(folder, ".pt2", base, data, result)

    def _run_torchscript(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._model(folder, ".pt", base, data, result)

    def _run_onnx(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        self._model(folder, ".onnx", base, data, result)
        if result.finding is None:
            self._stage(result, cli("inspect", "inspect", folder / "case.onnx"), False)

    def _run_nir(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "case.nir"
        path.write_bytes(data)
        if self._stage(result, cli("check", "check", path, "--dt", NIR_DT), True):
            self._compile_and_simulate(
                folder, result, path, "--dt", NIR_DT, "--target", self.corpus.target_file
            )

    def _run_devicemap(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "chip.npz"
        path.write_bytes(data)
        out = folder / "out.pbc"
        pir = self.corpus.graphs["tiny_mlp"]  # plain weights: placed on any healthy cells
        flags = ("--target", self.corpus.target_file, "--device-map", path)
        stage = cli("compile --device-map", "compile", pir, *flags, "--emit", "bytecode", "-o", out)
        if self._stage(result, stage, True):
            self._simulate(result, out, None, checked=False)

    def _run_target(self, folder: Path, base: Seed, data: bytes, result: CaseResult) -> None:
        path = folder / "target.toml"
        path.write_bytes(data)
        if self._stage(result, cli("targets --show", "targets", "--show", path), True):
            self._compile_and_simulate(
                folder, result, self.corpus.graphs["tiny_mlp"], "--target", path
            )


def _norm(text: str) -> str:
    """A refusal message without numbers and paths, to group findings."""
    text = re.sub(r"/[^\s:]+", "<path>", text)
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", text)[:160]


def replay(corpus: Corpus, fmt: str, index: int, seed: int, save: Path | None = None) -> CaseResult:
    """Run one case again (printing its traceback), optionally saving the case file."""
    base, data, mutations = make_case(corpus, fmt, index, seed)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        target = save / f"{fmt}-{index}{SUFFIX[fmt]}"
        target.write_bytes(data)
        print(f"wrote {target} (seed {base.name})")
    return CaseRunner(corpus, Path(os.environ.get("TMPDIR", "/tmp")) / "primec-fuzz-replay").run(
        fmt, index, seed
    )


def _default_target_file() -> Path:
    """The default target's file, as the target registry names it."""
    from primec.hardware.target import BUILTIN_TARGETS, DEFAULT_TARGET, TARGET_DIR

    return TARGET_DIR / BUILTIN_TARGETS[DEFAULT_TARGET]
