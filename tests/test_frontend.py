"""The frontend end to end: model files of every accepted kind through `primec compile`/`export`/
`check` to IR that the reference interpreter runs exactly like PyTorch, and one clear error (no
output, nothing executed) for every kind of bad input."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import prime_reference  # noqa: E402
import snn_models as zoo  # noqa: E402

from primec import frontend as fe  # noqa: E402
from primec import nn as pnn  # noqa: E402
from primec.cli import main  # noqa: E402
from primec.core import interpret  # noqa: E402
from primec.core.ir import Graph  # noqa: E402
from primec.errors import PrimecError  # noqa: E402
from primec.pipeline import read_ir  # noqa: E402

ZOO_FILE = Path(__file__).parent / "snn_models.py"
SHARED_RELEASED = Path(prime_reference.RELEASED_PATH)
RELEASED = SHARED_RELEASED if SHARED_RELEASED.is_file() else pnn.RELEASED_WEIGHTS


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _compile_to_ir(tmp_path: Path, model: Path, *flags: object) -> tuple[Graph, str]:
    dump = tmp_path / "ir"
    result = _cli("compile", model, *flags, "--stop-after", "import", "--dump-dir", dump)
    assert result.exit_code == 0, result.output
    return read_ir(dump / "00-import.pir"), result.output


def _released_net() -> pnn.SNN:
    net = pnn.prime_nmnist()
    net.load_state_dict(torch.load(RELEASED, weights_only=True, map_location="cpu"))
    return net.eval()


def _ir_of(path: Path, arch: str | None = None, trust_pickle: bool = False) -> tuple[str, Graph]:
    source = fe.load(path, arch=arch, trust_pickle=trust_pickle)
    return source.kind, fe.import_onnx(fe.export(source), source=str(path))


@pytest.fixture(scope="module")
def released_ir() -> Graph:
    return _ir_of(RELEASED, "prime-nmnist")[1]


def _event_counts(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (batch, steps, 2, 34, 34), generator=generator).float()


# --- must show: the released classifier -----------------------------------------------------


def test_released_classifier_compiles_on_cpu_and_matches_both_references(tmp_path, record_property):
    graph, output = _compile_to_ir(tmp_path, RELEASED, "--arch", "prime-nmnist")
    assert "recognised state_dict + --arch prime-nmnist" in output
    x = _event_counts(batch=8, steps=10)
    ir = interpret.run(graph, {"x": x.numpy()}, trace=True)
    net = _released_net()
    state_dict = torch.load(RELEASED, weights_only=True, map_location="cpu")
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in net.double().record(x.double()).items()}
    plain = prime_reference.run_prime(
        prime_reference.effective_weights(state_dict), x, torch.float64
    )
    for layer, key in (("features.lif0", "spikes0"), ("features.lif1", "spikes1")):
        assert ir[f"{layer}.spike_out"].shape == (8, 10, *ours[layer].shape[2:])
        assert np.array_equal(ir[f"{layer}.spike_out"], ours[layer])
        assert np.array_equal(ir[f"{layer}.spike_out"], plain[key].numpy())
    np.testing.assert_allclose(ir["classifier.out"], plain["out"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ir["readout.mean"], ours["readout"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ir["readout.mean"], plain["readout"].numpy(), rtol=0, atol=1e-5)
    _report_float32_differences(net, x, ours, record_property)


def _report_float32_differences(net: pnn.SNN, x: torch.Tensor, exact: dict, record) -> None:
    """The float32 model rounds differently; count (never hide) what that changes."""
    with torch.no_grad():
        single = {k: v.double().numpy() for k, v in net.float().record(x).items()}
    flips = sum(int((single[k] != exact[k]).sum()) for k in ("features.lif0", "features.lif1"))
    predictions = int(
        (single["readout"][:, -1].argmax(-1) != exact["readout"][:, -1].argmax(-1)).sum()
    )
    drift = float(np.abs(single["readout"] - exact["readout"]).max())
    print(
        f"float32 vs float64: {flips} spike flips, {predictions} prediction changes, readout drift {drift:.2e}"
    )
    record("float32_spike_flips", flips)
    record("float32_prediction_changes", predictions)
    if flips == 0:
        assert drift < 1e-4  # without a flipped spike, only rounding separates them


def test_released_weights_are_recognised_without_arch(released_ir):
    kind, graph = _ir_of(pnn.RELEASED_WEIGHTS)
    assert kind == "state_dict (the released PRIME N-MNIST classifier) + --arch prime-nmnist"
    assert graph == released_ir


def test_check_command_accepts_the_released_classifier():
    result = _cli("check", RELEASED, "--arch", "prime-nmnist")
    assert result.exit_code == 0, result.output
    assert (
        "ok: state_dict + --arch prime-nmnist; 19 nodes, 7 states, T=10, readout mean"
        in result.output
    )


def test_export_command_writes_an_onnx_file(tmp_path):
    out = tmp_path / "step.onnx"
    result = _cli("export", RELEASED, "--arch", "prime-nmnist", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert out.read_bytes() == zoo.onnx_of(_released_net()).SerializeToString()


# --- must show: the zoo ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_model_from_state_dict_and_arch_file_runs_exactly_like_pytorch(name, tmp_path):
    net = zoo.ZOO[name]().eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    graph, _ = _compile_to_ir(tmp_path, tmp_path / "weights.pt", "--arch", f"{ZOO_FILE}:{name}")
    x = zoo.example_input(net, batch=3)
    ir = interpret.run(graph, {"x": x.numpy()}, trace=True)
    with torch.no_grad():
        want = {k: v.numpy() for k, v in net.double().record(x.double()).items()}
    spiking = [path for path, m in net.stateful() if isinstance(m, pnn.LIF)]
    for path in spiking:
        assert np.array_equal(ir[f"{path}.spike_out"], want[path]), path
    assert graph.meta_value("timesteps") == net.timesteps
    np.testing.assert_allclose(ir[graph.outputs[0].name], want["readout"], rtol=0, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(
    features=st.integers(2, 12),
    hidden=st.integers(1, 9),
    keep=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
    threshold=st.sampled_from([0.1, 0.2, 0.5]),
    strict=st.booleans(),
    reset=st.sampled_from(["zero", "subtract", "none"]),
    timing=st.sampled_from(["before_leak", "after_leak"]),
    slope=st.sampled_from([1.0, 0.1]),
    readout=st.sampled_from(["mean", "exp_tanh"]),
    seed=st.integers(0, 1000),
)
def test_random_small_snns_import_to_ir_that_runs_exactly_like_pytorch(
    features, hidden, keep, threshold, strict, reset, timing, slope, readout, seed
):
    torch.manual_seed(seed)
    layers = nn.Sequential(
        OrderedDict(
            fc=nn.Linear(features, hidden),
            lif=pnn.LIF(keep, threshold, strict, reset, timing, slope),
            out=pnn.SupermaskLinear(hidden, 3, sparsity=0.5, gain=0.2, seed=seed),
            integrate=pnn.Integrator(keep=keep),
        )
    )
    head = pnn.MeanReadout() if readout == "mean" else pnn.ExpTanhReadout(0.8)
    net = pnn.SNN(
        {"layers": layers},
        head,
        input_shape=(features,),
        timesteps=4,
        input_encoding="analog_repeat",
    )
    graph = fe.import_onnx(zoo.onnx_of(net))
    x = zoo.example_input(net, batch=2)
    ir = interpret.run(graph, {"x": x.numpy()}, trace=True)
    with torch.no_grad():
        want = {k: v.numpy() for k, v in net.double().record(x.double()).items()}
    assert np.array_equal(ir["layers.lif.spike_out"], want["layers.lif"])
    np.testing.assert_allclose(ir[graph.outputs[0].name], want["readout"], rtol=0, atol=1e-9)


# --- every input kind gives the same IR -----------------------------------------------------


def test_torch_export_archive_of_the_step(tmp_path, released_ir):
    pnn.save_step(_released_net(), tmp_path / "step.pt2")
    kind, graph = _ir_of(tmp_path / "step.pt2")
    assert kind == "torch.export archive (.pt2) of the step"
    assert graph == released_ir


def test_torchscript_archive_is_matched_to_the_builtin_architecture(tmp_path, released_ir):
    net = _released_net()
    with torch.no_grad():
        traced = torch.jit.trace(net, _event_counts(batch=1, steps=2), check_trace=False)
    traced.save(str(tmp_path / "traced.pt"))
    kind, graph = _ir_of(tmp_path / "traced.pt")
    assert kind == "TorchScript archive (weights and module tree) + --arch prime-nmnist"
    assert graph == released_ir


def test_onnx_file_in_primec_convention(tmp_path, released_ir):
    fe.save_onnx(zoo.onnx_of(_released_net()), tmp_path / "step.onnx")
    kind, graph = _ir_of(tmp_path / "step.onnx")
    assert kind == "ONNX model"
    assert graph == released_ir


def test_pickled_module_loads_only_when_trusted(tmp_path, released_ir):
    torch.save(_released_net(), tmp_path / "whole.pt")
    with pytest.raises(PrimecError, match="refused: the file is a pickle that would run code"):
        fe.load(tmp_path / "whole.pt")
    kind, graph = _ir_of(tmp_path / "whole.pt", trust_pickle=True)
    assert kind == "pickled module SNN (trusted)"
    assert graph == released_ir


def test_checkpoint_wrapped_in_a_dict_is_found(tmp_path, released_ir):
    state_dict = torch.load(RELEASED, weights_only=True, map_location="cpu")
    torch.save({"state_dict": state_dict, "epoch": 3}, tmp_path / "ckpt.pt")
    kind, graph = _ir_of(tmp_path / "ckpt.pt", "prime-nmnist")
    assert kind == "state_dict (under key 'state_dict') + --arch prime-nmnist"
    assert graph == released_ir


# --- bad input: one clear error, non-zero exit, no output file, nothing executed -------------


class _CreatesFile:
    """Unpickling this object opens (creates) a file: the canary of code execution."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _not_a_model(tmp: Path) -> tuple[Path, list, str]:
    (tmp / "notes.pt").write_text("these are not weights\n")
    return tmp / "notes.pt", [], "not a model file"


