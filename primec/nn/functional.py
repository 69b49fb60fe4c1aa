"""The math of primec.nn's neurons, supermask and readouts, written once, plus `torch.ops.primec.*`.

Eager code calls the math directly, with a surrogate gradient for spikes and a straight-through
gradient for the supermask. Under `torch.export` the modules call the `primec::` ops instead, so
an exported step keeps every neuron, mask and readout as one node whose arguments are its
parameters; those ops run the same math. Every equation is the one of the IR op of the same name
(`primec/core/ops.py`), in the same order of floating-point operations.
"""

from __future__ import annotations

import torch
from torch import Tensor

RESETS = ("zero", "subtract", "none")
RESET_TIMINGS = ("before_leak", "after_leak", "after_input", "at_once")


class SurrogateSpike(torch.autograd.Function):
    """Heaviside step forward; fast-sigmoid derivative 1 / (1 + sharpness*|v|)^2 backward."""

    @staticmethod
    def forward(ctx, v: Tensor, strict: bool, sharpness: float) -> Tensor:
        """Spikes where v crosses zero."""
        ctx.save_for_backward(v)
        ctx.sharpness = sharpness
        return (v > 0 if strict else v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        """The surrogate derivative times the incoming gradient."""
        (v,) = ctx.saved_tensors
        return grad / (1.0 + ctx.sharpness * v.abs()) ** 2, None, None


class StraightThroughMask(torch.autograd.Function):
    """The supermask forward; the gradient of the mask passes unchanged to the scores."""

    @staticmethod
    def forward(ctx, magnitude: Tensor, sparsity: float) -> Tensor:
        """The 0/1 mask of kept synapses."""
        return keep_mask(magnitude, sparsity).to(magnitude.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        """The gradient of the mask, unchanged, for the scores."""
        return grad, None


def fire(membrane: Tensor, threshold: float, strict: bool, sharpness: float = 25.0) -> Tensor:
    """Spikes (1.0 or 0.0) where the membrane crosses the threshold; surrogate gradient if needed."""
    if torch.is_grad_enabled() and membrane.requires_grad:
        return SurrogateSpike.apply(membrane - threshold, strict, sharpness)
    return (membrane > threshold if strict else membrane >= threshold).to(membrane.dtype)


def equals(value: float | Tensor, number: float) -> bool:
    """Whether a parameter is the one number `number`; a tensor-valued parameter (per channel
    or per neuron) never is, and takes the general path, which is the same arithmetic."""
    return not isinstance(value, Tensor) and value == number


def leaky(x: Tensor, slope: float) -> Tensor:
    """LeakyReLU with `slope` for negative values (1.0: the identity), as the IR defines it."""
    return x if slope == 1.0 else torch.where(x >= 0, x, slope * x)


def reset(
    membrane: Tensor, spike: Tensor, kind: str, threshold: float, v_reset: float = 0.0
) -> Tensor:
    """The membrane after the reset caused by the previous step's spike."""
    if kind == "zero":
        zeroed = membrane * (1.0 - spike)
        return zeroed if equals(v_reset, 0.0) else zeroed + v_reset * spike
    if kind == "subtract":
        return membrane - threshold * spike
    return membrane


def leak(membrane: Tensor, keep: float, v_leak: float = 0.0) -> Tensor:
    """keep*U, or v_leak + keep*(U - v_leak) when the membrane leaks towards v_leak."""
    return keep * membrane if equals(v_leak, 0.0) else v_leak + keep * (membrane - v_leak)


def lif_membrane(
    current: Tensor,
    membrane: Tensor,
    spike: Tensor,
    keep: float,
    threshold: float,
    reset_kind: str,
    reset_timing: str,
    slope: float,
    variant: tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> Tensor:
    """One LIF membrane update: reset, leak (either order), integrate, LeakyReLU.

    `variant` is (v_reset, v_leak, input_gain), the IR's optional `lif` attributes.
    """
    v_reset, v_leak, gain = variant
    drive = current if equals(gain, 1.0) else gain * current
    if reset_timing == "before_leak":
        updated = leak(reset(membrane, spike, reset_kind, threshold, v_reset), keep, v_leak) + drive
    elif reset_timing == "after_leak":
        updated = reset(leak(membrane, keep, v_leak), spike, reset_kind, threshold, v_reset) + drive
    else:
        updated = reset(leak(membrane, keep, v_leak) + drive, spike, reset_kind, threshold, v_reset)
    return leaky(updated, slope)


def lif_at_once(
    current: Tensor,
    membrane: Tensor,
    keep: float | Tensor,
    threshold: float | Tensor,
    strict: bool,
    slope: float,
    variant: tuple = (0.0, 0.0, 1.0),
    sharpness: float = 25.0,
) -> tuple[Tensor, Tensor]:
    """One LIF step that resets by subtraction in the step it fires (reset_timing=at_once,
    snnTorch's reset_delay=False): the membrane kept is the one after the reset, and a membrane
    still above the threshold is subtracted from again. Returns (spikes, membrane')."""
    _, v_leak, gain = variant
    still = fire(membrane, threshold, strict).detach()
    drive = current if equals(gain, 1.0) else gain * current
    charged = (leak(membrane, keep, v_leak) + drive) - threshold * still
    fired = fire(charged, threshold, strict, sharpness)
    return fired, leaky(charged - (fired - still) * threshold, slope)


def integrator_membrane(current: Tensor, membrane: Tensor, keep: float, slope: float) -> Tensor:
    """One non-spiking integrator update: U' = LeakyReLU(keep*U + I)."""
    return leaky(keep * membrane + current, slope)


def keep_mask(scores: Tensor, sparsity: float) -> Tensor:
    """PRIME's kept synapses: |s| >= the k-th smallest |s|, k = 1 + round(sparsity*(n-1))."""
    magnitude = scores.abs()
    k = 1 + round(sparsity * (int(magnitude.numel()) - 1))
    return magnitude >= torch.kthvalue(magnitude.flatten(), k).values


def masked_weight(weight: Tensor, scores: Tensor, sparsity: float, gain: float) -> Tensor:
    """The effective weight W * gain * mask, straight-through to the scores when training."""
    if torch.is_grad_enabled() and scores.requires_grad:
        mask = StraightThroughMask.apply(scores.abs(), sparsity)
    else:
        mask = keep_mask(scores, sparsity).to(weight.dtype)
    return weight * gain * mask


def mean_update(x: Tensor, total: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Running mean over timesteps: (sum'/count', sum', count'); count is [B, 1]."""
    total, count = total + x, count + 1.0
    return total / count.reshape((-1,) + (1,) * (x.dim() - 1)), total, count


def exp_tanh_update(x: Tensor, acc: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """Exponentially weighted sum then tanh: (tanh(acc'), acc'), acc' = decay*acc + x."""
    acc = decay * acc + x
    return torch.tanh(acc), acc


@torch.library.custom_op("primec::lif", mutates_args=())
def lif_op(
    current: Tensor,
    membrane: Tensor,
    spike: Tensor,
    keep: float,
    threshold: float,
    strict: bool,
    reset: str,
    reset_timing: str,
    slope: float,
) -> tuple[Tensor, Tensor]:
    """One LIF step as a single op: (spike', membrane')."""
    updated = lif_membrane(current, membrane, spike, keep, threshold, reset, reset_timing, slope)
    return fire(updated, threshold, strict), updated.clone()


@torch.library.custom_op("primec::lif_general", mutates_args=())
def lif_general_op(
    current: Tensor,
    membrane: Tensor,
    spike: Tensor,
    keep: float,
    threshold: float,
    strict: bool,
    reset: str,
    reset_timing: str,
    slope: float,
    v_reset: float,
    v_leak: float,
    input_gain: float,
) -> tuple[Tensor, Tensor]:
    """One LIF step with the optional variants (v_reset, v_leak, input_gain) as a single op."""
    variant = (v_reset, v_leak, input_gain)
    if reset_timing == "at_once":
        fired, updated = lif_at_once(current, membrane, keep, threshold, strict, slope, variant)
        return fired, updated.clone()
    params = (keep, threshold, reset, reset_timing, slope, variant)
    updated = lif_membrane(current, membrane, spike, *params)
    return fire(updated, threshold, strict), updated.clone()


@torch.library.custom_op("primec::integrator", mutates_args=())
def integrator_op(current: Tensor, membrane: Tensor, keep: float, slope: float) -> Tensor:
    """One non-spiking integrator step as a single op: membrane'."""
    return integrator_membrane(current, membrane, keep, slope).clone()


@torch.library.custom_op("primec::supermask", mutates_args=())
def supermask_op(weight: Tensor, scores: Tensor, sparsity: float, gain: float) -> Tensor:
    """The effective weight of a supermask layer as a single op."""
    return weight * gain * keep_mask(scores, sparsity).to(weight.dtype)


@torch.library.custom_op("primec::readout_mean", mutates_args=())
def readout_mean_op(x: Tensor, total: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the running-mean readout as a single op: (mean, sum', count')."""
    return mean_update(x, total, count)


@torch.library.custom_op("primec::readout_exp_tanh", mutates_args=())
def readout_exp_tanh_op(x: Tensor, acc: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """One step of the exponential readout as a single op: (tanh(acc'), acc')."""
    return exp_tanh_update(x, acc, decay)


@torch.library.custom_op("primec::lif_tensor", mutates_args=())
def lif_tensor_op(
    current: Tensor,
    membrane: Tensor,
    spike: Tensor,
    keep: Tensor,
    threshold: Tensor,
    v_reset: Tensor,
    v_leak: Tensor,
    input_gain: Tensor,
    strict: bool,
    reset: str,
    reset_timing: str,
    slope: float,
) -> tuple[Tensor, Tensor]:
    """One LIF step whose parameters are tensors (per channel or per neuron) as a single op."""
    if reset_timing == "at_once":
        variant = (v_reset, v_leak, input_gain)
        fired, updated = lif_at_once(current, membrane, keep, threshold, strict, slope, variant)
        return fired, updated.clone()
    params = (keep, threshold, reset, reset_timing, slope, (v_reset, v_leak, input_gain))
    updated = lif_membrane(current, membrane, spike, *params)
    return fire(updated, threshold, strict), updated.clone()


@torch.library.custom_op("primec::integrator_tensor", mutates_args=())
def integrator_tensor_op(current: Tensor, membrane: Tensor, keep: Tensor, slope: float) -> Tensor:
    """One non-spiking integrator step with a per-channel or per-neuron keep, as a single op."""
    return integrator_membrane(current, membrane, keep, slope).clone()


@lif_tensor_op.register_fake
def _lif_tensor_fake(current, *args):
    return torch.empty_like(current), torch.empty_like(current)


@integrator_tensor_op.register_fake
def _integrator_tensor_fake(current, *args):
    return torch.empty_like(current)


@lif_op.register_fake
def _lif_fake(current, membrane, spike, keep, threshold, strict, reset, reset_timing, slope):
    return torch.empty_like(current), torch.empty_like(current)


@lif_general_op.register_fake
def _lif_general_fake(current, *args):
    return torch.empty_like(current), torch.empty_like(current)


@integrator_op.register_fake
def _integrator_fake(current, membrane, keep, slope):
    return torch.empty_like(current)


@supermask_op.register_fake
def _supermask_fake(weight, scores, sparsity, gain):
    return torch.empty_like(weight)


@readout_mean_op.register_fake
def _readout_mean_fake(x, total, count):
    return torch.empty_like(x), torch.empty_like(x), torch.empty_like(count)


@readout_exp_tanh_op.register_fake
def _readout_exp_tanh_fake(x, acc, decay):
    return torch.empty_like(x), torch.empty_like(x)
