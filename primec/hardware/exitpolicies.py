"""Early-exit policies beyond one threshold, and their certified calibration.

A policy is a statistic the controller computes from the readout after each step, a threshold
per step (one shared value: the `threshold` policy; a table: `per-step`), and a stability
requirement (the top class unchanged for `stable` steps). The `lead` policy uses the richer
statistic (top1 - top2 of the readout) * t / sqrt(T - t): the top class's lead in the summed
readout against the random-walk scale of the steps still to come, and asks for stability 2.

Calibration (`certify_exit`) builds a sequence of candidate tables from conservative (never
exits early) to aggressive, tests them in that order with `primec.hardware.certify`
(fixed-sequence testing) and keeps the cheapest certified one. The order must not depend on the
samples it is tested on: one-threshold sequences are fixed grids; a per-step table's sequence is
fitted greedily on a `fit_fraction` of the calibration samples (`exitfit`) and tested on the
others. The statistics and the vectorised controller are in `exitrules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from primec.core.exactmath import geometric
from primec.errors import PrimecError
from primec.hardware import certify as cert
from primec.hardware.earlyexit import ExitTable, oracle_steps
from primec.hardware.exitfit import GRID, fitted_shape, shifted_tables
from primec.hardware.exitrules import StepStats, losses_of, one_threshold_exits, tables_exits

POLICIES = ("threshold", "per-step", "lead")
RISKS = ("consistency", "accuracy")


def one_threshold_grid(rule: str, classes: int) -> np.ndarray:
    """A data-independent threshold sequence, from never exiting early to always exiting."""
    if rule == "lead":
        return np.concatenate([geometric(1e4, 1e-4, GRID - 1), [0.0]])
    if rule == "entropy":
        return np.linspace(0.0, math.log(classes), GRID)
    return np.linspace(1.0, 0.0, GRID)


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
