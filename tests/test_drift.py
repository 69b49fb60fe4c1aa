"""Conductance drift over time: the aged cells against aihwkit's CMO/HfOx fit computed by hand,
the compensations' gains on hand-made tiles, per-chip keying, and bad ages refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends import BACKENDS
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.ages import age_text, seconds
from primec.backends.simulator.drift import aged_cells, column_gains, global_gain
from released import released_program

from primec.cli import main
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, TARGET_DIR, load_target, load_target_file

YEAR = 365.25 * 86400


@pytest.fixture(scope="module")
def drift():
    return load_target(DEFAULT_TARGET).drift


def test_the_target_carries_aihwkits_fit_with_provenance(drift) -> None:
    # aihwkit ReRamCMONoiseModel: mean -0.08900206 ln t + 49.92383444 g / 50; std 0.04201137
    # ln t + 0.41183342 (uS).
    assert drift.mean_log_us == -0.08900206 and drift.std_log_us == 0.04201137
    assert drift.std_us == 0.41183342 and drift.gain == pytest.approx(49.92383444 / 50)
    notes = dict(load_target(DEFAULT_TARGET).provenance)
    assert all(notes[f"drift.{k}"].startswith("fact: IBM aihwkit") for k in ("gain", "std_us"))


@pytest.mark.parametrize("age", [60.0, 86400.0, YEAR])
def test_aged_cells_follow_the_fit(drift, age: float) -> None:
    programmed = np.full((512, 512), 25.0)
    aged = aged_cells((0, 0), programmed, None, Noise(age=age, seed=1), drift)
    log_t = math.log(age)
    mean = 49.92383444 / 50 * 25.0 - 0.08900206 * log_t
    std = 0.04201137 * log_t + 0.41183342
    n = aged.size
    assert abs(aged.mean() - mean) < 5 * std / math.sqrt(n)
    assert aged.std() == pytest.approx(std, rel=5 * math.sqrt(2 / n))


def test_stuck_cells_hold_and_nothing_goes_negative(drift) -> None:
    programmed = np.array([[0.5, 100.0], [0.1, 25.0]])
    stuck = np.array([[True, True], [False, False]])
    aged = aged_cells((0, 0), programmed, stuck, Noise(age=YEAR, seed=2), drift)
    assert aged[0].tolist() == [0.5, 100.0] and aged[1, 0] >= 0.0 and aged[1, 1] != 25.0


def test_compensation_gains_by_hand() -> None:
    reference = np.array([[2.0, -1.0], [3.0, 1.0]])  # column sums 5, 0
    aged = np.array([[1.5, -1.0], [2.5, 0.0]])  # column sums 4, -1
    assert global_gain(reference, aged) == (5 + 0) / (4 + 1)
    cells_before = np.array([[10.0, 20.0], [30.0, 0.0]])
    cells_after = np.array([[8.0, 19.0], [27.0, 0.0]])
    np.testing.assert_allclose(column_gains(cells_before, cells_after), [40 / 35, 20 / 19])
    assert column_gains(np.zeros((2, 1)), np.zeros((2, 1))).tolist() == [1.0]


def test_ages_parse_with_units() -> None:
    assert [seconds(a) for a in ("60s", "1h", "1d", "30d", "1y", "90")] == [
        60.0,
        3600.0,
        86400.0,
        30 * 86400.0,
        YEAR,
        90.0,
    ]
    for bad, message in (("1fortnight", "bad age"), ("0.5s", "origin of 1 s"), ("x", "bad age")):
        with pytest.raises(PrimecError, match=message):
            seconds(bad)


@pytest.fixture(scope="module")
def program():
    return released_program()


@pytest.mark.parametrize("comp", [0, 1, 2])
def test_an_aged_chip_alone_equals_it_among_others(program, drift, comp: int) -> None:
    x = load_split("test")[0][:4]
    noise = Noise(program=0.02, age=YEAR, drift_comp=comp, seed=5)
    many = Simulator(program, noise, chips=(0, 3, 9), drift=drift).run_chips(x, 3)
    alone = Simulator(program, noise, chips=(3,), drift=drift).run(x, 4)
    np.testing.assert_array_equal(alone.readouts, many[1].readouts)
    fresh = Simulator(program, Noise(program=0.02, seed=5), chips=(3,)).run(x, 4)
    assert not np.array_equal(alone.readouts, fresh.readouts)  # the age changed the chip


def test_an_age_needs_a_drift_model(program, tmp_path: Path) -> None:
    with pytest.raises(PrimecError, match="needs the target's drift model"):
        Simulator(program, Noise(age=60.0))
    text = (TARGET_DIR / "prime-40nm-256k.toml").read_text()
    start, end = text.index("[drift]"), text.index("[adc]")
    kept = "\n".join(line for line in text[end:].splitlines() if not line.startswith('"drift.'))
    no_drift = tmp_path / "nodrift.toml"
    no_drift.write_text(text[:start] + kept + "\n")
    assert load_target_file(no_drift).drift is None


def test_the_cli_ages_and_refuses_bad_ages(program, tmp_path: Path) -> None:
    artefact, data = tmp_path / "m.pbc", tmp_path / "d.npz"
    artefact.write_bytes(BACKENDS["bytecode"].encode(program))
    np.savez(data, x=load_split("test")[0][:2].astype(np.float32))
    base = ["simulate", str(artefact), "--input", str(data), "--no-statistical-energy"]
    good = CliRunner().invoke(main, [*base, "--age", "1y", "--drift-comp", "global"])
    assert good.exit_code == 0, good.output
    assert "age=1y, drift_comp=1" in good.output
    bad = CliRunner().invoke(main, [*base, "--age", "1fortnight"])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1 and "bad age" in bad.output


@pytest.mark.parametrize(
    "value, text",
    [
        (0.0, "0"),
        (60.0, "1min"),
        (90.0, "90s"),
        (1.5, "1.5s"),
        (3600.0, "1h"),
        (7200.0, "2h"),
        (86400.0, "1d"),
        (30 * 86400.0, "30d"),
        (365.25 * 86400.0, "1y"),
        (2 * 365.25 * 86400.0, "2y"),
    ],
)
def test_an_age_prints_in_its_largest_whole_unit_and_reads_back(value, text) -> None:
    assert age_text(value) == text and seconds(text) == value
