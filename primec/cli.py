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


def not_built(capability: str, issue: str) -> None:
    """Say that a stage does not exist yet, and exit non-zero: no fake output."""
    fail(f"{capability} is not built yet (issue: {issue}); nothing was written")


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
@observability
@user_errors
def compile(
    model: str,
    arch: str | None,
    trust_pickle: bool,
    emit: str | None,
    output: str | None,
    report: str | None,
    **kwargs: Any,
) -> None:
    """Compile MODEL through the frontend and the passes.

    \b
    MODEL: a .pt state_dict (with --arch), .pt2, TorchScript archive, ONNX file or .pir IR file.
    Examples:
      primec compile model.pt --arch prime-nmnist --stop-after import --dump-dir ir/
      primec compile step.pir --emit ir -o out.pir --print-after dce
    """
    from primec.pipeline import compile_model
    from primec.text import save_graph

    if emit in ("bytecode", "macro"):
        not_built(
            f"--emit {emit}",
            "Simulator bytecode" if emit == "bytecode" else "Macro programming file",
        )
    if emit == "ir" and not output:
        raise PrimecError("--emit ir needs -o FILE.pir")
    result = compile_model(Path(model), arch, trust_pickle, pass_options(kwargs), log=click.echo)
    if emit == "ir":
        save_graph(result.graph, output)
        click.echo(f"wrote {output} (weights in {Path(output).with_suffix('.npz')})")
    stages = ", ".join(result.stages)
    click.echo(
        f"ran: {stages}"
        + (f" (stopped after {result.stopped_after})" if result.stopped_after else "")
    )
    write_report(report, compile_report(result))


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
    type=click.Path(exists=True, dir_okay=False),
    help="data.npz with x [N,T,...] and optional y.",
)
@user_errors
def simulate(artefact: str, input_path: str | None) -> None:
    """Run a compiled artefact (.pbc bytecode or .pmac macro file) on input data.

    \b
    Example:
      primec simulate model.pbc --input test.npz --report sim.json
    """
    not_built("the simulator (primec simulate)", "Simulator bytecode")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def inspect(file: str) -> None:
    """Show a file: IR text (.pir) verified and in canonical form.

    \b
    Example:
      primec inspect ir/00-import.pir
    """
    from primec.pipeline import read_ir
    from primec.text import print_graph

    path = Path(file)
    if path.suffix != ".pir":
        raise PrimecError(
            f"cannot inspect {path.suffix or 'this'} files yet",
            where=file,
            hint="primec inspect reads .pir IR files",
        )
    click.echo(print_graph(read_ir(path)), nl=False)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@user_errors
def check(model: str, arch: str | None, trust_pickle: bool) -> None:
    """Check that MODEL goes through the frontend; list every problem at once.

    \b
    Example:
      primec check model.pt --arch prime-nmnist
    """
    from primec.pipeline import frontend

    graph, kind = frontend(Path(model), arch, trust_pickle, click.echo)
    click.echo(f"ok: {kind}, {len(graph.nodes)} nodes, {len(graph.states)} states")


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
    not_built("ONNX export", "Frontend")


@main.command()
@click.option(
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's outputs.",
)
@user_errors
def demo(out_dir: str) -> None:
    """Run primec's main job end to end on the embedded default (the released PRIME classifier).

    \b
    Example:
      primec demo --out demo-out
    """
    from primec.demo import run_demo

    run_demo(Path(out_dir), log=click.echo)


@main.group()
def datasets() -> None:
    """Make the embedded datasets (no download needed).

    \b
    Example:
      primec datasets ndigits --split test -o test.npz
    """


@datasets.command("ndigits")
@click.option("--split", type=click.Choice(["train", "calibration", "test", "all"]), default="test", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the event sensor model.")
@click.option("--timesteps", type=click.IntRange(1, 1000), default=10, show_default=True, help="Time bins T.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npz to write (x, y).")
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


if __name__ == "__main__":
    main()
