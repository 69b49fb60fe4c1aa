"""`primec simulate`: run an artefact on data and report accuracy, timesteps and energy."""

from __future__ import annotations

import sys
from typing import Any

import click

from primec.cli.common import checked_outputs, user_errors, write_report
from primec.errors import PrimecError


def input_option(text: str) -> Any:
    """The `--input DATA.npz` option of the commands that run an artefact on data."""
    return click.option(
        "--input",
        "input_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help=text,
    )


@click.command()
@click.argument("artefact", type=click.Path(exists=True, dir_okay=False))
@input_option("data.npz with x [N,T,...] and optional labels y [N].")
@click.option(
    "--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, ..."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Samples simulated together.",
)
@click.option(
    "--noise",
    metavar="SPEC",
    help="Non-idealities instead of the target's (its read noise, stuck rates, ADC bits): "
    "`ideal`, or e.g. program=0.05,read=0.02,stuck=0.001,adc=8,input=8.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of every random draw (same seed, same numbers).",
)
@click.option(
    "--chip",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which chip: its programming error, stuck cells and read noise are drawn for this "
    "chip number (with --seed), as `primec sweep` draws its chips, so --chip 7 is chip 7 of a "
    "sweep (sweep-chips.csv).",
)
@click.option(
    "--no-early-exit", is_flag=True, help="Run all T steps, ignoring the early-exit table."
)
@click.option(
    "--age",
    metavar="AGE",
    help="Simulate the chip AGE after programming (e.g. 60s, 1h, 1d, 30d, 1y): cells drift by "
    "the target's [drift] model. 0 is a fresh chip (no drift).",
)
@click.option(
    "--drift-comp",
    type=click.Choice(["none", "global", "column"]),
    help="Drift compensation from a reference read: one gain per tile, or one per physical "
    "column (G+ and G- columns alike); needs an age. [default: --noise's drift_comp, else none]",
)
@click.option(
    "--stuck-repair",
    type=click.Choice(["none", "cancel", "restore"]),
    default="none",
    show_default=True,
    help="After programming, read every cell back and rewrite the pair partner of each stuck "
    "cell: cancel the weight, or restore it (docs/simulator.md, Stuck-cell repair).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="torch threads (default: one per idle CPU, see docs/performance.md).",
)
@click.option(
    "--statistical-energy/--no-statistical-energy",
    default=True,
    show_default=True,
    help="Add the statistical energy estimate (an extra traced run of up to 256 samples).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Per-sample results .npz: pred, exit_step, readouts.",
)
@click.option(
    "--report", type=click.Path(dir_okay=False), help="Write the JSON report to this file."
)
@user_errors
@checked_outputs({"output": "--output", "report": "--report"}, ("artefact", "input_path"))
def simulate(
    artefact: str,
    input_path: str,
    device: str,
    batch_size: int,
    noise: str | None,
    seed: int,
    chip: int,
    no_early_exit: bool,
    age: str | None,
    drift_comp: str | None,
    stuck_repair: str,
    threads: int | None,
    statistical_energy: bool,
    output: str | None,
    report: str | None,
) -> None:
    """Run a compiled artefact (.pbc bytecode or .pmac macro file) on input data.

    \b
    Reports accuracy (with labels), timesteps used, energy and latency per inference.
    Examples:
      primec simulate model.pbc --input test.npz --report sim.json
      primec simulate model.pmac --input test.npz --noise read=0.02,adc=8 --seed 1
      primec simulate model.pbc --input test.npz --noise ideal
      primec simulate model.pbc --input test.npz --age 1y --drift-comp global
      primec simulate model.pbc --input test.npz --stuck-repair cancel
      primec simulate model.pbc --input test.npz --noise program=0.05 --chip 7
    """
    from primec.backends import read_artefact
    from primec.runtime.simulation import artefact_inputs, use_threads, write_outputs
    from primec.runtime.simulation import simulate as run_simulation

    program = read_artefact(artefact)
    data = artefact_inputs(program, input_path)
    settings, source = noise_settings(program, noise, seed, age, drift_comp)
    check_device(device)
    use_threads(threads)
    with click.progressbar(length=len(data.x), label="simulating", file=sys.stderr) as bar:
        result, summary = run_simulation(
            program,
            data,
            settings,
            device,
            batch_size,
            not no_early_exit,
            lambda done, _: bar.update(done - bar.pos),
            source,
            statistical_energy,
            stuck_repair,
            chip,
        )
    if output:
        write_outputs(output, result)
    write_report(report, summary)
    click.echo(simulation_summary(summary))


