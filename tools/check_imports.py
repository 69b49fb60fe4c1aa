"""Check primec's import contract (`.importlinter`) and that no module imports itself in a cycle.

`passes/` and `backends/` are installed as `primec.passes` and `primec.backends`; import-linter
reads packages from disk, so this stages the installed layout in a temporary folder (a copy of
the sources, nothing imported) and runs `lint-imports` on it. Usage: python tools/check_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pt", "*.npz")


def stage(folder: Path) -> None:
    """Copy primec/, passes/ and backends/ into folder as the installed package."""
    shutil.copytree(ROOT / "primec", folder / "primec", ignore=IGNORE)
    for sub in ("passes", "backends"):
        shutil.copytree(ROOT / sub, folder / "primec" / sub, ignore=IGNORE)


def cycles(folder: Path) -> list[tuple[str, ...]]:
    """Import cycles between modules (a package's __init__ importing its own children, and
    imports for type checkers only, aside)."""
    sys.path.insert(0, str(folder))
    import grimp

    graph = grimp.build_graph("primec", cache_dir=None, exclude_type_checking_imports=True)
    found = set()
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if module.startswith(imported + ".") or imported.startswith(module + "."):
                continue  # a package and its own submodules
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None and not _through_own_package(back):
                found.add(tuple(sorted((module, *back[:-1]))))
    return sorted(found)


def _through_own_package(chain: tuple[str, ...]) -> bool:
    pairs = zip(chain, chain[1:], strict=False)
    return any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in pairs)


def main() -> int:
    """Run the contract and the cycle check; non-zero exit on any broken rule."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stage(folder)
        env = os.environ | {"PYTHONPATH": str(folder)}
        lint = Path(sys.executable).with_name("lint-imports")
        config = str(ROOT / ".importlinter")
        status = subprocess.run([str(lint), "--config", config, "--no-cache"], cwd=folder, env=env)
        found = cycles(folder)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    return status.returncode or (1 if found else 0)


if __name__ == "__main__":
    sys.exit(main())
