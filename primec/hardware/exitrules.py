"""The early-exit rules' arithmetic, shared by the controller and certified calibration.

The statistic a rule computes from one step's readout, the test against its threshold, the
controller's step for a version-2 table (per-step thresholds, stability), the checks of the
version-2 fields, and the same controller vectorised over recorded runs (`StepStats`,
`tables_exits`), so calibration measures exactly what the chip does. `primec.hardware.earlyexit`
holds the table and the controller and re-exports `softmax`, `predictions` and `threshold_range`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from primec.errors import PrimecError

if TYPE_CHECKING:
    from primec.hardware.earlyexit import ExitController, ExitTable


def threshold_range(rule: str, classes: int | None = None) -> tuple[float, float]:
    """The meaningful range of a rule's threshold."""
    if rule == "entropy":
        return 0.0, math.log(classes) if classes else math.inf
    if rule in ("convergence", "lead"):
        return 0.0, math.inf
    return 0.0, 1.0


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over the last axis of logits / temperature (float64, stable)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predictions(readout: np.ndarray) -> np.ndarray:
    """Class predictions from readouts [..., K]: argmax (first on ties, as torch and NumPy)."""
    return np.asarray(readout).argmax(axis=-1)


def check_policy_fields(table: ExitTable, classes: int | None, timesteps: int | None) -> None:
    """The version-2 fields: a per-step list of the right length in range, stability >= 1."""
    if not isinstance(table.stable, int) or table.stable < 1:
        raise PrimecError(f"early-exit stable must be an integer >= 1, got {table.stable!r}")
    if table.rule == "convergence" and (table.thresholds or table.stable > 1):
        raise PrimecError("the convergence rule takes neither per-step thresholds nor stable")
    if table.thresholds is not None and not isinstance(table.thresholds, tuple | list):
        raise PrimecError(f"early-exit thresholds must be a list, got {table.thresholds!r}")
    if table.thresholds and timesteps is not None and len(table.thresholds) != timesteps:
        raise PrimecError(
            f"early-exit table has {len(table.thresholds)} per-step thresholds for "
            f"{timesteps} timesteps: it needs one per step"
        )
    low, high = threshold_range(table.rule, classes)
    for value in table.thresholds or ():
        if not isinstance(value, int | float):
            raise PrimecError(f"early-exit per-step threshold {value!r} is not a number")
        if math.isnan(value) or not low <= value <= high:
            raise PrimecError(
                f"early-exit per-step threshold {value!r} is out of range for {table.rule}: "
                f"it must lie in [{low}, {high}]"
            )


def statistic(rule: str, temperature: float, readout: np.ndarray, t: int, steps: int) -> np.ndarray:
    """The rule's per-sample statistic [B] of one step's readout [B, ...] after 1-based step t."""
    flat = np.asarray(readout, dtype=np.float64).reshape(readout.shape[0], -1)
    if rule == "lead":
        top2 = np.sort(flat, axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]) * t / math.sqrt(max(steps - t, 1))
    p = softmax(flat, temperature)
    if rule == "max-softmax":
        return p.max(axis=1)
    if rule == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)


def passes(rule: str, stat: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Does the statistic pass the threshold (below it for entropy, above it otherwise)?"""
    return stat < threshold if rule == "entropy" else stat > threshold


def step_threshold(table: ExitTable, t: int) -> float:
    """The threshold after 1-based step t."""
    return table.thresholds[t - 1] if table.thresholds else table.threshold


def controller_step(controller: ExitController, t: int, readout: np.ndarray) -> np.ndarray:
    """The controller's test for a version-2 table: statistic, per-step threshold, stability."""
    table = controller.table
    flat = readout.reshape(readout.shape[0], -1)
    top = predictions(flat)
    controller.stable = np.where(top == controller.top, controller.stable + 1, 1)
    controller.top = top
    stat = statistic(table.rule, table.temperature, flat, t, controller.timesteps)
    passed = passes(table.rule, stat, step_threshold(table, t))
    return passed & (controller.stable >= table.stable) & (t >= table.min_steps)


@dataclass(frozen=True)
class StepStats:
    """Per sample and step: the statistic, the top class and how long it has been stable."""

    stat: np.ndarray  # [N, T]
    pred: np.ndarray  # [N, T]
    stable: np.ndarray  # [N, T]

    @staticmethod
    def of(readouts: np.ndarray, rule: str, temperature: float) -> StepStats:
        """Computed exactly as the controller does, step by step."""
        n, steps = readouts.shape[:2]
        flat = readouts.reshape(n, steps, -1)
        stat = np.stack(
            [statistic(rule, temperature, flat[:, t - 1], t, steps) for t in range(1, steps + 1)],
            axis=1,
        )
        pred = predictions(flat)
        stable = np.ones((n, steps), dtype=np.int64)
        for t in range(1, steps):
            stable[:, t] = np.where(pred[:, t] == pred[:, t - 1], stable[:, t - 1] + 1, 1)
        return StepStats(stat, pred, stable)


def exit_steps(stats: StepStats, base: ExitTable, thresholds: np.ndarray) -> np.ndarray:
    """0-based exit step [N] of each sample for per-step thresholds [T] (vectorised controller)."""
    return tables_exits(stats, base, np.asarray(thresholds)[None, :])[:, 0]


def tables_exits(stats: StepStats, base: ExitTable, tables: np.ndarray) -> np.ndarray:
    """0-based exit steps [N, M] for M per-step tables [M, T] at once."""
    steps = stats.stat.shape[1]
    last = min(base.max_steps or steps, steps)
    ok = passes(base.rule, stats.stat[:, None, :], tables[None, :, :])
    ok &= (stats.stable >= base.stable)[:, None, :]
    ok[:, :, : base.min_steps - 1] = False
    ok[:, :, last - 1 :] = True
    return ok.argmax(axis=2)


def one_threshold_exits(stats: StepStats, base: ExitTable, grid: np.ndarray) -> np.ndarray:
    """0-based exit steps [N, G] for every threshold of a grid (one shared threshold each)."""
    return tables_exits(stats, base, np.repeat(grid[:, None], stats.stat.shape[1], axis=1))


def losses_of(
    stats: StepStats, exits: np.ndarray, risk: str, labels: np.ndarray | None
) -> np.ndarray:
    """0/1 losses of exits [N, ...]: prediction differs from all-T (consistency) or is wrong where
    the all-T one is right (accuracy; an upper bound on the accuracy lost)."""
    rows = np.arange(len(exits)).reshape(-1, *([1] * (exits.ndim - 1)))
    early, final = stats.pred[rows, exits], stats.pred[:, -1].reshape(rows.shape)
    if risk == "consistency":
        return early != final
    truth = labels.reshape(rows.shape)
    return (early != truth) & (final == truth)
