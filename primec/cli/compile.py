"""`primec compile`: a model through the frontend, the passes and the backend stages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from primec.backends import BACKENDS
from primec.cli.common import (
    checked_outputs,
    observability,
    pass_options,
    target_option,
    user_errors,
    write_report,
)
from primec.cli.exitcli import guarantee_flags, guarantee_options, progress
from primec.cli.nircli import nir_flags, nir_options
from primec.errors import PrimecError


def _compile_outputs(kwargs: dict) -> dict[str, str | None]:
    """compile's outputs beyond -o/--report/--plot: the IR's weights file; inputs in --dump-dir."""
    dump, output = kwargs.get("dump_dir"), kwargs.get("output")
    model = Path(kwargs["model"]).resolve()
    if dump and model.parent == Path(dump).resolve():
        raise PrimecError(
            f"--dump-dir {dump} holds the input {kwargs['model']}; dumps could overwrite it",
            hint="dump into another folder",
        )
    weights = Path(output).with_suffix(".npz") if output and kwargs.get("emit") == "ir" else None
    return {"-o's weights file": str(weights) if weights else None}


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@click.option("--emit", type=click.Choice(["ir", *BACKENDS]), help="What to write to -o.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a JSON report to this file.")
@target_option("Target: a built-in name (see `primec targets`) or a target .toml file.")
@click.option(
    "--device-map",
    type=click.Path(exists=True, dir_okay=False),
    help="Measured chip (.npz): place on its cells, avoid stuck cells, check bound weights.",
)
@click.option(
    "--max-macros", type=click.IntRange(min=1), help="Use at most N macros of the target."
)
@click.option(
    "--input-bits",
    type=click.IntRange(1, 16),
    help="Bits of the step input's drivers (default: the target's); fewer bits, fewer bit-plane reads.",
)
@click.option(
    "--exit-rule",
    type=click.Choice(["max-softmax", "margin", "entropy", "convergence"]),
    help="Early-exit rule of the control table (docs/early-exit.md).",
)
@click.option("--exit-threshold", type=float, help="Early-exit threshold, set by hand.")
@click.option(
    "--exit-temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Softmax temperature of the exit rule (PRIME: 2).",
)
@click.option(
    "--exit-min-steps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Never exit before this step.",
)
@click.option(
    "--exit-max-steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Always stop at this step (0: T).",
)
@click.option(
    "--calibrate",
    type=click.Path(exists=True, dir_okay=False),
    help="Calibrate the exit threshold on this data.npz (x, y).",
)
@click.option(
    "--accuracy-budget",
    type=click.FloatRange(min=0),
    help="Calibrate without a guarantee: percentage points of calibration accuracy to give up.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="With --calibrate: write the accuracy-vs-timesteps curve as PNG.",
)
@guarantee_flags
@nir_flags
@observability
@user_errors
@checked_outputs(
    {"output": "-o", "report": "--report", "plot": "--plot"},
    ("model", "calibrate", "device_map", "target_spec", "arch"),
    _compile_outputs,
)
def compile(
    model: str,
    arch: str | None,
    trust_pickle: bool,
    emit: str | None,
    output: str | None,
    report: str | None,
    target_spec: str,
    device_map: str | None,
    max_macros: int | None,
    input_bits: int | None,
    exit_rule: str | None,
    exit_threshold: float | None,
    exit_temperature: float,
    exit_min_steps: int,
    exit_max_steps: int,
    calibrate: str | None,
    accuracy_budget: float | None,
    plot: str | None,
    **kwargs: Any,
) -> None:
    """Compile MODEL through the frontend, the passes and (for an artefact) the backend.

    \b
    MODEL: a .pt state_dict (with --arch), .pt2, TorchScript, ONNX, .pir IR or NIR (with --dt).
    Examples:
      primec compile model.pt --arch prime-nmnist --stop-after import --dump-dir ir/
      primec compile step.pir --emit ir -o out.pir --print-after dce
      primec compile model.pt --arch prime-nmnist --device-map chip.npz --report r.json
      primec compile model.pt --emit macro -o m.pmac --calibrate cal.npz --exit-risk 0.02 --exit-delta 0.1
      primec compile model.pt --emit macro -o m.pmac --calibrate cal.npz --accuracy-budget 0.5
      primec compile model.pt --emit bytecode -o m.pbc --exit-threshold 0.8 --exit-temperature 2
      primec compile model.pt --emit macro -o m.pmac --stop-after lower --print-after lower
      primec compile model.nir --dt 1e-4 --emit macro -o m.pmac
    """
    from primec.core.text import save_graph
    from primec.hardware.choices import resolve_target
    from primec.hardware.mapreport import mapping_report, mapping_table
    from primec.pipeline import BackendOptions, compile_model

    if emit and not output:
        raise PrimecError(f"--emit {emit} needs -o FILE")
    hand = (exit_rule, exit_threshold, exit_temperature, exit_min_steps, exit_max_steps)
    exits = _exit_options(kwargs, hand, calibrate, accuracy_budget, plot)
    target, choices = resolve_target(target_spec, device_map, max_macros, input_bits)
    emits = tuple(e for e in (emit,) if e in BACKENDS)
    backend = BackendOptions(emits, exits) if emits or calibrate else None
    run = (Path(model), arch, trust_pickle, pass_options(kwargs), target, click.echo, choices)
    result = compile_model(*run, backend, nir_options(kwargs))
    mapping = mapping_report(result.graph, target)
    extra = _backend_outputs(result, exits, emit, output)
    if emit == "ir":
        save_graph(result.graph, output)
        click.echo(f"wrote {output} (weights in {Path(output).with_suffix('.npz')})")
    stopped = f" (stopped after {result.stopped_after})" if result.stopped_after else ""
    click.echo(f"ran: {', '.join(result.stages)}{stopped}")
    if mapping:
        click.echo(mapping_table(mapping))
    write_report(report, compile_report(result) | mapping | extra)


def _exit_options(
    kwargs: dict[str, Any],
    hand: tuple[Any, ...],
    calibrate: str | None,
    accuracy_budget: float | None,
    plot: str | None,
) -> Any:
    """The early-exit options (rule, threshold, temperature, min and max steps set by hand, then
    calibration: certified unless --accuracy-budget); bad ones fail here, before any work."""
    from primec.pipeline import ExitOptions

    guarantee = guarantee_options(kwargs, calibrate, accuracy_budget)
    exits = ExitOptions(*hand, calibrate=calibrate, plot=plot, guarantee=guarantee)
    exits = replace(exits, progress=progress)
    if accuracy_budget is not None:
        exits = replace(exits, budget_points=accuracy_budget)
    exits.base_table()
    return exits


def _backend_outputs(
    result: Any, exits: Any, emit: str | None, output: str | None
) -> dict[str, Any]:
    """Report, plot and write what the backend stages made; their part of the JSON report."""
    from primec.fileio import atomic_write_bytes
    from primec.runtime.calibration import calibration_report

    program = result.program
    if program is None:
        return {}
    extra: dict[str, Any] = {
        "early_exit": program.exit_table.to_dict() if program.exit_table else None
    }
    if isinstance(result.calibration, dict):  # certified: the report itself
        extra["calibration"] = result.calibration
        click.echo(calibration_summary(extra["calibration"]))
        if exits.plot:
            from primec.apps.plots import plot_certified

            plot_certified(result.calibration, exits.plot, f"{program.name}: certified early exit")
    elif result.calibration is not None:
        extra["calibration"] = calibration_report(result.calibration)
        click.echo(calibration_summary(extra["calibration"]))
        if exits.plot:
            from primec.apps.plots import plot_curve

            title = f"{program.name}: early exit on {Path(exits.calibrate).name}"
            plot_curve(result.calibration, exits.plot, title=title)
    if emit in result.artefacts:
        atomic_write_bytes(output, result.artefacts[emit])
        click.echo(f"wrote {output} ({emit})")
    return extra


def calibration_summary(calibration: dict[str, Any]) -> str:
    """One line on what early-exit calibration chose."""
    if "certificate" in calibration:
        from primec.runtime.exitcalibration import certified_summary

        return certified_summary(calibration)
    table = calibration["table"]
    return (
        f"early exit calibrated: {table['rule']} threshold {table['threshold']:.4g} -> "
        f"{calibration['avg_timesteps']:.2f} steps on average ({calibration['compute_savings'] * 100:.1f}% saved), "
        f"accuracy {calibration['accuracy'] * 100:.2f}% vs {calibration['accuracy_all_steps'] * 100:.2f}% with all steps; "
        f"oracle {calibration['oracle_avg_timesteps']:.2f} steps"
    )


def compile_report(result: Any) -> dict[str, Any]:
    """The JSON report of a compile run."""
    return {
        "input_kind": result.input_kind,
        "stages": result.stages,
        "stopped_after": result.stopped_after,
        "compile_seconds": result.seconds,
        "pass_seconds": {r.name: r.seconds for r in result.records},
        "nodes": len(result.graph.nodes),
    }
