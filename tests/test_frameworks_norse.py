"""Norse models compiled as they are (LIFCell with its synaptic current, LIFBoxCell) from a
SequentialState, simulated on N-Digits: the output spikes equal Norse's own forward pass at
every step of every test sample, in float64 and float32."""

from __future__ import annotations

import framework_archs as fa
import numpy as np
import pytest
import torch
from framework_check import as_dtype, assert_output_spikes_equal

from primec.errors import PrimecError
from primec.frontend.frameworks import adopt

norse = pytest.importorskip("norse.torch")

MODELS = ("norse_lif", "norse_lif_box", "norse_lif_v_leak", "norse_lif_box_v_leak")


def norse_output_spikes(name: str, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Norse's own forward pass, step by step with its state: [N, T, 10]."""
    net = as_dtype(getattr(fa, name)(), dtype)
    inputs = torch.from_numpy(x).to(dtype)
    state, steps = None, []
    with torch.no_grad():
        for t in range(inputs.shape[1]):
            out, state = net(inputs[:, t], state)
            steps.append(out)
    return torch.stack(steps, dim=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_output_spikes_equal_norse_every_step(name, ndigits_x, tmp_path) -> None:
    assert_output_spikes_equal(name, getattr(fa, name), norse_output_spikes, ndigits_x, tmp_path)


def test_time_constants_fold_into_keep_and_gain() -> None:
    """dt = 1 ms, tau_syn = 5 ms, tau_mem = 10 ms: the current keeps 0.8, the membrane 0.9 and
    takes 0.1 of its input."""
    cell = norse.LIFCell(norse.LIFParameters(v_reset=torch.tensor(-0.25)))
    synapse, membrane = adopt(
        norse.SequentialState(cell), {"input_shape": (3,), "timesteps": 2}, "x"
    ).net[0]
    assert synapse.keep == pytest.approx(0.8) and membrane.keep == pytest.approx(0.9)
    assert membrane.variant == (-0.25, 0.0, pytest.approx(0.1)) and membrane.strict


def test_nonzero_v_leak_counts_the_membrane_from_v_leak() -> None:
    """Norse starts the membrane at v_leak: primec's membrane is Norse's minus v_leak."""
    p = norse.LIFBoxParameters(v_leak=torch.tensor(0.5), v_reset=torch.tensor(0.25))
    step = {"input_shape": (3,), "timesteps": 2}
    neuron = adopt(norse.SequentialState(norse.LIFBoxCell(p)), step, "x").net[0]
    assert neuron.threshold == pytest.approx(0.5) and neuron.v_reset == pytest.approx(-0.25)
    assert neuron.v_leak == 0.0 and neuron.membrane_shift == pytest.approx(0.5)


def test_per_neuron_parameters_stay_per_neuron() -> None:
    tau_mem_inv = torch.tensor([100.0, 200.0, 50.0])
    p = norse.LIFBoxParameters(tau_mem_inv=tau_mem_inv, v_th=torch.tensor([1.0, 0.5, 0.75]))
    step = {"input_shape": (3,), "timesteps": 2}
    neuron = adopt(norse.SequentialState(norse.LIFBoxCell(p)), step, "x").net[0]
    b = (1e-3 * tau_mem_inv).float()
    assert torch.equal(neuron.input_gain, b) and torch.equal(neuron.keep, (1.0 - b).float())
    assert torch.equal(neuron.threshold, torch.tensor([1.0, 0.5, 0.75]))


def test_nonzero_v_leak_with_the_subtract_reset_is_refused() -> None:
    from norse.torch.functional.reset import reset_subtract

    p = norse.LIFBoxParameters(v_leak=torch.tensor(0.5), reset_method=reset_subtract)
    step = {"input_shape": (3,), "timesteps": 2}
    with pytest.raises(PrimecError, match=r"Norse LIFBoxCell at '0': p.v_leak=0\.5"):
        adopt(norse.SequentialState(norse.LIFBoxCell(p)), step, "x")


def test_membrane_readout_of_a_shifted_membrane_is_refused() -> None:
    p = norse.LIFBoxParameters(v_leak=torch.tensor(0.5))
    step = {"input_shape": (3,), "timesteps": 2, "readout": "membrane_mean"}
    with pytest.raises(PrimecError, match="membrane starts at a nonzero value"):
        adopt(norse.SequentialState(norse.LIFBoxCell(p)), step, "x")


def test_unsupported_cell_is_named() -> None:
    with pytest.raises(PrimecError, match=r"Norse norse\S*LIFAdExCell at '0' is not supported"):
        adopt(
            norse.SequentialState(norse.LIFAdExCell()), {"input_shape": (3,), "timesteps": 2}, "x"
        )
