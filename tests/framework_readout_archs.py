"""Models read out by the membrane of their output layer (`readout: membrane_mean`), for
`--arch tests/framework_readout_archs.py:NAME`: the snnTorch tutorial's Leaky network (its
output layer has `output=True`) and the Norse network with an `LICell` output layer."""

from __future__ import annotations

import framework_archs as fa
from torch import nn

PRIMEC_STEP = {**fa.PRIMEC_STEP, "readout": "membrane_mean"}


def snntorch_leaky_membrane() -> nn.Sequential:
    """snnTorch Leaky network, subtract reset, read out by the output layer's membrane."""
    return fa.snntorch_leaky()


def snntorch_leaky_zero_membrane() -> nn.Sequential:
    """The same with reset to zero."""
    return fa.snntorch_leaky_zero()


def snntorch_subtract_no_delay_membrane() -> nn.Sequential:
    """Subtract reset at once (reset_delay=False): snnTorch reports the membrane after it."""
    return fa.snntorch_subtract_no_delay()


def norse_li() -> nn.Module:
    """Norse LIFCell network whose output layer is an LICell (a leaky integrator)."""
    import norse.torch as norse

    net = fa.norse_lif()
    return norse.SequentialState(*list(net)[:-1], norse.LICell())
