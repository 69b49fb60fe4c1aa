"""Stuck-cell repair by read-back (backends/simulator/verify.py) and the noisy chip's numbers
for the inpainting model (primec/apps/inpaint_chip.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.noise import programmed_cells
from primec.backends.simulator.verify import VerifiedSimulator, repair_stuck

from primec.apps.inpaint_chip import chip_readouts, chip_spread
from primec.apps.inpaint_noise import breakdown_rows
from primec.errors import PrimecError
from primec.pipeline import BackendOptions, compile_model

sys.path.insert(0, str(Path(__file__).parent))
from test_simulator import one_thread  # noqa: E402, F401  (autouse: one torch thread)

RELEASED = (
    Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
)
G_OFF, G_MAX = 0.5, 100.0
# One row, four pairs (G+, G-): weights 5, 0 (pruned), 5, -30.
COMPILED = np.array([[25.0, 20.0, 0.5, 0.5, 30.0, 25.0, 10.0, 40.0]])
# Pair 0: G+ stuck high; pair 1: G- stuck high; pair 2: G+ stuck low; pair 3: both stuck.
CHIP = np.array([[G_MAX, 20.0, 0.5, G_MAX, G_OFF, 25.0, G_MAX, G_OFF]])
STUCK = np.array([[True, False, False, True, True, False, True, True]])


@pytest.fixture(scope="module")
def program():
    """The released classifier (as-formed, pruned), compiled and lowered."""
    return compile_model(
        RELEASED, arch="prime-nmnist", log=lambda _: None, backend=BackendOptions()
    ).program


def weights(cells: np.ndarray) -> np.ndarray:
    return cells[:, 0::2] - cells[:, 1::2]


def test_cancel_sets_the_partner_to_the_stuck_state():
    rng = np.random.default_rng(0)
    repaired, count = repair_stuck(CHIP, STUCK, np.zeros_like(COMPILED), (G_OFF, G_MAX, 0.0), rng)
    assert count == 3  # pair 3 has both cells stuck: nothing to set
    np.testing.assert_array_equal(repaired[0, :6], [G_MAX, G_MAX, G_MAX, G_MAX, G_OFF, G_OFF])
    np.testing.assert_array_equal(weights(repaired)[0], [0.0, 0.0, 0.0, G_MAX - G_OFF])
    assert CHIP[0, 1] == 20.0  # the input is not changed


def test_restore_gives_the_compiled_weight_back_where_the_range_allows():
    rng = np.random.default_rng(0)
    repaired, _ = repair_stuck(CHIP, STUCK, COMPILED, (G_OFF, G_MAX, 0.0), rng)
    # pair 0: G- = 100 - 5; pair 1: G+ = 100 + 0; pair 2 wants G- = 0.5 - 5 < g_off: clipped
    np.testing.assert_array_equal(repaired[0, :6], [G_MAX, 95.0, G_MAX, G_MAX, G_OFF, G_OFF])
    np.testing.assert_array_equal(weights(repaired)[0, :3], [5.0, 0.0, 0.0])


def test_the_partner_lands_within_the_write_verify_tolerance():
    rng = np.random.default_rng(1)
    rows = np.repeat(CHIP, 500, axis=0)
    stuck, compiled = np.repeat(STUCK, 500, axis=0), np.repeat(COMPILED, 500, axis=0)
    repaired, count = repair_stuck(rows, stuck, compiled, (G_OFF, G_MAX, 0.5), rng)
    errors = weights(repaired)[:, :2] - [5.0, 0.0]
    assert count == 1500 and np.abs(errors).max() <= 0.5 and errors.std() > 0.2


def test_the_verified_chip_differs_from_the_raw_one_exactly_at_singly_stuck_pairs(program):
    noise = Noise(stuck=0.01, seed=3)
    params = program.meta["target_parameters"]
    tolerance = params["cells.write_verify_tolerance_us"]
    verified = VerifiedSimulator(program, noise, chips=(0, 1))
    singly = 0
    for c, chip in enumerate((0, 1)):
        for key, compiled in program.arrays.items():
            raw, stuck = programmed_cells(key, compiled, noise, params, chip)
            one = stuck[:, 0::2] ^ stuck[:, 1::2]
            singly += int(one.sum())
            cells = verified.cells[c][key]
            same = np.repeat(~one, 2, axis=1)
            np.testing.assert_array_equal(cells[same], raw[same])
            assert np.abs(weights(cells)[one]).max() <= tolerance
    assert singly == verified.repaired > 100


def test_repair_brings_the_classifier_back_towards_the_ideal_chip(program, ndigits_x):
    x = ndigits_x[:24]
    noise = Noise(stuck=0.01, seed=3)
    ideal = Simulator(program).run(x, 24, early_exit=False).readouts
    raw, repaired = (
        chip_readouts(program, x, noise, (0,), repair)[0] for repair in (None, "cancel")
    )
    raw_error, repaired_error = (np.abs(r - ideal).mean() for r in (raw, repaired))
    assert repaired_error < 0.5 * raw_error


def test_unknown_repairs_and_drift_are_refused(program):
    with pytest.raises(PrimecError, match="unknown stuck-cell repair"):
        VerifiedSimulator(program, Noise(stuck=0.01), repair="ignore")
    with pytest.raises(PrimecError, match="not with drift"):
        VerifiedSimulator(program, Noise(stuck=0.01, age=3600))


def test_chip_spread_against_hand_computed_errors():
    clean = np.zeros((2, 1, 2, 2))
    mask = np.array([[[True, False], [False, False]]])
    finals = [np.full((2, 1, 2, 2), 0.5), np.full((2, 1, 2, 2), 1.0)]
    spread = chip_spread(finals, clean, mask, 0.5, (0, 1))
    assert spread["hole_mse"] == [0.25, 1.0]
    assert spread["ratio_to_pytorch"] == [0.5, 2.0] and spread["ratio_mean"] == 1.25
    assert spread["hole_psnr_db"][1] == pytest.approx(10 * np.log10(4.0))


def test_the_breakdown_keeps_the_targets_noise():
    target = Noise(read=0.01, stuck=0.001, adc=8, seed=5)
    rows = breakdown_rows(target)
    assert rows["all, calibrated, cancel"] == (target, True, "cancel")
    assert rows["read noise"][0] == Noise(read=0.01, seed=5)
    assert rows["ADC, target range"][0].adc_cal == 0 and rows["stuck cells, raw"][2] is None
