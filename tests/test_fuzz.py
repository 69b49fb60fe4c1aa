"""A brief, seeded run of the fuzzer over every reader (the long run is `bench/fuzz.py`).

Each format gets CASES mutated files made from a seed corpus that `tests/fuzzing.py` builds from
the tests' tiny models; every case must end in acceptance or one clear refusal: no foreign
exception, no hang, no payload run, and what `check` accepts, `simulate` runs. A failure lists
every signature with the command that replays its example.
"""

from __future__ import annotations

import time
from pathlib import Path

import fuzzing as fz
import pytest

SEED = 10  # the brief run's cases; change it to look at other ones
CASES = 24  # per format: 12 formats, 288 cases


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> fz.CaseRunner:
    """One corpus and runner per test process (seeds are made on first use per format)."""
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("fuzz")
    return fz.CaseRunner(fz.Corpus(folder / "corpus"), folder / "work")


def _report(results: list[fz.CaseResult]) -> str:
    """Findings grouped by signature: count, one example with its replay command and trace."""
    groups: dict[tuple[str, str], list[fz.CaseResult]] = {}
    for r in results:
        groups.setdefault((r.finding.kind, r.finding.signature), []).append(r)
    lines = [f"{len(results)} finding(s), {len(groups)} signature(s):"]
    for (kind, sig), group in groups.items():
        r, f = group[0], group[0].finding
        trace = "\n".join("      " + line for line in f.trace.strip().splitlines()[-6:])
        lines.append(
            f"[{kind}] {sig} (x{len(group)}) in {f.stage}: {f.message[:200]}\n"
            f"    {r.format}:{r.index} from {r.seed}: {' | '.join(r.mutations)}\n"
            f"    replay: .venv/bin/python bench/fuzz.py --seed {SEED} "
            f"--replay {r.format}:{r.index} --save /tmp/fuzz-cases"
            + (f"\n{trace}" if trace else "")
        )
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", fz.FORMATS)
def test_seeds_are_accepted_unchanged(runner: fz.CaseRunner, fmt: str) -> None:
    """The fuzzer starts from valid files: each seed, as made, is accepted and runs."""
    for result in runner.warm(fmt):
        assert result.finding is None, _report([result])
        assert result.outcome == "accepted", f"{result.seed}: {result.refusal}"


@pytest.mark.parametrize("fmt", fz.FORMATS)
def test_mutated_files_are_accepted_or_refused_cleanly(runner: fz.CaseRunner, fmt: str) -> None:
    runner.warm(fmt)  # imports and first traces outside the cases' time limit
    results = [runner.run(fmt, index, SEED) for index in range(CASES)]
    bad = [r for r in results if r.finding is not None]
    assert not bad, _report(bad)


def test_cases_are_deterministic(runner: fz.CaseRunner) -> None:
    for fmt in ("pbc", "pir", "onnx"):
        for index in range(5):
            assert (
                fz.make_case(runner.corpus, fmt, index, SEED)[1:]
                == fz.make_case(runner.corpus, fmt, index, SEED)[1:]
            )


# --- the harness itself can fail ---------------------------------------------------------------


def _seed(runner: fz.CaseRunner) -> tuple[fz.Seed, fz.CaseResult]:
    seed = runner.corpus.seeds("pbc")[0]
    return seed, fz.CaseResult("pbc", -1, seed.name, ["none"])


def test_a_foreign_exception_is_a_finding_with_its_signature(runner, monkeypatch) -> None:
    import primec.runtime.simulation

    def broken(path):
        return {}["missing"]

    monkeypatch.setattr(primec.backends, "read_artefact", broken)
    seed, result = _seed(runner)
    result = runner.run_data("pbc", seed, seed.data, result)
    assert result.finding is not None and result.finding.kind == "uncaught"
    assert result.finding.signature.startswith("KeyError at")


def test_a_crash_after_check_accepts_is_a_finding(runner, monkeypatch) -> None:
    import primec.runtime.simulation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("stride 0")

    monkeypatch.setattr(primec.runtime.simulation, "simulate", broken)
    seed, result = _seed(runner)
    result = runner.run_data("pbc", seed, seed.data, result)
    assert result.finding is not None and result.finding.kind == "accepted-then-crash"
    assert result.finding.stage == "simulate"


def test_a_hang_is_a_finding(runner, monkeypatch) -> None:
    import primec.runtime.simulation

    def slow(path):
        time.sleep(5)

    monkeypatch.setattr(primec.backends, "read_artefact", slow)
    seed, result = _seed(runner)
    result = runner.run_data("pbc", seed, seed.data, result, limit=0.3)
    assert result.finding is not None and result.finding.kind == "hang"
    assert result.seconds < 3


def test_a_payload_that_runs_is_a_finding(runner, monkeypatch) -> None:
    import primec.runtime.simulation

    def runs_code(path):
        Path(fz.CANARY).touch()  # relative to the case folder, as a payload's path is
        raise primec.runtime.simulation.PrimecError("refused, but too late")

    monkeypatch.setattr(primec.backends, "read_artefact", runs_code)
    seed, result = _seed(runner)
    result = runner.run_data("pbc", seed, seed.data, result)
    assert result.finding is not None and result.finding.kind == "canary"
