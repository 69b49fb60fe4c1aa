"""From a placed graph to an artefact: lower to a program, set or calibrate the early-exit table,
encode as bytecode (.pbc) or macro programming file (.pmac)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primec.backends import bytecode, macrofile
from primec.backends.lower import lower
from primec.backends.program import Program
from primec.calibration import calibrate_program, calibration_report, plot_curve
from primec.earlyexit import PRIME_RULE, ExitTable
from primec.errors import PrimecError
from primec.exitcalibration import GuaranteeOptions, certify_program, plot_certified
from primec.ir import Graph
from primec.simdata import load_inputs
from primec.target import Target

ENCODERS = {"bytecode": bytecode.write, "macro": macrofile.write}


@dataclass(frozen=True)
class ExitOptions:
    """The early-exit options of `primec compile`."""

    rule: str | None = None
    threshold: float | None = None
    temperature: float = 1.0
    min_steps: int = 1
    max_steps: int = 0
    calibrate: str | None = None
    budget_points: float = 0.5
    plot: str | None = None
    guarantee: GuaranteeOptions | None = None  # certified calibration (exitcalibration)

    def base_table(self) -> ExitTable | None:
        """The table set by hand, or the one calibration starts from (threshold swept)."""
        if self.plot and not self.calibrate:
            raise PrimecError("--plot draws the calibration curve: it needs --calibrate data.npz")
        if self.guarantee is not None and self.calibrate:
            self.guarantee.check(self.rule)
        if self.calibrate and self.threshold is not None:
            raise PrimecError(
                "--exit-threshold and --calibrate both set the threshold", hint="give one of them"
            )
        if self.threshold is None and not self.calibrate:
            if self.rule is not None:
                raise PrimecError(
                    f"--exit-rule {self.rule} needs --exit-threshold X or --calibrate data.npz"
                )
            return None
        threshold = self.threshold if self.threshold is not None else PRIME_RULE.threshold
        table = ExitTable(
            self.rule or "max-softmax", threshold, self.temperature, self.min_steps, self.max_steps
        )
        return table if self.calibrate else table.check()


def build_program(
    graph: Graph,
    target: Target,
    exits: ExitOptions,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Program, dict[str, Any] | None]:
    """The program of a placed graph with its exit table; the calibration report if calibrated."""
    base = exits.base_table()
    program = lower(graph, target)
    if base is None:
        return program, None
    if not exits.calibrate:
        return lower(graph, target, base.check(_classes(program))), None
    data = load_inputs(exits.calibrate, program.input_shape, program.timesteps, _classes(program))
    if exits.guarantee is not None:
        program, report = certify_program(program, data, base, exits.guarantee, progress)
        if exits.plot:
            plot_certified(report, exits.plot, title=f"{program.name}: certified early exit")
        return program, report
    program, result = calibrate_program(program, data, base, exits.budget_points)
    if exits.plot:
        plot_curve(
            result, exits.plot, title=f"{program.name}: early exit on {Path(exits.calibrate).name}"
        )
    return program, calibration_report(result)


def _classes(program: Program) -> int:
    shape = program.buffers[program.readout]
    return int(shape[0]) if len(shape) == 1 else 0


def write_artefact(program: Program, emit: str, path: str | Path) -> None:
    """Encode the program as `emit` ("bytecode" or "macro") into path, atomically."""
    ENCODERS[emit](program, path)
