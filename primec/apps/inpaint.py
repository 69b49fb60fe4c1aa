"""The inpainting model's training and quality numbers (`primec train --arch prime-fsvae`).

Training follows PRIME's FSVAE: the loss is the mean squared error of the reconstruction after
T steps against the clean image plus the MMD term of FSVAE, the squared distance between the
posterior's and the prior's Bernoulli rates (mean over the k candidates) after a
postsynaptic-potential filter (tau 2). The input is the holed image, so the model learns to
inpaint. Scores (pruned layers), biases, BatchNorm and the posterior/prior MLPs train (Adam);
the as-formed weights never move. The calibration split is scored after every epoch, the test
split never. Same seed and thread count, same bytes.

Quality: the mean squared error and PSNR inside the hole against the clean image (pixels in
[-1, 1], so the peak-to-peak range is 2: PSNR = 10 log10(4 / MSE)), next to the baseline that
fills the hole with the mean training digit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from primec.apps.train import _check_unchanged, _frozen_weights, _reproducible, build_model
from primec.datasets.inpaint import InpaintData, make_split
from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, Target, load_target
from primec.nn.fsvae import FSVAE
from primec.nn.neurons import Stateful

ARCH = "prime-fsvae"
PSP_TAU = 2.0  # FSVAE's synaptic filter of the MMD term
SCORE_LR_FACTOR = 10.0  # scores move by ranks: they take a larger step than ordinary weights
EVAL_BATCH = 64
# The hole's squared errors count HOLE_WEIGHT times in the reconstruction loss: its 64 pixels
# then weigh as much as the 960 visible ones. With PRIME's plain MSE (weight 1) a short run
# learns to copy the visible pixels and leaves the hole no better than the mean digit.
HOLE_WEIGHT = 15.0  # the shipped model's `--hole-weight`; PRIME's loss is weight 1


@dataclass(frozen=True)
class Quality:
    """Reconstruction quality inside the hole."""

    hole_mse: float
    hole_psnr_db: float


def hole_quality(reconstruction: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> Quality:
    """MSE and PSNR (peak-to-peak 2) over the hole pixels of every sample."""
    errors = (np.asarray(reconstruction, np.float64) - clean)[:, mask]
    mse = float(np.mean(errors**2))
    return Quality(mse, float(10 * np.log10(4.0 / mse)))


def mean_digit_fill(train_clean: np.ndarray, holed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The baseline: each holed image with the hole filled by the mean training digit."""
    mean = train_clean.mean(axis=0)
    return np.where(mask, mean, holed)


def reconstruct(model: FSVAE, x: np.ndarray) -> np.ndarray:
    """The reconstruction after every step, [N, T, 1, 32, 32] (float32 PyTorch, in batches)."""
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            model.sampler.sample_offset = start
            parts.append(model(torch.from_numpy(x[start : start + EVAL_BATCH])).numpy())
    model.sampler.sample_offset = 0
    return np.concatenate(parts)


def psp(x: Tensor, tau: float = PSP_TAU) -> Tensor:
    """FSVAE's postsynaptic potential over time: s_t = (1 - 1/tau) s_(t-1) + x_t / tau; x [B, T, C]."""
    state, out = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        state = state * (1 - 1 / tau) + x[:, t] / tau
        out.append(state)
    return torch.stack(out, dim=1)


