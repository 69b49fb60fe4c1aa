"""`primec simulate`: load an artefact, check the data against it, run it, report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from primec.backends.program import Program
from primec.backends.simulator import Noise, SimResult, Simulator
from primec.errors import PrimecError
from primec.fileio import write_npz
from primec.hardware.energy import energy_report
from primec.runtime.activity import activity_report
from primec.runtime.simdata import SimData


def classes_of(program: Program) -> int:
    """How many classes the readout has (its element count)."""
    return int(np.prod(program.buffers[program.readout]))


def simulate(
    program: Program,
    data: SimData,
    noise: Noise | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    early_exit: bool = True,
    progress: Callable[[int, int], None] | None = None,
    noise_source: str = "",
) -> tuple[SimResult, dict[str, Any]]:
    """Run the program on the data; return the per-sample results and the JSON report."""
    if batch_size < 1:
        raise PrimecError(f"--batch-size must be at least 1, got {batch_size}")
    result = Simulator(program, noise, device).run(data.x, batch_size, early_exit, progress)
    summary = report(program, data, result, noise or Noise(), early_exit)
    counted = summary["energy_per_inference_j"]
    activity = activity_report(program, data.x, result.exit_step, result.counts, counted, noise)
    return result, summary | activity | {"noise_source": noise_source or "given by the caller"}


def report(
    program: Program, data: SimData, result: SimResult, noise: Noise, early_exit: bool
) -> dict[str, Any]:
    """The simulation report (`docs/simulator.md` lists every key)."""
    steps = program.timesteps
    histogram = Counter(result.exit_step.tolist())
    summary = {
        "artefact": program.name,
        "target": program.meta["target"],
        "samples": len(result.pred),
        "timesteps": steps,
        "early_exit": program.exit_table.to_dict() if (early_exit and program.exit_table) else None,
        "noise": {k: v for k, v in vars(noise).items()},
        "avg_timesteps": float(result.exit_step.mean()),
        "timesteps_histogram": {str(t): histogram.get(t, 0) for t in range(1, steps + 1)},
        "compute_savings": 1 - float(result.exit_step.mean()) / steps,
        "throughput_samples_per_s": len(result.pred) / result.seconds if result.seconds else None,
        "seconds": result.seconds,
    }
    if data.y is not None:
        summary["accuracy"] = float((result.pred == data.y).mean())
    return summary | energy_report(
        result.counts, result.exit_step, program.meta, steps, noise.adc or None
    )


def write_outputs(path: str | Path, result: SimResult) -> None:
    """Per-sample results: pred [N], exit_step [N], readouts [N, T, ...] (NaN after exit)."""
    write_npz(
        path, {"pred": result.pred, "exit_step": result.exit_step, "readouts": result.readouts}
    )
