"""Per-column ADC ranges: each output's ADC converts on its own full scale (codes by hand),
calibration sets it to the percentile of that output's currents, both artefacts carry the
tables (one per tile) and the validators refuse malformed ones, `adc_cal` chooses target, tile
or column ranges, and artefacts without the tables run exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import test_adc
from click.testing import CliRunner
from primec.backends import BACKENDS
from primec.backends.isa import Read
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.adc import calibration_used
from primec.backends.validate import ADC_RANGES, column_ranges_name
from test_adc import Recording

from primec.cli import main
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.runtime.adccalibration import EDGES, calibrate_adc, column_histograms
from primec.runtime.sweep import Grid

STEP = EDGES[1] / EDGES[0]  # the histogram's bin ratio
# test_adc's fixtures: one torch thread, and the released classifier.
one_thread = test_adc.one_thread
program = test_adc.program


@pytest.fixture(scope="module")
def calibrated(program):
    return calibrate_adc(program, load_split("train")[0][:8], per="column")


def reads(program) -> list[Read]:
    return [i for i in program.instrs if isinstance(i, Read)]


def with_columns(program, ranges: list[np.ndarray]):
    tables = {column_ranges_name(k): r for k, r in enumerate(ranges)}
    return replace(program, tensors=program.tensors | tables)


@pytest.mark.parametrize("bits", [3, 5])
def test_each_output_converts_on_its_own_range(program, bits: int) -> None:
    x = load_split("test")[0][:2]
    rng = np.random.default_rng(0)
    ranges = [rng.uniform(0.5, 6.0, len(program.tensors[r.cols])) for r in reads(program)]
    simulator = Recording(with_columns(program, ranges), Noise(adc=bits))
    simulator.run(x, 2, early_exit=False)
    volts = program.meta["target_parameters"]["read.voltage_v"]
    top = 2 ** (bits - 1)
    number = {i: k for k, i in enumerate(simulator.reads)}
    for (i, current), codes in zip(simulator.currents, simulator.codes, strict=True):
        lsb = 2 * ranges[number[i]] / 2**bits  # uA per code, one per output
        expected = np.clip(np.round(current * volts / lsb[None, :, None]), -top, top - 1)
        np.testing.assert_array_equal(codes, expected)
    every = np.concatenate([c.ravel() for c in simulator.codes])
    assert every.min() == -top and every.max() == top - 1


def test_column_histograms_count_as_numpy_does() -> None:
    rng = np.random.default_rng(1)
    magnitudes = np.exp(rng.uniform(-9, 10, (5, 400)))  # below, inside and above the edges
    magnitudes[0, :3] = [0.0, EDGES[0], EDGES[-1]]
    magnitudes[1, :2] = EDGES[17], EDGES[17] * 0.999999
    expected = [np.histogram(row[row > 0], EDGES)[0] for row in magnitudes]
    np.testing.assert_array_equal(column_histograms(magnitudes), expected)


def test_each_columns_full_scale_is_the_percentile_of_its_reads(program) -> None:
    x = load_split("train")[0][:4]
    cal, summary = calibrate_adc(program, x, percentile=99.0, per="column")
    simulator = Recording(program, Noise())
    simulator.per_plane = True  # plane by plane and ideal, as calibration reads
    simulator.run(x, 4, early_exit=False)
    volts = program.meta["target_parameters"]["read.voltage_v"]
    for k, i in enumerate(simulator.reads):
        planes = [np.abs(c) * volts for j, c in simulator.currents if j == i]
        per_output = np.concatenate(
            [p.transpose(1, 0, 2).reshape(p.shape[1], -1) for p in planes], 1
        )
        scales = cal.tensors[column_ranges_name(k)]
        assert summary["tiles"][k]["column_full_scale_ua"] == scales.tolist()
        for values, scale in zip(per_output, scales, strict=True):
            values = np.sort(values[values > 0])
            if not len(values):
                assert scale == cal.tensors[ADC_RANGES][k]  # never conducted: the tile's range
                continue
            at = values[int(np.ceil(len(values) * 0.99)) - 1]  # the 99th percentile read
            assert scale / STEP * (1 - 1e-12) <= at < scale


def test_both_artefacts_carry_the_tables_and_the_tile_ranges_stay(program, calibrated) -> None:
    cal, _ = calibrated
    tile_only, _ = calibrate_adc(program, load_split("train")[0][:8])
    np.testing.assert_array_equal(cal.tensors[ADC_RANGES], tile_only.tensors[ADC_RANGES])
    names = [column_ranges_name(k) for k in range(len(reads(program)))]
    for name in ("bytecode", "macro"):
        back = BACKENDS[name].decode(BACKENDS[name].encode(cal))
        for table in names:
            np.testing.assert_array_equal(back.tensors[table], cal.tensors[table])
    manifest = _manifest(BACKENDS["macro"].encode(cal))
    assert manifest["adc"]["column_full_scale_ua"] == [cal.tensors[n].tolist() for n in names]
    # Calibrating per tile again drops the column tables.
    again, _ = calibrate_adc(cal, load_split("train")[0][:2])
    assert not any(n.startswith("adc.column") for n in again.tensors)


def _manifest(data: bytes) -> dict:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("manifest.json"))


def test_adc_cal_chooses_target_tile_or_column(program, calibrated) -> None:
    cal, _ = calibrated
    assert [calibration_used(cal, Noise(adc=4, adc_cal=c)) for c in (0, 1, 2)] == [
        "target",
        "tile",
        "column",
    ]
    tile_only = replace(
        cal, tensors={k: v for k, v in cal.tensors.items() if not k.startswith("adc.column")}
    )
    assert calibration_used(tile_only, Noise(adc=4)) == "tile"  # the finest it has
    assert calibration_used(program, Noise(adc=4)) == "target"
    x = load_split("test")[0][:3]
    runs = {c: Simulator(cal, Noise(adc=4, adc_cal=c)).run(x, 3, False) for c in (0, 1, 2)}
    assert not np.array_equal(runs[1].readouts, runs[2].readouts)
    same = Simulator(tile_only, Noise(adc=4, adc_cal=1)).run(x, 3, False)
    np.testing.assert_array_equal(runs[1].readouts, same.readouts)


def test_column_ranges_equal_to_the_tiles_change_nothing(program, calibrated) -> None:
    cal, _ = calibrated
    tiles = cal.tensors[ADC_RANGES]
    flat = with_columns(
        cal, [np.full(len(program.tensors[r.cols]), tiles[k]) for k, r in enumerate(reads(cal))]
    )
    x = load_split("test")[0][:3]
    noise = Noise(read=0.01, adc=5, seed=2)
    per_tile = Simulator(cal, replace(noise, adc_cal=1)).run(x, 3, False)
    per_column = Simulator(flat, noise).run(x, 3, False)
    np.testing.assert_array_equal(per_tile.readouts, per_column.readouts)
    np.testing.assert_array_equal(
        per_tile.counts["adc_conversions"], per_column.counts["adc_conversions"]
    )


BAD = {
    "short": (lambda r: r[:-1], "must hold one positive float full scale per output of read"),
    "zero": (lambda r: np.where(np.arange(len(r)) == 0, 0.0, r), "one positive float"),
    "negative": (lambda r: -r, "one positive float"),
    "integers": (lambda r: r.astype(np.int64), "one positive float"),
    "NaN": (lambda r: np.where(np.arange(len(r)) == 1, np.nan, r), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("backend", ["bytecode", "macro"])
def test_malformed_column_tables_are_refused(calibrated, case: str, backend: str) -> None:
    cal, _ = calibrated
    change, message = BAD[case]
    name = column_ranges_name(1)
    broken = replace(cal, tensors=cal.tensors | {name: change(cal.tensors[name])})
    with pytest.raises(PrimecError, match=message):
        BACKENDS[backend].encode(broken)


def test_a_missing_or_stray_table_is_refused(calibrated) -> None:
    cal, _ = calibrated
    missing = replace(
        cal, tensors={k: v for k, v in cal.tensors.items() if k != column_ranges_name(2)}
    )
    with pytest.raises(
        PrimecError, match="one tensor per read .* missing 'adc.column_full_scale_ua.2'"
    ):
        BACKENDS["bytecode"].encode(missing)
    stray = replace(cal, tensors=cal.tensors | {column_ranges_name(99): np.ones(3)})
    with pytest.raises(PrimecError, match="unexpected 'adc.column_full_scale_ua.99'"):
        BACKENDS["macro"].encode(stray)


def test_sweeps_take_three_calibration_levels() -> None:
    grid = Grid.parse(["adc_cal=0,1,2"], 2)
    assert grid.axes == (("adc_cal", (0, 1, 2)),)
    with pytest.raises(PrimecError, match="out of range"):
        Grid.parse(["adc_cal=3"], 2)
    with pytest.raises(PrimecError, match="out of range"):
        Noise.parse("adc_cal=3")


def test_the_cli_calibrates_per_column(program, tmp_path: Path) -> None:
    artefact, data = tmp_path / "m.pmac", tmp_path / "cal.npz"
    artefact.write_bytes(BACKENDS["macro"].encode(program))
    np.savez(data, x=load_split("train")[0][:4].astype(np.float32))
    out, report = tmp_path / "col.pmac", tmp_path / "adc.json"
    args = ["calibrate-adc", str(artefact), "--input", str(data), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--per", "column", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "ADC full scale per column" in result.output
    tiles = json.loads(report.read_text())["tiles"]
    back = BACKENDS["macro"].decode(out.read_bytes())
    assert [t["column_full_scale_ua"] for t in tiles] == [
        back.tensors[column_ranges_name(k)].tolist() for k in range(len(tiles))
    ]
    shown = CliRunner().invoke(main, ["inspect", str(out)]).output
    low, high = (
        min(map(min, (t["column_full_scale_ua"] for t in tiles))),
        max(map(max, (t["column_full_scale_ua"] for t in tiles))),
    )
    assert f"calibrated per column {low:.3g}-{high:.3g} uA" in shown
    run = ["simulate", str(out), "--input", str(data), "--no-statistical-energy", "--noise"]
    for noise, words in (("adc=4", "per column"), ("adc=4,adc_cal=1", "per tile")):
        simulated = CliRunner().invoke(main, [*run, noise])
        assert simulated.exit_code == 0, simulated.output
        assert f"ADC ranges          {words}\n" in simulated.output
    bad = CliRunner().invoke(main, [*args, "--force", "--per", "row"])
    assert bad.exit_code == 2 and "'row' is not one of 'tile', 'column'" in bad.output
