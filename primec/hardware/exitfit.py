"""Fitting the shape of a per-step early-exit table (the `per-step` policy's first half).

The shape is fitted greedily on a fraction of the calibration samples; certification
(`primec.hardware.exitpolicies.certify_exit`) then tests, on the other samples, a sequence that
moves that shape as a whole, so the fit's noise never enters the order of the tested sequence.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from primec.core.exactmath import geometric
from primec.hardware.exitrules import StepStats, exit_steps, losses_of, tables_exits

if TYPE_CHECKING:
    from primec.hardware.earlyexit import ExitTable

FIT_LEVELS = 100  # threshold levels per step of a fitted table
NEVER_LEAD = 1e300  # a lead threshold no finite readout passes
GRID = 1001  # candidates of a one-threshold sequence; a fitted shape moves over 2 GRID - 1


def greedy_table_sequence(
    stats: StepStats,
    base: ExitTable,
    risk: str,
    labels: np.ndarray | None,
) -> np.ndarray:
    """Per-step threshold tables [M, T] from never exiting early to always exiting, fitted on
    these samples: each move lowers one step's threshold by one level, the move that adds the
    fewest losses per step saved (moves that change nothing first)."""
    steps = stats.stat.shape[1]
    levels = fit_levels(base.rule, stats.stat[:, :-1].ravel())
    level = np.full(steps, len(levels) - 1)
    tables = [level.copy()]

    exits = exit_steps(stats, base, levels[level])
    current = (int(losses_of(stats, exits, risk, labels).sum()), int(exits.sum()))
    while (level > 0).any():
        movable = np.flatnonzero(level > 0)
        trials = np.repeat(level[None, :], len(movable), axis=0)
        trials[np.arange(len(movable)), movable] -= 1
        exits = tables_exits(stats, base, levels[trials])
        losses = losses_of(stats, exits, risk, labels).sum(axis=0)
        added, saved = losses - current[0], current[1] - exits.sum(axis=0)
        keys = [
            (-1.0, 0) if a == v == 0 else (a / v if v > 0 else math.inf, -v)
            for a, v in zip(added.tolist(), saved.tolist(), strict=True)
        ]
        best = min(range(len(movable)), key=keys.__getitem__)
        level[movable[best]] -= 1
        current = (int(losses[best]), int(exits[:, best].sum()))
        tables.append(level.copy())
    return levels[np.array(tables)]


def fitted_shape(
    stats: StepStats, base: ExitTable, risk: str, labels: np.ndarray | None, eps: float
) -> np.ndarray:
    """The per-step table of the greedy sequence that is cheapest on these samples with a loss
    rate at most eps: the shape of the per-step sequence."""
    tables = greedy_table_sequence(stats, base, risk, labels)
    exits = tables_exits(stats, base, tables)
    rate = losses_of(stats, exits, risk, labels).mean(axis=0)
    within = np.flatnonzero(rate <= eps)
    return tables[within[exits.mean(axis=0)[within].argmin()]]


def shifted_tables(rule: str, shape: np.ndarray, classes: int) -> np.ndarray:
    """Per-step tables [M, T] from never exiting early to always exiting: the fitted shape moved
    as a whole (added to for bounded rules, scaled for `lead`), clipped to the rule's range.
    Fitting only the shape and certifying along one shift keeps the fit's noise out of the order
    in which the certifying samples are tested."""
    if rule == "lead":
        floor = shape[shape > 0].min() if (shape > 0).any() else 1.0
        factors = np.concatenate([geometric(1e4 / floor, 1e-4, GRID - 1), [0.0]])
        return np.clip(np.maximum(shape, floor)[None, :] * factors[:, None], 0.0, NEVER_LEAD)
    high = math.log(classes) if rule == "entropy" else 1.0
    shifts = np.linspace(high, -high, 2 * GRID - 1)
    if rule == "entropy":
        shifts = -shifts  # low entropy thresholds are the strict ones
    return np.clip(shape[None, :] + shifts[:, None], 0.0, high)


def fit_levels(rule: str, values: np.ndarray) -> np.ndarray:
    """Threshold levels from always passing to never passing, in the rule's range (stored as is,
    so a fitted table behaves on the chip exactly as it did when it was tested)."""
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, FIT_LEVELS))
    if rule == "entropy":
        return np.unique(np.concatenate([[0.0], quantiles]))[::-1]  # entropy < 0 never holds
    never = 1.0 if rule in ("max-softmax", "margin") else NEVER_LEAD
    return np.unique(np.concatenate([[0.0], quantiles, [never]]))
