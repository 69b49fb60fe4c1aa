"""PRIME's inpainting FSVAE in primec.nn against an independent plain-PyTorch reference."""

from __future__ import annotations

import fsvae_reference as ref
import numpy as np
import pytest
import torch
from torch import nn

from primec.core import counter_rng
from primec.nn import ARCHS
from primec.nn.fsvae import TdBatchNorm1d, partial_readouts, prime_fsvae, repeat_input
from primec.nn.sampler import LatentSampler, sample_latent


def active_fsvae(seed: int = 0, k: int = 20) -> nn.Module:
    """A prime-fsvae with random weights whose BatchNorm statistics make the neurons fire."""
    torch.manual_seed(seed)
    net = prime_fsvae(seed=seed, k=k).double()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative statistics of the calibration pass
            nn.init.uniform_(module.bias, -0.05, 0.15)
    net.train()
    with torch.no_grad():
        net(repeat_input(torch.rand(16, 1, 32, 32, dtype=torch.float64) * 2 - 1, 4))
    return net.eval()


def test_fsvae_is_a_builtin_with_prime_shapes():
    net = ARCHS["prime-fsvae"]()
    assert (net.timesteps, net.input_shape, net.input_encoding) == (
        16,
        (1, 32, 32),
        "analog_repeat",
    )
    pruned = [m for m in net.modules() if hasattr(m, "kept")]
    assert sum(m.weight.numel() for m in pruned) == 177_728  # PRIME.md: about 178k pruned weights
    assert sum(m.kept() for m in pruned) == 88_864  # sparsity 0.5 in every pruned layer
    assert not any(hasattr(m, "kept") for m in net.posterior.modules())  # programmed layers
    assert net.posterior.fc1.out_features == 128 * 20


def test_fsvae_agrees_with_the_independent_reference_on_random_weights():
    net = active_fsvae()
    images = torch.rand(3, 1, 32, 32, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        record = net.record(repeat_input(images))
        expected, spikes = ref.run(net.state_dict(), images)
    for t, step_spikes in enumerate(spikes):
        for path, value in step_spikes.items():
            got = record[path][:, t].reshape(value.shape)
            assert torch.equal(got, value), f"{path} differs at step {t}"
    rates = [record[p].mean().item() for p in ("encoder.lif0", "posterior.lif1", "decoder.lif2")]
    assert all(0.01 < r < 0.9 for r in rates), rates  # the comparison exercises real spikes
    assert 0 < record["sampler"].mean() < 1
    assert torch.allclose(record["readout"], expected, rtol=0, atol=1e-12)


def test_counter_stream_is_lowbias32_in_numpy_and_torch():
    words = [0, 1, 2, 12345, 2**31, 2**32 - 1]
    expected = [ref.lowbias32(w) for w in words]
    assert counter_rng.mix32(np.array(words, dtype=np.int64)).tolist() == expected
    assert counter_rng.mix32(torch.tensor(words, dtype=torch.int64)).tolist() == expected
    keys = [(7, 3, 5, 11), (0, 0, 0, 0), (2**32 - 1, 999, 15, 127)]
    for seed, sample, step, channel in keys:
        got = counter_rng.draw_index(seed, np.int64(sample), np.int64(step), np.int64(channel), 20)
        assert int(got) == ref.draw(seed, sample, step, channel, 20)


def test_sampler_draws_are_roughly_uniform_and_depend_on_every_coordinate():
    index = counter_rng.draw_index(0, np.arange(64)[:, None], np.int64(0), np.arange(128), 20)
    counts = np.bincount(index.ravel(), minlength=20)
    assert counts.min() > 0.8 * 64 * 128 / 20 and counts.max() < 1.2 * 64 * 128 / 20
    base = counter_rng.draw_index(1, np.arange(256), np.int64(3), np.int64(5), 20)
    for other in (
        counter_rng.draw_index(2, np.arange(256), np.int64(3), np.int64(5), 20),
        counter_rng.draw_index(1, np.arange(256), np.int64(4), np.int64(5), 20),
        counter_rng.draw_index(1, np.arange(256), np.int64(3), np.int64(6), 20),
    ):
        assert (base != other).mean() > 0.8


def test_sampler_keeps_the_drawn_candidate_and_counts_steps():
    q = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 12)
    z, step = sample_latent(q, torch.full((2, 1), 5.0), k=4, seed=9, sample_offset=10)
    for b in range(2):
        for c in range(3):
            assert z[b, c] == q[b, c * 4 + ref.draw(9, 10 + b, 5, c, 4)]
    assert step.tolist() == [[6.0], [6.0]]


def test_sampler_offset_makes_chunked_runs_equal_one_run():
    net = active_fsvae()
    images = torch.rand(4, 1, 32, 32, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        whole = net(repeat_input(images, 3))
        net.sampler.sample_offset = 2
        tail = net(repeat_input(images[2:], 3))
    assert torch.equal(whole[2:], tail)


@pytest.mark.parametrize("seed", [1.5, "3", True, -1, 2**32])
def test_sampler_seed_must_be_an_integer_word(seed):
    with pytest.raises(ValueError, match="seed must be"):
        LatentSampler(128, 20, seed)


def test_the_factory_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = prime_fsvae(seed=4).state_dict(), prime_fsvae(seed=4).state_dict()
    assert torch.rand(1) == before
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["posterior.fc1.weight"], prime_fsvae(seed=5).posterior.fc1.weight)


def test_tdbn_weight_starts_at_alpha_times_threshold():
    assert torch.all(TdBatchNorm1d(8, alpha=2.0).weight == 0.4)


def test_prime_quirk_readouts_use_full_length_coefficients():
    outputs = torch.randn(2, 5, 3)
    acc = torch.zeros(2, 3)
    accs = []
    for t in range(5):
        acc = 0.8 * acc + outputs[:, t]
        accs.append(acc)
    acc_history = torch.stack(accs, dim=1)
    quirk, clean = partial_readouts(acc_history), partial_readouts(acc_history, prime_quirk=False)
    t = 2  # stopped after 3 of 5 steps
    weights = torch.tensor([0.8**4, 0.8**3, 0.8**2]).reshape(1, 3, 1)
    assert torch.allclose(quirk[:, t], torch.tanh((outputs[:, :3] * weights).sum(1)))
    assert torch.allclose(clean[:, t], torch.tanh((outputs[:, :3] * weights / 0.8**2).sum(1)))
    assert torch.equal(quirk[:, -1], clean[:, -1])


def test_masks_once_gives_the_per_step_run_its_outputs_and_gradients():
    from primec.nn.network import SNN

    net = active_fsvae().train()
    x = repeat_input(torch.rand(2, 1, 32, 32, dtype=torch.float64) * 2 - 1, 4)
    runs = {}
    for name, record in (("once", net.record), ("per_step", lambda x: SNN.record(net, x))):
        net.zero_grad()
        out = record(x)
        (out["readout"][:, -1] ** 2).mean().backward()
        runs[name] = (
            out,
            {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None},
        )
    (once, grads), (per_step, expected) = runs["once"], runs["per_step"]
    assert all(torch.equal(once[path], per_step[path]) for path in per_step)
    assert grads.keys() == expected.keys() and "decoder.final.scores" in grads
    for name, grad in expected.items():  # the same sum over steps, in another order
        assert torch.allclose(grads[name], grad, rtol=1e-9, atol=1e-15), name
    layer = net.decoder.final
    assert "effective_weight" not in vars(layer) and not hasattr(layer, "_once")  # restored
