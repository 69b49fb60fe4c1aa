"""The ADC as a chip has it: B-bit codes (2^B levels, -2^(B-1) .. 2^(B-1) - 1) computed by hand
from the ideal plane currents, per-tile full scales calibrated on data and carried by both
artefacts, and calibration recovering the accuracy a 4- or 5-bit ADC loses.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends import BACKENDS
from primec.backends.isa import Read
from primec.backends.simulator import Noise, Simulator
from primec.backends.validate import ADC_RANGES
from released import released_program, single_thread

from primec.cli import main
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.runtime.adccalibration import EDGES, calibrate_adc, full_scales


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def program():
    return released_program()


class Recording(Simulator):
    """The simulator, keeping every plane's ideal currents and its ADC codes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currents: list[tuple[int, np.ndarray]] = []
        self.codes: list[np.ndarray] = []
        self.plane_hook = lambda i, current: self.currents.append((i, current.numpy().copy()))

    def _plane_read(self, i, k, tile, integer, first):
        codes = super()._plane_read(i, k, tile, integer, first)
        self.codes.append(codes.numpy().copy())
        return codes


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_codes_fit_b_bits_and_equal_a_hand_conversion(program, bits: int) -> None:
    x = load_split("test")[0][:3]
    reads = sum(isinstance(i, Read) for i in program.instrs)
    # A small range for every tile, so that reads saturate at both ends.
    small = replace(program, tensors=program.tensors | {ADC_RANGES: np.full(reads, 2.0)})
    simulator = Recording(small, Noise(adc=bits))
    simulator.run(x, 3, early_exit=False)
    volts = program.meta["target_parameters"]["read.voltage_v"]
    lsb = 2 * 2.0 / 2**bits  # uA per code
    top = 2 ** (bits - 1)
    every = np.concatenate([c.ravel() for c in simulator.codes])
    assert every.min() == -top and every.max() == top - 1  # 2^B levels, both ends reached
    assert len(np.unique(every)) <= 2**bits
    for (_, current), codes in zip(simulator.currents, simulator.codes, strict=True):
        expected = np.clip(np.round(current * volts / lsb), -top, top - 1)
        np.testing.assert_array_equal(codes, expected)


def test_histogram_edges_are_correctly_rounded_powers_of_ten() -> None:
    """Each edge x is the float64 nearest 10^(k/200) (so the same bits on every machine, which
    np.logspace is not): exactly, in rationals, (x - ulp/2)^200 < 10^k < (x + ulp/2)^200."""
    assert len(EDGES) == 1401 and EDGES[0] == 1e-3 and EDGES[600] == 1.0 and EDGES[-1] == 1e4
    for k, edge in zip(range(-600, 801), EDGES, strict=True):
        half = Fraction(math.ulp(edge)) / 2
        power = Fraction(10) ** k
        assert (Fraction(edge) - half) ** 200 < power < (Fraction(edge) + half) ** 200, k


def test_full_scale_is_the_percentile_of_the_reads() -> None:
    currents = np.arange(1, 1001, dtype=np.float64)  # uA
    histogram = np.histogram(currents, EDGES)[0]
    (scale,) = full_scales({0: histogram}, 99.0, fallback=100.0)
    assert 990 <= scale <= 990 * 1.012 + 1e-9  # the bin holding the 990th of 1000 reads
    (unused,) = full_scales({0: np.zeros_like(histogram)}, 99.0, fallback=100.0)
    assert unused == 100.0


def test_both_artefacts_carry_the_ranges(program, tmp_path: Path) -> None:
    calibrated, summary = calibrate_adc(program, load_split("train")[0][:8])
    ranges = calibrated.tensors[ADC_RANGES]
    assert [t["full_scale_ua"] for t in summary["tiles"]] == ranges.tolist()
    assert (ranges < 100).all()  # far below the target's one 100 uA range
    for name in ("bytecode", "macro"):
        back = BACKENDS[name].decode(BACKENDS[name].encode(calibrated))
        np.testing.assert_array_equal(back.tensors[ADC_RANGES], ranges)
    broken = replace(calibrated, tensors=calibrated.tensors | {ADC_RANGES: ranges[:-1]})
    with pytest.raises(PrimecError, match="one positive full scale per read"):
        BACKENDS["bytecode"].decode(BACKENDS["bytecode"].encode(broken))


@pytest.mark.slow
def test_calibration_recovers_at_least_half_of_what_few_bits_lose(program) -> None:
    x, y = load_split("test")
    x, y = x[:96], y[:96]
    calibrated, _ = calibrate_adc(program, load_split("train")[0][:64])
    ideal = (Simulator(program).run(x, 96, early_exit=False).pred == y).mean()
    for bits in (4, 5):
        plain, cal = (
            (Simulator(calibrated, Noise(adc=bits, adc_cal=c)).run(x, 96, False).pred == y).mean()
            for c in (0, 1)
        )
        assert ideal - plain > 0.05  # the one 100 uA range loses accuracy at this many bits
        assert cal - plain >= (ideal - plain) / 2


def test_the_cli_calibrates_and_refuses_a_bad_percentile(program, tmp_path: Path) -> None:
    artefact, data = tmp_path / "m.pbc", tmp_path / "cal.npz"
    artefact.write_bytes(BACKENDS["bytecode"].encode(program))
    np.savez(data, x=load_split("train")[0][:4].astype(np.float32))
    out, report = tmp_path / "cal.pbc", tmp_path / "adc.json"
    args = ["calibrate-adc", str(artefact), "--input", str(data), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(report.read_text())["tiles"]) == len(
        [i for i in program.instrs if isinstance(i, Read)]
    )
    assert json.loads(report.read_text())["unread_tiles"] == [] and "warning" not in result.output
    np.savez(data, x=np.zeros_like(load_split("train")[0][:4], dtype=np.float32))
    dark = CliRunner().invoke(main, [*args, "--force"])
    assert dark.exit_code == 0, dark.output
    assert "tiles read no current on these samples" in dark.output
    assert "keep the target's range (100 uA)" in dark.output
    bad = CliRunner().invoke(main, [*args, "--force", "--percentile", "20"])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1
    assert "--percentile must be between 50 and 100" in bad.output
