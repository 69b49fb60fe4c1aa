"""Read zip archives and .npy arrays from untrusted files as data, within stated limits.

Every zip primec reads (model archives, macro files, .npz inputs and side files) goes through
`UntrustedZip`: member names are checked (no duplicates, no absolute or `..` paths) and their
count and declared sizes are bounded *before* anything is decompressed, and a member is read in
chunks so that a falsified size cannot inflate it past its limit. `.npy` members are parsed by
`parse_npy`, which checks the declared shape against the bytes present before allocating and
never unpickles. Every failure is a `PrimecError` (or the caller's subclass) naming the member.
"""

from __future__ import annotations

import io
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from primec.errors import PrimecError

_MiB = 1 << 20
_CHUNK = _MiB
# What a damaged zip can raise from Python's zipfile and zlib: each means a corrupted file.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    OverflowError,
    UnicodeDecodeError,
)
# What numpy's header parser can raise on a damaged .npy header.
_NPY_ERRORS = (
    ValueError,
    TypeError,
    SyntaxError,
    tokenize.TokenError,
    OverflowError,
    MemoryError,
    RecursionError,
    EOFError,
    KeyError,
    UnicodeDecodeError,
)


def reader_error(what: str, hint: str) -> Callable[..., PrimecError]:
    """Errors for one kind of file: "cannot read WHAT: message", with a hint on what to do."""

    def error(message: str, where: str = "") -> PrimecError:
        return PrimecError(f"cannot read {what}: {message}", where=where, hint=hint)

    return error


@dataclass(frozen=True)
class Limits:
    """How much an archive may hold: member count, bytes per member, bytes in all."""

    members: int = 4096
    member_bytes: int = 512 * _MiB
    total_bytes: int = 1024 * _MiB


DEFAULT_LIMITS = Limits()


class UntrustedZip:
    """A zip archive opened for reading as data: names and sizes checked on open."""

    def __init__(
        self,
        source: str | Path | bytes,
        where: str,
        limits: Limits = DEFAULT_LIMITS,
        error: Callable[..., PrimecError] = PrimecError,
    ) -> None:
        self.where = where
        self.limits = limits
        self.error = error
        handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        try:
            self._zip = zipfile.ZipFile(handle)
            infos = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise self._fail(f"not a readable zip archive (corrupted or truncated): {exc}") from exc
        self._infos = _checked_infos(infos, limits, self._fail)

    def __enter__(self) -> UntrustedZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying file."""
        self._zip.close()

    @property
    def names(self) -> list[str]:
        """Member names in archive order (directories left out)."""
        return [name for name in self._infos if not name.endswith("/")]

    def size(self, name: str) -> int:
        """The declared uncompressed size of a member."""
        return self._infos[name].file_size

    def only(self, allowed: Callable[[str], bool], what: str) -> None:
        """Refuse the archive if any member is not `allowed`, before reading any of them."""
        extra = [name for name in self.names if not allowed(name)]
        if extra:
            raise self._fail(f"unexpected member {extra[0]!r}: {what}")

    def read(self, name: str) -> bytes:
        """One member's bytes, read in chunks and never past its declared size."""
        info = self._infos.get(name)
        if info is None:
            raise self._fail(f"member {name!r} is missing")
        chunks, total = [], 0
        try:
            with self._zip.open(info) as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > info.file_size:
                        raise self._fail(f"member {name!r} inflates past its declared size")
                    chunks.append(chunk)
        except _ZIP_ERRORS as exc:
            raise self._fail(f"member {name!r} is corrupted: {exc}") from exc
        return b"".join(chunks)

    def read_all(self) -> dict[str, bytes]:
        """Every member's bytes by name."""
        return {name: self.read(name) for name in self.names}

    def _fail(self, message: str) -> PrimecError:
        return self.error(message, where=self.where)


def _checked_infos(
    infos: Iterable[zipfile.ZipInfo], limits: Limits, fail: Callable[[str], PrimecError]
) -> dict[str, zipfile.ZipInfo]:
    by_name: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if name in by_name:
            # Two readers may pick different copies of a duplicated member (Python's zipfile
            # the last, torch's reader the first): an archive that says two things is refused.
            raise fail(f"member {name!r} appears twice; the archive is ambiguous")
        if not _safe_name(name):
            raise fail(f"member name {name!r} is not a plain relative path")
        if info.file_size > limits.member_bytes:
            raise fail(
                f"member {name!r} declares {info.file_size} bytes, over the limit of "
                f"{limits.member_bytes}"
            )
        total += info.file_size
        by_name[name] = info
    if len(by_name) > limits.members:
        raise fail(f"{len(by_name)} members, over the limit of {limits.members}")
    if total > limits.total_bytes:
        raise fail(f"members declare {total} bytes in all, over the limit of {limits.total_bytes}")
    return by_name


def _safe_name(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    path = PurePosixPath(name)
    return ".." not in path.parts and ":" not in path.parts[0]


def parse_npy(
    data: bytes,
    where: str,
    max_bytes: int = DEFAULT_LIMITS.member_bytes,
    error: Callable[..., PrimecError] = PrimecError,
) -> np.ndarray:
    """An array from .npy bytes: header checked against the data before allocating; no pickles."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(stream)
    except _NPY_ERRORS as exc:
        raise error(f"not a valid .npy array: {exc}", where=where) from exc
    if dtype.hasobject:
        raise error(
            "the array holds Python objects (a pickle); primec reads numbers only", where=where
        )
    count = 1
    for extent in shape:
        count *= int(extent)
    needed = count * dtype.itemsize
    present = len(data) - stream.tell()
    if needed > max_bytes:
        raise error(
            f"the array declares {needed} bytes, over the limit of {max_bytes}", where=where
        )
    if needed != present:
        raise error(
            f"the header declares shape {list(shape)} of {dtype} ({needed} bytes) "
            f"but {present} bytes follow",
            where=where,
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def read_npz(
    source: str | Path | bytes,
    where: str,
    keys: Iterable[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    error: Callable[..., PrimecError] = PrimecError,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz; with `keys`, any other member is refused before it is read."""
    with UntrustedZip(source, where, limits, error) as archive:
        names = archive.names
        if keys is not None:
            wanted = {f"{k}.npy" for k in keys}
            archive.only(
                wanted.__contains__, f"this file holds only {', '.join(sorted(keys)) or 'nothing'}"
            )
        bad = [name for name in names if not name.endswith(".npy")]
        if bad:
            raise error(f"member {bad[0]!r} is not a .npy array", where=where)
        return {
            name[: -len(".npy")]: parse_npy(
                archive.read(name), f"{where}: {name}", limits.member_bytes, error
            )
            for name in names
        }
