"""Built-in architectures, by the name `--arch NAME` gives: each a factory returning an `SNN`.

`prime-nmnist` is the PRIME authors' released N-MNIST classifier (PRIME.md, "The N-MNIST
classifier"); its module paths are the keys of the released state_dict, which loads unchanged.
The released weights ship with primec (`RELEASED_WEIGHTS`).

`ndigits-small` is the small classifier `primec train` trains on N-Digits: one strided conv,
PRIME cells, pooling, linear, integrator, running mean; its trained weights ship with primec
(`SMALL_WEIGHTS`, reproduced as primec/models/README.md says).

`prime-fsvae` is PRIME's inpainting model, a pruned spiking VAE (`primec.nn.fsvae`).

Every factory takes `std` (the as-formed weights' std, device units) and `seed`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from torch import nn

from primec.nn.fsvae import prime_fsvae
from primec.nn.network import SNN
from primec.nn.neurons import Integrator, PrimeCell
from primec.nn.readout import MeanReadout
from primec.nn.supermask import RELEASED_STD, SupermaskConv2d, SupermaskLinear

RELEASED_WEIGHTS = (
    Path(__file__).resolve().parent.parent / "models" / "prime_nmnist_classification.pt"
)
SMALL_WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "ndigits-supermask.pt"


def prime_nmnist(std: float = RELEASED_STD, seed: int = 0) -> SNN:
    """PRIME's N-MNIST classifier: conv-LIF-pool x2, linear, integrator, running mean (T=10)."""
    mask = {"sparsity": 0.5, "gain": 0.01, "std": std}
    features = nn.Sequential(
        OrderedDict(
            conv0=SupermaskConv2d(2, 12, 5, padding=1, seed=seed, **mask),
            lif0=PrimeCell(0.2),
            pool0=nn.AvgPool2d(2),
            conv1=SupermaskConv2d(12, 64, 5, seed=seed + 1, **mask),
            lif1=PrimeCell(0.2),
            pool1=nn.AvgPool2d(2),
        )
    )
    classifier = nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            linear0=SupermaskLinear(2304, 10, seed=seed + 2, **mask),
            out=Integrator(keep=1.0, slope=0.1),
        )
    )
    return SNN(
        {"features": features, "classifier": classifier},
        MeanReadout(),
        input_shape=(2, 34, 34),
        timesteps=10,
        input_encoding="event_counts",
    )


def ndigits_small(std: float = RELEASED_STD, seed: int = 0) -> SNN:
    """A small N-Digits classifier: conv 2->32 k5 stride 2, PRIME cell, pool, linear (T=10)."""
    mask = {"sparsity": 0.5, "gain": 0.01, "std": std}
    # Stride 2 and one pooling keep it one conv layer and 22k synapses; 32 channels, because
    # with random weights the mask needs many candidates to pick from (16 stalled near 88%).
    features = nn.Sequential(
        OrderedDict(
            conv0=SupermaskConv2d(2, 32, 5, stride=2, padding=1, seed=seed, **mask),
            lif0=PrimeCell(0.2),
            pool0=nn.AvgPool2d(2),
        )
    )
    classifier = nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            linear0=SupermaskLinear(2048, 10, seed=seed + 1, **mask),
            out=Integrator(keep=1.0, slope=0.1),
        )
    )
    return SNN(
        {"features": features, "classifier": classifier},
        MeanReadout(),
        input_shape=(2, 34, 34),
        timesteps=10,
        input_encoding="event_counts",
    )


ARCHS: dict[str, Callable[..., SNN]] = {
    "prime-nmnist": prime_nmnist,
    "ndigits-small": ndigits_small,
    "prime-fsvae": prime_fsvae,
}
