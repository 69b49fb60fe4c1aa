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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private; give it the mode an ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(target, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unwritable(target: Path, exc: OSError) -> PrimecError:
    return PrimecError(
        f"cannot write {target}: {exc.strerror or exc}",
        hint="choose a folder you can write to, with room to spare",
    )


def check_writable_folder(option: str, folder: Path, named: Path | None = None) -> None:
    """Refuse, before any work, an output folder that cannot be made or written: its nearest
    existing ancestor must be a folder in which a file can be created (tried, then removed).
    `named`: what the option gave, where it is a file in that folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PrimecError(
            f"{option} {named or folder}: {existing} is a file, not a folder",
            hint="give a folder name",
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".primec-probe.", dir=existing)
    except OSError as exc:
        raise PrimecError(
            f"{option} {named or folder}: cannot write in {existing} ({exc.strerror or exc})",
            hint="choose a folder you can write to",
        ) from None
    os.close(fd)
    os.unlink(probe)


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
    folders = [(o, p) for o, p in outputs.items() if p and str(p).endswith(("/", os.sep))]
    if folders:
        option, path = folders[0]
        raise PrimecError(f"{option} {path} names a folder", hint="give a file name")
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
    check_writable_folder(option, folder, path)
    if path.exists() and not force:
        raise PrimecError(
            f"{option} {path} already exists",
            hint="pass --force to replace it, or choose another name",
        )
