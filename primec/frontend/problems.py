"""Collected problems: the frontend reports everything it cannot translate at once, in one error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from primec.errors import PrimecError


@dataclass(frozen=True)
class Problem:
    """One thing primec cannot translate: what, at which node, where in the model, what to do."""

    what: str
    node: str = ""
    loc: str = ""
    hint: str = ""

    def line(self) -> str:
        """The problem as one line of the report."""
        named = self.node and self.node != self.loc
        where = (self.loc or "?") + (f" (node {self.node})" if named else "")
        return f"  - {where}: {self.what}" + (f"; fix: {self.hint}" if self.hint else "")


class Unsupported(Exception):
    """Raised by a translation rule that cannot handle one node; becomes a `Problem`."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def raise_if_any(problems: Sequence[Problem], stage: str, where: str) -> None:
    """Raise one `PrimecError` listing every problem, if there is any."""
    if not problems:
        return
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    lines = "\n".join(p.line() for p in problems)
    raise PrimecError(f"{stage}: {count}:\n{lines}", where=where)


def pickle_refusal(path: Path, refused: str) -> PrimecError:
    """The refusal of a file that would run code if unpickled; nothing was executed."""
    return PrimecError(
        f"refused: the file is a pickle that would run code ({refused}); nothing was executed",
        where=str(path),
        hint="save model.state_dict() and pass --arch; only if you trust the file, add --trust-pickle",
    )
