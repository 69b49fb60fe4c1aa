"""Early exit: the controller against a plain PyTorch rule, the other rules by hand, calibration."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from primec.errors import PrimecError
from primec.hardware.earlyexit import (
    PRIME_RULE,
    ExitTable,
    apply_table,
    calibrate,
    oracle_steps,
    predictions,
)

sys.path.insert(0, str(Path(__file__).parent))
import prime_reference  # noqa: E402


def random_readouts(seed: int, n: int = 500, steps: int = 10, classes: int = 10) -> np.ndarray:
    """Running means of noisy logits that drift towards a random class: confident at varying steps."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, n)
    strength = rng.uniform(0.0, 3.0, n)
    logits = rng.normal(0, 1.5, size=(n, steps, classes))
    logits[np.arange(n), :, target] += strength[:, None] * np.arange(1, steps + 1) / 2
    return logits.cumsum(axis=1) / np.arange(1, steps + 1)[None, :, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prime_rule_matches_plain_pytorch(seed: int) -> None:
    readouts = random_readouts(seed)
    exit_step, at_exit = apply_table(PRIME_RULE, readouts)
    ref_steps, ref_pred = prime_reference.early_exit(torch.from_numpy(readouts), 0.8, 2.0)
    np.testing.assert_array_equal(exit_step, ref_steps.numpy())
    np.testing.assert_array_equal(predictions(at_exit), ref_pred.numpy())
    assert 1 < exit_step.mean() < 10  # the data exercises early and late exits


def test_no_table_runs_all_steps_and_max_steps_caps() -> None:
    readouts = random_readouts(3, n=50)
    steps, _ = apply_table(None, readouts)
    assert (steps == 10).all()
    capped, _ = apply_table(ExitTable("max-softmax", 1.0, max_steps=4), readouts)
    assert (capped == 4).all()


def test_min_steps_is_respected() -> None:
    readouts = random_readouts(4)
    steps, _ = apply_table(ExitTable("max-softmax", 0.0, min_steps=3), readouts)
    assert (steps == 3).all()


def test_margin_and_entropy_by_hand() -> None:
    # One sample, two classes, readouts chosen so softmax is [0.5,0.5], then ~[0.73,0.27], then ~[0.88,0.12].
    readouts = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])
    margin, _ = apply_table(ExitTable("margin", 0.6), readouts)  # margins 0, 0.46, 0.76
    assert margin.tolist() == [3]
    entropy, _ = apply_table(ExitTable("entropy", 0.6), readouts)  # entropies .693, .582, .371
    assert entropy.tolist() == [2]


def test_convergence_rule_by_hand() -> None:
    # Changes (scale 1): 8, 4, 2, 1, 0.5 -> decreasing from step 4 on (3 changes); below 1.5 at step 5.
    values = np.cumsum([0.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25])
    readouts = values.reshape(1, -1, 1)
    steps, _ = apply_table(ExitTable("convergence", 1.5, scale=1.0), readouts)
    assert steps.tolist() == [5]
    # Changes 1, 4, 2, 1: at step 4 the last (2) is below 2.5 but 1, 4, 2 is not decreasing.
    bumpy = np.cumsum([0.0, 1.0, 4.0, 2.0, 1.0, 0.1]).reshape(1, -1, 1)
    steps, _ = apply_table(ExitTable("convergence", 2.5, scale=1.0), bumpy)
    assert steps.tolist() == [5]


def test_oracle_by_hand() -> None:
    preds_to_readouts = np.eye(3)[[[0, 1, 1, 1], [2, 2, 2, 2], [0, 1, 0, 1]]]
    assert oracle_steps(preds_to_readouts).tolist() == [2, 1, 4]


def test_calibration_stays_within_budget_and_saves_steps() -> None:
    readouts = random_readouts(5, n=2000)
    labels = predictions(readouts[:, -1]).copy()
    flip = np.random.default_rng(0).random(len(labels)) < 0.1
    labels[flip] = (labels[flip] + 1) % 10  # 90% accuracy at T
    result = calibrate(
        ExitTable("max-softmax", 0.8, temperature=2.0), readouts, labels, budget_points=0.5
    )
    assert result.accuracy >= result.accuracy_full - 0.005
    assert result.avg_timesteps < 10
    hand_set = apply_table(PRIME_RULE, readouts)[0].mean()
    assert result.avg_timesteps <= hand_set or result.accuracy >= result.accuracy_full
    assert result.oracle_avg_timesteps <= result.avg_timesteps + 1e-9 or result.accuracy < 1
    report = result.to_dict()
    assert len(report["curve"]) == 200 and report["table"]["rule"] == "max-softmax"


def test_calibration_without_labels_is_refused() -> None:
    with pytest.raises(PrimecError, match="needs labels"):
        calibrate(PRIME_RULE, random_readouts(6, n=10), None, 0.5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rule": "vibes", "threshold": 0.5}, "unknown early-exit rule 'vibes'"),
        ({"rule": "max-softmax", "threshold": 1.5}, "out of range"),
        ({"rule": "margin", "threshold": -0.1}, "out of range"),
        ({"rule": "max-softmax", "threshold": 0.5, "min_steps": 0}, "min_steps"),
        ({"rule": "max-softmax", "threshold": 0.5, "colour": 1}, "malformed early-exit table"),
    ],
)
def test_bad_tables_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(PrimecError, match=message):
        ExitTable.from_dict(fields)
