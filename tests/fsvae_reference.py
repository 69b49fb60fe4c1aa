"""Plain-PyTorch reference of PRIME's inpainting FSVAE.

Written from shared/PRIME.md ("The inpainting model") and the FSVAE layout, independently of
primec: nothing here imports primec. It reads a state_dict by its keys (the layout
`primec.nn.fsvae` documents) and runs the T steps with explicit loops. The latent draw follows
the documented stream: lowbias32 over (channel, step, sample, seed), candidate = hash mod k,
written here with 32-bit masks and shifts rather than primec's int64 arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPARSITY, GAIN, THRESHOLD, KEEP, DECAY, EPS = 0.5, 0.003, 0.2, 0.25, 0.8, 1e-5
ENCODER_CONVS = ("encoder.conv0", "encoder.conv1", "encoder.conv2")
DECONVS = ("decoder.deconv0", "decoder.deconv1", "decoder.deconv2")


def lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32 on one 32-bit word."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def draw(seed: int, sample: int, step: int, channel: int, k: int) -> int:
    """The candidate kept for one (seed, sample, step, channel)."""
    h = lowbias32(channel)
    h = lowbias32(h ^ step)
    h = lowbias32(h ^ sample)
    return lowbias32(h ^ seed) % k


def weight(sd: dict, key: str) -> torch.Tensor:
    """W * gain * mask, mask = |scores| >= the k-th smallest |scores|."""
    scores = sd[f"{key}.scores"]
    k = 1 + round(SPARSITY * (scores.numel() - 1))
    kth = torch.kthvalue(scores.abs().flatten(), k).values
    return sd[f"{key}.weight"] * GAIN * (scores.abs() >= kth).to(scores.dtype)


def bn(sd: dict, key: str, x: torch.Tensor) -> torch.Tensor:
    """Inference BatchNorm (tdBN's alpha*V_th already inside the weight)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = sd[f"{key}.running_mean"].reshape(shape), sd[f"{key}.running_var"].reshape(shape)
    gamma, beta = sd[f"{key}.weight"].reshape(shape), sd[f"{key}.bias"].reshape(shape)
    return (x - mean) / torch.sqrt(var + EPS) * gamma + beta


class Neurons:
    """FSVAE LIF state per layer: u <- 0.25 * u * (1 - o) + x; o = u > 0.2."""

    def __init__(self) -> None:
        self.u: dict[str, torch.Tensor] = {}
        self.o: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        u = KEEP * self.u.get(name, 0.0) * (1.0 - self.o.get(name, 0.0)) + x
        o = (u > THRESHOLD).to(x.dtype)
        self.u[name], self.o[name] = u, o
        return o


def step(sd, x, cells, z_prev, t, seed, k):
    """One timestep: (decoder output x_t, z_t, spikes by layer)."""
    spikes = {}
    h = x
    for i, key in enumerate(ENCODER_CONVS):
        h = F.conv2d(h, weight(sd, key), sd[f"{key}.bias"], stride=2, padding=1)
        h = spikes[f"encoder.lif{i}"] = cells(f"e{i}", bn(sd, f"encoder.bn{i}", h))
    h = F.linear(h.flatten(1), weight(sd, "encoder.linear"), sd["encoder.linear.bias"])
    e = spikes["encoder.lif3"] = cells("e3", bn(sd, "encoder.bn3", h))
    cat = torch.cat([e, z_prev], dim=1)
    w0 = torch.cat([sd["posterior_in.x_in.weight"], sd["posterior_in.z_in.weight"]], dim=1)
    h = cells("p0", bn(sd, "posterior.bn0", F.linear(cat, w0, sd["posterior_in.x_in.bias"])))
    spikes["posterior.lif0"] = h
    h = F.linear(h, sd["posterior.fc1.weight"], sd["posterior.fc1.bias"])
    q = spikes["posterior.lif1"] = cells("p1", bn(sd, "posterior.bn1", h))
    z = torch.zeros_like(z_prev)
    for b in range(q.shape[0]):
        for c in range(z.shape[1]):
            z[b, c] = q[b, c * k + draw(seed, b, t, c, k)]
    spikes["sampler"] = z
    h = F.linear(z, weight(sd, "decoder.linear"), sd["decoder.linear.bias"])
    h = cells("d", bn(sd, "decoder.bn", h)).reshape(-1, 32, 4, 4)
    spikes["decoder.lif"] = h.flatten(1)
    for i, key in enumerate(DECONVS):
        h = F.conv_transpose2d(
            h, weight(sd, key), sd[f"{key}.bias"], stride=2, padding=1, output_padding=1
        )
        h = spikes[f"decoder.lif{i}"] = cells(f"d{i}", bn(sd, f"decoder.bn{i}", h))
    out = F.conv_transpose2d(h, weight(sd, "decoder.final"), sd["decoder.final.bias"], padding=1)
    return out, z, spikes


def run(sd: dict, images: torch.Tensor, steps: int = 16, seed: int = 0, k: int = 20):
    """Images [B, 1, 32, 32] repeated for `steps`: (r_t per step [B, T, 1, 32, 32], spikes)."""
    cells = Neurons()
    z = images.new_zeros((images.shape[0], 128))
    acc = torch.zeros_like(images)
    readouts, history = [], []
    for t in range(steps):
        out, z, spikes = step(sd, images, cells, z, t, seed, k)
        acc = DECAY * acc + out
        readouts.append(torch.tanh(acc))
        history.append(spikes)
    return torch.stack(readouts, dim=1), history
