"""Norse cells -> primec neurons (Norse 1.1 semantics, `norse.torch.functional.lif*`).

With b = dt*tau_mem_inv and a = dt*tau_syn_inv, one step of

  LIFCell:    i_new = i + I; v_d = v + b*((v_leak - v) + i_new); i' = i_new - a*i_new
  LIFBoxCell:                v_d = v + b*(I + v_leak - v)
  LICell:     i_new = i + I; v' = v + b*((v_leak - v) + i_new); i' = i_new - a*i_new (no spikes)
  both:       z = v_d > v_th; v' = (1 - z)*v_d + z*v_reset   (reset_subtract: v_d - z*v_th)

is, with the state kept before the reset as primec does: the synaptic current i_new as an
integrator (keep 1 - a), then a `lif` with keep 1 - b, input_gain b, reset to v_reset before
the leak and strict firing, its membrane counted from v_leak (where Norse starts it; see
`_membrane`). Norse's own order of operations rounds differently; in real
arithmetic the two are the same (docs/from-frameworks.md bounds the difference). LICell is
the current as an integrator, the input scaled by b (a digital multiply), then an integrator
with keep 1 - b: v' = (1 - b)*v + b*i_new; its output is its membrane (the readout
`membrane_mean`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from primec.frontend.frameworks.common import (
    ElementwiseScale,
    least,
    param,
    positive,
    refuse_unless,
    scalar,
)
from primec.nn import LIF, Integrator


def _membrane(module: Any, reset: str) -> LIF:
    """The membrane of a LIFCell or LIFBoxCell, counted from v_leak: Norse starts it at v_leak
    and leaks it towards v_leak, so W = v - v_leak starts at 0 and leaks towards 0, fires at
    W > v_th - v_leak and resets to v_reset - v_leak (exact in real arithmetic; the membrane
    primec keeps is Norse's minus v_leak). Each parameter may be per neuron (a tensor)."""
    p = module.p
    refuse_unless(p.method != "adjoint", "p.method", p.method, "the forward-mode methods")
    b = float(module.dt) * param(p, "tau_mem_inv")
    in_range = bool(((torch.as_tensor(b) > 0) & (torch.as_tensor(b) <= 1)).all())
    refuse_unless(in_range, "dt*tau_mem_inv", least(b), "0 < dt/tau_mem <= 1")
    v_leak, v_reset, v_th = (param(p, name) for name in ("v_leak", "v_reset", "v_th"))
    threshold = v_th - v_leak
    refuse_unless(positive(threshold), "p.v_th", least(v_th), "only above v_leak")
    shifted = bool((torch.as_tensor(v_leak) != 0).any())
    refuse_unless(
        reset == "zero" or not shifted,
        "p.v_leak",
        least(v_leak),
        "0.0 with reset_subtract (it subtracts v_th from a membrane counted from 0)",
    )
    neuron = LIF(
        1.0 - b, threshold, True, reset, "before_leak", v_reset=v_reset - v_leak, input_gain=b
    )
    neuron.membrane_shift = v_leak
    return neuron


def lif_cell(module: Any, path: str) -> nn.Module:
    """Norse LIFCell -> the synaptic current as an integrator, then a LIF on it."""
    a = float(module.dt) * scalar(module.p, "tau_syn_inv")
    refuse_unless(0.0 <= a <= 1.0, "dt*tau_syn_inv", a, "0 <= dt/tau_syn <= 1")
    return nn.Sequential(Integrator(1.0 - a), _membrane(module, "zero"))


def lif_box_cell(module: Any, path: str) -> nn.Module:
    """Norse LIFBoxCell (no synaptic current) -> a LIF."""
    method = getattr(module.p.reset_method, "__name__", repr(module.p.reset_method))
    resets = {"reset_value": "zero", "reset_subtract": "subtract"}
    refuse_unless(method in resets, "p.reset_method", method, "reset_value or reset_subtract")
    return _membrane(module, resets[method])


def li_cell(module: Any, path: str) -> nn.Module:
    """Norse LICell (a leaky integrator with a synaptic current) -> integrator, scale, integrator."""
    p = module.p
    a = float(module.dt) * scalar(p, "tau_syn_inv")
    b = float(module.dt) * scalar(p, "tau_mem_inv")
    refuse_unless(0.0 <= a <= 1.0, "dt*tau_syn_inv", a, "0 <= dt/tau_syn <= 1")
    refuse_unless(0.0 < b <= 1.0, "dt*tau_mem_inv", b, "0 < dt/tau_mem <= 1")
    v_leak = scalar(p, "v_leak")
    refuse_unless(v_leak == 0.0, "p.v_leak", v_leak, "0.0: Norse starts the membrane at v_leak")
    return nn.Sequential(Integrator(1.0 - a), ElementwiseScale(np.array([b])), Integrator(1.0 - b))


NEURONS = {"LIFCell": lif_cell, "LIFBoxCell": lif_box_cell, "LICell": li_cell}
