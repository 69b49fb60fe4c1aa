"""SpikingJelly neurons and layers -> primec (SpikingJelly 2.0 semantics, `_ops/lif/reference.py`).

A SpikingJelly node keeps the membrane after its reset, V; primec's `lif` keeps the charged
membrane H before it and applies the reset at the next step (reset_timing=before_leak), which
gives the same spikes:

  LIFNode: H' = V + (X - (V - v_reset))/tau  (decay_input)    keep = 1 - 1/tau, input_gain = 1/tau
           H' = V - (V - v_reset)/tau + X    (no decay_input) keep = 1 - 1/tau
  IFNode:  H' = V + X                                          keep = 1
  spike = H' >= v_threshold (strict=False)
  V = H*(1-s) + v_reset*s (hard reset, reset=zero); V = H - v_threshold*s (v_reset=None: subtract)

A hard reset to v_reset != 0 starts the membrane at v_reset too. Counted from v_reset
(W = V - v_reset) the same neuron starts at 0, resets to 0, leaks towards 0 and fires at
W >= v_threshold - v_reset: primec's LIF with that threshold (exact in real arithmetic; the
membrane primec keeps is SpikingJelly's minus v_reset, so its membrane readout is refused).

In real arithmetic primec's form (keep*V + input_gain*X) is SpikingJelly's; the roundings differ,
by at most one unit in the last place of each step (docs/from-frameworks.md). Single- and
multi-step mode compute the same step. SpikingJelly's layer wrappers (`layer.Conv2d`, ...)
become the torch layers they extend.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from primec.frontend.frameworks.common import refuse_unless
from primec.nn import LIF

LAYERS = ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "Dropout")


def _threshold_and_reset(module: Any) -> tuple[float, str, float]:
    """(threshold, reset, shift): a hard reset to v_reset != 0 is the membrane counted from
    v_reset (it starts there and resets there), so the threshold moves by -v_reset."""
    threshold = float(module.v_threshold)
    v_reset = module.v_reset
    shift = 0.0 if v_reset is None else float(v_reset)
    refuse_unless(
        threshold - shift > 0,
        "v_threshold",
        threshold,
        f"only above v_reset ({shift}): the neuron must be able to fire",
    )
    return threshold - shift, "subtract" if v_reset is None else "zero", shift


def _shifted(neuron: LIF, shift: float) -> LIF:
    """The neuron, remembering that its membrane is the framework's minus `shift`."""
    neuron.membrane_shift = shift
    return neuron


def lif_node(module: Any, path: str) -> nn.Module:
    """SpikingJelly LIFNode -> primec LIF with >= firing."""
    threshold, reset, shift = _threshold_and_reset(module)
    tau = float(module.tau)
    refuse_unless(tau >= 1.0, "tau", tau, "tau >= 1: the membrane keeps 1 - 1/tau per step")
    gain = 1.0 / tau if module.decay_input else 1.0
    neuron = LIF(1.0 - 1.0 / tau, threshold, False, reset, "before_leak", input_gain=gain)
    return _shifted(neuron, shift)


def if_node(module: Any, path: str) -> nn.Module:
    """SpikingJelly IFNode -> primec LIF that keeps its whole membrane, >= firing."""
    threshold, reset, shift = _threshold_and_reset(module)
    return _shifted(LIF(1.0, threshold, False, reset, "before_leak"), shift)


def torch_layer(module: nn.Module, path: str) -> nn.Module:
    """A SpikingJelly layer wrapper as the torch layer it extends (same weights, same forward
    for one step); the wrapper adds only its step mode."""
    base = next(c for c in type(module).__mro__ if c.__module__.startswith("torch.nn"))
    plain = base.__new__(base)
    plain.__dict__.update(copy.deepcopy(module).__dict__)
    return plain


NEURONS = {"LIFNode": lif_node, "IFNode": if_node, **dict.fromkeys(LAYERS, torch_layer)}
