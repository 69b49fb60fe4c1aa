"""What the framework translations share: the refusal of an unmodelled option, scalar reads."""

from __future__ import annotations

from typing import Any

import torch


class Unmodelled(ValueError):
    """A framework neuron option primec does not model (the message names it and its value)."""


def scalar(module: Any, name: str) -> float:
    """A neuron parameter that must be one number (a float, or a one-element tensor)."""
    value = getattr(module, name)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Unmodelled(
                f"{name} has {value.numel()} values (shape {list(value.shape)}); primec models "
                "one value per layer"
            )
        value = value.detach().reshape(()).item()
    return float(value)


def refuse_unless(condition: bool, option: str, value: Any, supported: str) -> None:
    """Refuse an option primec does not model, naming it, its value and what is supported."""
    if not condition:
        raise Unmodelled(f"{option}={value!r} is not modelled ({supported})")
