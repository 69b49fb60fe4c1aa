"""The NIR options (`--dt`, `--discretisation`) that `compile`, `check` and `export` share,
kept apart so that each command only hooks them in (docs/from-frameworks.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from primec.frontend.nir_io import DISCRETISATIONS, NirOptions


def nir_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --dt and --discretisation to a command."""
    command = click.option(
        "--discretisation",
        type=click.Choice(DISCRETISATIONS),
        default="euler",
        show_default=True,
        help="How a NIR graph's ODEs become steps: forward Euler (as snnTorch's and "
        "SpikingJelly's exporters assume) or the exact exponential.",
    )(command)
    return click.option(
        "--dt",
        type=float,
        help="NIR only: the timestep in seconds (NIR is continuous-time; required for a .nir).",
    )(command)


def nir_options(kwargs: dict[str, Any]) -> NirOptions:
    """Take the NIR flags out of a command's keyword arguments."""
    return NirOptions(kwargs.pop("dt", None), kwargs.pop("discretisation", "euler"))
