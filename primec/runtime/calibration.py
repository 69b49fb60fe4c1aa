"""Calibrating the early-exit table with the simulator: run all T steps on calibration data,
sweep the rule's threshold, keep the cheapest setting within the accuracy budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from primec.backends.program import Program
from primec.backends.simulator import Simulator
from primec.errors import PrimecError
from primec.hardware.earlyexit import (
    PRIME_RULE,
    Calibration,
    ExitTable,
    apply_table,
    calibrate,
    predictions,
)
from primec.runtime.simdata import SimData


def calibrate_program(
    program: Program,
    data: SimData,
    base: ExitTable,
    budget_points: float,
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[Program, Calibration]:
    """The program with a calibrated exit table, and what calibration measured (ideal mode)."""
    if data.y is None:
        raise PrimecError(
            "calibration data needs labels `y`",
            hint="write x and y into the .npz (primec datasets ndigits --split calibration)",
        )
    if budget_points < 0:
        raise PrimecError(f"--accuracy-budget must be >= 0 percentage points, got {budget_points}")
    run = Simulator(program, device=device).run(data.x, batch_size, early_exit=False)
    result = calibrate(base, run.readouts, data.y, budget_points)
    return replace(program, exit_table=result.table), result


def calibration_report(
    result: Calibration, readouts: np.ndarray | None = None, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """The calibration report; with readouts, PRIME's hand-set rule on the same data too."""
    report = result.to_dict()
    if readouts is not None and labels is not None:
        steps, at_exit = apply_table(PRIME_RULE, readouts)
        report["prime_hand_set"] = {
            "table": PRIME_RULE.to_dict(),
            "avg_timesteps": float(steps.mean()),
            "accuracy": float((predictions(at_exit) == labels).mean()),
        }
    return report


def plot_curve(
    result: Calibration,
    path: str | Path,
    hand_set: tuple[float, float] | None = None,
    title: str = "",
) -> None:
    """Accuracy vs average timesteps over the threshold sweep, the chosen point marked."""
    from primec.apps.plots import pyplot, save_figure

    plt = pyplot()
    steps = [p.avg_timesteps for p in result.curve]
    accuracy = [100 * p.accuracy for p in result.curve]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    axes.plot(
        steps,
        accuracy,
        ".-",
        color="0.5",
        markersize=3,
        label=f"{result.table.rule} threshold sweep",
    )
    axes.axhline(
        100 * result.accuracy_full,
        color="0.7",
        linestyle=":",
        label=f"all {result.timesteps} steps",
    )
    axes.plot(
        [result.avg_timesteps],
        [100 * result.accuracy],
        "o",
        color="tab:green",
        markersize=9,
        label=f"calibrated (threshold {result.table.threshold:.3g})",
    )
    if hand_set is not None:
        axes.plot(
            [hand_set[0]],
            [100 * hand_set[1]],
            "s",
            color="tab:red",
            markersize=8,
            label="PRIME hand-set (0.8)",
        )
    axes.axvline(
        result.oracle_avg_timesteps,
        color="tab:blue",
        linestyle="--",
        linewidth=1,
        label=f"oracle ({result.oracle_avg_timesteps:.2f} steps)",
    )
    axes.set_xlabel("average timesteps per inference")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title or "Early exit: accuracy vs average timesteps")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    save_figure(figure, path)
