"""The membrane readout (`readout: membrane_mean`, the running mean of the output layer's
membrane) of framework models compiled as they are and simulated on N-Digits: snnTorch's Leaky
output membranes (`output=True`) give the readout of every step of every test sample exactly as
snnTorch's own float64 forward does; Norse's LICell output layer within a bound of rounding,
for the reason docs/from-frameworks.md gives; a network that ends in no neuron is refused."""

from __future__ import annotations

from pathlib import Path

import framework_readout_archs as fra
import numpy as np
import pytest
import torch
from framework_check import as_dtype, quiet
from primec.backends.simulator import Simulator

from primec.datasets import load_split
from primec.errors import PrimecError
from primec.frontend.frameworks import adopt
from primec.pipeline import BackendOptions, compile_model

ARCHS = Path(__file__).resolve().parent / "framework_readout_archs.py"


def simulated_readouts(name: str, x: np.ndarray, folder: Path) -> np.ndarray:
    """Compile the model from its state_dict (readout membrane_mean), simulate: [N, T, 10]."""
    torch.set_num_threads(1)
    path = folder / f"{name}.pt"
    torch.save(getattr(fra, name)().state_dict(), path)
    arch = f"{ARCHS}:{name}"
    program = compile_model(path, arch=arch, log=quiet, backend=BackendOptions()).program
    return Simulator(program).run(x, 64, early_exit=False).readouts


def as_primec_reads(net: torch.nn.Module) -> torch.nn.Module:
    """Each float32 neuron parameter as the float64 value primec's IR reads it for: the
    shortest decimal of the float32 (beta 0.9f is 0.9; see primec/frontend/from_onnx_rules)."""
    for module in net.modules():
        for name in ("beta", "threshold"):
            value = getattr(module, name, None)
            if isinstance(value, torch.Tensor):
                value.data = torch.tensor(float(str(np.float32(value.item()))), dtype=value.dtype)
    return net


def running_mean(steps: list[torch.Tensor]) -> np.ndarray:
    """The running mean after every step, summed and divided in primec's order."""
    total, out = torch.zeros_like(steps[0]), []
    for t, value in enumerate(steps):
        total = total + value
        out.append(total / float(t + 1))
    return torch.stack(out, 1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "snntorch_leaky_membrane",
        "snntorch_leaky_zero_membrane",
        "snntorch_subtract_no_delay_membrane",
    ],
)
def test_snntorch_membrane_readout_is_exact(name, tmp_path) -> None:
    """Bit for bit against snnTorch in float64 with beta as primec reads it (0.9f is 0.9)."""
    from snntorch import utils as snn_utils

    x = load_split("test")[0]
    net = as_primec_reads(as_dtype(getattr(fra, name)(), torch.float64).eval())
    snn_utils.reset(net)
    inputs = torch.from_numpy(x).to(torch.float64)
    with torch.no_grad():
        membranes = [net(inputs[:, t])[1] for t in range(inputs.shape[1])]
    expected = running_mean(membranes)
    simulated = simulated_readouts(name, x, tmp_path)
    assert np.abs(expected).max() > 0.5, "the output membranes must move"
    assert np.array_equal(simulated, expected)


@pytest.mark.slow
def test_norse_li_output_layer_readout_within_rounding(tmp_path) -> None:
    """Norse computes v + b*((0 - v) + i) with b = dt*tau_mem_inv rounded to float32
    (0.10000000149), primec (1 - b)*v + (b*i) with its float32 parameters read as their
    shortest decimals (keep 0.9, b 0.1): equal in real arithmetic and with the same parameters;
    measured 1.4e-7 apart on readouts up to 17 (8e-9 relative); the arg-max never differs."""
    x = load_split("test")[0]
    net = as_dtype(fra.norse_li(), torch.float64)
    inputs = torch.from_numpy(x).to(torch.float64)
    state, voltages = None, []
    with torch.no_grad():
        for t in range(inputs.shape[1]):
            out, state = net(inputs[:, t], state)
            voltages.append(out)
    expected = running_mean(voltages)
    simulated = simulated_readouts("norse_li", x, tmp_path)
    scale = np.abs(expected).max()
    assert scale > 0.5, "the output membranes must move"
    assert np.abs(simulated - expected).max() <= 1e-7 * scale
    assert np.array_equal(simulated.argmax(-1), expected.argmax(-1))


def test_membrane_readout_needs_a_neuron_last() -> None:
    net = fra.snntorch_leaky_membrane()[:-1]  # ends in the Linear layer
    with pytest.raises(PrimecError, match="readout membrane_mean needs a neuron or integrator"):
        adopt(net, fra.PRIMEC_STEP, "framework_readout_archs.py")


def test_unknown_readout_is_named() -> None:
    with pytest.raises(PrimecError, match="readout must be one of spike_count, membrane_mean"):
        adopt(fra.snntorch_leaky_membrane(), {**fra.PRIMEC_STEP, "readout": "max"}, "x")


def test_spike_count_of_a_leaky_integrator_is_refused() -> None:
    pytest.importorskip("norse")
    with pytest.raises(PrimecError, match="readout spike_count needs a spiking output layer"):
        adopt(fra.norse_li(), {**fra.PRIMEC_STEP, "readout": "spike_count"}, "x")
