"""Calibrating the early-exit table with the simulator: run all T steps on calibration data,
sweep the rule's threshold, keep the cheapest setting within the accuracy budget."""

from __future__ import annotations

from dataclasses import replace
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
