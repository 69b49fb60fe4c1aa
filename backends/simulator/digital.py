"""The digital periphery: scale steps, reshapes, pooling, affine, neurons and readouts, each
in the model's order of floating-point operations (`docs/simulator.md`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from primec.backends.isa import (
    Affine,
    Binary,
    Integrate,
    LeakyRelu,
    Lif,
    Pool,
    ReadoutExp,
    ReadoutMean,
    Reshape,
    Sample,
    Scale,
)
from primec.backends.simulator.grid import exact_product
from primec.backends.simulator.sampler import draw_latents


class DigitalPeriphery:
    """The Simulator's digital side: one method per digital instruction."""

    program: Any
    accumulators: set[int]
    own_states: set[int]
    sample_ids: Any  # the batch's sample indices in the data set (the sampler's key)

    def scale(self, i: int, ins: Scale, env: Any, counts: dict) -> None:
        value = env[ins.src]
        factors = exact_product(ins.factors)
        # An accumulator is read by its layer's Scale alone, so it can be scaled in place.
        if ins.src in self.accumulators and factors:
            value.mul_(factors[0])
            factors = factors[1:]
        for factor in factors:
            value = value * factor
        env[ins.dst] = value
        counts["digital_multiplies"] += value[0].numel() * len(ins.factors)

    def reshape(self, i: int, ins: Reshape, env: Any, counts: dict) -> None:
        src = env[ins.src]
        env[ins.dst] = src.reshape(src.shape[0], *ins.shape)

    def pool(self, i: int, ins: Pool, env: Any, counts: dict) -> None:
        env[ins.dst] = _pool(env[ins.src], ins)
        (kh, kw) = ins.kernel
        counts["digital_adds"] += env[ins.dst][0].numel() * (kh * kw - 1)

    def affine(self, i: int, ins: Affine, env: Any, counts: dict) -> None:
        x = env[ins.src]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = (self.periphery[name].reshape(shape) for name in (ins.scale, ins.shift))
        env[ins.dst] = x * scale + shift
        counts["digital_multiplies"] += x[0].numel()
        counts["digital_adds"] += x[0].numel()

    def binary(self, i: int, ins: Binary, env: Any, counts: dict) -> None:
        a, b = env[ins.a], env[ins.b]
        env[ins.dst] = a + b if ins.kind == "add" else a * b
        counts["digital_adds" if ins.kind == "add" else "digital_multiplies"] += a[0].numel()

    def leaky_relu(self, i: int, ins: LeakyRelu, env: Any, counts: dict) -> None:
        env[ins.dst] = _leaky(env[ins.src], ins.slope)

    def neuron_params(self, index: int) -> dict[str, Any]:
        """Neuron record `index` with each per-channel or per-neuron parameter (a record field
        naming a tensor of the program) as a float64 tensor on the device; cached."""
        cache = self.__dict__.setdefault("_neuron_params", {})
        if index not in cache:
            record = self.program.neurons[index]
            cache[index] = {
                k: self._tensor(self.program.tensors[v])
                if k in PARAMS and isinstance(v, str)
                else v
                for k, v in record.items()
            }
        return cache[index]

    def lif(self, i: int, ins: Lif, env: Any, counts: dict) -> None:
        p = self.neuron_params(ins.params)
        in_place = i in self.own_states
        s = env[ins.spike]
        if p["reset_timing"] == "at_once":
            u, spikes = _at_once(p, env[ins.membrane], env[ins.current])
            env[ins.membrane_out], env[ins.spike_out] = u, spikes
            counts["neuron_updates"] += u[0].numel()
            return
        u = _membrane(p, env[ins.membrane], s, env[ins.current], in_place)
        if p["slope"] != 1.0:
            F.leaky_relu_(u, p["slope"])
        spikes = s if in_place else torch.empty_like(u)
        (torch.gt if p["strict"] else torch.ge)(u, p["threshold"], out=spikes)
        env[ins.membrane_out], env[ins.spike_out] = u, spikes
        counts["neuron_updates"] += u[0].numel()

    def integrate(self, i: int, ins: Integrate, env: Any, counts: dict) -> None:
        p = self.neuron_params(ins.params)
        u, current = env[ins.membrane], env[ins.current]
        # keep x U is U exactly when keep is 1 (the usual integrator): skip the multiply.
        u = u + current if _is(p["keep"], 1.0) else p["keep"] * u + current
        env[ins.membrane_out] = F.leaky_relu_(u, p["slope"]) if p["slope"] != 1.0 else u
        counts["neuron_updates"] += u[0].numel()

    def readout_mean(self, i: int, ins: ReadoutMean, env: Any, counts: dict) -> None:
        total, count = env[ins.sum] + env[ins.x], env[ins.count] + 1.0
        env[ins.sum_out], env[ins.count_out] = total, count
        env[ins.mean] = total / count.reshape((-1,) + (1,) * (total.dim() - 1))
        counts["digital_adds"] += total[0].numel()

    def readout_exp(self, i: int, ins: ReadoutExp, env: Any, counts: dict) -> None:
        acc = ins.decay * env[ins.acc] + env[ins.x]
        env[ins.acc_out], env[ins.y] = acc, torch.tanh(acc)
        counts["digital_adds"] += acc[0].numel()
        counts["digital_multiplies"] += acc[0].numel()

    def sample(self, i: int, ins: Sample, env: Any, counts: dict) -> None:
        q, step = env[ins.q], env[ins.step]
        env[ins.z], env[ins.step_out] = draw_latents(q, step, ins.k, ins.seed, self.sample_ids)
        counts["digital_adds"] += env[ins.z][0].numel()  # one draw and selection per latent


