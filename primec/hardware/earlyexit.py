"""Early exit: the control table, the per-step controller, and threshold calibration.

The controller is what the macro's controller does after every timestep: look at the readout
so far and decide, per sample, whether to stop. The simulator and calibration both use it, so
calibrated numbers are what the simulated chip does.

Rules (`docs/early-exit.md` has the equations):
- `max-softmax` (PRIME): p = softmax(m_t / temperature); exit when max(p) > threshold.
- `margin`: exit when the top two of p differ by more than threshold.
- `entropy`: exit when the entropy of p (nats) is below threshold.
- `lead`: exit when (top1 - top2 of m_t) * t / sqrt(T - t) exceeds threshold: the top class's lead
  in the summed readout against the random-walk scale of the steps still to run.
- `convergence` (the inpainting rule): d_t = sum|r_t - r_(t-1)| / scale; exit once the last
  `window` changes are strictly decreasing and the last is below threshold.

The rules' arithmetic (`softmax`, `predictions`, `threshold_range`, the version-2 controller
step) lives in `exitrules`; the first three are importable from here too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from primec.core.exactmath import geometric
from primec.errors import PrimecError
from primec.hardware.exitrules import (
    check_policy_fields,
    controller_step,
    predictions,
    softmax,
    threshold_range,
)

RULES = ("max-softmax", "margin", "entropy", "convergence", "lead")
TABLE_VERSIONS = (1, 2)  # 2: per-step `thresholds` and `stable` (docs/early-exit.md)


@dataclass(frozen=True)
class ExitTable:
    """The early-exit control table of one model."""

    rule: str
    threshold: float
    temperature: float = 1.0
    min_steps: int = 1
    max_steps: int = 0  # 0: all T steps
    window: int = 3
    scale: float = 100.0
    thresholds: tuple[float, ...] = ()  # one per timestep; when given, replaces `threshold`
    stable: int = 1  # exit only once the top class has been the same this many steps

    def check(self, classes: int | None = None, timesteps: int | None = None) -> ExitTable:
        """Raise a `PrimecError` if a field is out of range; return self."""
        if self.rule not in RULES:
            raise PrimecError(
                f"unknown early-exit rule {self.rule!r}", hint=f"known rules: {', '.join(RULES)}"
            )
        low, high = threshold_range(self.rule, classes)
        if not low <= self.threshold <= high or math.isnan(self.threshold):
            raise PrimecError(
                f"early-exit threshold {self.threshold} is out of range for {self.rule}: it must lie in [{low}, {high}]"
            )
        if self.temperature <= 0 or self.scale <= 0:
            raise PrimecError(
                f"early-exit temperature and scale must be positive, got {self.temperature} and {self.scale}"
            )
        if (
            self.min_steps < 1
            or self.max_steps < 0
            or (self.max_steps and self.max_steps < self.min_steps)
        ):
            raise PrimecError(
                f"early-exit steps must satisfy 1 <= min_steps <= max_steps (0: T), got {self.min_steps}, {self.max_steps}"
            )
        if self.window < 1:
            raise PrimecError(f"early-exit window must be at least 1, got {self.window}")
        check_policy_fields(self, classes, timesteps)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain fields for JSON and file formats; a table without version-2 fields writes
        exactly the version-1 fields, so hand-set artefacts keep their bytes."""
        fields = asdict(self)
        if not self.thresholds and self.stable == 1:
            del fields["thresholds"], fields["stable"]
            return fields
        return fields | {"thresholds": list(self.thresholds or ()), "version": 2}

    @staticmethod
    def from_dict(fields: dict[str, Any], timesteps: int | None = None) -> ExitTable:
        """Read a table from plain fields, checking names and ranges."""
        known = set(ExitTable.__dataclass_fields__)
        fields = dict(fields)
        version = fields.pop("version", 1)
        unknown = sorted(set(fields) - known)
        if unknown or "rule" not in fields or "threshold" not in fields:
            raise PrimecError(
                f"malformed early-exit table {fields}", hint=f"fields: {', '.join(sorted(known))}"
            )
        if version not in TABLE_VERSIONS:
            raise PrimecError(
                f"early-exit table version {version!r} is not one this primec reads (1, 2)",
                hint="recompile the artefact with this primec",
            )
        if isinstance(fields.get("thresholds"), list):
            fields["thresholds"] = tuple(fields["thresholds"])
        return ExitTable(**fields).check(timesteps=timesteps)


