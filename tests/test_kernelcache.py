"""The simulator's numba kernels are cached under a digest of the simulator's sources
(`backends/simulator/kernelcache.py`), so a change to any source file, not only a kernel's own,
never loads a kernel compiled from the old sources."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import primec.backends.simulator as simulator
from primec.backends.simulator import kernelcache


def cached_kernels() -> dict[str, str]:
    """Every `cache=True` numba function of the simulator's modules -> its cache folder."""
    found = {}
    for info in pkgutil.iter_modules(simulator.__path__):
        module = importlib.import_module(f"{simulator.__name__}.{info.name}")
        for name, value in vars(module).items():
            cache = getattr(value, "_cache", None)
            if isinstance(cache, numba.core.caching.FunctionCache):
                found[f"{info.name}.{name}"] = cache._impl.locator.get_cache_path()
    return found


def test_every_kernel_caches_under_the_digest_of_the_sources() -> None:
    kernels = cached_kernels()
    # The kernels of every file (a function imported into another module counts there too).
    assert {"sparse.sparse_reads", "gauss.draw_row", "lifkernels.lif_over_time"} <= set(kernels)
    assert {"fused._lif_pool", "levels.sparse_sums", "certified._channel"} <= set(kernels)
    folder = kernelcache.kernel_cache_dir()
    assert folder.name == kernelcache.PREFIX + kernelcache.source_digest()
    for name, path in kernels.items():
        assert Path(path).is_relative_to(folder), (name, path)


def test_numba_setting_is_put_back_after_the_kernels_are_defined() -> None:
    """Other numba code in the process caches where numba's own setting says."""
    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


def test_a_change_to_any_source_changes_the_folder(tmp_path: Path) -> None:
    """Not only a kernel's own file: `certified.py`, whose `_neuron` the layer kernels inline."""
    copy = tmp_path / "simulator"
    shutil.copytree(kernelcache.SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernelcache.source_digest(copy)
    assert before == kernelcache.source_digest()
    source = copy / "certified.py"
    source.write_text(source.read_text().replace("REL = 2.0**-48", "REL = 2.0**-47"))
    after = kernelcache.source_digest(copy)
    assert after != before
    assert kernelcache.kernel_cache_dir(copy).name == kernelcache.PREFIX + after
    assert kernelcache.kernel_cache_dir(copy).parent == copy / "__pycache__"


def test_numba_cache_dir_is_the_root_when_set(tmp_path: Path) -> None:
    code = (
        "import json, primec.backends.simulator.sparse as s;"
        "print(json.dumps(s.sparse_reads._cache._impl.locator.get_cache_path()))"
    )
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    path = Path(json.loads(out.stdout))
    assert path.is_relative_to(tmp_path / (kernelcache.PREFIX + kernelcache.source_digest()))


def test_an_unwritable_root_falls_back_to_the_next(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked))
    folder = kernelcache.kernel_cache_dir()
    assert folder.parent == kernelcache.SOURCES / "__pycache__"


def test_a_read_only_install_caches_in_the_users_cache_folder(tmp_path: Path, monkeypatch) -> None:
    """Neither NUMBA_CACHE_DIR nor a writable `__pycache__` beside the sources (here a file of
    that name blocks it): the user's cache folder, still under the digest."""
    sources = tmp_path / "simulator"
    sources.mkdir()
    (sources / "kernel.py").write_text("x = 1\n")
    (sources / "__pycache__").write_text("not a folder")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = kernelcache.kernel_cache_dir(sources)
    assert folder == tmp_path / "cache" / "primec" / (
        kernelcache.PREFIX + kernelcache.source_digest(sources)
    )
