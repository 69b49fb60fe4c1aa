"""PRIME's inpainting model: a pruned, shrunk Fully Spiking VAE (PRIME.md, "The inpainting model").

Per timestep t (T = 16, the analog image repeated every step):

    encoder   conv 3x3 s2 p1 (1->32, 32->32, 32->32), each with bias, tdBN, FSVAE LIF;
              flatten, linear 512->128 with bias, tdBN, LIF                       -> e_t [128]
    posterior h = x_in(e_t) + z_in(z_(t-1)): FSVAE's linear over cat(e_t, z_(t-1)), its weight
              split in two; tdBN (alpha 2), LIF; linear -> 128*k, tdBN, LIF       -> q_t [128*k]
    sampler   z_t[c] = q_t[c*k + draw(seed, sample, t, c)], 1 of k per channel    -> z_t [128]
    decoder   linear 128->512 with bias, tdBN, LIF; reshape 32x4x4; three transposed conv
              3x3 s2 p1 op1 (32->32) with bias, tdBN, LIF; transposed conv 32->1 3x3 s1 p1
              with bias, no spikes                                                -> x_t [1,32,32]
    readout   acc_t = 0.8*acc_(t-1) + x_t; r_t = tanh(acc_t): after T steps
              acc = sum_t 0.8^(T-1-t) x_t, FSVAE's membrane output layer.

The encoder and decoder layers are supermask layers (as-formed weights, std 6.92, gain 0.003:
PRIME's inpainting figures); the posterior MLP (and the prior MLP, used only by the training
loss) are ordinary trained weights, compiled as programmed conductances. PRIME does not publish
the shrunk MLPs' widths: primec uses one hidden layer of `hidden` (256) neurons.

tdBN (threshold-dependent BatchNorm, FSVAE) normalises to alpha * V_th * x_hat * gamma + beta;
`TdBatchNorm` keeps the product alpha * V_th * gamma as its `weight` (initialised to
alpha * V_th), so it is a plain BatchNorm at inference and exports as one. A FSVAE checkpoint's
gamma converts as weight = alpha * V_th * gamma. Training statistics are per timestep over the
batch (FSVAE pools them over time too); inference uses the running statistics either way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from primec.nn.network import SNN
from primec.nn.neurons import FSVAELIF, Stateful
from primec.nn.readout import ExpTanhReadout
from primec.nn.sampler import LatentSampler
from primec.nn.supermask import (
    Supermask,
    SupermaskConv2d,
    SupermaskConvTranspose2d,
    SupermaskLinear,
)

FSVAE_STD = 6.92  # std of PRIME's inpainting weights (device units, PRIME.md)
FSVAE_GAIN = 0.003  # the periphery's scale of PRIME's inpainting model
THRESHOLD = 0.2  # FSVAE LIF threshold
TIMESTEPS = 16
LATENT = 128
CANDIDATES = 20  # k: Bernoulli candidates per latent channel
HIDDEN = 256
DECAY = 0.8
IMAGE = (1, 32, 32)


class TdBatchNorm1d(nn.BatchNorm1d):
    """tdBN over features: y = weight * x_hat + bias, weight initialised to alpha * V_th."""

    def __init__(self, features: int, alpha: float = 1.0, threshold: float = THRESHOLD) -> None:
        super().__init__(features)
        self.alpha, self.threshold = float(alpha), float(threshold)
        nn.init.constant_(self.weight, self.alpha * self.threshold)


class TdBatchNorm2d(nn.BatchNorm2d):
    """tdBN over channels: y = weight * x_hat + bias, weight initialised to alpha * V_th."""

    def __init__(self, channels: int, alpha: float = 1.0, threshold: float = THRESHOLD) -> None:
        super().__init__(channels)
        self.alpha, self.threshold = float(alpha), float(threshold)
        nn.init.constant_(self.weight, self.alpha * self.threshold)


class PosteriorInput(nn.Module):
    """The posterior's first layer over cat(e_t, z_(t-1)), as two matrices added."""

    def __init__(self, latent: int, hidden: int) -> None:
        super().__init__()
        self.x_in = nn.Linear(latent, hidden, bias=True)
        self.z_in = nn.Linear(latent, hidden, bias=False)

    def forward(self, e: Tensor, z_prev: Tensor) -> Tensor:
        """x_in(e) + z_in(z_prev)."""
        return self.x_in(e) + self.z_in(z_prev)