PRIME_RULE = ExitTable("max-softmax", threshold=0.8, temperature=2.0)


def _confident(table: ExitTable, readout: np.ndarray) -> np.ndarray:
    """Per sample: does this step's readout [B, K] pass the rule's test?"""
    p = softmax(readout.reshape(readout.shape[0], -1), table.temperature)
    if table.rule == "max-softmax":
        return p.max(axis=1) > table.threshold
    if table.rule == "margin":
        top2 = (
            np.sort(p, axis=1)[:, -2:]
            if p.shape[1] > 1
            else np.concatenate([np.zeros_like(p), p], axis=1)
        )
        return top2[:, 1] - top2[:, 0] > table.threshold
    entropy = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
    return entropy < table.threshold


class ExitController:
    """Decides after each step which samples stop; state per sample, as the chip keeps it."""

    def __init__(self, table: ExitTable | None, timesteps: int, batch: int) -> None:
        self.table = table
        self.last_step = min(table.max_steps or timesteps, timesteps) if table else timesteps
        self.previous: np.ndarray | None = None
        self.changes = np.zeros((batch, 0))
        self.timesteps = timesteps
        self.top = np.full(batch, -1)  # per sample: the top class so far and for how many steps
        self.stable = np.zeros(batch, dtype=np.int64)
        self.versioned = table is not None and (
            bool(table.thresholds) or table.stable > 1 or table.rule == "lead"
        )
        if self.versioned:
            table.check(timesteps=timesteps)

    def step(self, t: int, readout: np.ndarray) -> np.ndarray:
        """After 1-based step t with readout [B, ...]: a bool mask of the samples that stop now."""
        batch = readout.shape[0]
        if t >= self.last_step:
            return np.ones(batch, dtype=bool)
        if self.table is None:
            return np.zeros(batch, dtype=bool)
        if self.versioned:
            return controller_step(self, t, readout)
        passed = (
            self._convergence(readout)
            if self.table.rule == "convergence"
            else _confident(self.table, readout)
        )
        return passed & (t >= self.table.min_steps)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the per-sample state of `rows` (the samples still running)."""
        self.changes = self.changes[rows]
        self.top, self.stable = self.top[rows], self.stable[rows]
        if self.previous is not None:
            self.previous = self.previous[rows]

    def _convergence(self, readout: np.ndarray) -> np.ndarray:
        flat = np.asarray(readout, dtype=np.float64).reshape(readout.shape[0], -1)
        if self.previous is not None:
            change = np.abs(flat - self.previous).sum(axis=1) / self.table.scale
            self.changes = np.concatenate([self.changes, change[:, None]], axis=1)[
                :, -self.table.window :
            ]
        self.previous = flat
        if self.changes.shape[1] < self.table.window:
            return np.zeros(flat.shape[0], dtype=bool)
        decreasing = np.all(np.diff(self.changes, axis=1) < 0, axis=1)
        return decreasing & (self.changes[:, -1] < self.table.threshold)


def apply_table(table: ExitTable | None, readouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the controller over recorded readouts [N, T, ...]: (exit_step [N] (1-based), readout at exit)."""
    n, steps = readouts.shape[:2]
    controller = ExitController(table, steps, n)
    exit_step = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    for t in range(1, steps + 1):
        stop = controller.step(t, readouts[active, t - 1])
        exit_step[active[stop]] = t
        active = active[~stop]
        controller.keep(~stop)
        if active.size == 0:
            break
    return exit_step, readouts[np.arange(n), exit_step - 1]


