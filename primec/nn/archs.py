"""Built-in architectures, by the name `--arch NAME` gives: each a factory returning an `SNN`.

`prime-nmnist` is the PRIME authors' released N-MNIST classifier (PRIME.md, "The N-MNIST
classifier"); its module paths are the keys of the released state_dict, which loads unchanged.
The released weights ship with primec (`RELEASED_WEIGHTS`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from torch import nn

from primec.nn.network import SNN
from primec.nn.neurons import Integrator, PrimeCell
from primec.nn.readout import MeanReadout
from primec.nn.supermask import RELEASED_STD, SupermaskConv2d, SupermaskLinear

RELEASED_WEIGHTS = (
    Path(__file__).resolve().parent.parent / "models" / "prime_nmnist_classification.pt"
)


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


ARCHS: dict[str, Callable[[], SNN]] = {
    "prime-nmnist": prime_nmnist,
}
