"""The ADC's per-column ranges: with `adc_cal=2` and an artefact that holds per-column full
scales (`primec calibrate-adc --per column`), each output's ADC (the converter of its column
pair) converts on its own range instead of its tile's.
"""

from __future__ import annotations

import numpy as np
import torch
from primec.backends.isa import Read
from primec.backends.program import Program
from primec.backends.simulator.noise import Noise
from primec.backends.validate import ADC_RANGES, column_ranges_name

CALIBRATIONS = ("target", "tile", "column")  # adc_cal 0, 1, 2


def column_full_scales(program: Program) -> dict[int, np.ndarray] | None:
    """Per Read (instruction index): its outputs' full scales (uA), or None without them."""
    reads = [i for i, ins in enumerate(program.instrs) if isinstance(ins, Read)]
    names = [column_ranges_name(k) for k in range(len(reads))]
    if not reads or names[0] not in program.tensors:
        return None
    return {i: program.tensors[name] for i, name in zip(reads, names, strict=True)}


def code_scales(
    program: Program, noise: Noise, volts: float, device: torch.device
) -> dict[int, float | torch.Tensor]:
    """Per Read (instruction index): the factor from a plane's current (uS x drive units) to
    ADC codes, volts x 2^B / (2 x full scale): one number on the tile's (or the target's)
    range, or [outputs, 1] factors where per-column ranges apply (`noise.adc_cal` 2)."""
    factor = volts * 2 ** max(noise.adc, 1)
    scales: dict[int, float | torch.Tensor] = {
        i: factor / (2 * fs) for i, fs in tile_full_scales(program, noise).items()
    }
    ranges = column_full_scales(program)
    if ranges is not None and noise.adc_cal >= 2:
        scales |= {
            i: torch.from_numpy(factor / (2 * full_scale.astype(np.float64)))[:, None].to(device)
            for i, full_scale in ranges.items()
        }
    return scales


def tile_full_scales(program: Program, noise: Noise) -> dict[int, float]:
    """Each Read's ADC full scale (uA): the artefact's calibrated ranges (`ADC_RANGES`, one per
    Read in program order) unless `noise.adc_cal` is 0 or it has none, else the target's one."""
    reads = [i for i, ins in enumerate(program.instrs) if isinstance(ins, Read)]
    calibrated = program.tensors.get(ADC_RANGES)
    if calibrated is None or not noise.adc_cal:
        return dict.fromkeys(reads, float(program.meta["target_parameters"]["adc.full_scale_ua"]))
    return {i: float(fs) for i, fs in zip(reads, calibrated, strict=True)}


def calibration_levels(program: Program) -> tuple[bool, bool, bool]:
    """Per `adc_cal` level (target, tile, column): whether the artefact has those ranges."""
    return True, ADC_RANGES in program.tensors, column_full_scales(program) is not None


def calibration_used(program: Program, noise: Noise) -> str:
    """Which ADC ranges a run with `noise` converts on: the finest of `CALIBRATIONS` the
    artefact has, up to `noise.adc_cal`."""
    has = calibration_levels(program)
    return CALIBRATIONS[max(level for level in range(noise.adc_cal + 1) if has[level])]
