"""primec.nn: neurons, supermask and readouts agree with the IR's reference equations; the
built-in PRIME architecture loads the released weights unchanged; gradients reach what trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from primec import nn as pnn
from primec.core import interpret
from primec.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from snn_models import LIF_VARIANTS  # noqa: E402


def _ir_attrs(neuron: pnn.LIF) -> dict:
    return {
        "keep": neuron.keep,
        "threshold": neuron.threshold,
        "strict": neuron.strict,
        "reset": neuron.reset,
        "reset_timing": neuron.reset_timing,
        "slope": neuron.slope,
    }


@pytest.mark.parametrize("name", sorted(LIF_VARIANTS))
def test_lif_variants_match_the_ir_lif_equation(name):
    neuron = LIF_VARIANTS[name].double()
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(3, 20, 5, 10, generator=generator, dtype=torch.float64) * 0.4
    membrane = torch.zeros(3, 5, 10, dtype=torch.float64)
    spike = torch.zeros_like(membrane)
    ir_membrane, ir_spike = membrane.numpy(), spike.numpy()
    for t in range(current.shape[1]):
        spike, (membrane, _) = neuron(current[:, t], membrane, spike)
        ir_spike, ir_membrane = interpret.lif(
            [current[:, t].numpy(), ir_membrane, ir_spike], _ir_attrs(neuron)
        )
        assert np.array_equal(spike.numpy(), ir_spike)
        np.testing.assert_allclose(membrane.numpy(), ir_membrane, rtol=0, atol=1e-12)


def test_prime_cell_follows_prime_md():
    cell = pnn.PrimeCell().double()
    membrane = torch.tensor([[0.5, 0.5, -1.0, 0.1]], dtype=torch.float64)
    spike = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    current = torch.tensor([[0.1, 0.1, 0.0, 0.18]], dtype=torch.float64)
    fired, (updated, _) = cell(current, membrane, spike)
    # reset, keep 20%, integrate, LeakyReLU 0.1, strict threshold 0.2
    expected = [0.1, 0.2, -0.02, 0.2]
    np.testing.assert_allclose(updated.numpy()[0], expected, atol=1e-15)
    assert fired.tolist() == [[0.0, 0.0, 0.0, 0.0]]


def test_leaky_is_snntorch_style_subtract_after_leak():
    neuron = pnn.Leaky(beta=0.5, threshold=1.0).double()
    membrane = torch.tensor([[1.5]], dtype=torch.float64)
    spike = torch.tensor([[1.0]], dtype=torch.float64)
    _, (updated, _) = neuron(torch.tensor([[0.25]], dtype=torch.float64), membrane, spike)
    assert updated.item() == 0.5 * 1.5 - 1.0 + 0.25


def test_surrogate_gradient_reaches_the_input():
    neuron = pnn.PrimeCell()
    current = torch.full((1, 4), 0.21, requires_grad=True)
    zeros = torch.zeros(1, 4)
    fired, _ = neuron(current, zeros, zeros)
    fired.sum().backward()
    assert fired.tolist() == [[1.0, 1.0, 1.0, 1.0]]
    assert torch.all(current.grad > 0)


def test_integrator_and_readouts_match_the_ir():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    integrator = pnn.Integrator(keep=0.9, slope=0.1)
    got = pnn.run_over_time(integrator, x).numpy()
    membrane = np.zeros((2, 3))
    for t in range(5):
        (membrane,) = interpret.integrator([x[:, t].numpy(), membrane], {"keep": 0.9, "slope": 0.1})
        np.testing.assert_allclose(got[:, t], membrane, atol=1e-15)
    mean = pnn.run_over_time(pnn.MeanReadout(), x)
    np.testing.assert_allclose(mean[:, -1].numpy(), x.mean(dim=1).numpy(), atol=1e-15)
    decayed = pnn.run_over_time(pnn.ExpTanhReadout(0.8), x)[:, -1]
    weights = 0.8 ** torch.arange(4, -1, -1, dtype=torch.float64)
    expected = torch.tanh((x * weights.view(1, 5, 1)).sum(dim=1))
    np.testing.assert_allclose(decayed.numpy(), expected.numpy(), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    sparsity=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9]),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_keep_mask_is_prime_rule_and_matches_the_interpreter(n, sparsity, seed, ties):
    scores = np.random.default_rng(seed).normal(size=n)
    if ties:
        scores = np.round(scores, 1)  # repeated magnitudes: ties are all kept
    mask = pnn.keep_mask(torch.from_numpy(scores), sparsity).numpy()
    k = 1 + round(sparsity * (n - 1))
    kth = np.sort(np.abs(scores))[k - 1]
    assert np.array_equal(mask, np.abs(scores) >= kth)
    assert np.array_equal(mask, interpret.supermask_keep(scores, sparsity))
    assert mask.sum() >= n - k + 1


def test_supermask_gradient_goes_to_scores_only():
    layer = pnn.SupermaskLinear(6, 4, sparsity=0.5, gain=0.1, seed=3)
    layer(torch.randn(2, 6)).sum().backward()
    assert layer.weight.grad is None
    assert layer.scores.grad is not None and layer.scores.grad.abs().sum() > 0
    assert layer.kept() == 24 - (1 + round(0.5 * 23)) + 1


def test_supermask_weights_are_seeded_normal_with_the_given_std():
    a = pnn.SupermaskConv2d(16, 32, 3, std=2.0, seed=7)
    b = pnn.SupermaskConv2d(16, 32, 3, std=2.0, seed=7)
    c = pnn.SupermaskConv2d(16, 32, 3, std=2.0, seed=8)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.scores, b.scores)
    assert not torch.equal(a.weight, c.weight)
    assert abs(a.weight.std().item() - 2.0) < 0.1
    assert not a.weight.requires_grad
    assert torch.equal(pnn.draw_weights((4, 4), 2.0, 7), pnn.draw_weights((4, 4), 2.0, 7))


def test_supermask_conv_transpose_uses_the_effective_weight():
    layer = pnn.SupermaskConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, seed=1)
    x = torch.randn(1, 2, 4, 4)
    expected = nn.functional.conv_transpose2d(x, layer.effective_weight(), None, 2, 1, 1)
    assert torch.equal(layer(x), expected)
    assert layer(x).shape == (1, 3, 8, 8)


def test_prime_nmnist_loads_the_released_state_dict_unchanged():
    net = pnn.prime_nmnist()
    released = torch.load(pnn.RELEASED_WEIGHTS, weights_only=True, map_location="cpu")
    assert set(net.state_dict()) == set(released)
    net.load_state_dict(released, strict=True)
    kept = [m.kept() for m in net.modules() if isinstance(m, pnn.Supermask)]
    assert kept == [300, 9600, 11520]  # PRIME.md
    assert net.state_names() == [
        "features.lif0.membrane",
        "features.lif0.spike",
        "features.lif1.membrane",
        "features.lif1.spike",
        "classifier.out.membrane",
        "readout.sum",
        "readout.count",
    ]


def test_snn_forward_returns_the_readout_after_every_step():
    net = pnn.prime_nmnist()
    x = torch.randint(0, 3, (2, 4, 2, 34, 34)).float()
    with torch.no_grad():
        recorded = net.record(x)
        readout = net(x)
    assert readout.shape == (2, 4, 10)
    assert torch.equal(readout, recorded["readout"])
    expected_mean = recorded["classifier.out"].cumsum(1) / torch.arange(1, 5).view(1, 4, 1)
    torch.testing.assert_close(readout, expected_mean)


def test_neurons_hidden_from_the_step_walk_are_refused():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = pnn.PrimeCell()

    with pytest.raises(ValueError, match="features.lif"):
        pnn.SNN(
            {"features": Block()},
            pnn.MeanReadout(),
            input_shape=(3,),
            timesteps=2,
            input_encoding="spikes",
        )


def test_invalid_neuron_parameters_are_refused():
    with pytest.raises(ValueError, match="reset"):
        pnn.LIF(keep=0.5, threshold=1.0, reset="soft")
    with pytest.raises(ValueError, match="sparsity"):
        pnn.SupermaskLinear(3, 2, sparsity=1.0)


def test_custom_ops_run_the_same_math_as_eager():
    current, membrane, spike = torch.randn(3, 2, 7).unbind(0)
    spike = (spike > 0).float()
    args = (0.2, 0.2, True, "zero", "before_leak", 0.1)
    fired, updated = torch.ops.primec.lif(current, membrane, spike, *args)
    eager = F.lif_membrane(current, membrane, spike, 0.2, 0.2, "zero", "before_leak", 0.1)
    assert torch.equal(updated, eager)
    assert torch.equal(fired, F.fire(eager, 0.2, True))
