"""Atomic, deterministic file writing: temp file + rename, fixed zip timestamps."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from primec.errors import PrimecError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, so no partial file is left."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private; give it the mode an ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy encoding of one array."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of the members, in sorted order with fixed timestamps (byte-identical)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz (readable by `np.load`) holding the arrays."""
    return zip_bytes({f"{name}.npy": npy_bytes(array) for name, array in arrays.items()})


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write a deterministic .npz atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))


def check_outputs(
    outputs: dict[str, str | os.PathLike | None],
    inputs: list[str | os.PathLike | None],
    force: bool,
) -> None:
    """Refuse, before any work, outputs that would clobber an input, each other or a file.

    `outputs` maps each option (as the user typed it, e.g. `-o`) to its path. An output may not
    be an input or another output; its folder must exist; an existing file is replaced only
    with `force`, and a folder never.
    """
    given = {option: Path(path) for option, path in outputs.items() if path}
    sources = [Path(path) for path in inputs if path]
    seen: dict[Path, str] = {}
    for option, path in given.items():
        resolved = path.resolve()
        clash = next((s for s in sources if _same_path(s, path)), None)
        if clash is not None:
            raise PrimecError(
                f"{option} {path} is also an input of this command; it would be overwritten",
                hint="write the output to another file",
            )
        if resolved in seen:
            raise PrimecError(
                f"{seen[resolved]} and {option} name the same file {path}",
                hint="give each output its own file",
            )
        seen[resolved] = option
        _check_destination(option, path, force)


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_destination(option: str, path: Path, force: bool) -> None:
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise PrimecError(
            f"{option} {path}: the folder {folder} {what}", hint="create the folder first"
        )
    if path.is_dir():
        raise PrimecError(f"{option} {path} is a folder", hint="give a file name")
    if path.exists() and not force:
        raise PrimecError(
            f"{option} {path} already exists",
            hint="pass --force to replace it, or choose another name",
        )
