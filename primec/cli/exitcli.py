"""The certified early-exit options of `primec compile` (`docs/early-exit.md`), kept apart from
`primec/cli/compile.py` so that the command only hooks them in."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from primec.errors import PrimecError
from primec.hardware import certify as cert
from primec.hardware.exitpolicies import POLICIES, RISKS
from primec.runtime.exitcalibration import DEFAULT_DELTA, DEFAULT_RISK, GuaranteeOptions

FLAGS = (
    "exit_risk",
    "exit_delta",
    "exit_guarantee",
    "exit_policy",
    "exit_pvalue",
    "exit_fit_fraction",
    "exit_stable",
    "calibrate_noise",
    "calibrate_seed",
)


def guarantee_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the certified-calibration options to a command."""
    flags = [
        click.option(
            "--exit-risk",
            type=float,
            metavar="EPS",
            help=f"With --calibrate: certify that at most this fraction of predictions changes (or, with --exit-guarantee accuracy, turns wrong); default {DEFAULT_RISK}.",
        ),
        click.option(
            "--exit-delta",
            type=float,
            metavar="DELTA",
            help=f"With --calibrate: the certificate may fail with at most this probability over the calibration draw; default {DEFAULT_DELTA}.",
        ),
        click.option(
            "--exit-guarantee",
            type=click.Choice(RISKS),
            help="The risk certified: consistency with all T steps (no labels needed; default) or accuracy loss (needs labels).",
        ),
        click.option(
            "--exit-policy",
            type=click.Choice(POLICIES),
            help="threshold: one threshold (default); per-step: a threshold per timestep; lead: the top class's lead over the steps left, stable 2 steps.",
        ),
        click.option(
            "--exit-pvalue",
            type=click.Choice(cert.PVALUES),
            help="p-value of the fixed-sequence test (default binomial, exact for 0/1 losses).",
        ),
        click.option(
            "--exit-fit-fraction",
            type=float,
            help="per-step policy: fraction of calibration samples that fit the table (default 0.3); the rest certify it.",
        ),
        click.option(
            "--exit-stable",
            type=click.IntRange(min=1),
            help="Exit only once the top class has been the same this many steps (default: 1; lead: 2).",
        ),
        click.option(
            "--calibrate-noise",
            metavar="SPEC",
            help="Calibrate over random chips: e.g. program=0.05,read=0.02 (`primec simulate --noise`); each sample gets its own chip.",
        ),
        click.option(
            "--calibrate-seed", type=int, help="Seed of the calibration chips (default 0)."
        ),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def guarantee_options(
    kwargs: dict[str, Any], calibrate: str | None, accuracy_budget: float | None
) -> GuaranteeOptions | None:
    """Pop the certified-calibration flags; the options when calibration is certified (the
    default with --calibrate, unless the legacy --accuracy-budget is given)."""
    from primec.backends.simulator import Noise

    values = {name: kwargs.pop(name) for name in FLAGS}
    given = sorted(f"--{name.replace('_', '-')}" for name, v in values.items() if v is not None)
    if given and not calibrate:
        raise PrimecError(f"{', '.join(given)} calibrate the exit table: give --calibrate data.npz")
    if given and accuracy_budget is not None:
        raise PrimecError(
            f"--accuracy-budget (calibration without a guarantee) and {', '.join(given)} "
            "(certified calibration) exclude each other",
            hint="drop --accuracy-budget to certify the exit table",
        )
    if not calibrate or accuracy_budget is not None:
        return None
    seed = values["calibrate_seed"] or 0
    noise = Noise.parse(values["calibrate_noise"], seed) if values["calibrate_noise"] else None
    defaults = GuaranteeOptions()
    return GuaranteeOptions(
        eps=_given(values["exit_risk"], defaults.eps),
        delta=_given(values["exit_delta"], defaults.delta),
        risk=values["exit_guarantee"] or defaults.risk,
        policy=values["exit_policy"] or defaults.policy,
        pvalue=values["exit_pvalue"] or defaults.pvalue,
        fit_fraction=_given(values["exit_fit_fraction"], defaults.fit_fraction),
        stable=values["exit_stable"],
        noise=noise if noise is not None and not noise.ideal else None,
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def progress(done: int, total: int) -> None:
    """Calibration runs so far, on stderr."""
    click.echo(f"\rcalibration runs: {done}/{total}", err=True, nl=done == total)
    sys.stderr.flush()