@contextmanager
def masks_once(net: nn.Module) -> Iterator[None]:
    """Each supermask layer's effective weight computed once for a whole run, not every step.

    The mask depends on the scores only, which do not change within a run: the same weight
    tensor serves all T steps (its gradient reaches the scores summed over the steps, as before).
    """
    layers = [m for m in net.modules() if isinstance(m, Supermask) and not hasattr(m, "_once")]
    for layer in layers:
        layer._once = layer.effective_weight()
        layer.effective_weight = lambda once=layer._once: once
    try:
        yield
    finally:
        for layer in layers:
            del layer.effective_weight, layer._once


class FSVAE(SNN):
    """The inpainting SNN; `step` feeds the sampler's last latent back into the posterior."""

    def record(self, x: Tensor) -> dict[str, Tensor]:
        """Run all steps (each mask computed once); every stateful module's output by path."""
        with masks_once(self):
            return super().record(x)

    def step(
        self, x: Tensor, states: list[Tensor] | None = None, trace: dict | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """One timestep: (r_t, new states); states in `state_names()` order, None: all zero."""
        given = None if states is None else self._split(states)
        latent = given["sampler"][1] if given else x.new_zeros((x.shape[0], self.sampler.channels))
        new: list[Tensor] = []
        h = x
        for path, module in self.sequence():
            if isinstance(module, PosteriorInput):
                h = module(h, latent)
                continue
            if not isinstance(module, Stateful):
                h = module(h)
                continue
            state = module.zero_state(h) if given is None else given[path]
            h, next_state = module(h, *state)
            new.extend(next_state)
            if trace is not None:
                trace[path] = h
        return h, new

    def _split(self, states: list[Tensor]) -> dict[str, list[Tensor]]:
        """The flat state list cut into each stateful module's states, by path."""
        expected = len(self.state_names())
        if len(states) != expected:
            raise ValueError(f"FSVAE.step takes {expected} states, got {len(states)}")
        given, at = {}, 0
        for path, module in self.stateful():
            given[path] = list(states[at : at + len(module.state_names)])
            at += len(module.state_names)
        return given


def _conv_block(index: int, cin: int, seed: int, mask: dict) -> list[tuple[str, nn.Module]]:
    conv = SupermaskConv2d(cin, 32, 3, stride=2, padding=1, bias=True, seed=seed, **mask)
    return [(f"conv{index}", conv), (f"bn{index}", TdBatchNorm2d(32)), (f"lif{index}", FSVAELIF())]


def _deconv_block(index: int, seed: int, mask: dict) -> list[tuple[str, nn.Module]]:
    deconv = SupermaskConvTranspose2d(
        32, 32, 3, stride=2, padding=1, output_padding=1, bias=True, seed=seed, **mask
    )
    return [
        (f"deconv{index}", deconv),
        (f"bn{index}", TdBatchNorm2d(32)),
        (f"lif{index}", FSVAELIF()),
    ]


def _encoder(seed: int, mask: dict) -> nn.Sequential:
    layers = [*_conv_block(0, 1, seed, mask), *_conv_block(1, 32, seed + 1, mask)]
    layers += _conv_block(2, 32, seed + 2, mask)
    layers += [
        ("flatten", nn.Flatten()),
        ("linear", SupermaskLinear(512, LATENT, bias=True, seed=seed + 3, **mask)),
        ("bn3", TdBatchNorm1d(LATENT)),
        ("lif3", FSVAELIF()),
    ]
    return nn.Sequential(OrderedDict(layers))


def _decoder(seed: int, mask: dict) -> nn.Sequential:
    layers = [
        ("linear", SupermaskLinear(LATENT, 512, bias=True, seed=seed, **mask)),
        ("bn", TdBatchNorm1d(512)),
        ("lif", FSVAELIF()),
        ("unflatten", nn.Unflatten(1, (32, 4, 4))),
    ]
    for index in range(3):
        layers += _deconv_block(index, seed + 1 + index, mask)
    last = SupermaskConvTranspose2d(32, 1, 3, stride=1, padding=1, bias=True, seed=seed + 4, **mask)
    return nn.Sequential(OrderedDict([*layers, ("final", last)]))


def mlp(inputs: int, hidden: int, k: int) -> nn.Sequential:
    """The prior's MLP (FSVAE's, shrunk): linear, tdBN (alpha 2), LIF, twice -> LATENT*k spikes."""
    return nn.Sequential(
        OrderedDict(
            fc0=nn.Linear(inputs, hidden),
            bn0=TdBatchNorm1d(hidden, alpha=2.0),
            lif0=FSVAELIF(),
            fc1=nn.Linear(hidden, LATENT * k),
            bn1=TdBatchNorm1d(LATENT * k, alpha=2.0),
            lif1=FSVAELIF(),
        )
    )


def _posterior(hidden: int, k: int) -> nn.Sequential:
    """The posterior after its input layer: tdBN, LIF, linear -> LATENT*k, tdBN, LIF."""
    layers = list(mlp(LATENT, hidden, k).named_children())[1:]
    return nn.Sequential(OrderedDict(layers))


def prime_fsvae(
    std: float = FSVAE_STD, seed: int = 0, k: int = CANDIDATES, hidden: int = HIDDEN
) -> FSVAE:
    """PRIME's inpainting FSVAE (T=16, 32x32 analog input in [-1, 1]); see the module docstring."""
    mask = {"sparsity": 0.5, "gain": FSVAE_GAIN, "std": std}
    with torch.random.fork_rng():
        torch.manual_seed(
            seed
        )  # the ordinary layers' initial values, without touching the caller's RNG
        stages = {
            "encoder": _encoder(seed, mask),
            "posterior_in": PosteriorInput(LATENT, hidden),
            "posterior": _posterior(hidden, k),
            "sampler": LatentSampler(LATENT, k, seed),
            "decoder": _decoder(seed + 4, mask),
        }
        net = FSVAE(
            stages,
            ExpTanhReadout(DECAY),
            input_shape=IMAGE,
            timesteps=TIMESTEPS,
            input_encoding="analog_repeat",
        )
        net.prior = mlp(LATENT, hidden, k)  # training only: the MMD loss's prior p(z_t | z_<t)
    return net


def repeat_input(images: Tensor, timesteps: int = TIMESTEPS) -> Tensor:
    """Analog images [B, 1, 32, 32] as the step inputs of every timestep, [B, T, 1, 32, 32]."""
    return images.unsqueeze(1).expand(-1, timesteps, *images.shape[1:])


def partial_readouts(acc: Tensor, decay: float = DECAY, prime_quirk: bool = True) -> Tensor:
    """The reconstruction after each step t from the accumulators acc [B, T, ...].

    Clean: r_t = tanh(acc_t) = tanh(sum_(s<=t) decay^(t-s) x_s), the readout had the run
    stopped at t. PRIME's code (our reading) keeps the full-length coefficients decay^(T-1-s)
    when stopped early: r_t = tanh(decay^(T-1-t) * acc_t). Both agree at t = T-1.
    """
    if not prime_quirk:
        return torch.tanh(acc)
    steps = acc.shape[1]
    scale = decay ** torch.arange(steps - 1, -1, -1, dtype=acc.dtype)
    return torch.tanh(acc * scale.reshape(1, steps, *([1] * (acc.dim() - 2))))


def accumulators(net: FSVAE, x: Tensor) -> Tensor:
    """The readout's accumulator acc_t after every step, [B, T, 1, 32, 32] (for `partial_readouts`)."""
    history = []
    with masks_once(net):
        states = net.zero_states(x[:, 0])
        for t in range(x.shape[1]):
            _, states = net.step(x[:, t], states)
            history.append(states[-1])  # the readout is the last stateful module: acc is last
    return torch.stack(history, dim=1)
