"""`primec sweep`: grids, per-point statistics against a hand computation, rows equal to direct
simulator runs, identical bytes for in-process, 1 and 2 Ray workers, retried shards, and one
clear error for each kind of bad input (tiny grids on a tiny model, to stay fast).
"""

from __future__ import annotations

import contextlib
import csv
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends.simulator import Noise, Simulator
from sweep_models import tiny_data, tiny_program, write_files

from primec.cli import main
from primec.errors import PrimecError
from primec.runtime import sweep as sweep_module
from primec.runtime.simdata import SimData
from primec.runtime.sweep import Grid, Job, Shard, shards, summarise
from primec.runtime.sweepray import run_shards

T_975_DF3 = 3.182446305284263  # Student's t, 97.5% quantile, 3 degrees of freedom (tables)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return tiny_program(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def data() -> SimData:
    return tiny_data(0, 12)


@pytest.fixture(scope="module")
def files(program, data, tmp_path_factory) -> tuple[Path, Path]:
    return write_files(program, data, tmp_path_factory.mktemp("files"))


def job(program, data, grid: Grid) -> Job:
    return Job(program, data, Noise(read=0.05, seed=4), tuple(grid.points()))


def test_grid_points_and_shards() -> None:
    grid = Grid.parse(["program=0,0.1", "adc=4,8"], chips=5)
    assert grid.points() == [
        {"program": 0.0, "adc": 4},
        {"program": 0.0, "adc": 8},
        {"program": 0.1, "adc": 4},
        {"program": 0.1, "adc": 8},
    ]
    work = shards(grid, chips_per_shard=2)
    assert [s.chips for s in work[:3]] == [(0, 1), (2, 3), (4,)]
    assert len(work) == 12


def test_rows_are_direct_simulator_runs_and_statistics_are_right(program, data) -> None:
    grid = Grid.parse(["program=0.1"], chips=4)
    outcome = run_shards(job(program, data, grid), shards(grid, 3), workers=0)
    assert outcome.complete and [r["chip"] for r in outcome.rows] == [0, 1, 2, 3]
    for row in outcome.rows:
        noise = Noise(program=0.1, read=0.05, seed=4)
        direct = Simulator(program, noise, chips=(row["chip"],)).run(data.x)
        assert row["accuracy"] == float((direct.pred == data.y).mean())
        assert row["avg_timesteps"] == float(direct.exit_step.mean())
    accuracy = np.array([row["accuracy"] for row in outcome.rows])
    (point,) = summarise(grid.points(), outcome.rows)
    mean, std = accuracy.sum() / 4, np.sqrt(((accuracy - accuracy.sum() / 4) ** 2).sum() / 3)
    assert point["accuracy_mean"] == pytest.approx(mean)
    assert point["accuracy_std"] == pytest.approx(std)
    assert point["ci95_high"] - mean == pytest.approx(T_975_DF3 * std / 2)
    assert len({row["accuracy"] for row in outcome.rows}) > 1  # the chips differ


def test_a_failing_shard_is_retried_without_losing_or_duplicating_rows(program, data) -> None:
    grid = Grid.parse(["program=0,0.1"], chips=4)
    clean = run_shards(job(program, data, grid), shards(grid, 2), workers=0)
    failures: dict[Shard, int] = {}

    def flaky(j: Job, shard: Shard):
        failures[shard] = failures.get(shard, 0) + 1
        if failures[shard] == 1:
            raise RuntimeError("worker lost")
        return sweep_module.run_shard(j, shard)

    retried = run_shards(job(program, data, grid), shards(grid, 2), workers=0, task=flaky)
    assert retried.complete and retried.rows == clean.rows
    always = run_shards(
        job(program, data, grid), shards(grid, 2), workers=0, retries=1, task=_fails_at_point_1
    )
    assert not always.complete and always.failed == Shard(1, (0, 1))
    assert always.rows == clean.rows[:4] and "point 1" in always.failed.name


def _fails_at_point_1(j: Job, shard: Shard):
    if shard.point == 1:
        raise RuntimeError("bad shard")
    return sweep_module.run_shard(j, shard)