def _membrane(
    p: dict[str, Any], u: torch.Tensor, s: torch.Tensor, current: torch.Tensor, in_place: bool
) -> torch.Tensor:
    """The LIF membrane before its LeakyReLU, in the model's operation order.

    A new tensor, or U itself updated when `in_place`.
    """
    keep, threshold = p["keep"], p["threshold"]
    if VARIANTS & p.keys() or p["reset_timing"] == "after_input":
        return _variant_membrane(p, u, s, current)
    if p["reset"] == "zero":
        # keep (U (1 - s)) and (keep U) - (keep U) s are both keep U or 0 exactly (s is 0 or 1),
        # so the one rounding is on adding the current, where the model rounds.
        kept = u.mul_(keep) if in_place else u * keep
        return kept.addcmul_(kept, s, value=-1.0).add_(current)
    if p["reset"] == "none":
        return keep * u + current
    if p["reset_timing"] == "before_leak":
        return keep * (u - threshold * s) + current
    return keep * u - threshold * s + current


VARIANTS = frozenset(("v_reset", "v_leak", "input_gain"))
PARAMS = frozenset(("keep", "threshold", *VARIANTS))  # one number, or a tensor's name


def _is(value: Any, number: float) -> bool:
    """Whether a parameter is the one number `number` (a tensor takes the general path)."""
    return not isinstance(value, torch.Tensor) and value == number


def _variant_membrane(
    p: dict[str, Any], u: torch.Tensor, s: torch.Tensor, current: torch.Tensor
) -> torch.Tensor:
    """The LIF membrane with the IR's optional variants, in the interpreter's operation order."""
    keep, threshold, kind = p["keep"], p["threshold"], p["reset"]
    v_reset, v_leak, gain = p.get("v_reset", 0.0), p.get("v_leak", 0.0), p.get("input_gain", 1.0)

    def reset(x: torch.Tensor) -> torch.Tensor:
        if kind == "zero":
            return x * (1.0 - s) if _is(v_reset, 0.0) else x * (1.0 - s) + v_reset * s
        return x - threshold * s if kind == "subtract" else x

    def leak(x: torch.Tensor) -> torch.Tensor:
        return keep * x if _is(v_leak, 0.0) else v_leak + keep * (x - v_leak)

    drive = current if _is(gain, 1.0) else gain * current
    if p["reset_timing"] == "before_leak":
        return leak(reset(u)) + drive
    if p["reset_timing"] == "after_leak":
        return reset(leak(u)) + drive
    return reset(leak(u) + drive)


def _at_once(
    p: dict[str, Any], u: torch.Tensor, current: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """reset_timing=at_once (snnTorch reset_delay=False, subtract): U is the membrane after
    its reset; r = fire(U); H = (leak(U) + I) - threshold*r; s' = fire(H);
    U' = LeakyReLU(H - (s' - r)*threshold), in snnTorch's order of operations."""
    keep, threshold, v_leak = p["keep"], p["threshold"], p.get("v_leak", 0.0)
    fire = torch.gt if p["strict"] else torch.ge
    gain = p.get("input_gain", 1.0)
    drive = current if _is(gain, 1.0) else gain * current
    leaked = keep * u if _is(v_leak, 0.0) else v_leak + keep * (u - v_leak)
    still = fire(u, threshold).to(u.dtype)
    charged = (leaked + drive) - threshold * still
    spikes = fire(charged, threshold).to(u.dtype)
    return _leaky(charged - (spikes - still) * threshold, p["slope"]), spikes


def _leaky(x: torch.Tensor, slope: float) -> torch.Tensor:
    return x if slope == 1.0 else F.leaky_relu(x, slope)


def _pool(x: torch.Tensor, ins: Pool) -> torch.Tensor:
    """Pooling as a sum (or max) of strided views in window order, which is how torch's pools
    sum too (bitwise the same) but faster for the small windows of SNNs."""
    (kh, kw), (sh, sw), (ph, pw) = ins.kernel, ins.stride, ins.padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=-math.inf if ins.kind == "max" else 0.0)
    height, width = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    views = [
        x[:, :, p : p + (height - 1) * sh + 1 : sh, q : q + (width - 1) * sw + 1 : sw]
        for p in range(kh)
        for q in range(kw)
    ]
    if ins.kind == "max":
        return torch.stack(views).amax(dim=0)
    total = views[0].clone() if len(views) == 1 else views[0] + views[1]
    for view in views[2:]:
        total += view
    return total / (kh * kw) if ins.kind == "avg" else total
