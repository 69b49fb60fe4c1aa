"""`primec sweep` refuses bad inputs up front (a device torch cannot use, data without labels,
repeated levels, a drift compensation without an age, malformed --grid options) with one
error and nothing written; it keeps --out to its own outputs; its accuracy CI stays in [0, 1];
it reports early exit only where it applied. `primec simulate` takes age 0 as a fresh chip and
refuses a drift compensation without an age, by the same rule as the sweep.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends.simulator import Noise
from sweep_models import tiny_data, tiny_program, write_files

from primec.cli import main
from primec.runtime.sweep import Grid, Job, Shard, summarise, sweep_report


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return tiny_program(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def files(program, tmp_path_factory) -> tuple[Path, Path]:
    return write_files(program, tiny_data(2, 8), tmp_path_factory.mktemp("files"))


def sweep_cli(files, out: Path, *extra: str):
    artefact, inputs = files
    args = ["sweep", str(artefact), "--input", str(inputs), "--out", str(out), "--workers", "0"]
    return CliRunner().invoke(main, [*args, "--chips", "2", "--noise", "ideal", *extra])


def assert_one_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1, result.output
    for part in parts:
        assert part in result.output, result.output


@pytest.mark.parametrize(
    "extra, parts",
    [
        (("--device", "gpu"), ("torch device 'gpu' is not available", "hint: use --device cpu")),
        (("--grid", "program=0,0"), ("program=0 is given twice", "hint: give each level once")),
        (("--grid", "program=0.05,0,0.0"), ("program=0 is given twice",)),
        (("--grid", "age=0,0s"), ("age=0 is given twice",)),
        (("--grid", "adc=4,6", "--grid", "adc=8"), ("'adc' is given twice in --grid", "hint:")),
        (
            ("--grid", "drift_comp=0,1,2"),
            ("drift compensation global needs an age", "hint: add ages with --ages"),
        ),
        (("--noise", "drift_comp=2", "--grid", "read=0,0.02"), ("column needs an age",)),
        (("--grid", "program"), ("--grid 'program' is not PARAM=LEVELS", "--grid program=0,")),
        (("--grid", "program="), ("is not PARAM=LEVELS",)),
        (("--grid", "adc=4.5"), ("adc='4.5' is not an integer", "e.g. --grid adc=4,6,8")),
        (("--grid", "drift_comp=x"), ("is not an integer", "e.g. --grid drift_comp=0,1,2")),
        (
            ("--ages", "1h", "--grid", "age=1d"),
            ("'age' is given both in --grid and by --ages", "hint: give the ages once"),
        ),
        (("--grid", "read=-0.1"), ("read=-0.1 is out of range (>= 0.0)", "hint: give read")),
        (("--grid", "stuck=2"), ("out of range (0.0..1.0)", "e.g. --grid stuck=0,0.001")),
        (("--grid", "adc=17"), ("out of range (0..16)", "hint: give adc levels in 0..16")),
        (("--ages", "0.5s"), ("under the drift model's origin", "hint: give 0 for a fresh chip")),
    ],
)
def test_a_bad_input_is_one_error_before_any_work(files, tmp_path, extra, parts) -> None:
    result = sweep_cli(files, tmp_path / "out", *extra)
    assert_one_error(result, *parts)
    assert "sweep:" not in result.output  # no shard ran
    assert not (tmp_path / "out").exists()


def test_data_without_labels_is_refused(files, tmp_path) -> None:
    unlabelled = tmp_path / "nolabels.npz"
    np.savez(unlabelled, x=np.load(files[1])["x"])
    result = sweep_cli((files[0], unlabelled), tmp_path / "out", "--grid", "read=0,0.02")
    assert_one_error(result, f"{unlabelled} has no labels (no array y)", "hint: add the labels")
    assert not (tmp_path / "out").exists()


def test_repeated_levels_after_parsing_are_refused() -> None:
    with pytest.raises(Exception, match="adc=4 is given twice"):
        Grid.parse(["adc=4, 04"], 2)
    assert Grid.parse(["age=0,1h"], 2).axes == (("age", (0.0, 3600.0)),)


def test_a_one_chip_shard_names_its_chip() -> None:
    assert Shard(1, (0,)).name == "point 1, chip 0"
    assert Shard(1, (0, 1, 2)).name == "point 1, chips 0-2"


def test_the_accuracy_interval_is_clipped_to_0_1() -> None:
    rows = [{"point": 0, "chip": c, "accuracy": a} for c, a in enumerate((1.0, 0.25))]
    rows = [r | {"avg_timesteps": 4.0, "energy_per_inference_j": 1e-9} for r in rows]
    entry = summarise([{}], rows)[0]
    assert entry["accuracy_mean"] == 0.625
    assert (entry["ci95_low"], entry["ci95_high"]) == (0.0, 1.0)
    narrow = summarise([{}], [r | {"accuracy": 0.5} for r in rows])[0]
    assert (narrow["ci95_low"], narrow["ci95_high"]) == (0.5, 0.5)


def test_early_exit_is_reported_only_where_it_applied(program) -> None:
    data, grid = tiny_data(2, 4), Grid.parse(["read=0"], 2)
    plain = Job(program, data, Noise(), tuple(grid.points()))
    with_table = replace(plain, program=replace(program, exit_table=object()))
    assert program.exit_table is None
    assert sweep_report(plain, grid, data, "", [])["early_exit"] is False
    assert sweep_report(with_table, grid, data, "", [])["early_exit"] is True
    assert (
        sweep_report(replace(with_table, early_exit=False), grid, data, "", [])["early_exit"]
        is False
    )


def test_a_sweep_clears_what_earlier_sweeps_left_only(files, tmp_path) -> None:
    out = tmp_path / "out"
    first = sweep_cli(files, out, "--grid", "read=0,0.02", "--grid", "program=0,0.05")
    assert first.exit_code == 0, first.output
    assert json.loads((out / "sweep.json").read_text())["early_exit"] is False
    stale = ["sweep.partial.csv", "sweep-chips.partial.csv", "sweep.partial.json"]
    others = ["notes.txt", "sweep-notes.png", "accuracy_vs_mine.png", "sweep.partial.txt"]
    for name in stale + others:
        (out / name).write_text("old")
    assert (out / "heatmap_read_program.png").exists()
    again = sweep_cli(files, out, "--grid", "program=0,0.05", "--force")
    assert again.exit_code == 0, again.output
    kept = sorted(path.name for path in out.iterdir())
    assert kept == sorted(
        ["accuracy_vs_program.png", "sweep.csv", "sweep-chips.csv", "sweep.json"] + others
    )
    assert all((out / name).read_text() == "old" for name in others)


def test_a_successful_sweep_removes_a_failed_runs_partial_files(files, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.partial.json").write_text("{}")
    result = sweep_cli(files, out, "--grid", "read=0,0.02")
    assert result.exit_code == 0, result.output
    assert not (out / "sweep.partial.json").exists() and (out / "sweep.json").exists()


def simulate_cli(files, tmp_path, *extra: str):
    artefact, inputs = files
    report = tmp_path / f"sim{len(list(tmp_path.iterdir()))}.json"
    args = ["simulate", str(artefact), "--input", str(inputs), "--no-statistical-energy"]
    result = CliRunner().invoke(main, [*args, "--report", str(report), *extra])
    return result, report


def test_simulate_takes_age_0_as_a_fresh_chip(files, tmp_path) -> None:
    fresh, fresh_report = simulate_cli(files, tmp_path, "--age", "0")
    assert fresh.exit_code == 0, fresh.output
    plain, plain_report = simulate_cli(files, tmp_path)
    assert plain.exit_code == 0, plain.output
    first, second = (json.loads(path.read_text()) for path in (fresh_report, plain_report))
    assert first["accuracy"] == second["accuracy"] and first["noise"]["age"] == 0
    assert not first.get("drift")


@pytest.mark.parametrize(
    "extra", [("--drift-comp", "global"), ("--age", "0", "--drift-comp", "column")]
)
def test_simulate_refuses_a_drift_compensation_without_an_age(files, tmp_path, extra) -> None:
    result, report = simulate_cli(files, tmp_path, *extra)
    assert_one_error(result, "needs an age", "hint: give the chip's age, e.g. --age 1d")
    assert not report.exists()
