"""SpikingJelly models compiled as they are (LIFNode with and without decay_input, hard and soft
reset, IFNode; single- and multi-step mode) and simulated on N-Digits: the output spikes equal
SpikingJelly's own forward pass at every step of every test sample, in float64 and float32."""

from __future__ import annotations

import framework_archs as fa
import numpy as np
import pytest
import torch
from framework_check import as_dtype, assert_output_spikes_equal

from primec.errors import PrimecError
from primec.frontend.frameworks import adopt

pytest.importorskip("spikingjelly")
from spikingjelly.activation_based import functional, neuron  # noqa: E402

MODELS = (
    "sj_lif",
    "sj_lif_no_decay_input",
    "sj_lif_soft",
    "sj_lif_multistep",
    "sj_lif_soft_no_decay_input_multistep",
    "sj_if",
    "sj_if_soft_multistep",
    "sj_lif_v_reset",
    "sj_if_v_reset_multistep",
)


def spikingjelly_output_spikes(name: str, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """SpikingJelly's own forward pass in the model's step mode: [N, T, 10]."""
    net = as_dtype(getattr(fa, name)(), dtype)
    functional.reset_net(net)
    inputs = torch.from_numpy(x).to(dtype)
    with torch.no_grad():
        if net[2].step_mode == "m":  # multi-step: the whole [T, N, ...] sequence at once
            return net(inputs.transpose(0, 1)).transpose(0, 1).numpy()
        return torch.stack([net(inputs[:, t]) for t in range(inputs.shape[1])], dim=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_output_spikes_equal_spikingjelly_every_step(name, ndigits_x, tmp_path) -> None:
    assert_output_spikes_equal(
        name, getattr(fa, name), spikingjelly_output_spikes, ndigits_x, tmp_path
    )


def test_fires_at_threshold_itself() -> None:
    """SpikingJelly fires at H >= v_threshold: an IFNode fed exactly its threshold spikes."""
    net = fa.sj_if()
    translated = adopt(net, fa.PRIMEC_STEP, "framework_archs.py")
    cell = translated.net[2]
    assert cell.strict is False and cell.keep == 1.0
    fired, _ = cell(torch.ones(1, 3), torch.zeros(1, 3), torch.zeros(1, 3))
    assert fired.tolist() == [[1.0, 1.0, 1.0]]


def test_nonzero_v_reset_moves_the_threshold() -> None:
    """SpikingJelly starts the membrane at v_reset: counted from there it fires at v_th - v_reset."""
    net = fa.sj_lif()
    net[5] = neuron.LIFNode(tau=2.0, v_reset=-0.5)
    cell = adopt(net, fa.PRIMEC_STEP, "framework_archs.py").net[5]
    assert (cell.threshold, cell.reset, cell.v_reset, cell.membrane_shift) == (
        1.5,
        "zero",
        0.0,
        -0.5,
    )


def test_v_threshold_not_above_v_reset_is_refused() -> None:
    net = fa.sj_lif()
    net[5] = neuron.LIFNode(tau=2.0, v_reset=1.0)
    with pytest.raises(PrimecError, match=r"LIFNode at '5': v_threshold=1\.0 is not modelled"):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")


def test_unsupported_node_is_named() -> None:
    net = fa.sj_lif()
    net[5] = neuron.ParametricLIFNode()
    with pytest.raises(
        PrimecError, match=r"SpikingJelly .*ParametricLIFNode at '5' is not supported"
    ):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")
