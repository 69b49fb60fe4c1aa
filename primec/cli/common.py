"""What every primec command shares: one clear error message and exit status, output-path
checks, JSON reports, and the pass manager's observability flags."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from primec.core.passmanager import PassOptions
from primec.errors import PrimecError
from primec.fileio import atomic_write_text, check_outputs
from primec.hardware.target import DEFAULT_TARGET

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


def checked_outputs(
    outputs: dict[str, str], inputs: tuple[str, ...], more: Callable[[dict], dict] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --force, and check the command's outputs (parameter -> option) before any work."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, force: bool, **kwargs: Any) -> Any:
            paths = {option: kwargs.get(name) for name, option in outputs.items()}
            paths |= more(kwargs) if more else {}
            sources = [_input_file(kwargs.get(name)) for name in inputs]
            check_outputs(paths, sources, force)
            return command(*args, **kwargs)

        return click.option(
            "--force", is_flag=True, help="Replace output files that already exist."
        )(wrapper)

    return decorate


def _input_file(value: str | None) -> str | None:
    """The file an input option names (FILE.py of FILE.py:factory; None for built-in names)."""
    if not value:
        return None
    prefix = value.rpartition(":")[0]
    file = prefix if prefix.endswith(".py") else value
    return file if Path(file).is_file() else None


def write_report(path: str | None, report: dict[str, Any]) -> None:
    """Write a JSON report atomically, if asked for."""
    if path:
        atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True) + "\n")


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
            help="Stop after PASS (a stage such as `import` or `lower`, or a pass).",
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


def target_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--target NAME|FILE`, defaulting to the default target."""
    return click.option(
        "--target",
        "target_spec",
        default=DEFAULT_TARGET,
        show_default=True,
        metavar="NAME|FILE",
        help=help_text,
    )
