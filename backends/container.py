"""The binary container shared by primec's artefacts: magic, version, checksum, tagged sections.

Layout (little endian; `docs/isa.md`):

    offset  size  field
    0       8     magic (b"PRIMEPBC" for bytecode)
    8       2     format version
    10      2     reserved, 0
    12      4     number of sections
    16      32    sha256 of every byte from offset 48 to the end
    48      ...   sections: tag (4 ASCII bytes), payload length (u64), payload

Tensors are stored in a section as: count (u32), then per tensor: name (u16 length + UTF-8),
dtype code (u8), rank (u8), dims (u64 each), raw little-endian bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from primec.errors import PrimecError

HEADER = struct.Struct("<8sHHI32s")
SECTION = struct.Struct("<4sQ")
DTYPE_CODES = {
    np.dtype("<f4"): 1,
    np.dtype("<f8"): 2,
    np.dtype("<i8"): 3,
    np.dtype("bool"): 4,
    np.dtype("<i4"): 5,
    np.dtype("uint8"): 6,
}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


class ContainerError(PrimecError):
    """A file that is not a well-formed container of the expected kind and version."""


def read_bytes(path: str | Path, what: str) -> bytes:
    """A file's bytes, or one clear error naming what could not be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PrimecError(f"cannot read {what}: {exc}", where=str(path)) from exc


def pack(magic: bytes, version: int, sections: list[tuple[bytes, bytes]]) -> bytes:
    """Assemble a container from (tag, payload) sections."""
    body = b"".join(SECTION.pack(tag, len(payload)) + payload for tag, payload in sections)
    return HEADER.pack(magic, version, 0, len(sections), hashlib.sha256(body).digest()) + body


def unpack(data: bytes, magic: bytes, version: int, where: str) -> dict[bytes, bytes]:
    """Check magic, version and checksum; return the sections by tag."""
    kind = magic.decode()
    if len(data) < HEADER.size:
        raise ContainerError(
            f"file is truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header",
            where=where,
        )
    found_magic, found_version, reserved, count, checksum = HEADER.unpack_from(data)
    if found_magic != magic:
        raise ContainerError(
            f"not a {kind} file: magic is {found_magic!r}, expected {magic!r}", where=where
        )
    if found_version != version:
        raise ContainerError(
            f"{kind} format version {found_version} is not supported (this primec reads version {version})",
            where=where,
            hint="recompile the model with this primec",
        )
    if reserved:
        raise ContainerError(
            f"header bytes 10-11 (reserved) hold {reserved}, not 0: the file is corrupted",
            where=where,
            hint="recompile or copy it again",
        )
    body = data[HEADER.size :]
    if hashlib.sha256(body).digest() != checksum:
        raise ContainerError(
            "checksum mismatch: the file is corrupted or truncated",
            where=where,
            hint="recompile or copy it again",
        )
    return _sections(body, count, where)


def _sections(body: bytes, count: int, where: str) -> dict[bytes, bytes]:
    sections: dict[bytes, bytes] = {}
    offset = 0
    for _ in range(count):
        if offset + SECTION.size > len(body):
            raise ContainerError("section table runs past the end of the file", where=where)
        tag, length = SECTION.unpack_from(body, offset)
        offset += SECTION.size
        if tag in sections:
            raise ContainerError(f"section {tag!r} appears twice", where=where)
        if offset + length > len(body):
            raise ContainerError(f"section {tag!r} runs past the end of the file", where=where)
        sections[tag] = body[offset : offset + length]
        offset += length
    if offset != len(body):
        raise ContainerError(
            f"{len(body) - offset} stray bytes after the last section", where=where
        )
    return sections


def require(sections: dict[bytes, bytes], tag: bytes, where: str) -> bytes:
    """One section's payload, or an error naming the missing section."""
    if tag not in sections:
        raise ContainerError(f"section {tag.decode()} is missing", where=where)
    return sections[tag]


def json_bytes(value: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces) as UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Encode named tensors (in sorted name order) into a section payload."""
    parts = [struct.pack("<I", len(tensors))]
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        encoded = name.encode()
        parts.append(struct.pack("<H", len(encoded)) + encoded)
        parts.append(struct.pack("<BB", DTYPE_CODES[array.dtype], array.ndim))
        parts.append(struct.pack(f"<{array.ndim}Q", *array.shape))
        parts.append(array.tobytes())
    return b"".join(parts)


def read_tensors(payload: bytes, where: str) -> dict[str, np.ndarray]:
    """Decode a tensor section."""
    try:
        return _read_tensors(payload)
    except (struct.error, KeyError, ValueError, TypeError, OverflowError) as exc:
        raise ContainerError(f"malformed tensor section: {exc}", where=where) from exc


def _read_tensors(payload: bytes) -> dict[str, np.ndarray]:
    (count,), offset = struct.unpack_from("<I", payload), 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", payload, offset)
        name = payload[offset + 2 : offset + 2 + length].decode()
        offset += 2 + length
        code, rank = struct.unpack_from("<BB", payload, offset)
        dims = struct.unpack_from(f"<{rank}Q", payload, offset + 2)
        offset += 2 + 8 * rank
        dtype = CODE_DTYPES[code]
        size = math.prod(dims) * dtype.itemsize
        if name in tensors:
            raise ValueError(f"tensor {name!r} appears twice")
        if offset + size > len(payload):
            raise ValueError(f"tensor {name!r} runs past the end of its section")
        tensors[name] = np.frombuffer(
            payload, dtype=dtype, count=size // dtype.itemsize, offset=offset
        ).reshape(dims)
        offset += size
    if offset != len(payload):
        raise ValueError("stray bytes after the last tensor")
    return tensors
