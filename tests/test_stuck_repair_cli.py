"""`primec simulate --stuck-repair`: the CLI runs the read-back repair of
`backends/simulator/verify.py` (the same predictions as `VerifiedSimulator` called directly),
reports how many pairs it rewrote, leaves an ideal chip alone, and refuses an aged chip with
one error and no report written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends import read_artefact
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.verify import VerifiedSimulator
from released import RELEASED, single_thread

from primec.cli import main
from primec.datasets import load_split

NOISE = "stuck=0.02"
SAMPLES = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("repair")
    artefact = folder / "m.pbc"
    args = ["compile", str(RELEASED), "--arch", "prime-nmnist", "--emit", "bytecode"]
    result = CliRunner().invoke(main, [*args, "-o", str(artefact)])
    assert result.exit_code == 0, result.output
    x, y = load_split("test")
    np.savez(folder / "d.npz", x=x[:SAMPLES].astype(np.float32), y=y[:SAMPLES])
    return {"pbc": artefact, "data": folder / "d.npz", "folder": folder}


def simulate(files: dict[str, Path], name: str, *extra: str):
    report, out = files["folder"] / f"{name}.json", files["folder"] / f"{name}.npz"
    args = ["simulate", str(files["pbc"]), "--input", str(files["data"]), "--no-early-exit"]
    args += ["--no-statistical-energy", "--report", str(report), "--output", str(out), *extra]
    return CliRunner().invoke(main, args), report, out


@pytest.mark.parametrize("mode", ["cancel", "restore"])
def test_the_cli_runs_the_repair(files, mode: str) -> None:
    result, report, out = simulate(files, mode, "--noise", NOISE, "--stuck-repair", mode)
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    assert summary["stuck_repair"]["mode"] == mode
    assert summary["stuck_repair"]["pairs_repaired"] > 0
    assert f"stuck-cell repair   {mode}:" in result.output
    program = read_artefact(files["pbc"])
    x = np.load(files["data"])["x"]
    noise = Noise.parse(NOISE)
    direct = VerifiedSimulator(program, noise, repair=mode).run(x, 64, False)
    raw = Simulator(program, noise).run(x, 64, False)
    readouts = np.load(out)["readouts"]
    np.testing.assert_array_equal(readouts, direct.readouts)
    assert not np.array_equal(readouts, raw.readouts)  # the repair changed the chip


def test_an_ideal_chip_has_nothing_to_repair(files) -> None:
    result, report, _ = simulate(files, "ideal", "--noise", "ideal", "--stuck-repair", "cancel")
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["stuck_repair"] == {
        "mode": "cancel",
        "pairs_repaired": 0,
    }


def test_without_the_option_nothing_is_repaired(files) -> None:
    result, report, _ = simulate(files, "plain", "--noise", NOISE)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["stuck_repair"] == {
        "mode": "none",
        "pairs_repaired": None,
    }
    assert "stuck-cell repair" not in result.output


def test_an_aged_chip_is_refused(files) -> None:
    result, report, out = simulate(files, "aged", "--age", "1d", "--stuck-repair", "cancel")
    assert result.exit_code == 2
    assert "stuck-cell repair is modelled right after programming only" in result.output
    assert not report.exists() and not out.exists()


def test_the_statistical_energy_sees_the_repaired_chip(files) -> None:
    """With early exit the statistical estimate comes from an extra traced run: it runs on the
    same repaired chip (its activity, not the raw chip's, gives the estimate)."""
    from primec.runtime.activity import SAMPLES as TRACED
    from primec.runtime.activity import activity_report, from_trace, traced_buffers
    from primec.runtime.simulation import artefact_inputs, simulate

    exiting = files["folder"] / "exit.pbc"
    args = ["compile", str(RELEASED), "--arch", "prime-nmnist", "--emit", "bytecode"]
    args += ["--exit-threshold", "0.8", "--exit-temperature", "2", "-o", str(exiting)]
    assert CliRunner().invoke(main, args).exit_code == 0
    program = read_artefact(exiting)
    data = artefact_inputs(program, files["data"])
    noise = Noise.parse(NOISE)
    result, summary = simulate(program, data, noise, stuck_repair="cancel")
    estimates = {}
    for name, kind in (("repaired", VerifiedSimulator), ("raw", Simulator)):
        extra = {"repair": "cancel"} if kind is VerifiedSimulator else {}
        traced = kind(program, noise, trace=traced_buffers(program), **extra)
        activity = from_trace(program, traced.run(data.x[:TRACED], 64, False).spikes)
        counted = summary["energy_per_inference_j"]
        report = activity_report(
            program, data.x, result.exit_step, result.counts, counted, noise, None, activity
        )
        estimates[name] = report["energy_statistical_j"]
    assert summary["energy_statistical_j"] == estimates["repaired"] != estimates["raw"]
