"""Training a PRIME model: learn which as-formed synapses to keep, never the weights.

A built-in supermask architecture (`primec.nn.ARCHS`) gets its frozen weights either drawn
from the target's as-formed distribution (G+ - G- of two iid cells, seeded) or bound from a
device map with `bind_device_map`, so the trained model compiles back onto exactly those cells.
Only the scores are optimised (SGD with momentum, cosine schedule, straight-through mask), on
the N-Digits train split; the calibration split is scored after every epoch, the test split is
never looked at. The same seed, data and thread count give byte-identical weights and scores.
docs/training.md has the recipe and its numbers.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes
from primec.hardware.devicemap import DeviceMap, bind_device_map
from primec.hardware.devicemap import load as load_device_map
from primec.hardware.mapping import ArraysFull
from primec.hardware.target import DEFAULT_TARGET, Target, load_target
from primec.nn import ARCHS, SNN

Split = tuple[np.ndarray, np.ndarray]  # x float32 [N, T, ...], y int64 [N]
LOSSES = ("all_steps", "final")
MOMENTUM = 0.9  # edge-popup's optimiser for scores: SGD with momentum, cosine learning rate
EVAL_BATCH = 256


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training did."""

    epoch: int
    loss: float
    train_accuracy: float  # running: each batch scored by the mask it was trained with
    calibration_accuracy: float
    seconds: float


def pair_std(target: Target) -> float:
    """Std (device units, uS) of an as-formed pair's weight G+ - G-: sqrt(2) x one cell's std."""
    return math.sqrt(2.0) * target.cells.formed_std_us


def ndigits_splits(seed: int = 0) -> dict[str, Split]:
    """The N-Digits train and calibration splits, generated once."""
    from primec.datasets import make_ndigits, split_indices

    x, y = make_ndigits(seed)
    indices = split_indices(y, seed)
    return {name: (x[indices[name]], y[indices[name]]) for name in ("train", "calibration")}


def build_model(
    arch: str, seed: int, target: Target, device_map: DeviceMap | str | Path | None = None
) -> SNN:
    """A fresh `arch` with as-formed weights: drawn from the target with `seed`, or bound from a chip."""
    if arch not in ARCHS:
        raise PrimecError(
            f"unknown architecture {arch!r}", hint=f"built-in architectures: {', '.join(ARCHS)}"
        )
    model = ARCHS[arch](std=pair_std(target), seed=seed)
    if device_map is not None:
        _bind(model, arch, device_map, target)
    return model


def _bind(model: SNN, arch: str, device_map: DeviceMap | str | Path, target: Target) -> None:
    chip = device_map if isinstance(device_map, DeviceMap) else load_device_map(device_map, target)
    try:
        bind_device_map(model, chip, target)
    except ArraysFull as exc:
        arrays = chip.macros * target.chip.arrays_per_macro
        raise PrimecError(
            f"architecture {arch} does not fit the device map's {arrays} array(s) of "
            f"{target.array.rows} x {target.array.cols} cells: {exc.message}",
            where="" if isinstance(device_map, DeviceMap) else str(device_map),
            hint="synthesise or measure a map with more macros (`primec devicemap synth --macros N`)",
        ) from exc


