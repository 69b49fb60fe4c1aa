"""The FSVAE latent sampler: 1 of k Bernoulli candidates per latent channel per timestep.

The posterior MLP emits k spikes per latent channel (channel c's candidates are q[c*k:(c+1)*k],
FSVAE's layout); the sampler keeps one of them, chosen by the counter-based stream of
`primec.core.counter_rng` keyed by (seed, sample, step, channel). `sample` is the sample's row
in the batch plus `sample_offset` (a runner that splits a data set into chunks gives each chunk
its first index), `step` is the sampler's own step counter (a state starting at 0). The IR op is
`sample_bernoulli` (`primec/core/ops.py`); under `torch.export` the module calls
`torch.ops.primec.sample_bernoulli`, which runs the same code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from primec.core.counter_rng import check_seed, draw_index
from primec.nn.neurons import Stateful


def sample_latent(
    q: Tensor, step: Tensor, k: int, seed: int, sample_offset: int = 0
) -> tuple[Tensor, Tensor]:
    """(z, step'): z[b, c] = q[b, c*k + draw(seed, b + offset, step[b], c)]; step' = step + 1."""
    batch, width = q.shape
    channels = width // k
    sample = torch.arange(batch, dtype=torch.int64).reshape(batch, 1) + sample_offset
    channel = torch.arange(channels, dtype=torch.int64).reshape(1, channels)
    index = draw_index(seed, sample, step.to(torch.int64).reshape(batch, 1), channel, k)
    z = torch.gather(q.reshape(batch, channels, k), 2, index.unsqueeze(-1)).squeeze(-1)
    return z, step + 1.0


@torch.library.custom_op("primec::sample_bernoulli", mutates_args=())
def sample_bernoulli_op(q: Tensor, step: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """The sampler of one timestep as a single op: (z, step')."""
    z, step = sample_latent(q, step, k, seed)
    return z, step.clone()


@sample_bernoulli_op.register_fake
def _sample_fake(q, step, k, seed):
    return q.new_empty((q.shape[0], q.shape[1] // k)), torch.empty_like(step)


class LatentSampler(Stateful):
    """Keeps 1 of `k` posterior spikes per latent channel; states: step counter, last latent."""

    state_names = ("step", "latent")

    def __init__(self, channels: int, k: int = 20, seed: int = 0) -> None:
        super().__init__()
        if k < 1 or channels < 1:
            raise ValueError(f"channels and k must be positive, got {channels}, {k}")
        self.channels, self.k, self.seed = int(channels), int(k), check_seed(seed)
        self.sample_offset = 0

    def extra_repr(self) -> str:
        """The parameters, shown by print(module)."""
        return f"channels={self.channels}, k={self.k}, seed={self.seed}"

    def zero_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Step 0 [B, 1] and a zero latent [B, channels], for any step input with batch B."""
        return x.new_zeros((x.shape[0], 1)), x.new_zeros((x.shape[0], self.channels))

    def forward(
        self, q: Tensor, step: Tensor, latent: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One timestep: (z, (step + 1, z)); `latent` (last step's z) feeds the posterior."""
        if q.shape[1] != self.channels * self.k:
            raise ValueError(f"sampler expects {self.channels * self.k} candidates, got {q.shape}")
        if torch.compiler.is_exporting():
            z, step = torch.ops.primec.sample_bernoulli(q, step, self.k, self.seed)
        else:
            z, step = sample_latent(q, step, self.k, self.seed, self.sample_offset)
        return z, (step, z)
