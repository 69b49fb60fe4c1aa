"""`primec sweep` refuses bad inputs up front (a device torch cannot use, data without labels,
repeated levels, a drift compensation without an age, malformed --grid options) with one
error and nothing written; it keeps --out to its own outputs; its accuracy CI stays in [0, 1];
it reports early exit only where it applied. `primec simulate` takes age 0 as a fresh chip and
refuses a drift compensation without an age, by the same rule as the sweep.
"""

from __future__ import annotations

import csv
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
        (("--grid", "read=-0.1"), ("read=-0.1 is out of range (0.0..1.0)", "hint: give read")),
        (("--grid", "stuck=2"), ("out of range (0.0..1.0)", "e.g. --grid stuck=0,0.001")),
        (("--grid", "adc=17"), ("out of range (0..16)", "hint: give adc levels in 0..16")),
        (("--ages", "0.5s"), ("under the drift model's origin", "hint: give 0 for a fresh chip")),
        (("--ages", "1e400s"), ("age '1e400s' is not a finite time", "hint: give an age")),
        (("--ages", ""), ("--ages is empty", "hint: give ages")),
        (("--grid", "read=2"), ("read=2 is out of range (0.0..1.0)", "hint: give read levels")),
        (("--noise", "program=nan"), ("program=nan is out of range (0.0..1.0)", "hint:")),
        (("--noise", "read=1e300"), ("read=1e300 is out of range", "hint: give read in")),
        (("--noise", "stuck=nan"), ("stuck=nan is out of range", "hint:")),
        (("--noise", "adc=64"), ("adc=64 is out of range (0..16)", "hint: give adc in 0..16")),
        (("--noise", "input=1100"), ("input=1100 is out of range (0..16)", "hint:")),
        (("--noise", "read=0.01,read=0.02"), ("read is given twice", "hint: give each setting")),
        (("--noise", "age=nan"), ("bad age 'nan'", "hint:")),
        (("--grid", "stuck_repair=0,1,2"), ("no point has any", "hint: add stuck cells")),
        (("--device", "meta"), ("the simulator runs on cpu or cuda, not meta", "hint:")),
        (("--workers", "-1"), ("--workers must be 0 or more", "hint: 0 runs in this process")),
        (("--retries", "-1"), ("--retries must be 0 or more", "hint: 0 stops at")),
        (("--ray-address", "127.0.0.1:99999"), ("bad --ray-address", "hint: give HOST:PORT")),
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


@pytest.mark.parametrize("extra", [("--drift-comp", "global"), ("--noise", "drift_comp=2")])
def test_simulate_refuses_a_drift_compensation_without_an_age(files, tmp_path, extra) -> None:
    result, report = simulate_cli(files, tmp_path, *extra)
    assert_one_error(result, "needs an age", "hint:")
    assert not report.exists()


def test_simulate_runs_a_sweeps_fresh_point_with_compensation_as_the_fresh_chip(
    files, tmp_path
) -> None:
    """A sweep over --ages 0,1d and drift_comp runs the point (age 0, drift_comp 2): `simulate
    --age 0 --drift-comp column` runs it too, and it is the fresh chip (nothing has drifted)."""
    out = tmp_path / "out"
    swept = sweep_cli(files, out, "--noise", "read=0.05", "--ages", "0,1d")
    assert swept.exit_code == 0, swept.output
    swept = sweep_cli(
        files, out, "--noise", "read=0.05", "--ages", "0,1d", "--grid", "drift_comp=0,2", "--force"
    )
    assert swept.exit_code == 0, swept.output
    rows = list(csv.DictReader((out / "sweep-chips.csv").open()))
    fresh = [r for r in rows if r["age"] == "0.0" and r["drift_comp"] == "2" and r["chip"] == "1"]
    compensated, report = simulate_cli(
        files,
        tmp_path,
        "--noise",
        "read=0.05",
        "--age",
        "0",
        "--drift-comp",
        "column",
        "--chip",
        "1",
    )
    assert compensated.exit_code == 0, compensated.output
    plain, plain_report = simulate_cli(files, tmp_path, "--noise", "read=0.05", "--chip", "1")
    first, second = (json.loads(path.read_text()) for path in (report, plain_report))
    assert first["accuracy"] == second["accuracy"] == float(fresh[0]["accuracy"])
    assert first["energy_per_inference_j"] == second["energy_per_inference_j"]


@pytest.mark.parametrize(
    "extra, parts",
    [
        (("--noise", "program=nan"), ("program=nan is out of range (0.0..1.0)",)),
        (("--noise", "adc=64"), ("adc=64 is out of range (0..16)",)),
        (("--device", "meta"), ("the simulator runs on cpu or cuda, not meta",)),
        (("--age", "-5s"), ("age '-5s' is negative",)),
        (("--report", "/proc/primec-report.json"), ("cannot write in /proc",)),
    ],
)
def test_simulate_refuses_bad_settings_before_any_work(files, tmp_path, extra, parts) -> None:
    output = tmp_path / "out.npz"
    result, report = simulate_cli(files, tmp_path, "--output", str(output), *extra)
    assert_one_error(result, *parts, "hint:")
    assert "Traceback" not in result.output
    assert not output.exists() and not report.exists()


def test_simulate_reads_ages_with_units_in_noise_and_keeps_its_compensation(
    files, tmp_path
) -> None:
    by_option, option_report = simulate_cli(
        files, tmp_path, "--age", "1d", "--drift-comp", "global"
    )
    in_noise, noise_report = simulate_cli(
        files, tmp_path, "--noise", "age=1d,drift_comp=1,read=0.01,stuck=0.001,adc=8"
    )
    # --age overrides the age of --noise and keeps its compensation (it used to drop it).
    both, both_report = simulate_cli(
        files, tmp_path, "--noise", "age=60,drift_comp=1,read=0.01,stuck=0.001,adc=8", "--age", "1d"
    )
    for result in (by_option, in_noise, both):
        assert result.exit_code == 0, result.output
    reports = [json.loads(p.read_text()) for p in (option_report, noise_report, both_report)]
    assert {r["noise"]["age"] for r in reports} == {86400.0}
    assert {r["noise"]["drift_comp"] for r in reports} == {1}
    assert reports[0]["accuracy"] == reports[1]["accuracy"] == reports[2]["accuracy"]
    assert "age 1d, compensation global" in both.output


@pytest.mark.parametrize("where", ["file", "proc", "plot-folder"])
def test_sweep_refuses_an_out_it_cannot_write_before_any_work(files, tmp_path, where) -> None:
    artefact, _ = files
    out = {
        "file": artefact / "sub",
        "proc": Path("/proc/primec-out"),
        "plot-folder": tmp_path / "out",
    }[where]
    if where == "plot-folder":
        (out / "accuracy_vs_read.png").mkdir(parents=True)
    result = sweep_cli(files, out, "--grid", "read=0,0.02", "--force")
    assert_one_error(result, "hint:")
    assert "sweep:" not in result.output and "Traceback" not in result.output
