"""The `primec` command line. Every command has an example in its help, exits non-zero with one
clear message on bad input, and never leaves a partial output file."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from primec import __version__
from primec.errors import PrimecError
from primec.exitcli import guarantee_flags, guarantee_options, progress
from primec.fileio import atomic_write_text
from primec.passmanager import PassOptions

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print one error message and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a `PrimecError` into one message and a non-zero exit (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PrimecError as exc:
            fail(str(exc))

    return wrapper


def write_report(path: str | None, report: dict[str, Any]) -> None:
    """Write a JSON report atomically, if asked for."""
    if path:
        atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True) + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="primec")
def main() -> None:
    """primec: compile PyTorch spiking neural networks to memristor in-memory-computing macros.

    \b
    Example:
      primec compile model.pt --arch prime-nmnist --stop-after import --dump-dir ir/
    """


def observability(command: Callable[..., Any]) -> Callable[..., Any]:
    """The pass manager's flags, shared by every command that runs passes."""
    flags = [
        click.option("--print-after-all", is_flag=True, help="Print the IR after every stage."),
        click.option(
            "--print-after",
            "print_after",
            multiple=True,
            metavar="PASS",
            help="Print the IR after PASS (repeatable).",
        ),
        click.option(
            "--stop-after",
            metavar="PASS",
            help="Stop after PASS (a stage such as `import`, or a pass).",
        ),
        click.option(
            "--dump-dir",
            type=click.Path(file_okay=False),
            help="Write the IR after every stage to DIR/NN-name.pir.",
        ),
        click.option("--time-passes", is_flag=True, help="Print how long each pass took."),
        click.option("--no-verify", is_flag=True, help="Skip the verifier after each pass."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def pass_options(kwargs: dict[str, Any]) -> PassOptions:
    """Collect the observability flags into `PassOptions`."""
    dump_dir = kwargs.pop("dump_dir")
    return PassOptions(
        verify=not kwargs.pop("no_verify"),
        print_after_all=kwargs.pop("print_after_all"),
        print_after=tuple(kwargs.pop("print_after")),
        stop_after=kwargs.pop("stop_after"),
        dump_dir=Path(dump_dir) if dump_dir else None,
        time_passes=kwargs.pop("time_passes"),
    )


MODEL_HELP = "A .pt state_dict (with --arch), .pt2, TorchScript archive, ONNX file or .pir IR file."


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@click.option("--emit", type=click.Choice(["ir", "bytecode", "macro"]), help="What to write to -o.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a JSON report to this file.")
@click.option(
    "--target",
    "target_spec",
    default="prime-40nm-256k",
    show_default=True,
    metavar="NAME|FILE",
    help="Target: a built-in name (see `primec targets`) or a target .toml file.",
)
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
@observability
@user_errors
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
    """Compile MODEL through the frontend and the passes.

    \b
    MODEL: a .pt state_dict (with --arch), .pt2, TorchScript archive, ONNX file or .pir IR file.
    Examples:
      primec compile model.pt --arch prime-nmnist --stop-after import --dump-dir ir/
      primec compile step.pir --emit ir -o out.pir --print-after dce
      primec compile model.pt --arch prime-nmnist --device-map chip.npz --report r.json
      primec compile model.pt --emit macro -o m.pmac --calibrate cal.npz --exit-risk 0.02 --exit-delta 0.1
      primec compile model.pt --emit macro -o m.pmac --calibrate cal.npz --accuracy-budget 0.5
      primec compile model.pt --emit bytecode -o m.pbc --exit-threshold 0.8 --exit-temperature 2
    """
    from primec.artefacts import ExitOptions, build_program, write_artefact
    from primec.mapreport import mapping_report, mapping_table
    from primec.pipeline import compile_model
    from primec.target import resolve_target
    from primec.text import save_graph

    if emit and not output:
        raise PrimecError(f"--emit {emit} needs -o FILE")
    exits = ExitOptions(
        exit_rule,
        exit_threshold,
        exit_temperature,
        exit_min_steps,
        exit_max_steps,
        calibrate,
        0.5 if accuracy_budget is None else accuracy_budget,
        plot,
        guarantee_options(kwargs, calibrate, accuracy_budget),
    )
    exits.base_table()  # bad early-exit options fail before any work
    target = resolve_target(target_spec, device_map, max_macros, input_bits)
    options = pass_options(kwargs)
    result = compile_model(Path(model), arch, trust_pickle, options, target, log=click.echo)
    mapping = mapping_report(result.graph, target)
    extra: dict[str, Any] = {}
    if emit in ("bytecode", "macro") or calibrate:
        program, calibration = build_program(result.graph, target, exits, progress)
        extra["early_exit"] = program.exit_table.to_dict() if program.exit_table else None
        if calibration:
            extra["calibration"] = calibration
            click.echo(calibration_summary(calibration))
        if emit in ("bytecode", "macro"):
            write_artefact(program, emit, output)
            click.echo(f"wrote {output} ({emit})")
    if emit == "ir":
        save_graph(result.graph, output)
        click.echo(f"wrote {output} (weights in {Path(output).with_suffix('.npz')})")
    stages = ", ".join(result.stages)
    click.echo(
        f"ran: {stages}"
        + (f" (stopped after {result.stopped_after})" if result.stopped_after else "")
    )
    if mapping:
        click.echo(mapping_table(mapping))
    write_report(report, compile_report(result) | mapping | extra)


def calibration_summary(calibration: dict[str, Any]) -> str:
    """One line on what early-exit calibration chose."""
    if "certificate" in calibration:
        from primec.exitcalibration import certified_summary

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


@main.command()
@click.argument("artefact", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="data.npz with x [N,T,...] and optional labels y [N].",
)
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
    default="",
    metavar="SPEC",
    help="Non-idealities, e.g. program=0.05,read=0.02,stuck=0.001,adc=8,input=8.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of every random draw (same seed, same numbers).",
)
@click.option(
    "--no-early-exit", is_flag=True, help="Run all T steps, ignoring the early-exit table."
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
def simulate(
    artefact: str,
    input_path: str,
    device: str,
    batch_size: int,
    noise: str,
    seed: int,
    no_early_exit: bool,
    output: str | None,
    report: str | None,
) -> None:
    """Run a compiled artefact (.pbc bytecode or .pmac macro file) on input data.

    \b
    Reports accuracy (with labels), timesteps used, energy and latency per inference.
    Examples:
      primec simulate model.pbc --input test.npz --report sim.json
      primec simulate model.pmac --input test.npz --noise read=0.02,adc=8 --seed 1
    """
    from primec.backends.simulator import Noise
    from primec.simdata import load_inputs
    from primec.simulation import classes_of, load_artefact, write_outputs
    from primec.simulation import simulate as run_simulation

    program = load_artefact(artefact)
    data = load_inputs(input_path, program.input_shape, program.timesteps, classes_of(program))
    settings = Noise.parse(noise, seed)
    _check_device(device)
    with click.progressbar(length=len(data.x), label="simulating", file=sys.stderr) as bar:
        result, summary = run_simulation(
            program,
            data,
            settings,
            device,
            batch_size,
            not no_early_exit,
            lambda done, _: bar.update(done - bar.pos),
        )
    if output:
        write_outputs(output, result)
    write_report(report, summary)
    click.echo(simulation_summary(summary))


def _check_device(device: str) -> None:
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise PrimecError(
            f"torch device {device!r} is not available: {exc}", hint="use --device cpu"
        ) from exc


def simulation_summary(summary: dict[str, Any]) -> str:
    """The simulation report as a few readable lines."""
    lines = [f"{summary['samples']} samples of {summary['artefact']} on {summary['target']}"]
    if "accuracy" in summary:
        lines.append(f"accuracy            {summary['accuracy'] * 100:.2f}%")
    lines.append(
        f"timesteps           {summary['avg_timesteps']:.2f} of {summary['timesteps']} on average ({summary['compute_savings'] * 100:.1f}% saved)"
    )
    lines.append(
        f"energy / inference  {summary['energy_per_inference_j'] * 1e9:.3f} nJ ({_ratio(summary['energy_efficiency_vs_gpu'])} vs the GPU baseline)"
    )
    lines.append(f"latency / inference {summary['latency_per_inference_s'] * 1e6:.2f} us")
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def inspect(file: str) -> None:
    """Show a file: IR text (.pir) verified and canonical, bytecode (.pbc) disassembled,
    a macro file (.pmac) summarised, an ONNX step graph (.onnx) summarised.

    \b
    Examples:
      primec inspect ir/00-import.pir
      primec inspect model.pbc
      primec inspect model.pmac
    """
    from primec.inspection import describe

    click.echo(describe(Path(file)), nl=False)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@user_errors
def check(model: str, arch: str | None, trust_pickle: bool) -> None:
    """Check that MODEL goes through the frontend, listing every problem at once; or validate a
    compiled artefact (.pbc, .pmac: structure, checksums, cross-references).

    \b
    Examples:
      primec check model.pt --arch prime-nmnist
      primec check model.pmac
    """
    from primec.pipeline import frontend
    from primec.verify import verify

    if Path(model).suffix in (".pbc", ".pmac"):
        from primec.simulation import load_artefact

        program = load_artefact(model)  # reading validates structure, checksums, cross-references
        click.echo(
            f"ok: {Path(model).suffix[1:]} artefact {program.name} for {program.meta['target']}: {len(program.instrs)} instructions, {len(program.arrays)} arrays"
        )
        return
    # Loading, export and import each report all of their problems in one error.
    graph, kind = frontend(Path(model), arch, trust_pickle, click.echo)
    verify(graph, source=model)
    click.echo(
        f"ok: {kind}; {len(graph.nodes)} nodes, {len(graph.states)} states, "
        f"T={graph.meta_value('timesteps')}, readout {graph.meta_value('readout')}"
    )


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The .onnx file to write.",
)
@user_errors
def export(model: str, arch: str | None, trust_pickle: bool, output: str) -> None:
    """Export MODEL's step graph to ONNX (neurons as primec-domain ops; opens in Netron).

    \b
    Example:
      primec export model.pt --arch prime-nmnist -o step.onnx
    """
    from primec import frontend as fe

    source = fe.load(Path(model), arch=arch, trust_pickle=trust_pickle)
    click.echo(f"recognised {source.kind}")
    onnx_model = fe.export(source)
    # Never write a file that primec itself could not import back.
    fe.import_onnx(onnx_model, source=model)
    fe.save_onnx(onnx_model, output)
    click.echo(f"wrote {output} ({len(onnx_model.graph.node)} nodes, primec ONNX convention)")


@main.command()
@click.option(
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's outputs.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=10),
    help="Use only the first N samples of each split (a quick look).",
)
@user_errors
def demo(out_dir: str, samples: int | None) -> None:
    """Run primec's main job end to end on the embedded default (the released PRIME classifier).

    \b
    Example:
      primec demo --out demo-out
    """
    from primec.demo import run_demo

    run_demo(Path(out_dir), log=click.echo, samples=samples)


@main.group()
def datasets() -> None:
    """Make the embedded datasets (no download needed).

    \b
    Example:
      primec datasets ndigits --split test -o test.npz
    """


@datasets.command("ndigits")
@click.option(
    "--split",
    type=click.Choice(["train", "calibration", "test", "all"]),
    default="test",
    show_default=True,
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the event sensor model."
)
@click.option(
    "--timesteps", type=click.IntRange(1, 1000), default=10, show_default=True, help="Time bins T."
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The .npz to write (x, y).",
)
@user_errors
def ndigits(split: str, seed: int, timesteps: int, output: str) -> None:
    """N-MNIST-like events from scikit-learn's digits, in the simulator's input format.

    \b
    Writes x: float32 [N, T, 2, 34, 34] event counts and y: int64 [N] labels.
    Example:
      primec datasets ndigits --split calibration -o calibration.npz
    """
    from primec.datasets import load_split, make_ndigits, save_npz

    x, y = make_ndigits(seed, timesteps) if split == "all" else load_split(split, seed, timesteps)
    save_npz(output, x, y)
    click.echo(f"wrote {output}: {len(y)} samples, x {list(x.shape)}")


@main.command()
@click.option("--show", metavar="NAME|FILE", help="Print every parameter of one target.")
@user_errors
def targets(show: str | None) -> None:
    """List the built-in targets, or show one target's parameters and their provenance.

    \b
    Examples:
      primec targets
      primec targets --show prime-40nm-256k
    """
    from primec.target import describe_target, load_target, target_names

    if show:
        click.echo(describe_target(load_target(show)))
        return
    for name in target_names():
        t = load_target(name)
        click.echo(
            f"{name}: {t.chip.macros} macros x {t.chip.arrays_per_macro} arrays of "
            f"{t.array.rows} x {t.array.cols} cells - {t.description}"
        )


@main.group()
def devicemap() -> None:
    """Device maps: per-cell conductances and faults of a chip (format in docs/mapping.md).

    \b
    Example:
      primec devicemap synth --target prime-40nm-256k --seed 7 --macros 1 -o chip.npz
    """


@devicemap.command("synth")
@click.option(
    "--target",
    "target_spec",
    default="prime-40nm-256k",
    show_default=True,
    metavar="NAME|FILE",
    help="Target whose distribution to draw from.",
)
@click.option(
    "--seed", type=int, required=True, help="Random seed (the same seed gives the same map)."
)
@click.option(
    "--macros",
    type=click.IntRange(min=1),
    help="Macros to synthesise (default: all of the target's).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npz to write."
)
@user_errors
def devicemap_synth(target_spec: str, seed: int, macros: int | None, output: str) -> None:
    """Synthesise a device map from the target's as-formed distribution and stuck-at rates.

    \b
    Example:
      primec devicemap synth --target prime-40nm-256k --seed 7 --macros 1 -o chip.npz
    """
    from primec.devicemap import STUCK_HIGH, STUCK_LOW, save, synth
    from primec.target import load_target

    target = load_target(target_spec)
    if macros is not None and macros > target.chip.macros:
        raise PrimecError(f"--macros {macros} exceeds the target's {target.chip.macros} macros")
    chip = synth(target, seed, macros)
    save(chip, output)
    low, high = int((chip.fault == STUCK_LOW).sum()), int((chip.fault == STUCK_HIGH).sum())
    click.echo(
        f"wrote {output}: {chip.macros} macro(s) of {target.name}, seed {seed}, "
        f"{low} cells stuck low, {high} stuck high"
    )


@main.command()
@click.option(
    "--arch",
    required=True,
    metavar="NAME",
    help="Built-in supermask architecture, e.g. ndigits-small.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Passes over the N-Digits train split.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Samples per step.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Learning rate of the scores (SGD, momentum 0.9, cosine).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the weights, scores and batch order.",
)
@click.option(
    "--loss",
    type=click.Choice(["all_steps", "final"]),
    default="all_steps",
    show_default=True,
    help="Cross-entropy after every step (earlier exits) or after the last only.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads; the result depends on it, bit for bit.",
)
@click.option(
    "--device-map",
    type=click.Path(exists=True, dir_okay=False),
    help="Chip (.npz) whose cells are the weights; the model compiles back onto them.",
)
@click.option(
    "--target",
    "target_spec",
    default="prime-40nm-256k",
    show_default=True,
    metavar="NAME|FILE",
    help="Target: as-formed distribution and chip layout.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The state_dict (.pt) to write.",
)
@user_errors
def train(
    arch: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    loss: str,
    threads: int,
    device_map: str | None,
    target_spec: str,
    output: str,
) -> None:
    """Train a supermask SNN on N-Digits: only the masks learn, the weights stay as-formed.

    \b
    Writes a state_dict that `primec compile --arch NAME` reads; same seed, same bytes.
    Examples:
      primec train --arch ndigits-small --epochs 20 --seed 0 -o model.pt
      primec devicemap synth --seed 7 --macros 1 -o chip.npz
      primec train --arch ndigits-small --device-map chip.npz -o model.pt
    """
    from primec.train import save_model
    from primec.train import train as train_scores

    model, history = train_scores(
        arch,
        epochs,
        batch_size,
        lr,
        seed,
        device_map,
        target_spec,
        log=click.echo,
        loss=loss,
        threads=threads,
    )
    save_model(model, output)
    click.echo(
        f"wrote {output}: calibration accuracy {100 * history[-1].calibration_accuracy:.1f}%"
    )


if __name__ == "__main__":
    main()
