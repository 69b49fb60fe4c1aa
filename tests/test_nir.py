"""NIR in and out: primec -> NIR -> primec gives the identical graph (both discretisations);
NIR written by snnTorch's and SpikingJelly's own exporters imports and simulates equal to the
source framework on N-Digits; what NIR cannot say is refused with the reason (exit 2, nothing
written); a .nir without --dt and a graph of unsupported nodes are refused, all named at once."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import framework_archs as fa
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from framework_check import as_dtype, quiet
from primec.backends.isa import Lif
from primec.backends.simulator import Simulator
from torch import nn

import primec.nn as pnn
from primec import frontend as fe
from primec.cli import main
from primec.core.passmanager import PassOptions
from primec.core.printer import print_graph
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.frontend.nir_export import export_nir, write_nir
from primec.frontend.nir_io import NirOptions, read_nir
from primec.pipeline import BackendOptions, compile_model

nir = pytest.importorskip("nir")


def cli(*args: str):
    """Run `primec ARGS`."""
    return CliRunner().invoke(main, list(args))


def every_expressible_op() -> pnn.SNN:
    """Conv with bias, LIF with v_reset and an input gain, average pool, flatten, linear,
    integrator (LI), LIF (IF-free), mean readout: every primec op NIR can express."""
    torch.manual_seed(0)
    layers = OrderedDict(
        conv=nn.Conv2d(2, 4, 3, padding=1),
        lif0=pnn.LIF(0.8, 0.5, v_reset=-0.125, input_gain=0.5),
        pool=nn.AvgPool2d(2),
        flat=nn.Flatten(),
        fc=nn.Linear(64, 10),
        syn=pnn.Integrator(0.75),
        lif1=pnn.LIF(0.9, 0.25),
        fc2=nn.Linear(10, 10, bias=False),
        if2=pnn.LIF(1.0, 0.5, v_reset=0.25, input_gain=2.0),
    )
    return pnn.SNN(
        {"features": nn.Sequential(layers)},
        pnn.MeanReadout(),
        input_shape=(2, 8, 8),
        timesteps=6,
        input_encoding="spikes",
    )


def imported(module: nn.Module):
    """The step graph the frontend imports from a primec SNN."""
    return fe.import_onnx(fe.export(fe.Source("test", Path("test"), module=module)), source="t")


@pytest.mark.parametrize("discretisation", ["euler", "exact"])
def test_round_trip_gives_the_identical_graph(discretisation, tmp_path) -> None:
    options = NirOptions(1e-3, discretisation)
    graph = imported(every_expressible_op())
    path = tmp_path / "m.nir"
    assert write_nir(graph, options, path) == []
    again = imported(read_nir(path, options))
    assert print_graph(again) == print_graph(graph)
    kinds = {type(n).__name__ for n in nir.read(str(path)).nodes.values()}
    assert {"Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LI", "Linear", "IF"} <= kinds


def assert_nir_matches(path: Path, x: np.ndarray, forward) -> None:
    """Compile a NIR file (dt 1e-4, both exporters' default, Euler steps), simulate it on x and
    require the last layer's spikes at every step to equal `forward(dtype)`, the source
    framework's own run, in float64 and float32."""
    options = NirOptions(1e-4, "euler")
    program = compile_model(path, log=quiet, backend=BackendOptions(), nir=options).program
    last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
    simulated = Simulator(program, trace=(last,)).run(x, 64, early_exit=False).spikes[last]
    for dtype in (torch.float64, torch.float32):
        with torch.no_grad():
            expected = forward(dtype)
        assert 0.05 < expected.mean() < 0.9, "the model must spike, or the test proves nothing"
        assert np.array_equal(simulated.reshape(expected.shape), expected), dtype


@pytest.mark.slow
def test_snntorch_exported_nir_simulates_equal_to_snntorch(tmp_path) -> None:
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    path = tmp_path / "snntorch.nir"
    nir.write(str(path), export_to_nir(fa.snntorch_leaky_zero_mlp(), torch.zeros(2312)))
    x = load_split("test")[0].reshape(359, 10, 2312)

    def forward(dtype: torch.dtype) -> np.ndarray:
        net = as_dtype(fa.snntorch_leaky_zero_mlp(), dtype)
        snn_utils.reset(net)
        inputs = torch.from_numpy(x).to(dtype)
        return torch.stack([net(inputs[:, t])[0] for t in range(10)], 1).numpy()

    assert_nir_matches(path, x, forward)


@pytest.mark.slow
def test_spikingjelly_exported_nir_simulates_equal_to_spikingjelly(tmp_path) -> None:
    """SpikingJelly fires at >=, NIR (and so the import) at >: equal unless a membrane lands
    exactly on the threshold, which these float weights never make it do."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

    path = tmp_path / "sj.nir"
    export_to_nir(fa.sj_lif_strided(), torch.zeros(1, 2, 34, 34), save_path=str(path), dt=1e-4)
    x = load_split("test")[0]

    def forward(dtype: torch.dtype) -> np.ndarray:
        net = as_dtype(fa.sj_lif_strided(), dtype)
        functional.reset_net(net)
        inputs = torch.from_numpy(x).to(dtype)
        return torch.stack([net(inputs[:, t]) for t in range(10)], 1).numpy()

    assert_nir_matches(path, x, forward)


def test_export_refuses_what_nir_cannot_say_all_at_once(tmp_path) -> None:
    net = every_expressible_op()
    net.features.lif0 = pnn.Leaky(0.9, 0.5)  # subtract reset, after the leak
    net.features.pool = nn.MaxPool2d(2)
    net.features.lif1 = pnn.PrimeCell()  # LeakyReLU membrane
    weights, out = tmp_path / "m.pt2", tmp_path / "m.nir"
    pnn.save_step(net, weights)
    result = cli("export", str(weights), "--to", "nir", "--dt", "1e-3", "-o", str(out))
    assert result.exit_code == 2
    assert "3 part(s) NIR cannot express" in result.output
    assert "reset=subtract: NIR neurons reset to v_reset" in result.output
    assert "max_pool2d has no NIR node" in result.output
    assert "slope=0.1: PRIME's LeakyReLU membrane has no NIR form" in result.output
    assert not out.exists()


def test_export_warns_on_firing_at_threshold(tmp_path) -> None:
    net = every_expressible_op()
    net.features.lif1 = pnn.LIF(0.9, 0.25, strict=False)
    _, warnings = export_nir(imported(net), NirOptions(1e-3))
    assert warnings == ["features.lif1: fires at >= threshold; NIR's LIF fires at >"]


def test_nir_without_dt_is_refused(tmp_path) -> None:
    path, out = tmp_path / "m.nir", tmp_path / "m.pmac"
    write_nir(imported(every_expressible_op()), NirOptions(1e-3), path)
    result = cli("compile", str(path), "--emit", "macro", "-o", str(out))
    assert result.exit_code == 2
    assert "a NIR file (HDF5) is continuous-time and says no timestep: give --dt" in result.output
    assert not out.exists()
    ok = cli("compile", str(path), "--dt", "1e-3", "--stop-after", "import")
    assert ok.exit_code == 0 and "recognised NIR graph (HDF5)" in ok.output


def test_unsupported_nodes_are_listed_at_once(tmp_path) -> None:
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4, 4])}),
        "delay": nir.Delay(delay=np.ones((4, 4))),
        "conv1d": nir.Conv1d(
            input_shape=4,
            weight=np.ones((4, 4, 1)),
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=np.zeros(4),
        ),
        "output": nir.Output(output_type={"output": np.array([4, 4])}),
    }
    edges = [("input", "delay"), ("delay", "conv1d"), ("conv1d", "output")]
    path = tmp_path / "bad.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges))
    with pytest.raises(PrimecError, match=r"2 node\(s\) primec cannot import") as caught:
        read_nir(path, NirOptions(1e-3))
    assert "delay: Delay (primec's step has no delay line" in str(caught.value)
    assert "conv1d: Conv1d (primec's frontend reads 2-D convolutions only)" in str(caught.value)


def test_compile_stop_after_import_of_round_trip(tmp_path) -> None:
    path = tmp_path / "m.nir"
    write_nir(imported(every_expressible_op()), NirOptions(1e-3), path)
    options = PassOptions(stop_after="import")
    graph = compile_model(path, options=options, log=quiet, nir=NirOptions(1e-3)).graph
    assert print_graph(graph) == print_graph(imported(every_expressible_op()))
