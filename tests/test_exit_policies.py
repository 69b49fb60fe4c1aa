"""Early-exit policies: the controller equals the vectorised evaluation calibration certifies
with, the new statistics by hand, version-2 tables round-trip through both artefacts while
hand-set tables keep their version-1 bytes, and certified calibration holds its guarantee on
fresh data (simulated coverage)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import test_bytecode
from primec.backends import bytecode, macrofile

from primec.errors import PrimecError
from primec.hardware import certify as cert
from primec.hardware.earlyexit import (
    PRIME_RULE,
    ExitController,
    ExitTable,
    apply_table,
    predictions,
)
from primec.hardware.exitpolicies import certify_exit
from primec.hardware.exitrules import StepStats, exit_steps, statistic

program = test_bytecode.program  # the small compiled program (a fixture)
V1_FIELDS = {"rule", "threshold", "temperature", "min_steps", "max_steps", "window", "scale"}


def draw_readouts(
    rng: np.random.Generator, n: int, steps: int = 10, classes: int = 10
) -> np.ndarray:
    """Running means of noisy logits drifting to a random class: i.i.d. samples whose prediction
    settles at varying steps (some change late)."""
    target = rng.integers(0, classes, n)
    strength = rng.uniform(0.0, 2.0, n)
    logits = rng.normal(0, 1.5, size=(n, steps, classes))
    logits[np.arange(n), :, target] += strength[:, None]
    return logits.cumsum(axis=1) / np.arange(1, steps + 1)[None, :, None]


def vectorised(table: ExitTable, readouts: np.ndarray) -> np.ndarray:
    stats = StepStats.of(readouts, table.rule, table.temperature)
    steps = readouts.shape[1]
    thresholds = np.array(table.thresholds or [table.threshold] * steps)
    return exit_steps(stats, table, thresholds) + 1


TABLES = {
    "lead": ExitTable("lead", 2.0, stable=2),
    "per-step max-softmax": ExitTable("max-softmax", 0.0, thresholds=tuple(np.linspace(0.9, 0.3, 10))),
    "per-step entropy, min steps": ExitTable("entropy", 0.0, min_steps=2, thresholds=(0.5,) * 5 + (1.0,) * 5),
    "margin, stable 3, max steps": ExitTable("margin", 0.3, stable=3, max_steps=7),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLES))
def test_controller_equals_vectorised_evaluation(name: str) -> None:
    readouts = draw_readouts(np.random.default_rng(1), 400)
    steps, _ = apply_table(TABLES[name], readouts)
    np.testing.assert_array_equal(steps, vectorised(TABLES[name], readouts))
    assert 1 < steps.mean() < 10


def test_lead_statistic_and_stability_by_hand() -> None:
    # Readouts of one sample over T = 4 steps, 3 classes.
    readouts = np.array([[[1.0, 0.0, 0.5], [0.2, 0.9, 0.0], [0.1, 1.0, 0.3], [0.0, 2.0, 1.0]]])
    # lead after step 2: (0.9 - 0.2) * 2 / sqrt(4 - 2); after step 3: (1.0 - 0.3) * 3 / sqrt(1).
    assert statistic("lead", 1.0, readouts[:, 1], 2, 4)[0] == pytest.approx(0.7 * 2 / math.sqrt(2))
    assert statistic("lead", 1.0, readouts[:, 2], 3, 4)[0] == pytest.approx(2.1)
    # Class 1 leads from step 2; with stable 2 the first exit is step 3, though step 2 passes.
    table = ExitTable("lead", 0.5, stable=2)
    assert apply_table(table, readouts)[0].tolist() == [3]
    assert apply_table(replace(table, stable=1), readouts)[0].tolist() == [2]  # step 1: 0.29
    # Per-step thresholds: only step 3's is low enough.
    per_step = ExitTable("lead", 0.0, thresholds=(9.0, 9.0, 2.0, 9.0))
    assert apply_table(per_step, readouts)[0].tolist() == [3]


def test_per_step_list_of_the_wrong_length_is_refused() -> None:
    table = ExitTable("max-softmax", 0.5, thresholds=(0.5, 0.6, 0.7))
    with pytest.raises(PrimecError, match="3 per-step thresholds for 10 timesteps"):
        table.check(timesteps=10)
    with pytest.raises(PrimecError, match="3 per-step thresholds for 10 timesteps"):
        ExitController(table, 10, 4)
    with pytest.raises(PrimecError, match="3 per-step thresholds for 10 timesteps"):
        ExitTable.from_dict(table.to_dict(), timesteps=10)
    with pytest.raises(PrimecError, match="out of range"):
        ExitTable("max-softmax", 0.5, thresholds=(0.5, 1.5)).check()
    with pytest.raises(PrimecError, match="stable must be an integer >= 1"):
        ExitTable("max-softmax", 0.5, stable=0).check()
    with pytest.raises(PrimecError, match="version 3"):
        ExitTable.from_dict(table.to_dict() | {"version": 3})


def test_hand_set_tables_keep_version_1_fields() -> None:
    assert set(PRIME_RULE.to_dict()) == V1_FIELDS
    assert set(ExitTable("margin", 0.2, min_steps=2).to_dict()) == V1_FIELDS
    assert ExitTable.from_dict(PRIME_RULE.to_dict()) == PRIME_RULE
    v2 = ExitTable("lead", 1.5, stable=2).to_dict()
    assert v2["version"] == 2 and v2["thresholds"] == [] and v2["stable"] == 2


def test_version_2_tables_round_trip_through_both_artefacts(program, tmp_path: Path) -> None:
    steps = program.timesteps
    table = ExitTable("margin", 0.0, thresholds=tuple(np.linspace(0.8, 0.1, steps)), stable=2)
    with_table = replace(program, exit_table=table)
    data = bytecode.encode(with_table)
    assert bytecode.decode(data).exit_table == table
    assert bytecode.encode(bytecode.decode(data)) == data
    path = tmp_path / "m.pmac"
    macrofile.write(with_table, path)
    assert macrofile.read(path).exit_table == table
    assert "per-step thresholds 0.8" in macrofile.summary(path)
    # A per-step list of the wrong length in a bytecode file: one clear error.
    bad = replace(program, exit_table=replace(table, thresholds=table.thresholds[:-1]))
    with pytest.raises(PrimecError, match=f"{steps - 1} per-step thresholds for {steps}"):
        bytecode.decode(bytecode.encode(bad))


def test_hand_set_artefact_exit_section_is_version_1(program) -> None:
    data = bytecode.encode(replace(program, exit_table=PRIME_RULE))
    start = data.index(b'{"max_steps"') if b'{"max_steps"' in data else data.index(b'"rule"')
    assert b'"version"' not in data[start - 200 : start + 300]
    assert b'"thresholds"' not in data


def test_certify_exit_chooses_a_certified_cheaper_table() -> None:
    rng = np.random.default_rng(2)
    readouts = draw_readouts(rng, 600)
    base = ExitTable("max-softmax", 0.5)
    for policy in ("threshold", "per-step", "lead"):
        result = certify_exit(base, readouts, None, 0.05, 0.1, policy=policy)
        report = result.report
        assert report["avg_timesteps"] < 10 and report["policy"] == policy
        certificate = result.certificate
        assert certificate.pvalues[report["certificate"]["chosen_candidate"]] <= 0.1
        assert report["certificate"]["samples"] == (420 if policy == "per-step" else 600)
        # What the report claims is what the controller does on those samples.
        steps, at_exit = apply_table(result.table, readouts)
        if policy != "per-step":
            assert steps.mean() == pytest.approx(report["avg_timesteps"])
            changed = (predictions(at_exit) != predictions(readouts[:, -1])).mean()
            assert changed == pytest.approx(report["changed"])


def test_certified_calibration_holds_on_fresh_data() -> None:
    """Simulated coverage: calibrate on fresh draws, measure the true risk on a large fresh set;
    the risk exceeds eps in at most about delta of the repetitions."""
    rng = np.random.default_rng(3)
    eps, delta, reps = 0.05, 0.2, 60
    population = draw_readouts(rng, 40000)
    final = predictions(population[:, -1])
    base = ExitTable("max-softmax", 0.5)
    violations = 0
    for _ in range(reps):
        result = certify_exit(base, draw_readouts(rng, 300), None, eps, delta, policy="lead")
        _, at_exit = apply_table(result.table, population)
        violations += (predictions(at_exit) != final).mean() > eps
    assert violations / reps <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)


def test_certify_exit_bad_input() -> None:
    readouts = draw_readouts(np.random.default_rng(4), 200)
    base = ExitTable("max-softmax", 0.5)
    with pytest.raises(PrimecError, match="--exit-risk must lie strictly between 0 and 1"):
        certify_exit(base, readouts, None, 1.0, 0.1)
    with pytest.raises(PrimecError, match="--exit-delta must lie strictly between 0 and 1"):
        certify_exit(base, readouts, None, 0.05, 0.0)
    with pytest.raises(PrimecError, match="accuracy risk needs labels"):
        certify_exit(base, readouts, None, 0.05, 0.1, risk="accuracy")
    with pytest.raises(PrimecError, match="needs at least 299 samples"):
        certify_exit(base, readouts, None, 0.01, 0.05)
    with pytest.raises(PrimecError, match="certifies on the other 140.*at least 299 there"):
        certify_exit(base, readouts, None, 0.01, 0.05, policy="per-step")
    # Enough samples, but early exits change predictions: say so, and how many samples would do.
    # Every sample is equally confident from step 1 on; 3 of 200 flip at the last step.
    flips = np.zeros((200, 10, 10))
    flips[:, :, 0] = 5.0
    flips[:3, -1, 1] = 9.0
    needed = cert.samples_needed(0.02, 0.1, 3 / 200)
    with pytest.raises(PrimecError, match=f"changed 3 of 200 .* about {needed} samples would be"):
        certify_exit(base, flips, None, 0.02, 0.1, policy="threshold")
    flips[:, -1, 1] = 9.0  # all of them flip: no amount of data helps
    with pytest.raises(PrimecError, match="changed 200 of 200 .* no amount of data certifies it"):
        certify_exit(base, flips, None, 0.02, 0.1, policy="threshold")


def test_accuracy_risk_bounds_the_accuracy_lost() -> None:
    rng = np.random.default_rng(5)
    readouts = draw_readouts(rng, 800)
    labels = predictions(readouts[:, -1]).copy()
    labels[:100] = (labels[:100] + 1) % 10  # all-T wrong on some samples
    result = certify_exit(
        ExitTable("max-softmax", 0.5), readouts, labels, 0.05, 0.1, risk="accuracy"
    )
    report = result.report
    assert (
        report["accuracy_all_steps"] - report["accuracy"]
        <= result.certificate.losses[report["certificate"]["chosen_candidate"]] / 800 + 1e-12
    )
    assert json.dumps(report)  # JSON-ready


def test_calibration_chips_one_per_sample(program) -> None:
    """With programming variation every sample runs on a chip of its own (seeded by the sample);
    with read noise alone all samples share the compiled chip, batched."""
    from primec.backends.simulator import Noise, Simulator

    from primec.runtime.exitcalibration import all_step_readouts, chip_seed

    rng = np.random.default_rng(6)
    x = rng.integers(0, 2, (3, program.timesteps, *program.input_shape)).astype(np.float32)
    ids = np.array([5, 6, 7])
    noise = Noise(program=0.2, read=0.05, seed=4)
    readouts = all_step_readouts(program, x, noise, sample_ids=ids)
    for i, sample in enumerate(ids):
        own = replace(noise, seed=chip_seed(4, int(sample)))
        alone = Simulator(program, own).run(x[i : i + 1], 1, False, sample_ids=ids[i : i + 1])
        np.testing.assert_array_equal(readouts[i], alone.readouts[0])
    shared = replace(noise, seed=chip_seed(4, 5))  # sample 6 on sample 5's chip differs
    other = Simulator(program, shared).run(x[1:2], 1, False, sample_ids=ids[1:2]).readouts[0]
    assert not np.array_equal(readouts[1], other)
    reads = Noise(read=0.05, seed=4)
    batched = Simulator(program, reads).run(x, 2, False, sample_ids=ids).readouts
    np.testing.assert_array_equal(all_step_readouts(program, x, reads, sample_ids=ids), batched)
