"""What the framework translations share: the refusal of an unmodelled option, scalar reads."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from primec.nn import LIF


class Unmodelled(ValueError):
    """A framework neuron option primec does not model (the message names it and its value)."""


def scalar(module: Any, name: str) -> float:
    """A neuron parameter that must be one number: a float, or a tensor whose values are all
    equal (a per-channel or per-neuron parameter that has not moved from one value)."""
    value = getattr(module, name)
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        if flat.numel() == 0 or not bool((flat == flat[0]).all()):
            raise Unmodelled(
                f"{name} has {value.numel()} different values (shape {list(value.shape)}); primec "
                "models one value per layer"
            )
        value = flat[0].item()  # one value, per channel or per neuron: the layer's value
    return float(value)


def param(module: Any, name: str) -> float | Tensor:
    """A neuron parameter that may differ per channel or per neuron: a float when it is one
    number or a tensor of one repeated value, else its values as a float32 tensor (leading
    size-1 dimensions dropped: the batch), which must be finite."""
    value = getattr(module, name)
    if not isinstance(value, torch.Tensor):
        return float(value)
    flat = value.detach().reshape(-1)
    if flat.numel() == 0:
        raise Unmodelled(f"{name} is an empty tensor")
    if not bool(torch.isfinite(flat).all()):
        raise Unmodelled(f"{name} holds NaN or infinite values")
    if bool((flat == flat[0]).all()):
        return float(flat[0].item())
    tensor = value.detach().to(torch.float32).clone()
    while tensor.dim() and tensor.shape[0] == 1:
        tensor = tensor[0]
    return tensor


def positive(value: float | Tensor) -> bool:
    """Whether a parameter (one number or every element) is positive."""
    return bool((torch.as_tensor(value) > 0).all())


def least(value: float | Tensor) -> float:
    """The smallest value of a parameter (the one value, or its smallest element)."""
    return float(torch.as_tensor(value).min())


def refuse_unless(condition: bool, option: str, value: Any, supported: str) -> None:
    """Refuse an option primec does not model, naming it, its value and what is supported."""
    if not condition:
        raise Unmodelled(f"{option}={value!r} is not modelled ({supported})")


class MembraneOutput(LIF):
    """A LIF whose step output is its membrane U' (the framework's membrane readout of the
    output layer, `output=True`), not its spikes; its state is a LIF's (membrane, spike)."""

    @classmethod
    def of(cls, neuron: LIF) -> MembraneOutput:
        """The same neuron, answering with its membrane."""
        out = cls.__new__(cls)
        out.__dict__.update(neuron.__dict__)
        return out

    def forward(
        self, current: Tensor, membrane: Tensor, spike: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One timestep: (membrane', (membrane', spikes))."""
        _, (updated, fired) = super().forward(current, membrane, spike)
        return updated, (updated, fired)


class ElementwiseScale(nn.Module):
    """The input times a constant (NIR's Scale; Norse's dt/tau_mem before a leaky integrator):
    one digital multiply per element. `scale` has the input's shape or broadcasts to it."""

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.asarray(scale, dtype=np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        """x * scale."""
        return x * self.scale
