"""The latent sampler of the digital periphery (the `Sample` instruction).

The draw is the counter-based stream of `primec.core.counter_rng`, keyed by the sample's index in
its data set (not its batch position), so batching and early exit never change a draw.
"""

from __future__ import annotations

import numpy as np
import torch

from primec.core.counter_rng import draw_index


def draw_latents(
    q: torch.Tensor, step: torch.Tensor, k: int, seed: int, sample_ids: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, step + 1): z[b, c] = q[b, c*k + draw(seed, sample_ids[b], step[b], c)]."""
    batch, channels = q.shape[0], q.shape[1] // k
    sample = torch.as_tensor(np.asarray(sample_ids, dtype=np.int64), device=q.device)
    channel = torch.arange(channels, dtype=torch.int64, device=q.device).reshape(1, channels)
    steps = step.to(torch.int64).reshape(batch, 1)
    index = draw_index(seed, sample.reshape(batch, 1), steps, channel, k)
    z = torch.gather(q.reshape(batch, channels, k), 2, index.unsqueeze(-1)).squeeze(-1)
    return z, step + 1.0
