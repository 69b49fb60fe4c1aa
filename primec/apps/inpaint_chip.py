"""The inpainting model on the noisy chip: calibrated ADC ranges, stuck-cell repair, several
chips, and what each non-ideality costs.

The chip keeps the target's own non-idealities (`Noise.from_target`: read noise, stuck cells,
ADC bits); two choices of the flow, not of the chip, are made here:

- **ADC ranges** calibrated on the calibration split (`calibrate_adc`, per column pair, 99.9th
  percentile of each output's plane currents), instead of the target's one 100 uA full scale.
- **Stuck-cell repair** (`backends/simulator/verify.py`): the periphery reads every cell back
  after programming and sets a stuck cell's pair partner to the same state (`cancel`), or
  programs it to give the compiled weight back (`restore`). Without it (`None`) the chip is
  the raw one.

Several chips (`CHIPS`: noise seeds keyed by chip) show the spread of one number. The test
split is used for no choice here; `python -m primec.apps.inpaint_noise` measures what each
non-ideality costs on it (`docs/inpainting.md`, "Measured").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from primec.apps.inpaint import hole_quality
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.verify import VerifiedSimulator
from primec.runtime.adccalibration import calibrate_adc

BATCH = 32
CHIPS = (0, 1, 2, 3)
ADC_PER = "column"  # the calibrated ranges' granularity
REPAIR = "cancel"  # the stuck-cell repair the chip numbers use (None: the raw chip)


def calibrated_program(program: Program, calibration_x: np.ndarray) -> tuple[Program, dict]:
    """The program with its ADC ranges calibrated on `calibration_x` (per `ADC_PER`)."""
    return calibrate_adc(program, calibration_x, per=ADC_PER)


def chip_readouts(
    program: Program,
    x: np.ndarray,
    noise: Noise,
    chips: Sequence[int] = (0,),
    repair: str | None = REPAIR,
) -> list[np.ndarray]:
    """Per chip, the readout after every step [N, T, ...] (all T steps run)."""
    if repair is None or not noise.stuck:
        simulator = Simulator(program, noise, chips=chips)
    else:
        simulator = VerifiedSimulator(program, noise, chips=chips, repair=repair)
    return [r.readouts for r in simulator.run_chips(x, BATCH, early_exit=False)]


def chip_spread(
    finals: Sequence[np.ndarray],
    clean: np.ndarray,
    mask: np.ndarray,
    reference: float,
    chips: Sequence[int],
) -> dict[str, Any]:
    """Each chip's hole MSE and PSNR, and its hole MSE over `reference` (PyTorch's)."""
    qualities = [hole_quality(final, clean, mask) for final in finals]
    ratios = [q.hole_mse / reference for q in qualities]
    return {
        "chips": list(chips),
        "hole_mse": [q.hole_mse for q in qualities],
        "hole_psnr_db": [q.hole_psnr_db for q in qualities],
        "ratio_to_pytorch": ratios,
        "ratio_mean": float(np.mean(ratios)),
        "ratio_min": float(min(ratios)),
        "ratio_max": float(max(ratios)),
    }
