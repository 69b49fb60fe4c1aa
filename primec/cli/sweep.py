"""`primec sweep`: Monte-Carlo sweeps of an artefact over noise parameters and many chips."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from primec.cli.common import user_errors
from primec.cli.simulate import check_device, input_option
from primec.errors import PrimecError


@click.command()
@click.argument("artefact", type=click.Path(exists=True, dir_okay=False))
@input_option("data.npz with x [N,T,...] and labels y [N] (for accuracy).")
@click.option(
    "--grid",
    "grid_specs",
    multiple=True,
    metavar="PARAM=LEVELS",
    help="One swept parameter and its comma-separated levels, e.g. program=0,0.02,0.05,0.1 "
    "(repeat for more axes). Parameters: program, read, stuck, adc, input, adc_cal, age, "
    "drift_comp, stuck_repair (stuck-cell repair as in simulate: 0 none, 1 cancel, 2 restore; "
    "not with an age).",
)
@click.option(
    "--ages",
    metavar="AGES",
    help="Drift ages as one more axis, e.g. 60s,1h,1d,30d,1y (the target's [drift] model); "
    "add --grid drift_comp=0,1,2 to compare compensations.",
)
@click.option("--chips", type=int, default=32, show_default=True, help="Chips per grid point.")
@click.option(
    "--noise",
    metavar="SPEC",
    help="What every point starts from (the grid overrides its parameters): the target's "
    "non-idealities by default, `ideal`, or e.g. read=0.02,adc=8.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every chip.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Samples each chip simulates together.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="torch device of every worker: cpu, cuda, cuda:1, ... (checked here before any work).",
)
@click.option("--no-early-exit", is_flag=True, help="Run all T steps.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Local Ray workers (default: one per CPU); 0 runs in this process without Ray.",
)
@click.option(
    "--ray-address",
    metavar="HOST:PORT",
    help="Run on an existing Ray cluster (see docs/sweeps.md) instead of local workers.",
)
@click.option(
    "--retries", type=int, default=2, show_default=True, help="Retries of a failed shard."
)
@click.option(
    "--chips-per-shard",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Chips one task simulates together (vectorised).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for sweep.csv, sweep-chips.csv, sweep.json and the plots.",
)
@click.option("--force", is_flag=True, help="Replace the outputs of an earlier sweep.")
@user_errors
def sweep(
    artefact: str,
    input_path: str,
    grid_specs: tuple[str, ...],
    out_dir: str,
    force: bool,
    **options: Any,
) -> None:
    """Simulate an artefact over a grid of noise parameters, many chips per point.

    \b
    Per point: accuracy mean, std over chips and 95% CI, timesteps, energy; a tidy table
    (CSV and JSON) and plots (accuracy vs each parameter with CI bands, a heatmap).
    Examples:
      primec sweep model.pbc --input test.npz --noise ideal --grid program=0,0.02,0.05,0.1 --out sw
      primec sweep model.pbc --input test.npz --grid read=0,0.02 --grid adc=4,6,8 --chips 16 --out sw
      primec sweep model.pbc --input test.npz --noise ideal --grid stuck=0.002,0.01 --grid stuck_repair=0,1,2 --out sw
      primec sweep model.pbc --input test.npz --grid program=0,0.05 --ray-address 10.0.0.5:6379 --out sw
    """
    from primec.apps.sweepplots import plot_sweep
    from primec.runtime.sweep import shards, sweep_report, write_tables
    from primec.runtime.sweepray import run_shards

    folder = Path(out_dir)
    _check_outputs(folder, force)
    check_device(options["device"])
    job, grid, source = _job(artefact, input_path, grid_specs, options)
    work = shards(grid, options["chips_per_shard"])
    workers = (os.cpu_count() or 1) if options["workers"] is None else options["workers"]
    outcome = run_shards(job, work, workers, options["ray_address"], options["retries"], _progress)
    report = sweep_report(job, grid, job.data, source, outcome.rows)
    report |= {
        "complete": outcome.complete,
        "failed_shard": outcome.failed.name if outcome.failed else None,
        "error": outcome.error or None,
    }
    _clear_earlier(folder)
    written = write_tables(folder, report, outcome.rows)
    if not outcome.complete:
        raise PrimecError(
            f"sweep stopped: {outcome.failed.name} failed after {options['retries']} retries "
            f"({outcome.error}); the {len(outcome.rows)} finished rows are in "
            f"{written[1]} (marked partial)",
            hint="fix the cause and run the sweep again",
        )
    plots = plot_sweep(report, folder)
    click.echo(sweep_summary(report, [*written, *plots]))


def _job(
    artefact: str, input_path: str, grid_specs: tuple[str, ...], options: dict[str, Any]
) -> tuple[Any, Any, str]:
    """The sweep's job (artefact, data, base noise, points, drift model), grid and noise source."""
    from primec.backends import read_artefact
    from primec.backends.simulator import Noise
    from primec.runtime.simulation import artefact_inputs, drift_model
    from primec.runtime.sweep import Job
    from primec.runtime.sweepchecks import (
        check_adc_levels,
        check_drift_ages,
        check_repair_ages,
        check_repair_stuck,
    )

    grid = _grid(grid_specs, options["ages"], options["chips"])
    program = read_artefact(artefact)
    check_adc_levels(program, grid)
    data = artefact_inputs(program, input_path)
    if data.y is None:
        raise PrimecError(
            f"--input {input_path} has no labels (no array y): a sweep reports accuracy over chips",
            hint="add the labels as y [N] to the .npz, or run unlabelled data with primec simulate",
        )
    params = program.meta["target_parameters"]
    base, source = Noise.choose(options["noise"], params, options["seed"])
    check_repair_ages(grid, base)
    check_repair_stuck(grid, base)
    check_drift_ages(grid, base)
    points = grid.points()
    aged = base.age or any(p.get("age") for p in points)
    job = Job(
        program,
        data,
        base,
        tuple(points),
        options["batch_size"],
        not options["no_early_exit"],
        drift_model(program) if aged else None,
        options["device"],
    )
    return job, grid, source