def noise_settings(
    program: Any, spec: str | None, seed: int, age: str | None, drift_comp: str | None
) -> tuple[Any, str]:
    """`--noise`, `--seed`, `--age` and `--drift-comp` as one `Noise`, and where it came from."""
    from dataclasses import replace

    from primec.backends.simulator import Noise
    from primec.backends.simulator.ages import seconds
    from primec.backends.simulator.drift import COMPENSATIONS, check_compensation

    settings, source = Noise.choose(spec, program.meta["target_parameters"], seed)
    if age is not None:
        settings = replace(settings, age=seconds(age))
    if drift_comp is not None:  # else --noise's, if it gives one
        settings = replace(settings, drift_comp=COMPENSATIONS.index(drift_comp))
    check_compensation(  # an explicit --age 0 is a sweep's fresh point: compensation is a no-op
        settings.drift_comp,
        bool(settings.age) or age is not None,
        hint="give the chip's age, e.g. --age 1d, or leave out --drift-comp",
    )
    return settings, source


def check_device(device: str) -> None:
    """Refuse a torch device this machine cannot use, before any work: the simulator runs on
    the CPU and on CUDA GPUs only."""
    import torch

    try:
        kind = torch.device(device).type
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"the simulator runs on cpu or cuda, not {kind}")
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise PrimecError(
            f"torch device {device!r} is not available: {exc}", hint="use --device cpu"
        ) from exc


def simulation_summary(summary: dict[str, Any]) -> str:
    """The simulation report as a few readable lines."""
    lines = [f"{summary['samples']} samples of {summary['artefact']} on {summary['target']}"]
    noise = summary["noise"]
    active = {k: v for k, v in noise.items() if v and k not in ("seed", "adc_cal", "drift_comp")}
    if noise.get("age"):
        active["drift_comp"] = noise.get("drift_comp", 0)
    if noise.get("adc") and not noise.get("adc_cal", 1):
        active["adc_cal"] = 0
    from primec.backends.simulator.ages import age_text

    shown = ", ".join(f"{k}={age_text(v) if k == 'age' else f'{v:g}'}" for k, v in active.items())
    shown = shown or "none"
    lines.append(f"non-idealities      {shown} (from {summary['noise_source']})")
    if summary.get("chip"):
        lines.append(f"chip                {summary['chip']}")
    lines += conditions_summary(summary)
    if "accuracy" in summary:
        lines.append(f"accuracy            {summary['accuracy'] * 100:.2f}%")
    lines.append(
        f"timesteps           {summary['avg_timesteps']:.2f} of {summary['timesteps']} on average ({summary['compute_savings'] * 100:.1f}% saved)"
    )
    lines.append(energy_summary(summary))
    lines.append(f"latency / inference {summary['latency_per_inference_s'] * 1e6:.2f} us")
    lines.append(
        f"simulated in        {summary['seconds']:.2f} s on {summary['torch_threads']} threads"
    )
    return "\n".join(lines)


def conditions_summary(summary: dict[str, Any]) -> list[str]:
    """The ADC ranges a run converted on and an aged chip's drift, as readable lines."""
    from primec.backends.simulator.ages import age_text

    lines = []
    ranges = summary.get("adc_ranges")
    if ranges:
        words = {"target": "the target's one range", "tile": "per tile", "column": "per column"}
        lines.append(f"ADC ranges          {words[ranges]}")
    drift = summary.get("drift")
    if drift:
        lines.append(
            f"drift               age {age_text(drift['age_s'])}, compensation {drift['compensation']}, "
            f"model from {drift['model_source']}"
        )
    repair = summary.get("stuck_repair") or {}
    if repair.get("mode", "none") != "none":
        lines.append(
            f"stuck-cell repair   {repair['mode']}: {repair['pairs_repaired']} pairs rewritten"
        )
    return lines


def energy_summary(summary: dict[str, Any]) -> str:
    """Energy per inference with its range, the statistical estimate and the GPU ratios."""
    low, high = summary["energy_per_inference_range_j"]
    text = (
        f"energy / inference  {summary['energy_per_inference_j'] * 1e9:.1f} nJ "
        f"(estimates span {low * 1e9:.1f}-{high * 1e9:.1f} nJ"
    )
    if "energy_statistical_j" in summary:
        text += f"; statistical {summary['energy_statistical_j'] * 1e9:.1f} nJ"
    ratio_low, ratio_high = summary["energy_efficiency_vs_gpu_range"] or (None, None)
    return text + (
        f")\nvs GPU baseline     {_ratio(summary['energy_efficiency_vs_gpu'])} "
        f"(range {_ratio(ratio_low)}-{_ratio(ratio_high)}; "
        f"batch 1: {_ratio(summary['energy_efficiency_vs_gpu_batch1'])}; "
        f"PRIME's method: {_ratio(summary['energy_efficiency_prime_method'])})"
    )


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"
