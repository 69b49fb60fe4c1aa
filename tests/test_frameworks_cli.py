"""Framework models through the command line: the walk of docs/from-frameworks.md (compile the
framework's state_dict with --arch, simulate the .pmac), and one clear error per bad input,
exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import framework_archs as fa
import pytest
import torch
from click.testing import CliRunner

from primec.cli import main

ARCHS = Path(fa.__file__).resolve()
pytest.importorskip("snntorch")
# The snnTorch state_dict of nn.Sequential(nn.Linear(4, 2), snn.Leaky(...)).
TINY_WEIGHTS = {
    "0.weight": torch.zeros(2, 4),
    "0.bias": torch.zeros(2),
    "1.beta": torch.tensor(0.9),
    "1.threshold": torch.tensor(1.0),
    "1.graded_spikes_factor": torch.tensor(1.0),
    "1.reset_mechanism_val": torch.tensor(0),
}


def cli(*args: str):
    """Run `primec ARGS`."""
    return CliRunner().invoke(main, list(args))


@pytest.mark.slow
def test_walk_compile_and_simulate(tmp_path) -> None:
    weights, pmac, data = tmp_path / "w.pt", tmp_path / "m.pmac", tmp_path / "test.npz"
    torch.save(fa.snntorch_leaky().state_dict(), weights)
    compiled = cli(
        "compile",
        str(weights),
        "--arch",
        f"{ARCHS}:snntorch_leaky",
        "--emit",
        "macro",
        "-o",
        str(pmac),
    )
    assert compiled.exit_code == 0, compiled.output
    assert "(a snnTorch model)" in compiled.output
    assert cli("datasets", "ndigits", "--split", "test", "-o", str(data)).exit_code == 0
    report = tmp_path / "r.json"
    run = cli(
        "simulate", str(pmac), "--input", str(data), "--noise", "ideal", "--report", str(report)
    )
    assert run.exit_code == 0, run.output
    assert json.loads(report.read_text())["samples"] == 359


def test_state_dict_of_neither_kind(tmp_path) -> None:
    weights, out = tmp_path / "w.pt", tmp_path / "m.pmac"
    state = fa.snntorch_leaky().state_dict()
    state["head.weight"] = state.pop("7.weight")
    torch.save(state, weights)
    result = cli("compile", str(weights), "--arch", f"{ARCHS}:snntorch_leaky", "-o", str(out))
    assert result.exit_code == 2
    assert "matches neither primec's nor the snnTorch model's keys" in result.output
    assert (
        "missing 7.weight [10, 400]" in result.output and "unexpected head.weight" in result.output
    )
    assert not out.exists()


def compile_tiny(folder: Path, facts: str, leaky_options: str):
    """Compile a one-layer snnTorch model (arch file written here) from TINY_WEIGHTS."""
    arch, weights, out = folder / "arch.py", folder / "w.pt", folder / "m.pmac"
    arch.write_text(
        f"import snntorch as snn\nfrom torch import nn\n{facts}\ndef net():\n"
        f"    return nn.Sequential(nn.Linear(4, 2), snn.Leaky(beta=0.9, {leaky_options}))\n"
    )
    torch.save(TINY_WEIGHTS, weights)
    return cli("compile", str(weights), "--arch", f"{arch}:net", "-o", str(out)), out


def test_unmodelled_option_named_with_its_value(tmp_path) -> None:
    facts = "PRIMEC_STEP = {'input_shape': (4,), 'timesteps': 3}"
    result, out = compile_tiny(tmp_path, facts, "init_hidden=True, inhibition=True")
    assert result.exit_code == 2, result.output
    assert "snnTorch Leaky at '1': inhibition=True is not modelled" in result.output
    assert not out.exists()


def test_missing_step_facts(tmp_path) -> None:
    result, out = compile_tiny(tmp_path, "", "init_hidden=True")
    assert result.exit_code == 2
    assert "needs PRIMEC_STEP" in result.output
    assert not out.exists()
