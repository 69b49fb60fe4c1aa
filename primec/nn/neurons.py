"""Spiking neurons and the non-spiking integrator, one timestep per call.

Every stateful module follows one protocol, `forward(x, *state) -> (out, new_state)`, with the
state a tuple of tensors that starts at zero (`zero_state`). The parameters use the IR's words
(`primec/core/ops.py`): `keep` is the fraction of the membrane kept per timestep, `slope` the
LeakyReLU slope applied to the membrane (1.0: none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from primec.nn import functional as F


class Stateful(nn.Module):
    """A module whose state is carried from one timestep to the next (zero at the start)."""

    state_names: tuple[str, ...] = ()

    def zero_state(self, x: Tensor) -> tuple[Tensor, ...]:
        """The state at the first timestep for a step input shaped like `x` ([B, ...])."""
        return tuple(torch.zeros_like(x) for _ in self.state_names)


Param = float | Tensor  # a neuron parameter: one value, or a tensor broadcast to the neuron
PARAMS = ("keep", "threshold", "v_reset", "v_leak", "input_gain")


def set_params(module: nn.Module, values: dict[str, Any]) -> bool:
    """Store neuron parameters on `module`: numbers as floats, tensors (or arrays) as float32
    buffers (an `nn.Parameter` stays a parameter, trainable). When any is a tensor, every one
    is stored as a tensor, so that the module exports as one op with tensor operands. Returns
    whether they are tensors."""
    tensors = any(not isinstance(v, int | float | np.number) for v in values.values())
    for name, value in values.items():
        if not tensors:
            setattr(module, name, float(value))
            continue
        if isinstance(value, nn.Parameter):
            module.register_parameter(name, value)
            continue
        tensor = torch.as_tensor(np.asarray(value.detach() if isinstance(value, Tensor) else value))
        module.register_buffer(name, tensor.to(torch.float32).clone())
    for name in values if tensors else ():
        if not bool(torch.isfinite(getattr(module, name)).all()):
            raise ValueError(f"{name} holds NaN or infinite values")
    return tensors


class NeuronShapeError(ValueError):
    """A tensor-valued neuron parameter that does not broadcast to the neuron's shape."""


def check_param_shapes(module: nn.Module, names: tuple[str, ...], current: Tensor) -> None:
    """Every tensor parameter of `module` broadcasts to one sample of `current` ([B, ...])."""
    shape = tuple(current.shape[1:])
    for name in names:
        found = tuple(getattr(module, name).shape)
        fits = len(found) <= len(shape) and all(
            f in (1, s) for f, s in zip(reversed(found), reversed(shape), strict=False)
        )
        if not fits:
            raise NeuronShapeError(
                f"{type(module).__name__} {name} has shape {list(found)}, which does not "
                f"broadcast to the neuron's shape {list(shape)} (per channel of [C, H, W]: "
                "[C, 1, 1]; per neuron: the neuron's shape)"
            )


