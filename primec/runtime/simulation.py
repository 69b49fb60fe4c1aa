"""`primec simulate`: load an artefact, check the data against it, run it, report."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from primec.backends.program import Program
from primec.backends.simulator import Noise, SimResult, Simulator
from primec.backends.simulator.adc import calibration_used
from primec.backends.simulator.drift import COMPENSATIONS
from primec.backends.simulator.verify import VerifiedSimulator
from primec.errors import PrimecError
from primec.fileio import write_npz
from primec.hardware.driftmodel import drift_from_entry
from primec.hardware.energy import energy_report
from primec.hardware.target import DriftSpec, load_target
from primec.runtime.activity import SAMPLES, activity_report, from_trace, traced_buffers
from primec.runtime.simdata import SimData, load_inputs


def classes_of(program: Program) -> int:
    """How many classes the readout has (its element count)."""
    return int(np.prod(program.buffers[program.readout]))


def artefact_inputs(program: Program, path: str | Path) -> SimData:
    """The data file at path, checked against what the artefact takes (`simdata.load_inputs`)."""
    return load_inputs(
        path, program.input_shape, program.timesteps, classes_of(program), program.input_drive
    )


def simulate(
    program: Program,
    data: SimData,
    noise: Noise | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    early_exit: bool = True,
    progress: Callable[[int, int], None] | None = None,
    noise_source: str = "",
    statistical: bool = True,
    stuck_repair: str = "none",
    chip: int = 0,
) -> tuple[SimResult, dict[str, Any]]:
    """Run the program on the data; return the per-sample results and the JSON report. The
    statistical energy estimate (activity statistics of up to 256 samples, every step: traced by
    the main run when it runs every step, else by an extra run) is added unless `statistical`
    is off. `stuck_repair` (`cancel` or `restore`) adds the read-back repair of stuck cells'
    pair partners after programming (`backends/simulator/verify.py`). `chip` is the device
    instance (its draws are keyed by it, as a sweep's chips are)."""
    if batch_size < 1:
        raise PrimecError(f"--batch-size must be at least 1, got {batch_size}")
    noise = noise or Noise()
    drift = drift_model(program) if noise.age else None
    # Every step of every sample runs anyway: the main run traces what the statistics need.
    reuse = statistical and not (early_exit and program.exit_table)
    trace = traced_buffers(program) if reuse else ()
    build = Simulator if stuck_repair == "none" else partial(VerifiedSimulator, repair=stuck_repair)
    instance = partial(build, chips=(chip,))
    simulator = instance(program, noise, device, trace=trace, drift=drift)
    result = simulator.run(data.x, batch_size, early_exit, progress, trace_samples=SAMPLES)
    summary = report(program, data, result, noise, early_exit)
    summary["noise_source"] = noise_source or "given by the caller"
    summary["chip"] = chip
    summary["stuck_repair"] = {"mode": stuck_repair, "pairs_repaired": _repaired(simulator)}
    summary |= conditions_report(program, noise, drift)
    summary["torch_threads"] = torch.get_num_threads()
    if not statistical:
        return result, summary
    counted = summary["energy_per_inference_j"]
    activity = from_trace(program, result.spikes) if reuse else None
    statistics = activity_report(
        program, data.x, result.exit_step, result.counts, counted, noise, drift, activity, instance
    )
    return result, summary | statistics


def _repaired(simulator: Simulator) -> int | None:
    """How many stuck cells' pairs the read-back repair rewrote (None without a repair)."""
    return getattr(simulator, "repaired", None)


def use_threads(threads: int | None = None) -> int:
    """Set torch's thread count: `threads`, or by default one per CPU that the machine's load
    leaves idle (at least one). On a loaded machine torch's default, one per core, makes its
    thread pool wait on busy cores at every small op (docs/performance.md has the measurement).
    Returns the count."""
    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, min(cpus or 1, (cpus or 1) - round(os.getloadavg()[0])))
    torch.set_num_threads(threads)
    return threads


def drift_model(program: Program, target: str | None = None) -> DriftSpec:
    """The drift model the artefact carries (meta `drift`, written when it was compiled); for an
    artefact without one, its target's, loaded by name (or `target`'s, a name or TOML file)."""
    if target is None and "drift" in program.meta:
        return drift_from_entry(program.meta["drift"])
    spec = target or program.meta["target"]
    try:
        drift = load_target(spec).drift
    except PrimecError as exc:
        raise PrimecError(
            f"an age needs the drift model of target {spec!r}, which cannot be loaded: {exc}"
        ) from exc
    if drift is None:
        raise PrimecError(
            f"target {spec!r} has no [drift] table, so the artefact cannot be aged",
            hint="add a [drift] table to the target (docs/targets.md), or leave out the age",
        )
    return drift


def conditions_report(program: Program, noise: Noise, drift: DriftSpec | None) -> dict[str, Any]:
    """The ADC ranges a run converted on (`adc_ranges`: target, tile or column) and, for an aged
    chip, its age, the compensation and the drift model with where it came from (`drift`)."""
    out: dict[str, Any] = {"adc_ranges": calibration_used(program, noise) if noise.adc else None}
    if drift is None:
        return out | {"drift": None}
    carried = "drift" in program.meta
    return out | {
        "drift": {
            "age_s": noise.age,
            "compensation": COMPENSATIONS[noise.drift_comp],
            "model": dataclasses.asdict(drift),
            "model_source": "the artefact" if carried else f"target {program.meta['target']!r}",
        }
    }


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