def _truncated(tmp: Path) -> tuple[Path, list, str]:
    data = RELEASED.read_bytes()
    (tmp / "half.pt").write_bytes(data[: len(data) // 2])
    return tmp / "half.pt", ["--arch", "prime-nmnist"], "truncated or damaged"


def _mismatched(tmp: Path) -> tuple[Path, list, str]:
    state_dict = torch.load(RELEASED, weights_only=True, map_location="cpu")
    del state_dict["features.conv1.scores"]
    state_dict["features.conv2.weight"] = torch.zeros(3)
    state_dict["classifier.linear0.weight"] = torch.zeros(10, 2000)
    torch.save(state_dict, tmp / "other.pt")
    return (
        tmp / "other.pt",
        ["--arch", "prime-nmnist"],
        (
            "does not fit --arch prime-nmnist: 3 mismatches:\n"
            "  - missing features.conv1.scores [64, 12, 5, 5]\n"
            "  - unexpected features.conv2.weight [3]\n"
            "  - shape of classifier.linear0.weight: the file has [10, 2000], the architecture expects [10, 2304]"
        ),
    )


def _pickle_with_code(tmp: Path) -> tuple[Path, list, str]:
    torch.save(_CreatesFile(tmp / "pwned"), tmp / "evil.pt")
    return (
        tmp / "evil.pt",
        ["--arch", "prime-nmnist"],
        "refused: the file is a pickle that would run code",
    )


def _raw_pickle_with_code(tmp: Path) -> tuple[Path, list, str]:
    (tmp / "evil.pkl").write_bytes(pickle.dumps(_CreatesFile(tmp / "pwned")))
    return tmp / "evil.pkl", [], "refused: the file is a pickle that would run code"


def _pt2_with_code(tmp: Path) -> tuple[Path, list, str]:
    pnn.save_step(zoo.mlp_leaky(), tmp / "good.pt2")
    evil = io.BytesIO()
    torch.save(_CreatesFile(tmp / "pwned"), evil)
    with zipfile.ZipFile(tmp / "good.pt2") as good, zipfile.ZipFile(tmp / "evil.pt2", "w") as bad:
        for name in good.namelist():
            bad.writestr(name, evil.getvalue() if "sample_inputs" in name else good.read(name))
    return tmp / "evil.pt2", [], "refused: the file is a pickle that would run code"


def _torchscript_with_code(tmp: Path) -> tuple[Path, list, str]:
    with zipfile.ZipFile(tmp / "evil_ts.pt", "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_CreatesFile(tmp / "pwned"), protocol=2))
        archive.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("evil/code/__torch__.py", "")
    return tmp / "evil_ts.pt", [], "refused: the file is a pickle that would run code"


def _unsupported_layer(tmp: Path) -> tuple[Path, list, str]:
    torch.save(zoo.with_sigmoid().state_dict(), tmp / "sigmoid.pt")
    return (
        tmp / "sigmoid.pt",
        ["--arch", f"{ZOO_FILE}:with_sigmoid"],
        (
            "cannot export the step to ONNX: 2 problems:\n"
            "  - features.act (Sigmoid) (node sigmoid): op aten.sigmoid.default is not supported\n"
            "  - features.gate (Tanh) (node tanh): op aten.tanh.default is not supported"
        ),
    )


def _no_arch(tmp: Path) -> tuple[Path, list, str]:
    torch.save(zoo.mlp_leaky().state_dict(), tmp / "mlp.pt")
    return (
        tmp / "mlp.pt",
        [],
        "a state_dict holds weights only: say which network they belong to with --arch",
    )


def _unknown_arch(tmp: Path) -> tuple[Path, list, str]:
    return RELEASED, ["--arch", "resnet50"], "unknown architecture 'resnet50'"


def _missing_factory(tmp: Path) -> tuple[Path, list, str]:
    return RELEASED, ["--arch", f"{ZOO_FILE}:nothing"], "snn_models.py has no factory 'nothing'"


def _unmatched_torchscript(tmp: Path) -> tuple[Path, list, str]:
    net = zoo.mlp_leaky().eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, zoo.example_input(net, batch=1, steps=2), check_trace=False)
    traced.save(str(tmp / "mlp_ts.pt"))
    return tmp / "mlp_ts.pt", [], "not its TorchScript code, and no architecture matches them"


BAD_INPUTS = [
    _not_a_model,
    _truncated,
    _mismatched,
    _pickle_with_code,
    _raw_pickle_with_code,
    _pt2_with_code,
    _torchscript_with_code,
    _unsupported_layer,
    _no_arch,
    _unknown_arch,
    _missing_factory,
    _unmatched_torchscript,
]


@pytest.mark.parametrize("command", ["export", "compile"])
@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_gives_one_clear_error_and_no_output(case, command, tmp_path):
    path, flags, expected = case(tmp_path)
    out = tmp_path / "out"
    outputs = (
        ["-o", out]
        if command == "export"
        else ["--emit", "ir", "-o", out, "--dump-dir", tmp_path / "dump"]
    )
    result = _cli(command, path, *flags, *outputs)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "dump").exists()
    assert not (tmp_path / "pwned").exists()  # the malicious pickles never ran