def oracle_steps(readouts: np.ndarray) -> np.ndarray:
    """Per sample, the earliest step after which the prediction never changes (1-based)."""
    preds = predictions(readouts)  # [N, T]
    final = preds[:, -1:]
    differs = preds != final
    # The last step that disagrees with the final answer; the oracle stops one after it.
    last_diff = np.where(
        differs.any(axis=1), preds.shape[1] - np.argmax(differs[:, ::-1], axis=1), 0
    )
    return last_diff + 1


@dataclass(frozen=True)
class CurvePoint:
    """One threshold of a calibration sweep."""

    threshold: float
    avg_timesteps: float
    accuracy: float
    changed: float  # fraction of samples whose prediction differs from the all-steps one


@dataclass(frozen=True)
class Calibration:
    """What calibration found: the chosen table, the curve, the baseline and the oracle."""

    table: ExitTable
    curve: tuple[CurvePoint, ...]
    accuracy_full: float
    accuracy: float
    avg_timesteps: float
    oracle_avg_timesteps: float
    timesteps: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "table": self.table.to_dict(),
            "accuracy_all_steps": self.accuracy_full,
            "accuracy": self.accuracy,
            "avg_timesteps": self.avg_timesteps,
            "compute_savings": 1 - self.avg_timesteps / self.timesteps,
            "oracle_avg_timesteps": self.oracle_avg_timesteps,
            "avg_timesteps_over_oracle": self.avg_timesteps / self.oracle_avg_timesteps,
            "curve": [asdict(p) for p in self.curve],
        }


def candidate_thresholds(rule: str, classes: int, count: int = 200) -> np.ndarray:
    """Thresholds to sweep: dense over the rule's range (including the ends)."""
    low, high = threshold_range(rule, classes)
    if rule == "convergence":
        return np.concatenate([[0.0], geometric(1e-4, 100.0, count - 1)])
    return np.linspace(low, high, count)


def evaluate(table: ExitTable, readouts: np.ndarray, labels: np.ndarray) -> CurvePoint:
    """Accuracy, average timesteps and changed predictions of one table on recorded readouts."""
    exit_step, at_exit = apply_table(table, readouts)
    early = predictions(at_exit)
    changed = float((early != predictions(readouts[:, -1])).mean())
    return CurvePoint(
        table.threshold, float(exit_step.mean()), float((early == labels).mean()), changed
    )


def calibrate(
    base: ExitTable, readouts: np.ndarray, labels: np.ndarray, budget_points: float
) -> Calibration:
    """Sweep `base.rule`'s threshold on recorded readouts [N, T, K]; pick the cheapest setting
    that loses at most `budget_points` percentage points of accuracy against all T steps.

    The test is on changed predictions, not on accuracy: accuracy can only drop on samples whose
    prediction changed, so at most `budget_points` % changed bounds the loss, and unlike raw
    accuracy it does not reward lucky flips on a small calibration set (which does not carry
    over to held-out data).
    """
    if labels is None or len(labels) != len(readouts):
        raise PrimecError(
            "calibration data needs labels `y`, one per sample",
            hint="write y [N] next to x in the .npz",
        )
    steps = readouts.shape[1]
    full = float((predictions(readouts[:, -1]) == labels).mean())
    classes = int(np.prod(readouts.shape[2:]))
    curve = tuple(
        evaluate(replace(base, threshold=float(th)), readouts, labels)
        for th in candidate_thresholds(base.rule, classes)
    )
    # The sweep's strictest threshold never exits early, so at least one point is within budget.
    within = [p for p in curve if p.changed <= budget_points / 100.0 + 1e-12]
    best = min(within, key=lambda p: (p.avg_timesteps, -p.accuracy))
    return Calibration(
        table=replace(base, threshold=best.threshold).check(classes),
        curve=curve,
        accuracy_full=full,
        accuracy=best.accuracy,
        avg_timesteps=best.avg_timesteps,
        oracle_avg_timesteps=float(oracle_steps(readouts).mean()),
        timesteps=steps,
    )
