"""Readouts over time: what the network answers after each timestep.

A readout is the last stateful module of a network; its output at step t is the network's
answer after t steps (the running mean of PRIME's classifier, the exponentially weighted sum of
the FSVAE decoder), which is what an early-exit controller looks at.
"""

from __future__ import annotations

import torch
from torch import Tensor

from primec.nn import functional as F
from primec.nn.neurons import Stateful


class MeanReadout(Stateful):
    """Running mean of the input over the timesteps so far (the IR's `readout_mean`)."""

    state_names = ("sum", "count")
    kind = "mean"

    def zero_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Zero sum shaped like `x`, zero count [B, 1]."""
        return torch.zeros_like(x), x.new_zeros((x.shape[0], 1))

    def forward(
        self, x: Tensor, total: Tensor, count: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One timestep: (mean, (sum', count'))."""
        if torch.compiler.is_exporting():
            mean, total, count = torch.ops.primec.readout_mean(x, total, count)
        else:
            mean, total, count = F.mean_update(x, total, count)
        return mean, (total, count)


class ExpTanhReadout(Stateful):
    """tanh of the exponentially weighted sum, decay^(T-1-t) (the IR's `readout_exp_tanh`)."""

    state_names = ("acc",)
    kind = "exp_tanh"

    def __init__(self, decay: float = 0.8) -> None:
        super().__init__()
        self.decay = float(decay)

    def extra_repr(self) -> str:
        """The decay, shown by print(module)."""
        return f"decay={self.decay}"

    def forward(self, x: Tensor, acc: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        """One timestep: (tanh(acc'), (acc',))."""
        if torch.compiler.is_exporting():
            y, acc = torch.ops.primec.readout_exp_tanh(x, acc, self.decay)
        else:
            y, acc = F.exp_tanh_update(x, acc, self.decay)
        return y, (acc,)
