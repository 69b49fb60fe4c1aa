"""NIR's per-neuron parameters (`tau`, `r`, `v_leak`, `v_threshold`, `v_reset` arrays that
differ between neurons): a graph of conv -> LIF -> flatten -> affine -> LIF, every parameter
drawn per neuron, compiles to .pbc and .pmac and simulates on N-Digits equal to an independent
float64 NumPy run of NIR's equations by forward Euler, at every step on every sample; the
graph goes primec -> NIR -> primec unchanged; a per-neuron array of the wrong size is one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from framework_check import quiet
from primec.backends import BACKENDS
from primec.backends.isa import Lif
from primec.backends.simulator import Simulator
from torch.nn import functional as tf

from primec import frontend as fe
from primec.core.printer import print_graph
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.frontend.nir_export import write_nir
from primec.frontend.nir_io import NirOptions, read_nir
from primec.pipeline import BackendOptions, compile_model

nir = pytest.importorskip("nir")
from test_nir_nodes import graph as cuba_graph  # noqa: E402
from test_nir_nodes import write  # noqa: E402

DT = 0.25  # with the dyadic draws below every discretised parameter is exact in float32
HIDDEN = (4, 15, 15)


def draw(rng: np.random.Generator, choices: tuple[float, ...], shape) -> np.ndarray:
    return rng.choice(np.array(choices), size=shape).astype(np.float32)


def lif(rng: np.random.Generator, shape, thresholds: tuple[float, ...]) -> object:
    """A NIR LIF whose every parameter differs between neurons."""
    return nir.LIF(
        tau=draw(rng, (0.5, 1.0, 2.0), shape),
        r=draw(rng, (1.0, 2.0), shape),
        v_leak=draw(rng, (0.0, 0.125), shape),
        v_threshold=draw(rng, thresholds, shape),
        v_reset=draw(rng, (0.0, -0.25), shape),
    )


def graph() -> dict:
    rng = np.random.default_rng(4)
    affine = (rng.standard_normal((10, 900)) * 0.25).astype(np.float32)
    return {
        "input": nir.Input(input_type={"input": np.array([2, 34, 34])}),
        "conv": cuba_graph()["conv"],  # Conv2d(2 -> 4, 5x5, stride 2): [4, 15, 15]
        "lif": lif(rng, HIDDEN, (0.75, 1.0, 1.5)),
        "flat": nir.Flatten(input_type={"input": np.array(HIDDEN)}, start_dim=0),
        "fc": nir.Affine(weight=affine, bias=np.zeros(10, np.float32)),
        "out": lif(rng, (10,), (0.5, 0.75, 1.0)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }


def euler(node, v: np.ndarray, s: np.ndarray, current: np.ndarray):
    """One forward-Euler step of NIR's LIF, the reset of the last spike applied first:
    tau dv/dt = (v_leak - v) + r*I; spike where v > v_threshold, then v <- v_reset."""
    v = np.where(s, node.v_reset, v)
    v = v + DT / node.tau * (node.v_leak - v + node.r * current)
    return v, v > node.v_threshold


def euler_reference(nodes: dict, x: np.ndarray) -> np.ndarray:
    """The output LIF's spikes [N, T, 10], NIR's equations in float64 NumPy (torch's conv)."""
    c = nodes["conv"]
    weight, bias = (torch.from_numpy(a.astype(np.float64)) for a in (c.weight, c.bias))
    n = x.shape[0]
    v1, s1 = np.zeros((n, *HIDDEN)), np.zeros((n, *HIDDEN), bool)
    v2, s2 = np.zeros((n, 10)), np.zeros((n, 10), bool)
    out = []
    for t in range(x.shape[1]):
        drive = tf.conv2d(torch.from_numpy(x[:, t]), weight, bias, stride=2).numpy()
        v1, s1 = euler(nodes["lif"], v1, s1, drive)
        current = s1.reshape(n, -1) @ nodes["fc"].weight.T.astype(np.float64)
        v2, s2 = euler(nodes["out"], v2, s2, current)
        out.append(s2)
    return np.stack(out, 1).astype(np.float64)


@pytest.mark.slow
def test_per_neuron_nir_simulates_equal_to_euler_reference(tmp_path) -> None:
    nodes = graph()
    path = write(nodes, tmp_path / "per_neuron.nir")
    x = load_split("test")[0].astype(np.float64)
    emit = BackendOptions(emit=("bytecode", "macro"))
    result = compile_model(path, log=quiet, backend=emit, nir=NirOptions(DT, "euler"))
    expected = euler_reference(nodes, x)
    assert 0.05 < expected.mean() < 0.9, "the output layer must spike, or the test proves nothing"
    for kind, data in result.artefacts.items():
        program = BACKENDS[kind].decode(data)
        tables = [name for r in program.neurons for name in r.values() if isinstance(name, str)]
        assert sum(t.startswith("neuron") for t in tables) >= 8, "parameters must be per neuron"
        last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
        spikes = Simulator(program, trace=(last,)).run(x, 64, early_exit=False).spikes[last]
        flips = int((spikes.reshape(expected.shape) != expected).sum())
        assert flips == 0, f"{kind}: {flips} of {expected.size} output spikes differ"


def imported(module: torch.nn.Module):
    return fe.import_onnx(fe.export(fe.Source("test", Path("test"), module=module)), source="t")


@pytest.mark.parametrize("discretisation", ["euler", "exact"])
def test_per_neuron_round_trip_gives_the_identical_graph(discretisation, tmp_path) -> None:
    options = NirOptions(DT, discretisation)
    graph_ir = imported(read_nir(write(graph(), tmp_path / "a.nir"), options))
    assert "weight<f32[4,15,15]" in print_graph(graph_ir)
    again_path = tmp_path / "b.nir"
    assert write_nir(graph_ir, options, again_path) == []
    assert print_graph(imported(read_nir(again_path, options))) == print_graph(graph_ir)


def test_per_neuron_array_of_the_wrong_size_is_one_error(tmp_path) -> None:
    nodes = graph()
    nodes["out"] = lif(np.random.default_rng(0), (7,), (0.5, 1.0))  # the layer has 10 neurons
    path = write(nodes, tmp_path / "bad.nir", type_check=False)  # as another tool might
    # nir's reader checks the types itself: one error, naming the two sizes.
    with pytest.raises(PrimecError, match=r"fc.output: \[\[10\]\] -> out.input: \[\[7\]\]"):
        compile_model(path, log=quiet, nir=NirOptions(DT))


def test_per_neuron_non_positive_time_constant_is_refused(tmp_path) -> None:
    nodes = graph()
    nodes["lif"].tau[1, 2, 3] = -1.0
    with pytest.raises(PrimecError, match="a time constant must be positive, got -1.0"):
        read_nir(write(nodes, tmp_path / "tau.nir"), NirOptions(DT))
