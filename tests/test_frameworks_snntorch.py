"""snnTorch models compiled as they are (state_dict + --arch FILE.py:factory returning the
framework's own nn.Sequential) and simulated on N-Digits: the output spikes equal snnTorch's own
forward pass at every step of every test sample, in float64 and in float32."""

from __future__ import annotations

import framework_archs as fa
import numpy as np
import pytest
import torch
from framework_check import as_dtype, assert_output_spikes_equal

from primec.errors import PrimecError

snntorch = pytest.importorskip("snntorch")
from snntorch import utils as snn_utils  # noqa: E402

MODELS = (
    "snntorch_leaky",
    "snntorch_leaky_zero",
    "snntorch_synaptic",
    "snntorch_synaptic_zero",
    "snntorch_zero_no_delay",
    "snntorch_synaptic_zero_no_delay",
    "snntorch_subtract_no_delay",
    "snntorch_synaptic_subtract_no_delay",
)


def snntorch_output_spikes(name: str, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """snnTorch's own forward pass, step by step, as its tutorials run it: [N, T, 10]."""
    net = as_dtype(getattr(fa, name)(), dtype).eval()
    snn_utils.reset(net)
    inputs = torch.from_numpy(x).to(dtype)
    with torch.no_grad():
        steps = [net(inputs[:, t])[0] for t in range(inputs.shape[1])]
    return torch.stack(steps, dim=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_output_spikes_equal_snntorch_every_step(name, ndigits_x, tmp_path) -> None:
    assert_output_spikes_equal(name, getattr(fa, name), snntorch_output_spikes, ndigits_x, tmp_path)


def test_unmodelled_option_is_named(tmp_path) -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_leaky()
    net[2].graded_spikes_factor = torch.tensor(2.0)
    with pytest.raises(PrimecError, match=r"snnTorch Leaky at '2': graded_spikes_factor=2\.0"):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")


def test_per_channel_beta_is_kept_per_channel() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_leaky()
    net[2].beta = torch.full((8, 1, 1), 0.9)
    net[2].beta[3] = 0.5
    keep = adopt(net, fa.PRIMEC_STEP, "framework_archs.py").net[2].keep
    assert keep.shape == (8, 1, 1) and torch.equal(keep, net[2].beta.float())


def test_per_channel_beta_of_one_value_is_that_value() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_leaky()
    net[2].beta = torch.full((8, 1, 1), 0.75)
    assert adopt(net, fa.PRIMEC_STEP, "framework_archs.py").net[2].keep == 0.75


def test_unsupported_framework_class_is_named() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_leaky()
    net[2] = snntorch.Lapicque(beta=0.9, init_hidden=True)
    with pytest.raises(PrimecError, match=r"snnTorch snntorch.*Lapicque at '2' is not supported"):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")


def test_subtract_reset_at_once_is_the_at_once_timing() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_leaky()
    net[2].reset_delay = False
    neuron = adopt(net, fa.PRIMEC_STEP, "framework_archs.py").net[2]
    assert (neuron.reset, neuron.reset_timing) == ("subtract", "at_once")


def test_membrane_readout_of_a_reset_at_once_is_refused() -> None:
    from primec.frontend.frameworks import adopt

    step = {**fa.PRIMEC_STEP, "readout": "membrane_mean"}
    with pytest.raises(PrimecError, match="the output layer resets at once"):
        adopt(fa.snntorch_zero_no_delay(), step, "framework_archs.py")
