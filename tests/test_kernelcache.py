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


def run_fresh(code: str, env: dict[str, str]) -> object:
    """`code`'s last printed line (JSON) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def copy_of_sources(tmp_path: Path) -> Path:
    copy = tmp_path / "simulator"
    shutil.copytree(kernelcache.SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_numba_setting_is_put_back_after_the_kernels_are_defined(tmp_path: Path) -> None:
    """Other numba code in the process caches where numba's own setting says (set in code
    before the import here)."""
    code = (
        f"import json, numba; numba.config.CACHE_DIR = {str(tmp_path)!r};"
        "import primec.backends.simulator.sparse as s;"
        "print(json.dumps([numba.config.CACHE_DIR,"
        " s.sparse_reads._cache._impl.locator.get_cache_path()]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    setting, path = run_fresh(code, env)
    assert setting == str(tmp_path)
    digest = kernelcache.PREFIX + kernelcache.source_digest()
    assert Path(path).is_relative_to(tmp_path / digest)  # numba's folder is the root


def test_a_change_to_any_source_changes_the_folder(tmp_path: Path, monkeypatch) -> None:
    """Not only a kernel's own file: `certified.py`, whose `_neuron` the layer kernels inline."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    copy = copy_of_sources(tmp_path)
    before = kernelcache.source_digest(copy)
    assert before == kernelcache.source_digest()
    source = copy / "certified.py"
    source.write_text(source.read_text().replace("REL = 2.0**-48", "REL = 2.0**-47"))
    after = kernelcache.source_digest(copy)
    assert after != before
    assert kernelcache.kernel_cache_dir(copy) == copy / "__pycache__" / (kernelcache.PREFIX + after)


def test_numba_cache_dir_is_the_root_when_set(tmp_path: Path) -> None:
    code = (
        "import json, primec.backends.simulator.sparse as s;"
        "print(json.dumps(s.sparse_reads._cache._impl.locator.get_cache_path()))"
    )
    path = Path(run_fresh(code, os.environ | {"NUMBA_CACHE_DIR": str(tmp_path)}))
    assert path.is_relative_to(tmp_path / (kernelcache.PREFIX + kernelcache.source_digest()))


def test_an_unwritable_root_falls_back_to_the_next(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(blocked))
    copy = copy_of_sources(tmp_path)
    assert kernelcache.kernel_cache_dir(copy).parent == copy / "__pycache__"


def test_a_read_only_install_caches_in_the_users_cache_folder(tmp_path: Path, monkeypatch) -> None:
    """Neither numba's cache folder nor a writable `__pycache__` beside the sources (here a file
    of that name blocks it): the user's cache folder, still under the digest; with no writable
    root at all, numba's own locations (None: the setting is left alone)."""
    sources = tmp_path / "simulator"
    sources.mkdir()
    (sources / "kernel.py").write_text("x = 1\n")
    (sources / "__pycache__").write_text("not a folder")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    name = kernelcache.PREFIX + kernelcache.source_digest(sources)
    assert kernelcache.kernel_cache_dir(sources) == tmp_path / "cache" / "primec" / name
    (tmp_path / "blocked").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    assert kernelcache.kernel_cache_dir(sources) is None
