"""Check the size rules of docs/contributing.md: no module over 400 lines, no function over 60.

Usage: python tools/check_sizes.py [PATH ...]  (default: primec/, passes/, backends/, tools/).
Prints every breach as path:line and exits non-zero if there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
FOLDERS = ("primec", "passes", "backends", "tools")


def breaches(path: Path) -> list[str]:
    """The size rules one source file breaks, one line each."""
    text = path.read_text(encoding="utf-8")
    found = []
    lines = text.count("\n")
    if lines > MAX_MODULE_LINES:
        found.append(f"{path}:1: module has {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = node.end_lineno - node.lineno + 1  # from `def`: click options don't count
        if length > MAX_FUNCTION_LINES:
            found.append(
                f"{path}:{node.lineno}: function {node.name} has {length} lines "
                f"(at most {MAX_FUNCTION_LINES})"
            )
    return found


def sources(paths: list[str]) -> list[Path]:
    """Every .py file under the given paths (default: the package folders)."""
    roots = [Path(p) for p in paths] or [ROOT / f for f in FOLDERS]
    return sorted(f for r in roots for f in ([r] if r.is_file() else r.rglob("*.py")))


def main(argv: list[str]) -> int:
    """Print every breach; non-zero exit if any."""
    found = [b for f in sources(argv) for b in breaches(f)]
    print("\n".join(found) if found else "sizes ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
