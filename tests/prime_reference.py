"""Plain-PyTorch reference of PRIME's released N-MNIST classifier.

Written only from shared/PRIME.md ("The N-MNIST classifier"), independently of primec, so that
tests can hold primec's compiler and simulator against it. Nothing here imports primec.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

# The released file as the authors published it; primec ships the same bytes in primec/models/.
RELEASED_PATH = (
    Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
)

LAYER_KEYS = ("features.conv0", "features.conv1", "classifier.linear0")
GAIN = 0.01
SPARSITY = 0.5
THRESHOLD = 0.2
LEAK = 0.2
NEGATIVE_SLOPE = 0.1


def load_released(path: str | Path = RELEASED_PATH) -> dict[str, torch.Tensor]:
    """Load the released state_dict on the CPU (it was saved from a CUDA device)."""
    return torch.load(path, weights_only=True, map_location="cpu")


def keep_mask(scores: torch.Tensor, sparsity: float = SPARSITY) -> torch.Tensor:
    """Boolean mask of the synapses PRIME keeps: |scores| >= the k-th smallest |scores|."""
    magnitudes = scores.abs().flatten()
    k = 1 + round(sparsity * (magnitudes.numel() - 1))
    kth = torch.kthvalue(magnitudes, k).values
    return scores.abs() >= kth


def effective_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """W_eff = weight * 0.01 * mask for each layer, keyed by layer name."""
    return {
        key: state_dict[f"{key}.weight"] * GAIN * keep_mask(state_dict[f"{key}.scores"])
        for key in LAYER_KEYS
    }


def prime_cell(
    membrane: torch.Tensor, spikes: torch.Tensor, current: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of PRIME's hidden cell: reset, leak, integrate, LeakyReLU, strict threshold."""
    membrane = membrane * (1 - spikes) * LEAK + current
    membrane = F.leaky_relu(membrane, NEGATIVE_SLOPE)
    return membrane, (membrane > THRESHOLD).to(membrane.dtype)


def run_prime(
    weights: dict[str, torch.Tensor], x: torch.Tensor, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Run all T steps on x [B, T, 2, 34, 34]; return per-step outputs, readout and spikes."""
    w0, w1, w2 = (weights[key].to(dtype) for key in LAYER_KEYS)
    x = torch.as_tensor(x).to(dtype)
    batch, steps = x.shape[:2]
    u0 = s0 = torch.zeros(batch, 12, 32, 32, dtype=dtype, device=x.device)
    u1 = s1 = torch.zeros(batch, 64, 12, 12, dtype=dtype, device=x.device)
    u2 = torch.zeros(batch, 10, dtype=dtype, device=x.device)
    outs, spikes0, spikes1 = [], [], []
    with torch.no_grad():
        for t in range(steps):
            u0, s0 = prime_cell(u0, s0, F.conv2d(x[:, t], w0, padding=1))
            u1, s1 = prime_cell(u1, s1, F.conv2d(F.avg_pool2d(s0, 2), w1))
            current = F.linear(F.avg_pool2d(s1, 2).flatten(1), w2)
            # The output integrator never leaks or resets: its value is the step's output.
            u2 = F.leaky_relu(u2 + current, NEGATIVE_SLOPE)
            outs.append(u2)
            spikes0.append(s0)
            spikes1.append(s1)
    out = torch.stack(outs, dim=1)
    counts = torch.arange(1, steps + 1, dtype=dtype, device=x.device).view(1, steps, 1)
    return {
        "out": out,
        "readout": out.cumsum(dim=1) / counts,
        "spikes0": torch.stack(spikes0, dim=1),
        "spikes1": torch.stack(spikes1, dim=1),
    }


def early_exit(readout: torch.Tensor, threshold: float = 0.8, temperature: float = 2.0):
    """PRIME's released exit rule on readout [B, T, 10]: (steps used [B], prediction [B])."""
    confident = torch.softmax(readout / temperature, dim=-1).amax(dim=-1) > threshold
    # The last step always counts as an exit, so a sample that is never confident uses all T.
    confident[:, -1] = True
    exit_index = confident.to(torch.int64).argmax(dim=1)
    chosen = readout[torch.arange(readout.shape[0]), exit_index]
    return exit_index + 1, chosen.argmax(dim=-1)