def _raising():
    """`_fails_at_point_1` as a closure: Ray's workers cannot import this test module, so the
    task must travel by value."""

    def task(j: Job, shard: Shard):
        if shard.point == 1:
            raise RuntimeError("bad shard")
        return sweep_module.run_shard(j, shard)

    return task


def _crash_once(marker_folder: str):
    """A task whose worker process dies the first time it meets each shard."""

    def task(j: Job, shard: Shard):
        marker = Path(marker_folder) / f"{shard.point}-{shard.chips[0]}"
        if not marker.exists():
            marker.touch()
            os._exit(1)
        return sweep_module.run_shard(j, shard)

    return task


def ray_processes() -> list[str]:
    """Ray's processes among this process's descendants (read from /proc)."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parents[int(stat.parent.name)] = (int(text[text.rindex(")") + 2 :].split()[1]), name)
    mine, found = {os.getpid()}, True
    while found:
        found = False
        for pid, (ppid, _) in parents.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                found = True
    names = [parents[pid][1] for pid in mine if pid in parents and pid != os.getpid()]
    return [n for n in names if "raylet" in n or "gcs_server" in n or n.startswith("ray::")]


@pytest.mark.slow
def test_one_and_two_ray_workers_write_the_same_bytes(files, tmp_path) -> None:
    artefact, inputs = files
    outputs = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        args = ["sweep", str(artefact), "--input", str(inputs), "--noise", "read=0.05"]
        args += ["--grid", "program=0,0.1", "--chips", "4", "--chips-per-shard", "2"]
        args += ["--workers", str(workers), "--out", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        outputs[workers] = [(out / name).read_bytes() for name in sweep_module_outputs()]
    assert outputs[0] == outputs[1] == outputs[2]
    report = json.loads(outputs[2][2])
    assert report["complete"] and [p["chips"] for p in report["points"]] == [4, 4]
    deadline = time.monotonic() + 15
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_processes() == []


def sweep_module_outputs() -> tuple[str, ...]:
    return ("sweep.csv", "sweep-chips.csv", "sweep.json")


@pytest.mark.slow
def test_a_crashed_ray_worker_is_retried(program, data, tmp_path, capfd) -> None:
    grid = Grid.parse(["program=0.1"], chips=4)
    clean = run_shards(job(program, data, grid), shards(grid, 2), workers=0)
    crashed = run_shards(
        job(program, data, grid), shards(grid, 2), workers=2, task=_crash_once(str(tmp_path))
    )
    assert crashed.complete and crashed.rows == clean.rows
    assert len(list(tmp_path.iterdir())) == 2  # each shard's worker died once
    assert "(raylet)" not in capfd.readouterr().out  # Ray's report of a dead worker: stderr


@pytest.mark.slow
def test_a_raising_shard_on_ray_stops_the_sweep_without_a_traceback(program, data, capfd) -> None:
    grid = Grid.parse(["program=0,0.1"], chips=2)
    failing = run_shards(
        job(program, data, grid), shards(grid, 2), workers=1, retries=1, task=_raising()
    )
    assert not failing.complete and failing.failed == Shard(1, (0, 1))
    assert failing.error == "RuntimeError: bad shard"
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err  # Ray prints one for a retried exception
    assert "retries remaining" not in printed.out + printed.err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_cli(files, out: Path, *extra: str):
    artefact, inputs = files
    args = ["sweep", str(artefact), "--input", str(inputs), "--out", str(out), "--workers", "0"]
    return CliRunner().invoke(main, [*args, *extra])


def test_simulate_chip_c_is_the_sweeps_chip_c(files, tmp_path) -> None:
    """`primec simulate --chip c` with the sweep's noise and seed gives chip c's row of
    sweep-chips.csv (accuracy, steps, energy); the chips differ, so the option matters."""
    artefact, inputs = files
    noise = "program=0.3,read=0.05"
    sweep = sweep_cli(files, tmp_path / "sw", "--noise", noise, "--chips", "4", "--seed", "3")
    assert sweep.exit_code == 0, sweep.output
    rows = list(csv.DictReader((tmp_path / "sw" / "sweep-chips.csv").open()))
    for c in (0, 2, 3):
        report = tmp_path / f"chip{c}.json"
        args = ["simulate", str(artefact), "--input", str(inputs), "--noise", noise]
        args += ["--seed", "3", "--chip", str(c), "--report", str(report)]
        args += ["--no-statistical-energy"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        summary, row = json.loads(report.read_text()), rows[c]
        assert summary["chip"] == c == int(row["chip"])
        assert summary["accuracy"] == float(row["accuracy"])
        assert summary["avg_timesteps"] == float(row["avg_timesteps"])
        assert summary["energy_per_inference_j"] == float(row["energy_per_inference_j"])
    assert len({(r["accuracy"], r["energy_per_inference_j"]) for r in rows}) > 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--grid", "temperature=1,2"), "unknown sweep parameter 'temperature'"),
        (("--grid", "program=0,-0.1"), "out of range"),
        (("--grid", "read=0,lots"), "is not a number"),
        (("--grid", "adc=4.5"), "is not an integer"),
        (
            ("--grid", "adc_cal=0,1"),
            "adc_cal=1 needs per-tile ADC ranges, and the artefact has none",
        ),
        (("--grid", "adc_cal=3"), "out of range (0..2)"),
        (("--grid", "program=0", "--chips", "0"), "--chips must be at least 1"),
        (("--grid", "program=0", "--ray-address", "nohost"), "bad --ray-address"),
    ],
)
def test_bad_input_is_one_clear_error(files, tmp_path, extra, message) -> None:
    result = sweep_cli(files, tmp_path / "out", *extra)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and message in result.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_refused_within_seconds(files, tmp_path) -> None:
    started = time.monotonic()
    result = sweep_cli(files, tmp_path / "out", "--ray-address", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2 and "cannot reach the Ray cluster" in result.output
    assert time.monotonic() - started < 5


@contextlib.contextmanager
def not_ray(kind: str) -> Iterator[int]:
    """A local service that is not a Ray cluster, at a free port: "silent" accepts connections
    and says nothing, "http" is an HTTP/1.1 server, "http2" greets as an HTTP/2 (gRPC) server
    does and then answers nothing. Yields its port."""
    handlers = {"silent": _Silent, "http": http.server.SimpleHTTPRequestHandler, "http2": _Http2}
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handlers[kind]) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


class _Silent(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        time.sleep(12)  # holds the connection open, answering nothing


class _Http2(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an empty SETTINGS frame
        time.sleep(12)


@pytest.mark.parametrize("kind", ["silent", "http", "http2"])
def test_a_service_that_is_not_ray_is_refused_within_seconds(files, tmp_path, kind) -> None:
    """A port that opens is not enough: Ray would wait for minutes where another service
    listens. One error line within seconds, nothing written."""
    with not_ray(kind) as port:
        started = time.monotonic()
        result = sweep_cli(files, tmp_path / "out", "--ray-address", f"127.0.0.1:{port}")
        elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "cannot reach the Ray cluster" in result.output
    # Its greeting tells within 3 s where it is not gRPC; Ray's GCS client is given 8 s.
    assert elapsed < (12 if kind == "http2" else 6) and not (tmp_path / "out").exists()


def test_auto_is_checked_at_the_address_ray_finds(files, tmp_path, monkeypatch) -> None:
    """ "auto" takes RAY_ADDRESS first (then the last cluster started here, then any running:
    a parallel test's): nothing there, one error line within seconds, no traceback."""
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = sweep_cli(files, tmp_path / "out", "--ray-address", "auto")
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "cannot reach the Ray cluster" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_started_cluster_runs_the_sweep_to_the_same_bytes(files, tmp_path) -> None:
    """`ray start --head` (token authentication, Ray's default), then the sweep on it: without
    the token, one error that says what to set; with it, the bytes of an in-process sweep. The
    cluster has a temporary folder of its own, and only its processes are stopped."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    port, token = free_port(), "0123456789abcdef" * 4
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ray = [str(Path(sys.executable).parent / "ray")]
    start = [*ray, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp}"]
    start += ["--include-dashboard=false", "--disable-usage-stats"]
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
        # Each in a process of its own: Ray reads RAY_AUTH_MODE once per process.
        without = os.environ | {"RAY_AUTH_MODE": "disabled"}
        refused = _cli(files, tmp_path / "refused", without, "--ray-address", f"127.0.0.1:{port}")
        args = ("--grid", "program=0,0.1", "--chips", "4", "--chips-per-shard", "2")
        local = sweep_cli(files, tmp_path / "local", *args)
        remote = _cli(files, tmp_path / "remote", env, *args, "--ray-address", f"127.0.0.1:{port}")
    finally:
        _stop_cluster(temp)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1 and "Traceback" not in refused.stderr
    assert "RAY_AUTH_MODE=token" in refused.stderr and not (tmp_path / "refused").exists()
    assert local.exit_code == remote.returncode == 0, remote.stderr
    for name in sweep_module_outputs()[:2]:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()


def _cli(files, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """`primec sweep` in a process of its own."""
    artefact, inputs = files
    primec = str(Path(sys.executable).parent / "primec")
    args = [primec, "sweep", str(artefact), "--input", str(inputs), "--out", str(out), *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def _stop_cluster(temp: Path) -> None:
    """Kill the processes whose command line names the cluster's folder (`ray stop` would
    stop every Ray on the machine, a parallel test's too)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(temp) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
    shutil.rmtree(temp, ignore_errors=True)


def test_a_shard_that_keeps_failing_stops_the_sweep_keeping_finished_rows(
    files, tmp_path, monkeypatch
) -> None:
    real = sweep_module.Simulator

    def failing(program, noise, device, chips, drift=None):
        if noise.program == 0.1:
            raise PrimecError("simulated device failure")
        return real(program, noise, device, chips=chips, drift=drift)

    monkeypatch.setattr(sweep_module, "Simulator", failing)
    out = tmp_path / "out"
    result = sweep_cli(files, out, "--grid", "program=0,0.1", "--chips", "2", "--retries", "1")
    assert result.exit_code == 2 and "point 1, chips 0-1 failed" in result.output
    assert not (out / "sweep.csv").exists() and not (out / "sweep.json").exists()
    partial = json.loads((out / "sweep.partial.json").read_text())
    assert partial["complete"] is False and len(partial["rows"]) == 2
    assert partial["failed_shard"] == "point 1, chips 0-1"
    # The partial tables have the complete tables' columns, the unfinished point's empty.
    points = (out / "sweep.partial.csv").read_text().splitlines()
    chips = (out / "sweep-chips.partial.csv").read_text().splitlines()
    assert points[0].split(",")[:8] == [
        "point", "program", "chips", "accuracy_mean", "accuracy_std", "ci95_low", "ci95_high",
        "avg_timesteps",
    ]  # fmt: skip
    assert points[2].startswith("1,0.1,0,,,,,")
    assert chips[0] == "point,program,chip,accuracy,avg_timesteps,energy_per_inference_j"


def test_a_sweep_whose_first_shard_fails_writes_partial_tables_with_their_columns(
    files, tmp_path, monkeypatch
) -> None:
    def failing(*args, **kwargs):
        raise PrimecError("simulated device failure")

    monkeypatch.setattr(sweep_module, "Simulator", failing)
    out = tmp_path / "out"
    result = sweep_cli(files, out, "--grid", "stuck_repair=0,1", "--noise", "stuck=0.01")
    assert result.exit_code == 2 and "the 0 finished rows" in result.output, result.output
    chips = (out / "sweep-chips.partial.csv").read_text()
    assert chips == "point,stuck_repair,chip,accuracy,avg_timesteps,energy_per_inference_j," + (
        "pairs_repaired\n"
    )
    points = (out / "sweep.partial.csv").read_text().splitlines()
    assert "accuracy_mean" in points[0] and points[1].startswith("0,0,0,,,,,")
    assert points[0].endswith(",pairs_repaired_mean")
