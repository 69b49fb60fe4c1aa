"""Per-channel and per-neuron neuron parameters, and the at_once reset timing, written with
primec.nn: one equation held at every boundary: primec.nn (eager, float64) = onnxruntime (the
LIFTensor function body) = the IR interpreter = the simulator running the .pbc and the .pmac.
The IR keeps such a parameter as a weight (text form and .pir round trip); a one-value model
keeps its old encoding."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from framework_check import quiet
from primec.backends import BACKENDS
from primec.backends.isa import Lif
from primec.backends.simulator import Simulator
from snn_models import onnx_of, run_onnx
from torch import nn

import primec.nn as pnn
from primec import frontend as fe
from primec.core.interpret import run
from primec.core.printer import print_graph
from primec.core.text import read_graph_file, save_graph
from primec.errors import PrimecError
from primec.pipeline import BackendOptions, compile_model


def uniform(shape: tuple[int, ...], low: float, high: float, seed: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def per_channel_net(timing: str = "after_input") -> pnn.SNN:
    """conv -> integrator (keep per neuron) -> LIF (keep, threshold per channel [4, 1, 1];
    v_leak per neuron [4, 6, 6]) -> flatten -> linear -> LIF (per neuron [10], reset target)."""
    torch.manual_seed(3)
    hidden = pnn.LIF(
        uniform((4, 1, 1), 0.5, 1.0, 1),
        uniform((4, 1, 1), 0.25, 0.75, 2),
        reset="subtract",
        reset_timing=timing,
        v_leak=uniform((4, 6, 6), -0.125, 0.125, 3),
    )
    layers = OrderedDict(
        conv=nn.Conv2d(2, 4, 3),
        syn=pnn.Integrator(uniform((4, 6, 6), 0.0, 0.5, 4)),
        lif0=hidden,
        flat=nn.Flatten(),
        fc=nn.Linear(144, 10),
        lif1=pnn.LIF(uniform((10,), 0.5, 1.0, 5), 0.25, v_reset=uniform((10,), -0.2, 0.0, 6)),
    )
    with torch.no_grad():
        layers["conv"].weight.mul_(2.0)
        layers["fc"].weight.mul_(4.0)
    return pnn.SNN(
        {"layers": nn.Sequential(layers)},
        pnn.MeanReadout(),
        input_shape=(2, 8, 8),
        timesteps=6,
        input_encoding="spikes",
    ).eval()


def spikes_in() -> torch.Tensor:
    return (torch.rand((32, 6, 2, 8, 8), generator=torch.Generator().manual_seed(1)) < 0.4).float()


@pytest.mark.parametrize("timing", ["after_input", "at_once"])
def test_per_channel_equal_at_every_boundary(timing: str, tmp_path: Path) -> None:
    net, x = per_channel_net(timing), spikes_in()
    with torch.no_grad():
        eager = net.double().record(x.double())["layers.lif1"].numpy()
        eager32 = net.float().record(x)["layers.lif1"].numpy()
    assert 0.05 < eager.mean() < 0.9, "the network must spike for the test to mean anything"
    model = onnx_of(net)
    assert {"LIFTensor", "IntegratorTensor"} <= {f.name for f in model.functions}
    ort = [v for k, v in run_onnx(model, x.numpy()).items() if k.endswith("lif1.spike_out")]
    assert np.array_equal(ort[0], eager32)
    graph = fe.import_onnx(model, source="t")
    traced = run(graph, {graph.step_inputs[0].name: x.numpy().astype(np.float64)}, trace=True)
    assert np.array_equal(traced["layers.lif1.spike_out"], eager)
    path = tmp_path / "net.pt2"
    pnn.save_step(net.float(), path)
    emit = BackendOptions(emit=("bytecode", "macro"))
    for kind, data in compile_model(path, log=quiet, backend=emit).artefacts.items():
        program = BACKENDS[kind].decode(data)
        last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
        result = Simulator(program, trace=(last,)).run(x.numpy(), 16, early_exit=False)
        assert np.array_equal(result.spikes[last].reshape(eager.shape), eager), kind


def test_parameter_weights_round_trip_through_pir(tmp_path: Path) -> None:
    graph = fe.import_onnx(onnx_of(per_channel_net()), source="t")
    text = print_graph(graph)
    assert "keep = weight<f32[4,1,1] #" in text and "v_leak = weight<f32[4,6,6] #" in text
    save_graph(graph, tmp_path / "g.pir")
    again, _, _ = read_graph_file(tmp_path / "g.pir")
    assert again == graph and print_graph(again) == text
    lif1 = next(n for n in again.nodes if n.loc.path.endswith("lif1"))
    keep = per_channel_net().layers.lif1.keep.numpy()
    assert np.array_equal(lif1.attr("keep").array(), keep)


def test_one_value_tensor_is_the_scalar_and_old_encoding() -> None:
    """A tensor of one element reads as that value: the graph is the scalar model's."""
    one = pnn.LIF(torch.tensor([0.75]), 0.5)
    plain = pnn.LIF(0.75, 0.5)

    def graph_of(neuron: nn.Module) -> str:
        net = pnn.SNN(
            {"layers": nn.Sequential(OrderedDict(fc=nn.Linear(4, 3), lif=neuron))},
            pnn.MeanReadout(),
            input_shape=(4,),
            timesteps=2,
            input_encoding="spikes",
        )
        torch.manual_seed(0)
        net.layers.fc.reset_parameters()
        return print_graph(fe.import_onnx(onnx_of(net), source="t"))

    assert graph_of(one) == graph_of(plain)


def test_nan_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold holds NaN or infinite values"):
        pnn.LIF(0.5, torch.tensor([1.0, float("nan")]))


def test_parameter_of_the_wrong_shape_is_one_error() -> None:
    net = per_channel_net()
    net.layers.lif1.keep = torch.full((7,), 0.5)  # the layer has 10 neurons
    with pytest.raises(PrimecError, match=r"keep has shape \[7\], .* neuron's shape \[10\]"):
        fe.export(fe.Source("model", Path("m.pt"), module=net))


def test_at_once_needs_the_subtract_reset() -> None:
    with pytest.raises(ValueError, match="at_once needs reset subtract"):
        pnn.LIF(0.5, 1.0, reset="zero", reset_timing="at_once")


def test_artefact_parameter_table_is_checked(tmp_path: Path) -> None:
    """A record naming a missing tensor, or a table that does not fit its neuron, is refused."""
    from dataclasses import replace

    from primec.backends.validate import validate

    path = tmp_path / "net.pt2"
    pnn.save_step(per_channel_net(), path)
    program = compile_model(path, log=quiet, backend=BackendOptions()).program
    index = next(i for i, r in enumerate(program.neurons) if isinstance(r.get("threshold"), str))
    name = program.neurons[index]["threshold"]
    missing = {**program.neurons[index], "threshold": "neuron9.nothing"}
    neurons = tuple(missing if i == index else r for i, r in enumerate(program.neurons))
    with pytest.raises(PrimecError, match="names tensor 'neuron9.nothing', which the file does"):
        validate(replace(program, neurons=neurons), "bad.pbc")
    tensors = {**program.tensors, name: np.ones((3, 1, 1))}  # the layer has 4 channels
    with pytest.raises(PrimecError, match=r"shape \[3, 1, 1\] does not broadcast to the neuron"):
        validate(replace(program, tensors=tensors), "bad.pbc")
