"""`primec sweep --grid stuck_repair=0,1,2`: a repair point's rows are `VerifiedSimulator` run
directly on each chip, level 0 is the plain sweep, chip c repairs the same alone and among
others, an aged repair and bad levels are one clear error before any work, and in-process and
2 Ray workers write the same bytes (tiny grids on a tiny model, to stay fast).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.verify import VerifiedSimulator
from sweep_models import tiny_data, tiny_program, write_files

from primec.cli import main
from primec.runtime.simdata import SimData
from primec.runtime.sweep import Grid, Job, shards
from primec.runtime.sweepray import run_shards

STUCK = 0.08  # high enough that every chip of the tiny model has stuck cells to repair
BASE = Noise(read=0.05, seed=4)
OUTPUTS = ("sweep.csv", "sweep-chips.csv", "sweep.json")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return tiny_program(tmp_path_factory.mktemp("repair"))


@pytest.fixture(scope="module")
def data() -> SimData:
    return tiny_data(1, 16)


@pytest.fixture(scope="module")
def files(program, data, tmp_path_factory) -> tuple[Path, Path]:
    return write_files(program, data, tmp_path_factory.mktemp("files"))


def sweep_rows(program, data, specs: list[str], chips: int, per_shard: int) -> list[dict]:
    grid = Grid.parse(specs, chips)
    job = Job(program, data, BASE, tuple(grid.points()))
    outcome = run_shards(job, shards(grid, per_shard), workers=0)
    assert outcome.complete
    return outcome.rows


def test_a_repair_point_is_the_verified_simulator_on_each_chip(program, data) -> None:
    rows = sweep_rows(program, data, [f"stuck={STUCK}", "stuck_repair=0,1,2"], 3, 2)
    assert [(r["stuck_repair"], r["chip"]) for r in rows] == [
        (m, c) for m in range(3) for c in range(3)
    ]
    noise = Noise(read=0.05, stuck=STUCK, seed=4)
    predictions = {}
    for row in rows:
        mode = ("none", "cancel", "restore")[row["stuck_repair"]]
        if mode == "none":
            direct = Simulator(program, noise, chips=(row["chip"],))
            assert row["pairs_repaired"] is None
        else:
            direct = VerifiedSimulator(program, noise, chips=(row["chip"],), repair=mode)
            assert row["pairs_repaired"] == direct.repaired > 0
        result = direct.run(data.x)
        assert row["accuracy"] == float((result.pred == data.y).mean())
        assert row["avg_timesteps"] == float(result.exit_step.mean())
        predictions[mode, row["chip"]] = result.readouts
    # The repair changes what the chips compute (else the rows above could not tell it ran).
    assert not np.array_equal(predictions["none", 0], predictions["cancel", 0], equal_nan=True)
    assert not np.array_equal(predictions["cancel", 0], predictions["restore", 0], equal_nan=True)


def test_level_0_is_the_plain_sweep(program, data) -> None:
    plain = sweep_rows(program, data, [f"stuck={STUCK}"], 3, 2)
    swept = sweep_rows(program, data, [f"stuck={STUCK}", "stuck_repair=0"], 3, 2)
    assert "pairs_repaired" not in plain[0] and "stuck_repair" not in plain[0]
    assert [r["pairs_repaired"] for r in swept] == [None] * 3
    stripped = [
        {k: v for k, v in r.items() if k not in ("stuck_repair", "pairs_repaired")} for r in swept
    ]
    assert stripped == plain


def test_chip_c_repairs_the_same_alone_and_among_others(program, data) -> None:
    noise = Noise(program=0.05, read=0.05, stuck=STUCK, seed=7)
    for mode in ("cancel", "restore"):
        together = VerifiedSimulator(program, noise, chips=(0, 1, 2, 5), repair=mode)
        results = together.run_chips(data.x, batch_size=5)
        for chip, among in zip((0, 1, 2, 5), results, strict=True):
            alone = VerifiedSimulator(program, noise, chips=(chip,), repair=mode)
            single = alone.run(data.x, batch_size=16)
            assert np.array_equal(single.pred, among.pred)
            assert np.array_equal(single.exit_step, among.exit_step)
            assert np.array_equal(single.readouts, among.readouts, equal_nan=True)
            assert together.repaired_per_chip[chip] == alone.repaired > 0
        assert together.repaired == sum(together.repaired_per_chip.values())
        first, second = results[0].readouts, results[1].readouts
        assert not np.array_equal(first, second, equal_nan=True)  # the chips differ


def sweep_cli(files, out: Path, *extra: str):
    artefact, inputs = files
    args = ["sweep", str(artefact), "--input", str(inputs), "--out", str(out), "--workers", "0"]
    return CliRunner().invoke(main, [*args, "--chips", "2", *extra])


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ("--grid", "stuck_repair=0,1", "--ages", "1h"),
            "combines stuck_repair=1 (cancel) with age=3600 s from the grid's age axis",
        ),
        (
            ("--grid", "stuck_repair=2", "--grid", "age=0,1d"),
            "combines stuck_repair=2 (restore) with age=86400 s",
        ),
        (
            ("--noise", f"stuck={STUCK},age=60", "--grid", "stuck_repair=1"),
            "with age=60 s from --noise: the stuck-cell repair is modelled right after programming",
        ),
        (("--grid", "stuck_repair=0,3"), "stuck_repair=3 is out of range (0..2)"),
        (("--grid", "stuck_repair=-1"), "stuck_repair=-1 is out of range (0..2)"),
        (("--grid", "stuck_repair=1.5"), "stuck_repair='1.5' is not an integer"),
    ],
)
def test_an_aged_repair_or_a_bad_level_is_one_clear_error(files, tmp_path, extra, message) -> None:
    result = sweep_cli(files, tmp_path / "out", *extra)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_the_cli_writes_the_repair_axis_and_the_pairs(files, tmp_path) -> None:
    out = tmp_path / "out"
    result = sweep_cli(files, out, "--noise", f"stuck={STUCK}", "--grid", "stuck_repair=0,1,2")
    assert result.exit_code == 0, result.output
    points = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert [p["stuck_repair"] for p in points] == ["0", "1", "2"]
    assert points[0]["pairs_repaired_mean"] == "" and float(points[1]["pairs_repaired_mean"]) > 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    mean = np.mean([r["pairs_repaired"] for r in rows if r["stuck_repair"] == 1])
    assert float(points[1]["pairs_repaired_mean"]) == mean
    assert "pairs repaired per chip" in result.output
    assert (out / "accuracy_vs_stuck_repair.png").exists()


@pytest.mark.slow
def test_in_process_and_two_ray_workers_write_the_same_bytes(files, tmp_path) -> None:
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        extra = ["--noise", f"stuck={STUCK}", "--grid", "stuck_repair=0,2", "--chips", "4"]
        extra += ["--chips-per-shard", "2", "--workers", str(workers)]
        result = sweep_cli(files, out, *extra)
        assert result.exit_code == 0, result.output
        outputs[workers] = [(out / name).read_bytes() for name in OUTPUTS]
    assert outputs[0] == outputs[2]
    rows = json.loads(outputs[2][2])["rows"]
    assert len(rows) == 8 and all(r["pairs_repaired"] for r in rows if r["stuck_repair"] == 2)
