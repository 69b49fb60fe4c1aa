"""primec's backends, registered explicitly here: name -> encoder, decoder, magic, suffix.

`primec compile --emit` offers these names; `primec simulate`, `check` and `inspect` read a file
by the magic its first bytes carry. No import side effects register anything elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from primec.backends import bytecode, macrofile
from primec.backends.container import read_bytes
from primec.backends.program import Program

from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes


@dataclass(frozen=True)
class Backend:
    """One artefact format: how to encode a program, decode it back, and recognise its file."""

    name: str
    encode: Callable[[Program], bytes]
    decode: Callable[[bytes, str], Program]
    magic: bytes
    suffix: str
    what: str


BACKENDS = {
    "bytecode": Backend(
        "bytecode", bytecode.encode, bytecode.decode, bytecode.MAGIC, ".pbc", "bytecode"
    ),
    "macro": Backend(
        "macro", macrofile.encode, macrofile.decode, macrofile.MAGIC_PREFIX, ".pmac", "macro file"
    ),
}


@dataclass(frozen=True)
class Encoded:
    """The bytes of each emitted artefact, as the `encode` stage leaves them."""

    artefacts: dict[str, bytes]

    def as_text(self) -> str:
        """One line per artefact, for `--print-after encode`."""
        lines = [
            f"{name}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}..."
            for name, data in self.artefacts.items()
        ]
        return "\n".join(lines) or "(no artefact: give --emit bytecode or --emit macro)"

    def dump(self, stem: Path) -> None:
        """Write each artefact as stem<suffix> (`--dump-dir`)."""
        for name, data in self.artefacts.items():
            atomic_write_bytes(stem.with_name(stem.name + BACKENDS[name].suffix), data)


def backend_of(head: bytes) -> Backend | None:
    """The backend whose magic starts `head`, if any."""
    return next((b for b in BACKENDS.values() if head.startswith(b.magic)), None)


def _head(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(8)
    except OSError as exc:
        raise PrimecError(f"cannot read artefact: {exc}", where=str(path)) from exc


def magic_kind(path: str | Path) -> str | None:
    """`pbc` or `pmac`: the artefact whose magic the file starts with (as `read_artefact`
    decodes it), else None."""
    backend = backend_of(_head(path))
    return None if backend is None else backend.suffix.lstrip(".")


def artefact_kind(path: str | Path) -> str | None:
    """`magic_kind`, where that makes the file an artefact: a macro file's magic is a zip's,
    which other files share (PyTorch's .pt and .pt2), so a zip counts only when named .pmac."""
    kind = magic_kind(path)
    return None if kind == "pmac" and Path(path).suffix != ".pmac" else kind


def read_artefact(path: str | Path) -> Program:
    """Read a .pbc or .pmac file into its program, by the file's magic (validated)."""
    head = _head(path)
    backend = backend_of(head)
    if backend is None:
        raise PrimecError(
            f"not a primec artefact (starts with {head!r})",
            where=str(path),
            hint="give a .pbc or .pmac file written by `primec compile --emit`",
        )
    return backend.decode(read_bytes(path, backend.what), str(path))