class LIF(Stateful):
    """Leaky integrate-and-fire neuron (the IR's `lif` op); emits spikes, state (membrane, spike).

    keep, threshold, v_reset, v_leak and input_gain are each one number, or a tensor that
    broadcasts (torch rules) to the neuron's per-sample shape: [C, 1, 1] per channel after a
    convolution, [C, H, W] or [N] per neuron.
    """

    state_names = ("membrane", "spike")

    def __init__(
        self,
        keep: Param,
        threshold: Param,
        strict: bool = True,
        reset: str = "zero",
        reset_timing: str = "before_leak",
        slope: float = 1.0,
        sharpness: float = 25.0,
        *,
        v_reset: Param = 0.0,
        v_leak: Param = 0.0,
        input_gain: Param = 1.0,
    ) -> None:
        super().__init__()
        if reset not in F.RESETS:
            raise ValueError(f"reset must be one of {F.RESETS}, got {reset!r}")
        if reset_timing not in F.RESET_TIMINGS:
            raise ValueError(f"reset_timing must be one of {F.RESET_TIMINGS}, got {reset_timing!r}")
        if reset_timing == "at_once" and reset != "subtract":
            raise ValueError(f"reset_timing at_once needs reset subtract, got {reset!r}")
        # The IR's optional variants: reset target, leak target, input scale (docs/onnx.md).
        values = dict(keep=keep, threshold=threshold, v_reset=v_reset, v_leak=v_leak)
        self.tensor_valued = set_params(self, {**values, "input_gain": input_gain})
        self.strict, self.reset, self.reset_timing = bool(strict), reset, reset_timing
        self.slope, self.sharpness = float(slope), float(sharpness)

    @property
    def variant(self) -> tuple[Param, Param, Param]:
        """(v_reset, v_leak, input_gain), the IR's optional `lif` attributes."""
        return (self.v_reset, self.v_leak, self.input_gain)

    def extra_repr(self) -> str:
        """The parameters, shown by print(module)."""
        keep, threshold = (_shown(getattr(self, name)) for name in ("keep", "threshold"))
        text = (
            f"keep={keep}, threshold={threshold}, strict={self.strict}, "
            f"reset={self.reset}, reset_timing={self.reset_timing}, slope={self.slope}"
        )
        v_reset, v_leak, gain = map(_shown, self.variant)
        return text + f", v_reset={v_reset}, v_leak={v_leak}, input_gain={gain}" * self.varied

    @property
    def varied(self) -> bool:
        """Whether any optional variant differs from the plain LIF."""
        if self.tensor_valued:
            return True
        return self.variant != (0.0, 0.0, 1.0) or self.reset_timing in ("after_input", "at_once")

    def forward(
        self, current: Tensor, membrane: Tensor, spike: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One timestep: (spikes, (membrane', spikes))."""
        params = (self.keep, self.threshold, self.strict, self.reset, self.reset_timing, self.slope)
        if self.tensor_valued:
            check_param_shapes(self, PARAMS, current)
        if torch.compiler.is_exporting():
            fired, updated = self._exported_step(current, membrane, spike, params)
            return fired, (updated, fired)
        if self.reset_timing == "at_once":
            args = (self.keep, self.threshold, self.strict, self.slope, self.variant)
            fired, updated = F.lif_at_once(current, membrane, *args, self.sharpness)
            return fired, (updated, fired)
        updated = F.lif_membrane(
            current,
            membrane,
            spike,
            self.keep,
            self.threshold,
            self.reset,
            self.reset_timing,
            self.slope,
            self.variant,
        )
        fired = F.fire(updated, self.threshold, self.strict, self.sharpness)
        return fired, (updated, fired)

    def _exported_step(
        self, current: Tensor, membrane: Tensor, spike: Tensor, params: tuple
    ) -> tuple[Tensor, Tensor]:
        # The plain op unless a variant is set, so that plain models export as they did.
        if self.tensor_valued:
            keep, threshold, *flags = params
            return torch.ops.primec.lif_tensor(
                current, membrane, spike, keep, threshold, *self.variant, *flags
            )
        if self.varied:
            return torch.ops.primec.lif_general(current, membrane, spike, *params, *self.variant)
        return torch.ops.primec.lif(current, membrane, spike, *params)


def _shown(value: Param) -> str:
    """A parameter as print(module) shows it: the number, or the tensor's shape."""
    if isinstance(value, float) or value.dim() == 0:
        return str(float(value))
    return f"tensor{list(value.shape)}"


class PrimeCell(LIF):
    """PRIME's hidden cell: keep 0.2, hard reset before the leak, LeakyReLU 0.1, U > threshold."""

    def __init__(self, threshold: float = 0.2, sharpness: float = 25.0) -> None:
        super().__init__(0.2, threshold, True, "zero", "before_leak", 0.1, sharpness)


class FSVAELIF(LIF):
    """The FSVAE neuron of PRIME's inpainting model: u <- 0.25*u*(1-o) + x; o = u > 0.2."""

    def __init__(self, threshold: float = 0.2, sharpness: float = 25.0) -> None:
        super().__init__(0.25, threshold, True, "zero", "before_leak", 1.0, sharpness)


class Leaky(LIF):
    """snnTorch-style Leaky: U <- beta*U - threshold*s + I (subtract reset after the leak)."""

    def __init__(self, beta: float, threshold: float = 1.0, sharpness: float = 25.0) -> None:
        super().__init__(beta, threshold, True, "subtract", "after_leak", 1.0, sharpness)


class IF(LIF):
    """Plain integrate-and-fire: no leak, reset to zero (or by subtraction) after a spike."""

    def __init__(
        self, threshold: float = 1.0, reset: str = "zero", sharpness: float = 25.0
    ) -> None:
        super().__init__(1.0, threshold, True, reset, "before_leak", 1.0, sharpness)


class Integrator(Stateful):
    """Non-spiking integrator (the IR's `integrator` op): U <- LeakyReLU(keep*U + I); emits U."""

    state_names = ("membrane",)

    def __init__(self, keep: Param = 1.0, slope: float = 1.0) -> None:
        super().__init__()
        self.tensor_valued = set_params(self, {"keep": keep})
        self.slope = float(slope)

    def extra_repr(self) -> str:
        """The parameters, shown by print(module)."""
        return f"keep={_shown(self.keep)}, slope={self.slope}"

    def forward(self, current: Tensor, membrane: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        """One timestep: (membrane', (membrane',))."""
        if self.tensor_valued:
            check_param_shapes(self, ("keep",), current)
        if torch.compiler.is_exporting() and self.tensor_valued:
            updated = torch.ops.primec.integrator_tensor(current, membrane, self.keep, self.slope)
        elif torch.compiler.is_exporting():
            updated = torch.ops.primec.integrator(current, membrane, self.keep, self.slope)
        else:
            updated = F.integrator_membrane(current, membrane, self.keep, self.slope)
        return updated, (updated,)