def _grid(grid_specs: tuple[str, ...], ages: str | None, chips: int) -> Any:
    """The `--grid` options and `--ages` (one more axis) as one `Grid`."""
    from primec.runtime.sweep import Grid

    if ages is None:
        return Grid.parse(list(grid_specs), chips)
    if not ages.strip():
        raise PrimecError("--ages is empty", hint="give ages, e.g. --ages 60s,1h,1d,30d,1y")
    if any(spec.partition("=")[0].strip() == "age" for spec in grid_specs):
        raise PrimecError(
            "sweep parameter 'age' is given both in --grid and by --ages",
            hint="give the ages once: --ages 60s,1h,1d or --grid age=60s,1h,1d",
        )
    return Grid.parse([*grid_specs, f"age={ages}"], chips)


def _sweep_files() -> list[str]:
    """Every name a sweep writes into --out: its tables, partial tables and plots."""
    from primec.apps.sweepplots import plot_names
    from primec.runtime.sweep import table_names

    return [*table_names(), *table_names(".partial"), *plot_names()]


def _clear_earlier(folder: Path) -> None:
    """Remove what an earlier sweep wrote into folder (`_sweep_files`), so that it holds this
    sweep's outputs only; files of other names are never touched."""
    for name in _sweep_files():
        (folder / name).unlink(missing_ok=True)


def _check_outputs(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise PrimecError(f"--out {folder} is a file, not a folder", hint="give a folder name")
    from primec.fileio import check_writable_folder
    from primec.runtime.sweep import table_names

    check_writable_folder("--out", folder)
    folders = [name for name in _sweep_files() if (folder / name).is_dir()]
    if folders:
        raise PrimecError(
            f"--out {folder} holds a folder named like a sweep's output ({folders[0]})",
            hint="move it away, or give another folder",
        )
    existing = [name for name in table_names() if (folder / name).exists()]
    if existing and not force:
        raise PrimecError(
            f"--out {folder} already holds a sweep ({', '.join(existing)})",
            hint="use --force to replace it, or give another folder",
        )


def _progress(done: int, total: int, elapsed: float) -> None:
    eta = elapsed / done * (total - done) if done else 0.0
    click.echo(
        f"sweep: {done}/{total} shards ({100 * done / total:.0f}%), "
        f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s",
        file=sys.stderr,
    )


def sweep_summary(report: dict[str, Any], paths: list[Path]) -> str:
    """Each point's accuracy with its CI, then the files written."""
    from primec.runtime.sweep import level_text

    names = [name for name, _ in report["grid"]["axes"]]
    lines = [
        f"{len(report['points'])} points x {report['grid']['chips']} chips, {report['samples']} samples"
    ]
    for p in report["points"]:
        where = ", ".join(f"{n}={level_text(n, p[n])}" for n in names) or "base noise"
        text = f"  {where}: "
        if "accuracy_mean" in p:
            text += f"accuracy {p['accuracy_mean'] * 100:.2f}%"
            if p["ci95_low"] is not None:
                text += f" (95% CI {p['ci95_low'] * 100:.2f}-{p['ci95_high'] * 100:.2f}%)"
        text += f", {p['avg_timesteps']:.2f} steps, {p['energy_per_inference_j'] * 1e9:.1f} nJ"
        if p.get("pairs_repaired_mean") is not None:
            text += f", {p['pairs_repaired_mean']:.1f} pairs repaired per chip"
        lines.append(text)
    lines += [f"wrote {path}" for path in paths]
    return "\n".join(lines)
