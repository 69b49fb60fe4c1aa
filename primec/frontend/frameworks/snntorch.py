"""snnTorch neurons -> primec neurons (snnTorch 1.0 semantics, `snntorch._neurons`).

Leaky:    reset = (U > threshold); U' = beta*U + I - reset*threshold    (subtract)
                                   U' = beta*(U*(1-reset)) + I          (zero)
                                   U' = beta*U + I                      (none)
Synaptic: syn' = alpha*syn + I; U' = beta*U + syn' - reset*threshold   (subtract)
                                U' = (beta*U + syn')*(1-reset)          (zero)
spike = U' > threshold. The reset comes from the previous membrane, which is the previous
step's spike: primec's `lif` with `strict` firing and the reset timings below, each in
snnTorch's order of floating-point operations. beta and alpha are clamped to [0, 1] as
snnTorch does.

reset_delay=False resets the membrane in the step it fires (U' <- U'*(1 - s) for zero); the
next step's reset, from that membrane, is then always 0 (it is 0 or at most the threshold), so
Leaky's next charge is beta*(U'*(1 - s)) + I: the zero reset's step above, the same spikes
(Synaptic's: beta*(U'*(1 - s)) + syn', its zero reset moved before the leak).
Only the membrane snnTorch reports differs (after its reset, where primec keeps it before),
so the membrane readout of such an output layer is refused. With reset "none" the option does
nothing. The subtract reset with reset_delay=False keeps the membrane after its reset and
subtracts again while it stays above the threshold:
    r = U > threshold; H = beta*U + I - r*threshold; s = H > threshold; U' = H - (s - r)*threshold
which is primec's reset_timing=at_once (the membrane it keeps is snnTorch's, so the membrane
readout is exact too).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from primec.frontend.frameworks.common import least, param, positive, refuse_unless, scalar
from primec.nn import LIF, Integrator

RESETS = {0: "subtract", 1: "zero", 2: "none"}
# snnTorch applies the reset before the leak for zero (Leaky), to the charged membrane otherwise.
LEAKY_TIMING = {"subtract": "after_input", "zero": "before_leak", "none": "before_leak"}


def _common(module: Any) -> tuple[float | Tensor, str]:
    """Threshold and reset of a snnTorch neuron, refusing the options primec does not model."""
    refuse_unless(not module.inhibition, "inhibition", module.inhibition, "only False")
    refuse_unless(not module.state_quant, "state_quant", module.state_quant, "only False")
    gsf = scalar(module, "graded_spikes_factor")
    refuse_unless(gsf == 1.0, "graded_spikes_factor", gsf, "only 1.0: spikes are 0 or 1")
    threshold = param(module, "threshold")
    refuse_unless(positive(threshold), "threshold", least(threshold), "only positive thresholds")
    mechanism = int(module.reset_mechanism_val)
    refuse_unless(mechanism in RESETS, "reset_mechanism_val", mechanism, "0, 1 or 2")
    return threshold, RESETS[mechanism]


def _clamped(module: Any, name: str) -> float | Tensor:
    """beta or alpha clamped to [0, 1] as snnTorch clamps it: per channel or per neuron where
    the parameter is a tensor of several values (learn_beta, a per-channel initial value)."""
    value = param(module, name)
    if isinstance(value, Tensor):
        return value.clamp(0.0, 1.0)
    return min(max(value, 0.0), 1.0)


def leaky(module: Any, path: str) -> nn.Module:
    """snnTorch Leaky -> primec LIF."""
    threshold, reset = _common(module)
    if not module.reset_delay and reset == "subtract":
        return LIF(_clamped(module, "beta"), threshold, True, reset, "at_once")
    neuron = LIF(_clamped(module, "beta"), threshold, True, reset, LEAKY_TIMING[reset])
    # snnTorch reports the membrane after its reset, primec's lif keeps it before.
    neuron.membrane_after_reset = not module.reset_delay and reset == "zero"
    return neuron


def synaptic(module: Any, path: str) -> nn.Module:
    """snnTorch Synaptic -> the synaptic current as an integrator, then a LIF on it."""
    threshold, reset = _common(module)
    at_once = not module.reset_delay and reset == "zero"
    # Synaptic's zero reset zeroes the charged membrane (after_input); reset at once, the next
    # charge is beta*(U'*(1 - s)) + syn' (before_leak). The subtract reset at once is primec's
    # at_once timing, as Leaky's.
    timing = "before_leak" if reset == "none" or at_once else "after_input"
    if not module.reset_delay and reset == "subtract":
        timing = "at_once"
    neuron = LIF(_clamped(module, "beta"), threshold, True, reset, timing)
    neuron.membrane_after_reset = at_once
    return nn.Sequential(Integrator(_clamped(module, "alpha")), neuron)


NEURONS = {"Leaky": leaky, "Synaptic": synaptic}
