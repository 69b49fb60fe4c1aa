"""A sweep's grid checked against the artefact and the base noise before any work: each refusal
is a grid whose points would repeat one another (or could not run), with a hint to fix it."""

from __future__ import annotations

from primec.backends.program import Program
from primec.backends.simulator import Noise
from primec.backends.simulator.adc import CALIBRATIONS, calibration_levels
from primec.backends.simulator.drift import check_compensation
from primec.errors import PrimecError
from primec.runtime.sweep import REPAIRS, Grid


def check_adc_levels(program: Program, grid: Grid) -> None:
    """Refuse an `adc_cal` level whose ranges the artefact lacks: its points would repeat a
    coarser level's under another name."""
    has = calibration_levels(program)
    for level in dict(grid.axes).get("adc_cal", ()):
        if not has[int(level)]:
            raise PrimecError(
                f"sweep level adc_cal={int(level)} needs per-{CALIBRATIONS[int(level)]} ADC "
                "ranges, and the artefact has none",
                hint="calibrate first: primec calibrate-adc (per tile) or with --per column",
            )


def check_repair_ages(grid: Grid, base: Noise) -> None:
    """Refuse a grid with a point that repairs stuck cells on an aged chip: the repair is
    modelled right after programming only (`VerifiedSimulator` refuses it too, but a sweep
    should stop before any work, not at its first such shard)."""
    for point in grid.points():
        repair, age = int(point.get("stuck_repair", 0)), point.get("age", base.age)
        if repair and age:
            where = "the grid's age axis (--ages or --grid age)" if "age" in point else "--noise"
            raise PrimecError(
                f"the sweep combines stuck_repair={repair} ({REPAIRS[repair]}) with age={age:g} s "
                f"from {where}: the stuck-cell repair is modelled right after programming only",
                hint="sweep the repair with no age (--grid stuck_repair=... without --ages), "
                "or the ages with --grid stuck_repair=0",
            )


def check_repair_stuck(grid: Grid, base: Noise) -> None:
    """Refuse a stuck-cell repair axis when no point has stuck cells: every level would run
    the same chips, with nothing to repair."""
    points = grid.points()
    if "stuck_repair" in dict(grid.axes) and not any(p.get("stuck", base.stuck) for p in points):
        raise PrimecError(
            "the sweep repairs stuck cells (--grid stuck_repair), and no point has any: every "
            "level would run the same chips",
            hint="add stuck cells with --grid stuck=0.002,0.01 or --noise stuck=0.002, or leave "
            "out stuck_repair",
        )


def check_drift_ages(grid: Grid, base: Noise) -> None:
    """Refuse a drift compensation when no point has an age: every level would run the same,
    undrifted chips."""
    points = grid.points()
    aged = any(point.get("age", base.age) for point in points)
    for point in points:
        check_compensation(
            int(point.get("drift_comp", base.drift_comp)),
            aged,
            hint="add ages with --ages 60s,1h,1d (or --grid age=... or --noise age=...), "
            "or leave out drift_comp",
        )
