"""The pass manager: runs a named list of passes from the registry, verifies after each, and
hooks observability (print, dump, stop, timing) around them, so passes never need editing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primec.core.ir import Graph
from primec.core.text import print_graph, save_graph
from primec.core.verify import VerifyError, verify
from primec.errors import PrimecError

PassFn = Callable[[Graph, Any], Graph]


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

    graph: Graph
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
    ) -> None:
        self.registry = registry
        self.options = options or PassOptions()
        self.log = log
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

    def observe(self, name: str, graph: Graph) -> None:
        """Print and dump the graph after a stage, as the options ask."""
        if self.options.print_after_all or name in self.options.print_after:
            self.log(f"// ----- IR after {name} -----\n{print_graph(graph)}")
        if self.options.dump_dir is not None:
            save_graph(graph, Path(self.options.dump_dir) / f"{self.dumped:02d}-{name}.pir")
        self.dumped += 1

    def run(
        self, graph: Graph, names: Sequence[str], target: Any = None, before: Sequence[str] = ()
    ) -> PassRun:
        """Run the named passes in order; `before` names the stages that already ran."""
        result = PassRun(graph)
        done = list(before)
        for name in names:
            if result.stopped_after is not None:
                break
            graph = self.run_one(name, graph, target, done)
            done.append(name)
            result.graph = graph
            if self.options.stop_after == name:
                result.stopped_after = name
        result.records = list(self.records)
        return result

    def run_one(self, name: str, graph: Graph, target: Any, done: Sequence[str]) -> Graph:
        """Run one pass with verification, timing and observation."""
        started = time.perf_counter()
        history = f" (after: {', '.join(done)})" if done else ""
        try:
            new = self.registry[name](graph, target)
        except PrimecError as exc:
            exc.message = f"pass {name} failed{history}: {exc.message}"
            raise
        except Exception as exc:
            raise PassFailed(f"pass {name} failed{history}: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        if self.options.verify:
            try:
                verify(new, source=f"after pass {name}")
            except VerifyError as exc:
                raise PassFailed(
                    f"pass {name} produced an ill-formed graph{history}:\n{exc}"
                ) from exc
        self.records.append(PassRecord(name, new != graph, seconds))
        if self.options.time_passes:
            self.log(
                f"pass {name}: {seconds * 1000:.1f} ms{'' if new != graph else ' (no change)'}"
            )
        self.observe(name, new)
        return new
