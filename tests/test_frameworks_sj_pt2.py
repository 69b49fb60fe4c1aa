"""A .pt2 step that calls SpikingJelly's own neuron ops (`sj_lif.forward`, `sj_if.forward`),
exported by the recipe of docs/from-frameworks.md, compiled by `primec compile x.pt2 --emit
bytecode` and simulated on N-Digits: the output spikes equal SpikingJelly's own multi-step forward
at every step of every test sample, in float64 and float32. Ops primec does not model are named;
the .pt2 safety checks still hold; primec reads the file without SpikingJelly."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import framework_archs as fa
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from framework_check import as_dtype, simulated_output_spikes
from primec.backends import read_artefact

from primec.cli import main
from primec.frontend.frameworks import sj_ops

pytest.importorskip("spikingjelly")
from spikingjelly.activation_based import functional  # noqa: E402
from spikingjelly.activation_based.neuron import BaseNode, LIFNode, ParametricLIFNode  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = (
    "sj_lif",  # decay_input, hard reset
    "sj_lif_no_decay_input",
    "sj_lif_soft",
    "sj_lif_soft_no_decay_input_multistep",
    "sj_lif_v_reset",  # hard reset to v_reset = 0.5
    "sj_if",
    "sj_if_soft_multistep",
)


# --- the recipe, as docs/from-frameworks.md gives it ------------------------------------------
class SJStep(nn.Module):
    """One timestep of a SpikingJelly nn.Sequential: forward(x, *v) -> (output spikes, *v')."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval()
        functional.set_step_mode(self.net, "s")
        for m in self.net:
            if isinstance(m, BaseNode):
                m.step_mode = "m"  # a multi-step node calls SpikingJelly's own op

    def forward(self, x, *v):
        new = []
        for m in self.net:
            if isinstance(m, BaseNode):
                m.v = v[len(new)]
                x = m(x.unsqueeze(0))[0]
                new.append(m.v)
            else:
                x = m(x)
        return (x, *new)


def save_sj_step(net, path, input_shape, timesteps, input_encoding="event_counts"):
    """Export one step of `net` as a .pt2 that `primec compile` reads."""
    step, x = SJStep(net), torch.zeros(2, *input_shape)
    with torch.no_grad():
        v, h = [], x
        for m in step.net:  # one zero membrane per neuron, shaped like its input
            if isinstance(m, BaseNode):
                v.append(torch.zeros_like(h))
            else:
                h = m(h)
        program = torch.export.export(step, (x, *v))
    facts = {"timesteps": timesteps, "input_encoding": input_encoding}
    torch.export.save(program, path, extra_files={"primec.json": json.dumps(facts)})


# ----------------------------------------------------------------------------------------------


def cli(*args: str):
    """Run `primec ARGS`."""
    return CliRunner().invoke(main, [str(a) for a in args])


def saved(net: nn.Module, folder: Path, name: str = "step") -> Path:
    path = folder / f"{name}.pt2"
    with pytest.warns(UserWarning, match="assigned during export"):
        save_sj_step(net, path, (2, 34, 34), 10)
    return path


def spikingjelly_multistep(name: str, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """SpikingJelly's own multi-step forward over the whole [T, N, ...] sequence: [N, T, 10]."""
    net = as_dtype(getattr(fa, name)(), dtype)
    functional.set_step_mode(net, "m")
    functional.reset_net(net)
    with torch.no_grad():
        out = net(torch.from_numpy(x).to(dtype).transpose(0, 1)).transpose(0, 1)
    return out.numpy()


def test_recipe_is_the_documented_one() -> None:
    docs = (ROOT / "docs" / "from-frameworks.md").read_text()
    for recipe in (SJStep, save_sj_step):
        assert inspect.getsource(recipe) in docs


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_output_spikes_equal_spikingjelly_every_step(name, ndigits_x, tmp_path) -> None:
    torch.set_num_threads(1)
    path, out = saved(getattr(fa, name)(), tmp_path), tmp_path / "m.pmac"
    op = "sj_if" if name.startswith("sj_if") else "sj_lif"
    assert (
        f"torch.ops.{op}.forward" in zipfile.ZipFile(path).read("step/models/model.json").decode()
    )
    result = cli("compile", path, "--emit", "bytecode", "-o", out)
    assert result.exit_code == 0, result.output
    assert not sj_ops._LIBRARIES, "SpikingJelly registered its ops here: no stand-in is defined"
    simulated = simulated_output_spikes(read_artefact(out), ndigits_x)
    for dtype in (torch.float64, torch.float32):
        expected = spikingjelly_multistep(name, ndigits_x, dtype)
        assert 0.05 < expected.mean() < 0.9, "the model must spike, or the test proves nothing"
        flips = int((simulated.reshape(expected.shape) != expected).sum())
        assert flips == 0, f"{name}: {flips} of {expected.size} output spikes differ ({dtype})"


def test_same_file_same_bytes(tmp_path) -> None:
    path = saved(fa.sj_if_soft_multistep(), tmp_path)
    outs = [tmp_path / f"{i}.pmac" for i in (1, 2)]
    for out in outs:
        assert cli("compile", path, "--emit", "bytecode", "-o", out).exit_code == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_reads_without_spikingjelly(tmp_path) -> None:
    """A fresh process that cannot import SpikingJelly compiles the file: the stand-in schema."""
    path, out = saved(fa.sj_lif(), tmp_path), tmp_path / "m.pmac"
    code = (
        "import sys; sys.modules['spikingjelly'] = None\n"
        "from primec.cli import main\n"
        f"main(['compile', {str(path)!r}, '--emit', 'bytecode', '-o', {str(out)!r}])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr + run.stdout
    assert out.exists()


def _refused(path: Path, tmp_path: Path, *needles: str) -> str:
    out = tmp_path / "m.pmac"
    result = cli("compile", path, "--emit", "bytecode", "-o", out)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert not out.exists()
    return result.output


def test_unmodelled_op_is_named(tmp_path) -> None:
    net = fa.sj_lif()
    net[2] = ParametricLIFNode()
    path = saved(net, tmp_path)
    _refused(path, tmp_path, "SpikingJelly", "torch.ops.sj_plif.forward", "--arch")


def test_store_v_seq_is_refused(tmp_path) -> None:
    net = fa.sj_lif()
    net[5] = LIFNode(tau=2.0, store_v_seq=True)
    _refused(saved(net, tmp_path), tmp_path, "LIFNode", "store_v_seq=True")


def test_membrane_readout_is_refused(tmp_path) -> None:
    path = saved(fa.sj_lif(), tmp_path)
    patched = tmp_path / "patched.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("primec.json"):
                data = json.dumps({**json.loads(data), "readout": "membrane_mean"}).encode()
            dst.writestr(item, data)
    _refused(patched, tmp_path, "membrane_mean", "spike_count")


def test_safety_checks_still_hold(tmp_path) -> None:
    """An SpikingJelly step with a pickled extra member is refused before anything loads it."""
    path = saved(fa.sj_lif(), tmp_path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("step/data/custom_objects/evil.pkl", b"\x80\x04K\x01.")
    _refused(path, tmp_path, "evil.pkl", "custom objects are refused")
