"""PRIME's convergence early exit for inpainting, by hand and calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from primec.apps.inpaint_exit import ExitRule, at_exit, calibrate, changes, exit_steps
from primec.errors import PrimecError


def series(*values: float) -> np.ndarray:
    """One sample's scalar readouts over time, [1, T, 1]."""
    return np.array(values, dtype=np.float64).reshape(1, -1, 1)


def test_changes_compare_r0_against_zero_as_prime_does():
    r = series(5.0, 3.0, 2.5)
    assert changes(r, 1.0, True).tolist() == [[5.0, 2.0, 0.5]]
    clean = changes(r, 1.0, False)
    assert np.isnan(clean[0, 0]) and clean[0, 1:].tolist() == [2.0, 0.5]


def test_prime_rule_needs_three_decreasing_changes_the_last_below_threshold():
    # d = 5, 2, 0.5, 0.1, ...: decreasing from the start; last below 0.2 first at step 4
    r = series(5.0, 3.0, 2.5, 2.4, 2.35, 2.33)
    rule = ExitRule(window=3, threshold=0.2, scale=1.0)
    assert exit_steps(r, rule).tolist() == [4]
    # the clean variant has no d_0: the same steps still qualify at step 4
    assert exit_steps(r, ExitRule(3, 0.2, 1.0, first_against_zero=False)).tolist() == [4]
    # a rising change resets the window
    r2 = series(5.0, 3.0, 2.5, 3.1, 3.0, 2.95)  # d = 5, 2, 0.5, 0.6, 0.1, 0.05
    assert exit_steps(r2, rule).tolist() == [6]


def test_first_against_zero_lets_prime_stop_earlier_than_the_clean_variant():
    r = series(0.3, 0.2, 0.15, 0.14, 0.135)
    rule = ExitRule(window=3, threshold=0.2, scale=1.0)
    assert exit_steps(r, rule).tolist() == [3]  # d = 0.3, 0.1, 0.05
    clean = ExitRule(3, 0.2, 1.0, first_against_zero=False)
    assert exit_steps(r, clean).tolist() == [4]  # d = -, 0.1, 0.05, 0.01


def test_no_stop_means_all_steps_and_the_exit_readout_is_taken_there():
    r = np.concatenate([series(1, 2, 3, 4), series(4, 3.5, 3.4, 3.39)])
    steps = exit_steps(r, ExitRule(2, 0.5, 1.0))
    assert steps.tolist() == [4, 3]
    assert at_exit(r, steps)[:, 0].tolist() == [4.0, 3.4]


def test_calibration_keeps_quality_within_budget_and_saves_steps():
    rng = np.random.default_rng(0)
    clean = np.zeros((20, 1, 2, 2))
    mask = np.ones((1, 2, 2), bool)
    decay = np.exp(-np.arange(1, 9))[None, :, None, None, None]
    readouts = 0.05 + decay * rng.uniform(1, 2, (20, 1, 1, 1, 1))  # converging to 0.05
    full = np.mean((readouts[:, -1] - clean) ** 2)
    tight = calibrate(readouts, clean, mask, 0.0, ExitRule(scale=1.0))
    loose = calibrate(readouts, clean, mask, 0.10, ExitRule(scale=1.0))
    for rule, budget in ((tight, 0.0), (loose, 0.10)):
        steps = exit_steps(readouts, rule)
        assert np.mean((at_exit(readouts, steps) - clean) ** 2) <= full * (1 + budget)
    assert exit_steps(readouts, loose).mean() < exit_steps(readouts, tight).mean()


def test_bad_rules_and_budgets_are_refused():
    with pytest.raises(PrimecError, match="window"):
        exit_steps(series(1, 2), ExitRule(window=0))
    with pytest.raises(PrimecError, match="budget"):
        calibrate(series(1, 2), np.zeros((1, 1)), np.ones(1, bool), -1.0, ExitRule())
