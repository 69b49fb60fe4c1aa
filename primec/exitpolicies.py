"""Early-exit policies beyond one threshold, and their certified calibration.

A policy is a statistic the controller computes from the readout after each step, a threshold
per step (one shared value: the `threshold` policy; a table: `per-step`), and a stability
requirement (the top class unchanged for `stable` steps). The `lead` policy uses the richer
statistic (top1 - top2 of the readout) * t / sqrt(T - t): the top class's lead in the summed
readout against the random-walk scale of the steps still to come, and asks for stability 2.

Calibration (`certify_exit`) builds a sequence of candidate tables from conservative (never
exits early) to aggressive, tests them in that order with `primec.certify` (fixed-sequence
testing) and keeps the cheapest certified one. The order must not depend on the samples it is
tested on: one-threshold sequences are fixed grids; a per-step table's sequence is fitted
greedily on a `fit_fraction` of the calibration samples and tested on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from primec import certify as cert
from primec.earlyexit import ExitController, ExitTable, oracle_steps, predictions, softmax
from primec.errors import PrimecError

POLICIES = ("threshold", "per-step", "lead")
RISKS = ("consistency", "accuracy")
GRID = 1001  # thresholds of a one-threshold sequence
FIT_LEVELS = 100  # threshold levels per step of a fitted table
NEVER_LEAD = 1e300  # a lead threshold no finite readout passes


def check_policy_fields(table: ExitTable, classes: int | None, timesteps: int | None) -> None:
    """The version-2 fields: a per-step list of the right length in range, stability >= 1."""
    from primec.earlyexit import threshold_range

    if not isinstance(table.stable, int) or table.stable < 1:
        raise PrimecError(f"early-exit stable must be an integer >= 1, got {table.stable!r}")
    if table.rule == "convergence" and (table.thresholds or table.stable > 1):
        raise PrimecError("the convergence rule takes neither per-step thresholds nor stable")
    if not isinstance(table.thresholds, tuple | list):
        raise PrimecError(f"early-exit thresholds must be a list, got {table.thresholds!r}")
    if table.thresholds and timesteps is not None and len(table.thresholds) != timesteps:
        raise PrimecError(
            f"early-exit table has {len(table.thresholds)} per-step thresholds for "
            f"{timesteps} timesteps: it needs one per step"
        )
    low, high = threshold_range(table.rule, classes)
    for value in table.thresholds:
        if not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
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


def one_threshold_grid(rule: str, classes: int) -> np.ndarray:
    """A data-independent threshold sequence, from never exiting early to always exiting."""
    if rule == "lead":
        return np.concatenate([np.geomspace(1e4, 1e-4, GRID - 1), [0.0]])
    if rule == "entropy":
        return np.linspace(0.0, math.log(classes), GRID)
    return np.linspace(1.0, 0.0, GRID)


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
        factors = np.concatenate([np.geomspace(1e4 / floor, 1e-4, GRID - 1), [0.0]])
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


@dataclass(frozen=True)
class CertifiedExit:
    """A certified early-exit table and what calibration measured."""

    table: ExitTable
    certificate: cert.Certificate
    report: dict[str, Any]


def policy_base(base: ExitTable, policy: str, stable: int | None) -> ExitTable:
    """The table a policy starts from (the `lead` policy: lead statistic, stability 2)."""
    if policy not in POLICIES:
        raise PrimecError(f"unknown exit policy {policy!r}", hint=f"known: {', '.join(POLICIES)}")
    if policy == "lead":
        base = replace(base, rule="lead", temperature=1.0, stable=2)
    if base.rule == "convergence":
        raise PrimecError("certified calibration is for classifiers: not the convergence rule")
    return replace(base, stable=stable) if stable is not None else base


def certify_exit(
    base: ExitTable,
    readouts: np.ndarray,
    labels: np.ndarray | None,
    eps: float,
    delta: float,
    policy: str = "lead",
    risk: str = "consistency",
    method: str = "binomial",
    fit_fraction: float = 0.3,
    seed: int = 0,
    stable: int | None = None,
) -> CertifiedExit:
    """The cheapest table of `policy` whose risk is certified <= eps with probability >= 1 - delta
    over the calibration draw; readouts [N, T, K] are all-T runs of i.i.d. calibration samples."""
    eps, delta = cert.check_level("--exit-risk", eps), cert.check_level("--exit-delta", delta)
    if risk not in RISKS:
        raise PrimecError(f"unknown exit risk {risk!r}", hint=f"known: {', '.join(RISKS)}")
    if risk == "accuracy" and labels is None:
        raise PrimecError(
            "the accuracy risk needs labels `y` in the calibration data",
            hint="write y [N] next to x, or certify --exit-guarantee consistency (no labels)",
        )
    if method not in cert.PVALUES:
        raise PrimecError(f"unknown p-value {method!r}", hint=f"known: {', '.join(cert.PVALUES)}")
    base = policy_base(base, policy, stable)
    n, steps = readouts.shape[:2]
    classes = int(np.prod(readouts.shape[2:]))
    if labels is not None and len(labels) != n:
        raise PrimecError(f"calibration data has {n} samples but {len(labels)} labels")
    order = np.arange(n)
    fitted = 0
    if policy == "per-step":
        if not 0.0 < fit_fraction < 1.0:
            raise PrimecError(f"--exit-fit-fraction must lie in (0, 1), got {fit_fraction}")
        order = np.random.default_rng(seed).permutation(n)
        fitted = int(round(fit_fraction * n))
        _enough_to_certify(n, fitted, eps, delta, method)
    stats = StepStats.of(readouts[order], base.rule, base.temperature)
    test_labels = None if labels is None else labels[order][fitted:]
    test = StepStats(stats.stat[fitted:], stats.pred[fitted:], stats.stable[fitted:])
    if policy == "per-step":
        fit = StepStats(stats.stat[:fitted], stats.pred[:fitted], stats.stable[:fitted])
        fit_labels = None if labels is None else labels[order][:fitted]
        shape = fitted_shape(fit, base, risk, fit_labels, eps)
        candidates = shifted_tables(base.rule, shape, classes)
        exits = tables_exits(test, base, candidates)
    else:
        candidates = one_threshold_grid(base.rule, classes)
        exits = one_threshold_exits(test, base, candidates)
    losses = losses_of(test, exits, risk, test_labels)
    certificate = cert.certify(losses, eps, delta, method)
    mean_steps = exits.mean(axis=0) + 1
    chosen = _cheapest_certified(certificate, mean_steps, steps, losses)
    table = _table(base, candidates[chosen], policy).check(classes, steps)
    report = _report(table, certificate, chosen, exits[:, chosen], test, test_labels, mean_steps)
    report |= {"policy": policy, "risk": risk, "fit_samples": fitted}
    return CertifiedExit(table, certificate, report)


def _enough_to_certify(n: int, fitted: int, eps: float, delta: float, method: str) -> None:
    needed = cert.samples_needed(eps, delta, 0.0, method)
    if n - fitted >= needed:
        return
    raise PrimecError(
        f"calibration data has {n} samples: the per-step policy fits on {fitted} and certifies "
        f"on the other {n - fitted}, but certifying risk <= {eps:g} at delta {delta:g} needs at "
        f"least {needed} there, so at least {math.ceil(needed / (1 - fitted / n))} in all",
        hint="give more calibration samples, a smaller --exit-fit-fraction, or a larger --exit-risk or --exit-delta",
    )


def _cheapest_certified(
    certificate: cert.Certificate, mean_steps: np.ndarray, steps: int, losses: np.ndarray
) -> int:
    """The certified candidate with the fewest average steps; an error if none saves a step."""
    certified = mean_steps[: certificate.certified]
    if certified.size and certified.min() < steps:
        return int(certified.argmin())
    early = np.flatnonzero(mean_steps < steps)
    n = certificate.samples
    if early.size == 0:
        raise PrimecError("no candidate exit setting ever stops early on the calibration data")
    k = int(losses[:, early[0]].sum())
    needed = cert.samples_needed(certificate.eps, certificate.delta, k / n, certificate.method)
    more = (
        f"with that rate about {needed} samples would be needed"
        if needed
        else "that rate is not below the risk asked for: no amount of data certifies it"
    )
    raise PrimecError(
        f"no early-exit setting that saves a step is certified at risk <= {certificate.eps:g}, "
        f"delta {certificate.delta:g}: the most conservative one that exits early changed "
        f"{k} of {n} calibration predictions; {more}",
        hint="give more calibration samples, a larger --exit-risk or --exit-delta, or another --exit-policy",
    )


def _table(base: ExitTable, candidate: Any, policy: str) -> ExitTable:
    if policy == "per-step":
        return replace(base, thresholds=tuple(float(v) for v in candidate))
    return replace(base, threshold=float(candidate))


def _report(
    table: ExitTable,
    certificate: cert.Certificate,
    chosen: int,
    exits: np.ndarray,
    stats: StepStats,
    labels: np.ndarray | None,
    mean_steps: np.ndarray,
) -> dict[str, Any]:
    n, steps = stats.pred.shape
    early = stats.pred[np.arange(n), exits]
    final = stats.pred[:, -1]
    avg = float(exits.mean() + 1)
    oracle = float(oracle_steps_of(stats.pred).mean())
    report: dict[str, Any] = {
        "table": table.to_dict(),
        "certificate": certificate.to_dict()
        | {
            "chosen_candidate": chosen,
            "losses": certificate.losses[chosen],
            "pvalue_chosen": certificate.pvalues[chosen],
        },
        "samples": n,
        "changed": float((early != final).mean()),
        "avg_timesteps": avg,
        "compute_savings": 1 - avg / steps,
        "oracle_avg_timesteps": oracle,
        "avg_timesteps_over_oracle": avg / oracle,
        "timesteps": steps,
        "curve": [
            {"avg_timesteps": float(s), "losses": int(k), "pvalue": float(p)}
            for s, k, p in zip(mean_steps, certificate.losses, certificate.pvalues, strict=True)
        ],
    }
    if labels is not None:
        report["accuracy"] = float((early == labels).mean())
        report["accuracy_all_steps"] = float((final == labels).mean())
    return report


def oracle_steps_of(pred: np.ndarray) -> np.ndarray:
    """The oracle's steps from per-step predictions [N, T] (as `earlyexit.oracle_steps`)."""
    one_hot = np.eye(int(pred.max()) + 1)[pred]
    return oracle_steps(one_hot)
