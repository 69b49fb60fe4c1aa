"""The `primec` command line. Every command has an example in its help, exits non-zero with one
clear message on bad input, and never leaves a partial output file.

Commands live in modules by job (`compile`, `simulate`, `sweep`, `adc`, `files`, `apps`) and are registered
here, explicitly, on the `main` group.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from primec import __version__
from primec.cli import adc, apps, files, simulate, sweep
from primec.cli import compile as compile_command
from primec.cli.common import EXIT_USER_ERROR, fail, user_errors

__all__ = ["EXIT_USER_ERROR", "fail", "main", "user_errors"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="primec")
@click.option(
    "-v", "--verbose", is_flag=True, help="Debug log: e.g. why a rewrite declined a match."
)
def main(verbose: bool) -> None:
    """primec: compile PyTorch spiking neural networks to memristor in-memory-computing macros.

    \b
    Example:
      primec compile model.pt --arch prime-nmnist --stop-after import --dump-dir ir/
      primec -v compile model.pt --arch prime-nmnist
    """
    _exit_cleanly_on_sigterm()
    logger = logging.getLogger("primec")
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not any(isinstance(h, EchoHandler) for h in logger.handlers):
        logger.addHandler(EchoHandler())


class EchoHandler(logging.Handler):
    """Log records as `debug: NAME: MESSAGE` lines on the current stderr (`-v`)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"debug: {record.name}: {record.getMessage()}", err=True)


def _exit_cleanly_on_sigterm() -> None:
    """A terminated run unwinds like Ctrl-C, so temp files of unfinished writes are removed."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


COMMANDS = (
    compile_command.compile,
    simulate.simulate,
    sweep.sweep,
    adc.calibrate_adc,
    files.inspect,
    files.check,
    files.export,
    apps.demo,
    apps.datasets,
    apps.targets,
    apps.devicemap,
    apps.train,
)
for command in COMMANDS:
    main.add_command(command)
