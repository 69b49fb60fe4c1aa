"""Conductance drift over time and its compensation.

A chip's cells, as programmed (`noise.chip_cells`), drift with the age t (seconds since
programming) by the target's drift model (`hardware.target.DriftSpec`, aihwkit's CMO/HfOx fit):
g(t) = gain g + mean_log ln t + (std_log ln t + std) N(0, 1), clipped at g_min; stuck cells stay
stuck. Draws are keyed by (seed, chip, macro, array), like the programming error, so chip c ages
the same way in every run.

Compensation is computed from a reference read, as a chip does it: right after programming and
again at age t, every row of a tile is driven once (all ones). `global` (aihwkit's global drift
compensation): the periphery multiplies each read of the tile, after the ADC, by the summed
|differential outputs| at programming over the same at age t. `column`: each physical column's
current is trimmed, before the differential, by its reference current at programming over the
same at age t (a per-column gain; differential outputs are too often near zero to divide by).
"""

from __future__ import annotations

import math

import numpy as np
from primec.backends.simulator.noise import Noise, stream_seed

from primec.errors import PrimecError
from primec.hardware.target import DriftSpec

COMPENSATIONS = ("none", "global", "column")  # drift_comp 0, 1, 2


def check_compensation(drift_comp: int, aged: bool, hint: str) -> None:
    """Refuse a drift compensation without an age: the cells of a fresh chip have not drifted,
    so the compensation would change nothing (it would run the same chip under another name)."""
    if drift_comp and not aged:
        raise PrimecError(
            f"drift compensation {COMPENSATIONS[drift_comp]} needs an age: a chip without one "
            "has not drifted, so there is nothing to compensate",
            hint=hint,
        )


def aged_cells(
    key: tuple[int, int],
    programmed: np.ndarray,
    stuck: np.ndarray | None,
    noise: Noise,
    drift: DriftSpec,
    chip: int = 0,
) -> np.ndarray:
    """The programmed cells of array `key` after `noise.age` seconds (stuck cells hold)."""
    log_t = math.log(noise.age)
    rng = np.random.default_rng(stream_seed(noise.seed, 3, chip, *key))
    normals = rng.standard_normal(programmed.shape)
    aged = drift.gain * programmed + drift.mean_log_us * log_t
    aged = aged + (drift.std_log_us * log_t + drift.std_us) * normals
    aged = np.clip(aged, drift.g_min_us, None)
    return aged if stuck is None else np.where(stuck, programmed, aged)


def global_gain(reference: np.ndarray, aged: np.ndarray) -> float:
    """One gain for a tile's reads (aihwkit's global drift compensation): the all-ones
    reference read's summed |differential outputs| at programming over the same at age t.
    reference, aged: [rows, outputs] G+ - G- of the tile."""
    after = float(np.abs(aged.sum(axis=0)).sum())
    return float(np.abs(reference.sum(axis=0)).sum()) / after if after else 1.0


def column_gains(reference: np.ndarray, aged: np.ndarray) -> np.ndarray:
    """One gain per physical column of a tile (G+ and G- columns alike): the all-ones reference
    read's column current at programming over the same at age t. It trims the column's current
    before the differential, so it acts as a scale of the column's cells.
    reference, aged: [rows, columns] cells of the tile."""
    before, after = reference.sum(axis=0), aged.sum(axis=0)
    return np.where(after > 0, before / np.where(after > 0, after, 1.0), 1.0)


def check_drift(noise: Noise, drift: DriftSpec | None) -> None:
    """Refuse an age without a drift model, or an age under the model's 1 s origin."""
    if not noise.age:
        return
    if drift is None:
        raise PrimecError(
            "an age needs the target's drift model, and this target has no [drift] table",
            hint="add a [drift] table to the target (docs/targets.md), or leave out the age",
        )
    if noise.age < 1.0:
        raise PrimecError(f"age {noise.age} s is under the drift model's origin of 1 s")