@dataclass(frozen=True)
class Recipe:
    """How to train: epochs, batch size, learning rate, seed, loss and CPU threads."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    loss: str
    threads: int

    def check(self) -> Recipe:
        """Raise a `PrimecError` for a setting out of range; return self."""
        if min(self.epochs, self.batch_size, self.threads) < 1:
            raise PrimecError(
                "epochs, batch size and threads must be at least 1, got "
                f"{self.epochs}, {self.batch_size}, {self.threads}"
            )
        if not self.lr > 0:
            raise PrimecError(f"learning rate must be positive, got {self.lr}")
        if self.loss not in LOSSES:
            raise PrimecError(
                f"unknown loss {self.loss!r}", hint=f"known losses: {', '.join(LOSSES)}"
            )
        return self


def train(
    arch: str,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 0.1,
    seed: int = 0,
    device_map: DeviceMap | str | Path | None = None,
    target: Target | str = DEFAULT_TARGET,
    log: Callable[[str], None] = print,
    *,
    loss: str = "all_steps",
    threads: int = 1,
    data: dict[str, Split] | None = None,
) -> tuple[SNN, list[EpochStats]]:
    """Train the scores of a supermask `arch` on N-Digits (or `data`); weights stay as-formed."""
    recipe = Recipe(epochs, batch_size, lr, seed, loss, threads).check()
    target = load_target(target) if isinstance(target, str) else target
    with _reproducible(seed, threads):
        model = build_model(arch, seed, target, device_map)
        frozen = _frozen_weights(model)
        history = _fit(model, ndigits_splits() if data is None else data, recipe, log)
    _check_unchanged(model, frozen)
    return model, history


@contextmanager
def _reproducible(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic kernels, fixed threads (float sums depend on the split); restored after."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def _frozen_weights(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}


def _check_unchanged(model: nn.Module, frozen: dict[str, Tensor]) -> None:
    """Training may only move scores: every frozen weight must be bit-identical to before."""
    now = dict(model.named_parameters())
    changed = [name for name, before in frozen.items() if not _same_bits(now[name], before)]
    if changed:
        raise RuntimeError(f"training changed frozen weights {changed}; only scores may train")


def _same_bits(a: Tensor, b: Tensor) -> bool:
    # Compare bit patterns, not values: -0.0 == 0.0 and NaN != NaN would hide or invent changes.
    return torch.equal(a.detach().view(torch.int32), b.view(torch.int32))


def _fit(
    model: SNN, data: dict[str, Split], recipe: Recipe, log: Callable[[str], None]
) -> list[EpochStats]:
    scores = [p for name, p in model.named_parameters() if name.endswith("scores")]
    optimiser = torch.optim.SGD(scores, lr=recipe.lr, momentum=MOMENTUM)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, recipe.epochs)
    x, y = (torch.from_numpy(a) for a in data["train"])
    order = torch.Generator().manual_seed(recipe.seed)
    history = []
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        batches = torch.randperm(len(y), generator=order).split(recipe.batch_size)
        loss, correct = _epoch(model, x, y, batches, optimiser, recipe.loss)
        schedule.step()
        cal = accuracy(model, *data["calibration"])
        stats = EpochStats(epoch, loss, correct / len(y), cal, time.perf_counter() - started)
        history.append(stats)
        log(_epoch_line(stats, recipe.epochs))
    return history


def _epoch(
    model: SNN,
    x: Tensor,
    y: Tensor,
    batches: tuple[Tensor, ...],
    optimiser: torch.optim.Optimizer,
    loss: str,
) -> tuple[float, int]:
    """One pass over the batches: (mean loss per sample, samples right while training)."""
    total, correct = 0.0, 0
    for batch in batches:
        readout = model(x[batch])
        batch_loss = readout_loss(readout, y[batch], loss)
        optimiser.zero_grad()
        batch_loss.backward()
        optimiser.step()
        total += batch_loss.item() * len(batch)
        correct += int((readout[:, -1].argmax(-1) == y[batch]).sum())
    return total / len(y), correct


def readout_loss(readout: Tensor, labels: Tensor, loss: str) -> Tensor:
    """Cross-entropy of the readout [B, T, K]: after every step (mean over T), or the last only."""
    if loss == "final":
        return nn.functional.cross_entropy(readout[:, -1], labels)
    # Every step's running mean is what early exit may answer with, so each should be right.
    steps = readout.shape[1]
    return nn.functional.cross_entropy(readout.flatten(0, 1), labels.repeat_interleave(steps))


def accuracy(model: SNN, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose readout after all T steps has its maximum at the label."""
    return float((predict(model, x) == y).mean())


def predict(model: SNN, x: np.ndarray) -> np.ndarray:
    """Class predictions after all T steps (plain PyTorch, float32), in batches."""
    with torch.no_grad():
        parts = [
            model(torch.from_numpy(x[i : i + EVAL_BATCH]))[:, -1].argmax(-1)
            for i in range(0, len(x), EVAL_BATCH)
        ]
    return torch.cat(parts).numpy()


def _epoch_line(stats: EpochStats, epochs: int) -> str:
    return (
        f"epoch {stats.epoch}/{epochs}: loss {stats.loss:.3f}, "
        f"train {100 * stats.train_accuracy:.1f}% (running), "
        f"calibration {100 * stats.calibration_accuracy:.1f}%, {stats.seconds:.1f} s"
    )


def state_bytes(model: nn.Module) -> bytes:
    """The model's state_dict as `torch.save` writes it (the same model gives the same bytes)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def save_model(model: nn.Module, path: str | Path) -> None:
    """Write the model's state_dict atomically: no partial file if anything fails."""
    atomic_write_bytes(path, state_bytes(model))
