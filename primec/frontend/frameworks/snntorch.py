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
"""

from __future__ import annotations

from typing import Any

from torch import nn

from primec.frontend.frameworks.common import refuse_unless, scalar
from primec.nn import LIF, Integrator

RESETS = {0: "subtract", 1: "zero", 2: "none"}
# snnTorch applies the reset before the leak for zero (Leaky), to the charged membrane otherwise.
LEAKY_TIMING = {"subtract": "after_input", "zero": "before_leak", "none": "before_leak"}


def _common(module: Any) -> tuple[float, str]:
    """Threshold and reset of a snnTorch neuron, refusing the options primec does not model."""
    refuse_unless(module.reset_delay, "reset_delay", module.reset_delay, "only True, the default")
    refuse_unless(not module.inhibition, "inhibition", module.inhibition, "only False")
    refuse_unless(not module.state_quant, "state_quant", module.state_quant, "only False")
    gsf = scalar(module, "graded_spikes_factor")
    refuse_unless(gsf == 1.0, "graded_spikes_factor", gsf, "only 1.0: spikes are 0 or 1")
    threshold = scalar(module, "threshold")
    refuse_unless(threshold > 0, "threshold", threshold, "only positive thresholds")
    mechanism = int(module.reset_mechanism_val)
    refuse_unless(mechanism in RESETS, "reset_mechanism_val", mechanism, "0, 1 or 2")
    return threshold, RESETS[mechanism]


def _clamped(module: Any, name: str) -> float:
    return min(max(scalar(module, name), 0.0), 1.0)


def leaky(module: Any, path: str) -> nn.Module:
    """snnTorch Leaky -> primec LIF."""
    threshold, reset = _common(module)
    return LIF(_clamped(module, "beta"), threshold, True, reset, LEAKY_TIMING[reset])


def synaptic(module: Any, path: str) -> nn.Module:
    """snnTorch Synaptic -> the synaptic current as an integrator, then a LIF on it."""
    threshold, reset = _common(module)
    timing = "before_leak" if reset == "none" else "after_input"
    return nn.Sequential(
        Integrator(_clamped(module, "alpha")),
        LIF(_clamped(module, "beta"), threshold, True, reset, timing),
    )


NEURONS = {"Leaky": leaky, "Synaptic": synaptic}
