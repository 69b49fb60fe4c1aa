"""Where numba keeps the simulator's compiled kernels: in a folder named after a digest of the
simulator's sources, so that a kernel compiled from other sources is never loaded.

numba checks a cached kernel against its own source file only. But a kernel inlines or calls
functions of other files (`lifkernels` takes `certified._neuron`, `sparse` takes
`gauss.draw_row`), so after a change to one of those (a `git pull`, an edit) numba would load
the old machine code without a word, and the simulator would compute with the old operations. Keyed by the digest of every source of the package, a change to any of them
compiles every kernel afresh (once; a minute at most).

The folder is `primec-kernels-<digest>` under numba's cache folder when one is set
(`NUMBA_CACHE_DIR`), else under `__pycache__` beside the sources, else (a read-only install)
under the user's cache folder; where none of them is writable, numba's own locations. numba's
own setting is put back once the kernels are defined, so other numba code in the process caches
where it did. Folders of earlier sources stay until removed (about 5 MB each;
`make clean` removes those beside the sources).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numba

SOURCES = Path(__file__).resolve().parent
PREFIX = "primec-kernels-"


def source_digest(folder: Path = SOURCES) -> str:
    """A digest of the Python sources in `folder` (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def kernel_cache_dir(folder: Path = SOURCES) -> Path | None:
    """The kernels' cache folder for the sources in `folder`: under the first writable root,
    or None where there is none."""
    name = PREFIX + source_digest(folder)
    for root in (numba.config.CACHE_DIR, folder / "__pycache__", _user_cache()):
        path = Path(root).resolve() / name if root else None
        if path is not None and _writable(path):
            return path
    return None


def _user_cache() -> Path | None:
    """The user's cache folder for primec, or None where there is no home to put it in."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "primec"
    except RuntimeError:  # no home directory
        return None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


@contextmanager
def kernels_cached_by_source() -> Iterator[Path | None]:
    """numba's cache folder while the kernel modules are imported (a `cache=True` function
    takes its cache's place when it is defined), then numba's own setting again."""
    before = numba.config.CACHE_DIR
    folder = kernel_cache_dir()
    if folder is not None:
        numba.config.CACHE_DIR = str(folder)
    try:
        yield folder
    finally:
        numba.config.CACHE_DIR = before
