"""Certified early-exit calibration of a program: readouts on the ideal chip or over random
chips, then `exitpolicies.certify_exit` (`docs/early-exit.md`). Its plot is `apps.plots.plot_certified`.

A guarantee "for a randomly programmed chip" needs calibration pairs (input, chip) drawn
independently from (data distribution x chip distribution). So with programming variation or
stuck cells on, every calibration sample runs on a chip of its own, programmed with its own seed
(`chip_seed`); read noise is drawn per sample and step as always. With read noise alone the chip
is the one the program describes (the ideal one, or a measured device map bound at compile time),
and the guarantee is for that chip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from primec.errors import PrimecError
from primec.hardware import certify as cert
from primec.hardware.earlyexit import ExitTable
from primec.hardware.exitpolicies import POLICIES, RISKS, certify_exit
from primec.runtime.simdata import SimData

if TYPE_CHECKING:
    from primec.backends.program import Program
    from primec.backends.simulator import Noise

DEFAULT_RISK, DEFAULT_DELTA = 0.01, 0.05


@dataclass(frozen=True)
class GuaranteeOptions:
    """What certified calibration is asked for (`primec compile --exit-risk ...`)."""

    eps: float = DEFAULT_RISK
    delta: float = DEFAULT_DELTA
    risk: str = "consistency"
    policy: str = "threshold"
    pvalue: str = "binomial"
    fit_fraction: float = 0.3
    stable: int | None = None
    noise: Noise | None = None

    def check(self, rule: str | None) -> GuaranteeOptions:
        """Raise a `PrimecError` on a bad option before any work; return self."""
        cert.check_level("--exit-risk", self.eps)
        cert.check_level("--exit-delta", self.delta)
        if self.risk not in RISKS or self.policy not in POLICIES or self.pvalue not in cert.PVALUES:
            raise PrimecError(f"bad certified-calibration option in {self}")
        if not 0.0 < self.fit_fraction < 1.0:
            raise PrimecError(f"--exit-fit-fraction must lie in (0, 1), got {self.fit_fraction}")
        if self.policy == "lead" and rule not in (None, "lead"):
            raise PrimecError(f"--exit-policy lead uses its own statistic: drop --exit-rule {rule}")
        if rule == "convergence":
            raise PrimecError("certified calibration is for classifiers: not the convergence rule")
        return self


def chip_seed(seed: int, sample: int) -> int:
    """The programming seed of calibration sample `sample`'s own chip."""
    digest = hashlib.sha256(f"exit-chip,{seed},{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def per_sample_chips(noise: Noise | None) -> bool:
    """Whether this noise draws a chip (programming error or stuck cells), not only reads."""
    return noise is not None and bool(noise.program or noise.stuck)


def all_step_readouts(
    program: Program,
    x: np.ndarray,
    noise: Noise | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    sample_ids: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Readouts [N, T, ...] after every step, all T steps run; each sample on its own chip when
    the noise programs chips (`per_sample_chips`)."""
    from primec.backends.simulator import Simulator

    ids = np.arange(len(x)) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    if not per_sample_chips(noise):
        simulator = Simulator(program, noise=noise, device=device)
        return simulator.run(
            x, batch_size, early_exit=False, progress=progress, sample_ids=ids
        ).readouts
    readouts = []
    for done, (sample, index) in enumerate(zip(x, ids, strict=True)):
        chip = replace(noise, seed=chip_seed(noise.seed, int(index)))
        run = Simulator(program, noise=chip, device=device).run(
            sample[None], 1, early_exit=False, sample_ids=np.array([index])
        )
        readouts.append(run.readouts[0])
        if progress:
            progress(done + 1, len(x))
    return np.stack(readouts)


def certify_program(
    program: Program,
    data: SimData,
    base: ExitTable,
    options: GuaranteeOptions,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Program, dict[str, Any]]:
    """The program with a certified exit table, and the calibration report."""
    if options.risk == "accuracy" and data.y is None:
        raise PrimecError(
            "--exit-guarantee accuracy needs labels `y` in the calibration data",
            hint="write y [N] next to x in the .npz, or certify the consistency risk (no labels)",
        )
    readouts = all_step_readouts(program, data.x, options.noise, progress=progress)
    result = certify_exit(
        base,
        readouts,
        data.y,
        options.eps,
        options.delta,
        policy=options.policy,
        risk=options.risk,
        method=options.pvalue,
        fit_fraction=options.fit_fraction,
        stable=options.stable,
    )
    noise = options.noise
    chips = "one chip per sample" if per_sample_chips(noise) else "the compiled chip"
    report = result.report | {
        "noise": None if noise is None else noise.__dict__,
        "chips": chips,
        "guarantee": guarantee_sentence(result.report, chips),
    }
    return replace(program, exit_table=result.table), report


def guarantee_sentence(report: dict[str, Any], chips: str) -> str:
    """The certificate in words."""
    certificate = report["certificate"]
    what = (
        "the early prediction differs from the all-T one"
        if report["risk"] == "consistency"
        else "the early prediction is wrong where the all-T one is right"
    )
    where = "a new input on a newly programmed chip" if chips.startswith("one") else "a new input"
    return (
        f"with probability >= {1 - certificate['delta']:g} over the {certificate['samples']} "
        f"calibration samples, P({what}) <= {certificate['eps']:g} for {where}"
    )


def certified_summary(report: dict[str, Any]) -> str:
    """One line on what certified calibration chose."""
    table = report["table"]
    setting = (
        f"per-step thresholds {', '.join(f'{v:.3g}' for v in table['thresholds'])}"
        if table.get("thresholds")
        else f"threshold {table['threshold']:.4g}"
    )
    return (
        f"early exit certified ({report['policy']} policy, {table['rule']} {setting}): "
        f"{report['guarantee']}; {report['avg_timesteps']:.2f} steps on average on the "
        f"calibration data ({report['compute_savings'] * 100:.1f}% saved), "
        f"oracle {report['oracle_avg_timesteps']:.2f} steps"
    )