def run_prior(prior: nn.Sequential, latents: Tensor) -> Tensor:
    """The prior's spikes [B, T, C*k] given z_(t-1) (zero at t = 0) from latents [B, T, C]."""
    previous = torch.cat([torch.zeros_like(latents[:, :1]), latents[:, :-1]], dim=1)
    states: dict[int, tuple[Tensor, ...]] = {}
    outputs = []
    for t in range(latents.shape[1]):
        h = previous[:, t]
        for index, module in enumerate(prior):
            if not isinstance(module, Stateful):
                h = module(h)
                continue
            h, states[index] = module(h, *states.get(index, module.zero_state(h)))
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def fsvae_loss(
    model: FSVAE, x: Tensor, clean: Tensor, mask: Tensor | None = None, hole_weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(weighted MSE of the final reconstruction, MMD between posterior and prior rates).

    The squared error of a pixel inside `mask` (the hole) counts `hole_weight` times; the
    weights are normalised to mean 1, so hole_weight 1 (or no mask) is the plain MSE.
    """
    record = model.record(x)
    weight = torch.ones_like(clean[0]) if mask is None else 1 + (hole_weight - 1) * mask.float()
    errors = (record["readout"][:, -1] - clean) ** 2
    mse = (errors * (weight / weight.mean())).mean()
    k = model.sampler.k
    posterior = record["posterior.lif1"].unflatten(-1, (-1, k)).mean(-1)
    prior = run_prior(model.prior, record["sampler"]).unflatten(-1, (-1, k)).mean(-1)
    return mse, ((psp(posterior) - psp(prior)) ** 2).mean()


def train_fsvae(
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
    target: Target | str = DEFAULT_TARGET,
    log: Callable[[str], None] = print,
    *,
    threads: int = 1,
    data: dict[str, InpaintData] | None = None,
    samples: int | None = None,
    hole_weight: float = 1.0,
    mmd_weight: float = 1.0,
    on_epoch: Callable[[int, FSVAE], None] | None = None,
) -> tuple[FSVAE, list[Quality]]:
    """Train prime-fsvae on digits-inpaint; the calibration hole quality after every epoch.

    `on_epoch(epoch, model)` (optional) is called after each epoch's calibration score, e.g. to
    keep a checkpoint; it must not change the model.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise PrimecError(
            f"need epochs, batch size and learning rate > 0, got {epochs}, {batch_size}, {lr}"
        )
    if not hole_weight > 0:
        raise PrimecError(
            f"the hole weight must be > 0, got {hole_weight}", hint="1 is PRIME's MSE"
        )
    if not mmd_weight >= 0:
        raise PrimecError(f"the MMD weight must be >= 0, got {mmd_weight}", hint="1 is PRIME's")
    target = load_target(target) if isinstance(target, str) else target
    data = data or {name: make_split(name) for name in ("train", "calibration")}
    if samples is not None:
        train = data["train"]
        data = data | {
            "train": InpaintData(
                train.x[:samples], train.clean[:samples], train.mask, train.y[:samples]
            )
        }
    with _reproducible(seed, threads), _no_uninitialised_fill():
        model = build_model(ARCH, seed, target)
        frozen = _frozen_weights(model)
        recipe = (epochs, batch_size, lr, seed, hole_weight, mmd_weight)
        history = _fit(model, data, recipe, log, on_epoch or (lambda epoch, model: None))
    _check_unchanged(model, frozen)
    return model, history


@contextmanager
def _no_uninitialised_fill() -> Iterator[None]:
    """Deterministic mode without filling every new tensor with NaN first (a tenth of a step).

    The fill only shows reads of uninitialised memory, which no kernel here does: the results
    are the same bits either way.
    """
    saved = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = saved


def _optimiser(model: FSVAE, lr: float) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scores = [p for n, p in trainable if n.endswith("scores")]
    others = [p for n, p in trainable if not n.endswith("scores")]
    return torch.optim.Adam(
        [{"params": scores, "lr": lr * SCORE_LR_FACTOR}, {"params": others}], lr
    )


def _fit(model, data, recipe, log, on_epoch) -> list[Quality]:
    epochs, batch_size, lr, seed, hole_weight, mmd_weight = recipe
    optimiser = _optimiser(model, lr)
    mask = torch.from_numpy(data["train"].mask).bool()
    x, clean = torch.from_numpy(data["train"].x), torch.from_numpy(data["train"].clean)
    order = torch.Generator().manual_seed(seed)
    calibration, history = data["calibration"], []
    for epoch in range(1, epochs + 1):
        started, model = time.perf_counter(), model.train()
        totals = np.zeros(2)
        for batch in torch.randperm(len(x), generator=order).split(batch_size):
            mse, mmd = fsvae_loss(model, x[batch], clean[batch], mask, hole_weight)
            optimiser.zero_grad()
            (mse + mmd_weight * mmd).backward()
            optimiser.step()
            totals += np.array([mse.item(), mmd.item()]) * len(batch)
        recon = reconstruct(model, calibration.x)[:, -1]
        quality = hole_quality(recon, calibration.clean, calibration.mask)
        history.append(quality)
        mse, mmd = totals / len(x)
        log(
            f"epoch {epoch}/{epochs}: mse {mse:.4f}, mmd {mmd:.4f}, calibration hole MSE "
            f"{quality.hole_mse:.4f} ({quality.hole_psnr_db:.2f} dB), "
            f"{time.perf_counter() - started:.0f} s"
        )
        on_epoch(epoch, model)
    return history
