"""The pass manager: runs a named list of stages from a registry, verifies after each, and
hooks observability (print, dump, stop, timing) around them, so stages never need editing.

A stage takes the value the stage before left (a `Graph` for the passes; for the backend
stages, the instruction IR and then the encoded bytes), the `Target`, and the per-compile
choices beside it. A value that is not a `Graph` prints with its `as_text()` and dumps as that
text, or with its own `dump(stem)` when it has one (the encoded artefacts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primec.core.ir import Graph
from primec.core.text import print_graph, save_graph
from primec.core.verify import VerifyError, ir_context, verify
from primec.errors import PrimecError
from primec.fileio import atomic_write_text

PassFn = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class PassOptions:
    """Observability flags, as given on the command line."""

    verify: bool = True
    print_after_all: bool = False
    print_after: tuple[str, ...] = ()
    stop_after: str | None = None
    dump_dir: Path | None = None
    time_passes: bool = False


@dataclass(frozen=True)
class PassRecord:
    """What one pass did: its name, whether the graph changed, and how long it took."""

    name: str
    changed: bool
    seconds: float


@dataclass
class PassRun:
    """The result of running a pipeline of passes."""

    value: Any
    records: list[PassRecord] = field(default_factory=list)
    stopped_after: str | None = None


class PassFailed(PrimecError):
    """A pass raised or left an ill-formed graph."""


class PassManager:
    """Runs passes in the given order over a graph, with the hooks of `PassOptions`."""

    def __init__(
        self,
        registry: dict[str, PassFn],
        options: PassOptions | None = None,
        log: Callable[[str], None] = print,
        user_facing: Sequence[str] = (),
        verifiers: dict[type, Callable[[Any, str], Any]] | None = None,
    ) -> None:
        self.registry = registry
        # The verifier of each kind of value a stage leaves: the graph's, and those the
        # pipeline adds (the instruction IR's); a value of another kind is not verified.
        self.verifiers = {Graph: _verify_graph} | (verifiers or {})
        self.options = options or PassOptions()
        self.log = log
        # Stages whose errors are about the user's inputs (data files, exit options): their
        # messages reach the user unchanged, without the "pass X failed" prefix.
        self.user_facing = frozenset(user_facing)
        self.dumped = 0
        self.records: list[PassRecord] = []

    def check_names(self, names: Sequence[str], stages: Sequence[str] = ()) -> None:
        """Fail early on an unknown pass name in the pipeline or the options."""
        known = list(stages) + list(names)
        unknown = [n for n in names if n not in self.registry]
        wanted = [
            n
            for n in (*self.options.print_after, self.options.stop_after)
            if n is not None and n not in known
        ]
        if unknown or wanted:
            raise PrimecError(
                f"unknown pass {', '.join(unknown + wanted)}",
                hint=f"known passes: {', '.join(known)}",
            )

    def stage_done(self, name: str, graph: Graph) -> None:
        """Record a stage that ran outside the registry (e.g. import): verify, print, dump."""
        if self.options.verify:
            try:
                verify(graph, source=f"after {name}")
            except VerifyError as exc:
                raise PassFailed(f"stage {name} produced an ill-formed graph: {exc}") from exc
        self.observe(name, graph)

    def observe(self, name: str, value: Any) -> None:
        """Print and dump the value after a stage, as the options ask."""
        if self.options.print_after_all or name in self.options.print_after:
            self.log(f"// ----- IR after {name} -----\n{as_text(value)}")
        if self.options.dump_dir is not None:
            dump(value, Path(self.options.dump_dir) / f"{self.dumped:02d}-{name}")
        self.dumped += 1

    def run(
        self,
        value: Any,
        names: Sequence[str],
        target: Any = None,
        choices: Any = None,
        before: Sequence[str] = (),
    ) -> PassRun:
        """Run the named stages in order; `before` names the stages that already ran."""
        result = PassRun(value)
        done = list(before)
        for name in names:
            if result.stopped_after is not None:
                break
            value = self.run_one(name, value, target, choices, done)
            done.append(name)
            result.value = value
            if self.options.stop_after == name:
                result.stopped_after = name
        result.records = list(self.records)
        return result

    def run_one(self, name: str, value: Any, target: Any, choices: Any, done: Sequence[str]) -> Any:
        """Run one stage with verification, timing and observation."""
        started = time.perf_counter()
        history = f" (after: {', '.join(done)})" if done else ""
        try:
            new = self.registry[name](value, target, choices)
        except PrimecError as exc:
            if name not in self.user_facing:
                exc.message = f"pass {name} failed{history}: {exc.message}"
                exc.context = exc.context or around(value, exc.where)
            raise
        except Exception as exc:
            raise PassFailed(f"pass {name} failed{history}: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        check = self.verifiers.get(type(new))
        if self.options.verify and check is not None:
            try:
                check(new, f"after pass {name}")
            except PrimecError as exc:
                kind = type(new).__name__.lower()
                raise PassFailed(
                    f"pass {name} produced an ill-formed {kind}{history}:\n{exc}"
                ) from exc
        changed = not same(new, value)
        self.records.append(PassRecord(name, changed, seconds))
        if self.options.time_passes:
            self.log(f"pass {name}: {seconds * 1000:.1f} ms{'' if changed else ' (no change)'}")
        self.observe(name, new)
        return new


def _verify_graph(graph: Graph, source: str) -> Graph:
    return verify(graph, source=source)


def around(value: Any, where: str) -> str:
    """The IR around the node an error's `where` names (`node OP -> %VALUE`), if it names one."""
    match = re.search(r"-> %(\S+?),? ", where + " ")
    if not isinstance(value, Graph) or match is None:
        return ""
    for index, node in enumerate(value.nodes):
        if any(v.name == match.group(1) for v in node.outputs):
            return ir_context(value, index)
    return ""


def same(a: Any, b: Any) -> bool:
    """Whether a stage left its value unchanged (graphs compare by content)."""
    if type(a) is not type(b):
        return False
    equal = getattr(a, "content_equal", None)
    return bool(equal(b)) if equal is not None else bool(a == b)


def as_text(value: Any) -> str:
    """The printed form of a stage's value: IR text for a graph, `as_text()` otherwise."""
    return print_graph(value) if isinstance(value, Graph) else value.as_text()


def dump(value: Any, stem: Path) -> None:
    """Write a stage's value to stem.pir (a graph), stem<suffix> (bytes) or stem.txt (text)."""
    if isinstance(value, Graph):
        save_graph(value, stem.with_name(stem.name + ".pir"))
    elif hasattr(value, "dump"):
        value.dump(stem)
    else:
        atomic_write_text(stem.with_name(stem.name + ".txt"), value.as_text() + "\n")
