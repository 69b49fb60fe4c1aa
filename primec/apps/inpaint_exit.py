"""Early exit for the inpainting model: PRIME's convergence rule by hand, and calibrated.

PRIME's rule (PRIME.md): after step j, d_j = sum |r_j - r_(j-1)| / 100; stop once the last three
d are strictly decreasing and the last is below 0.2. As PRIME's code does (our reading), d_0
compares r_0 against zero (`first_against_zero`, default) and r_t are the readouts with the
full-length coefficients (`primec.nn.fsvae.partial_readouts`, quirk on); the clean variant
starts at d_1 and reads tanh(acc_t).

Calibration searches thresholds and windows on the calibration split and keeps the setting that
runs the fewest steps while the hole MSE at the exit step stays within `budget` (relative) of
the hole MSE after all T steps; the test split is only reported on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from primec.core.exactmath import geometric
from primec.errors import PrimecError

PRIME_WINDOW, PRIME_THRESHOLD, PRIME_SCALE = 3, 0.2, 100.0
WINDOWS = (1, 2, 3)
THRESHOLDS = tuple(float(v) for v in geometric(1e-4, 20.0, 80))


@dataclass(frozen=True)
class ExitRule:
    """One convergence rule: window of decreasing changes, threshold on the last, scale."""

    window: int = PRIME_WINDOW
    threshold: float = PRIME_THRESHOLD
    scale: float = PRIME_SCALE
    first_against_zero: bool = True


def changes(readouts: np.ndarray, scale: float, first_against_zero: bool) -> np.ndarray:
    """d_j per sample and step [N, T]: sum |r_j - r_(j-1)| / scale (d_0 against zero, or NaN)."""
    flat = readouts.reshape(*readouts.shape[:2], -1).astype(np.float64)
    previous = np.concatenate([np.zeros_like(flat[:, :1]), flat[:, :-1]], axis=1)
    d = np.abs(flat - previous).sum(axis=2) / scale
    if not first_against_zero:
        d[:, 0] = np.nan
    return d


def exit_steps(readouts: np.ndarray, rule: ExitRule) -> np.ndarray:
    """The step (1..T) each sample stops after: the first that satisfies the rule, else T."""
    if rule.window < 1 or not rule.threshold >= 0 or not rule.scale > 0:
        raise PrimecError(
            f"a convergence rule needs window >= 1, threshold >= 0, scale > 0: {rule}"
        )
    d = changes(readouts, rule.scale, rule.first_against_zero)
    steps = d.shape[1]
    stop = np.zeros(d.shape, dtype=bool)
    for t in range(rule.window - 1, steps):
        last = d[:, t - rule.window + 1 : t + 1]
        decreasing = np.all(np.diff(last, axis=1) < 0, axis=1)
        stop[:, t] = decreasing & (last[:, -1] < rule.threshold) & ~np.isnan(last).any(axis=1)
    return np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, steps)


def at_exit(readouts: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Each sample's readout at its exit step."""
    return readouts[np.arange(len(steps)), steps - 1]


def hole_mse(images: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error over the hole pixels."""
    return float(np.mean((np.asarray(images, np.float64) - clean)[:, mask] ** 2))


def calibrate(
    readouts: np.ndarray, clean: np.ndarray, mask: np.ndarray, budget: float, base: ExitRule
) -> ExitRule:
    """The rule (window, threshold) with the fewest steps whose hole MSE <= (1 + budget) x all-T."""
    if not budget >= 0:
        raise PrimecError(f"the quality budget must be >= 0, got {budget}")
    allowed = hole_mse(readouts[:, -1], clean, mask) * (1 + budget)
    best, best_steps = ExitRule(base.window, 0.0, base.scale, base.first_against_zero), np.inf
    for window in WINDOWS:
        for threshold in THRESHOLDS:
            rule = ExitRule(window, threshold, base.scale, base.first_against_zero)
            steps = exit_steps(readouts, rule)
            if (
                hole_mse(at_exit(readouts, steps), clean, mask) <= allowed
                and steps.mean() < best_steps
            ):
                best, best_steps = rule, steps.mean()
    return best
