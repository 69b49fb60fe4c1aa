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

MODELS = ("norse_lif", "norse_lif_box")


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


def test_nonzero_v_leak_is_refused_with_its_value() -> None:
    cell = norse.LIFBoxCell(norse.LIFBoxParameters(v_leak=torch.tensor(0.5)))
    with pytest.raises(PrimecError, match=r"Norse LIFBoxCell at '0': p.v_leak=0\.5"):
        adopt(norse.SequentialState(cell), {"input_shape": (3,), "timesteps": 2}, "x")


def test_unsupported_cell_is_named() -> None:
    with pytest.raises(PrimecError, match=r"Norse norse\S*LIFAdExCell at '0' is not supported"):
        adopt(
            norse.SequentialState(norse.LIFAdExCell()), {"input_shape": (3,), "timesteps": 2}, "x"
        )
