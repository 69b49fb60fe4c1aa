"""Digits-inpaint: 32x32 digit images with an 8x8 hole, made from scikit-learn's digits.

PRIME inpaints 32x32 MNIST digits (28x28 padded by 2) with an 8x8 hole at rows/cols 12..19
(PRIME.md). MNIST cannot be downloaded here, so the 1797 8x8 digits of
``sklearn.datasets.load_digits`` stand in:

1. ink = value / 16, upscaled bicubically (Keys, a = -0.75) to 20 x 20, the height of an MNIST
   digit, clipped to [0, 1], then a Gaussian blur with sigma 0.7 px (the N-Digits rendering,
   `primec.datasets.ndigits`, so both data sets draw the same digits);
2. the 20 x 20 box sits at rows/cols 6..25 of a 32 x 32 image, as an MNIST digit padded to 32;
3. pixels map to [-1, 1) (FSVAE's normalisation, on an 8-bit grid that the chip's input
   drivers apply exactly): pixel = -1 + round(255 * ink) / 128, background -1, the brightest
   ink 127/128 (the `analog-input` pass drives pixel + 1 in quanta of 1/128);
4. the hole is rows/cols 12..19; the holed image has -1 (background) there.

Splits are the stratified, disjoint 60/20/20 splits of N-Digits (train 1078, calibration 360,
test 359 samples). A file holds x float32 [N, T, 1, 32, 32] (the holed image repeated every
step, the simulator's input format), clean float32 [N, 1, 32, 32], mask uint8 [1, 32, 32]
(1 inside the hole) and y int64 [N] (the digit, for the quality score's classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from primec.archive import read_npz, reader_error
from primec.datasets.ndigits import SPLITS, _digit_ink, _load_digits, split_indices
from primec.errors import PrimecError
from primec.fileio import write_npz

IMAGE_SIZE = 32
DIGIT_BOX = 6  # first row/col of the 20 x 20 digit box
HOLE = (12, 20)  # rows and cols 12..19
FILL = -1.0  # the value of hole pixels in the holed image (background)
PIXEL_RANGE = (-1.0, 1.0)
LEVELS = 255  # ink levels of the 8-bit grid
QUANTUM = 1.0 / 128  # one level, in pixel units
KEYS = ("x", "clean", "mask", "y")

_ERROR = reader_error(
    "inpainting data", "make it with `primec datasets digits-inpaint --split SPLIT -o FILE`"
)


@dataclass(frozen=True)
class InpaintData:
    """Holed inputs x [N, T, 1, 32, 32], clean images, hole mask [1, 32, 32] (bool), labels."""

    x: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    y: np.ndarray


def hole_mask() -> np.ndarray:
    """The 8x8 central hole as a bool mask [1, 32, 32] (True inside)."""
    mask = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    mask[:, HOLE[0] : HOLE[1], HOLE[0] : HOLE[1]] = True
    return mask


def clean_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 clean images float32 [N, 1, 32, 32] in [-1, 1] and their labels."""
    images, labels = _load_digits()
    ink = _digit_ink(images)  # [N, 26, 26]: the 20 x 20 box with a 3-pixel blur margin
    start = DIGIT_BOX - (ink.shape[1] - 20) // 2
    canvas = np.zeros((len(ink), 1, IMAGE_SIZE, IMAGE_SIZE))
    canvas[:, 0, start : start + ink.shape[1], start : start + ink.shape[2]] = ink
    levels = np.round(np.clip(canvas, 0.0, 1.0) * LEVELS)
    return (levels * QUANTUM - 1.0).astype(np.float32), labels


def make_split(split: str, timesteps: int = 16, seed: int = 0) -> InpaintData:
    """One split ("train", "calibration", "test" or "all"), the holed image repeated T times."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}, all")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    clean, labels = clean_images()
    if split != "all":
        chosen = split_indices(labels, seed)[split]
        clean, labels = clean[chosen], labels[chosen]
    mask = hole_mask()
    holed = np.where(mask, np.float32(FILL), clean)
    x = np.repeat(holed[:, None], timesteps, axis=1)
    return InpaintData(x, clean, mask, labels)


def save_inpaint(path: str | Path, data: InpaintData) -> None:
    """Write the four arrays atomically."""
    arrays = {
        "x": data.x.astype(np.float32),
        "clean": data.clean.astype(np.float32),
        "mask": data.mask.astype(np.uint8),
        "y": data.y.astype(np.int64),
    }
    write_npz(path, arrays)


def load_inpaint(path: str | Path, timesteps: int) -> InpaintData:
    """Read and check an inpainting file against the model's T; one error for each defect."""
    where = str(path)
    arrays = read_npz(Path(path), where, keys=KEYS, error=_ERROR)
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        hint = "the hole mask is `mask` [1, 32, 32], 1 inside the hole" if "mask" in missing else ""
        raise PrimecError(f"missing array(s) {', '.join(missing)}", where=where, hint=hint)
    x, clean, mask, y = (arrays[key] for key in KEYS)
    shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    _require(
        x.ndim == 5 and x.shape[2:] == shape,
        f"x has shape {list(x.shape)}; expected [N, T, 1, 32, 32]",
        where,
    )
    _require(
        x.shape[1] == timesteps,
        f"x has T={x.shape[1]} timesteps; the model runs T={timesteps}",
        where,
    )
    _require(
        clean.shape == (len(x), *shape),
        f"clean has shape {list(clean.shape)}; expected [{len(x)}, 1, 32, 32]",
        where,
    )
    _require(
        mask.shape == shape and np.isin(mask, (0, 1)).all(),
        "mask must be [1, 32, 32] of 0/1",
        where,
    )
    _require(mask.any(), "mask marks no hole pixel", where)
    _require(
        y.shape == (len(x),) and y.dtype.kind in "iu", f"y must be [{len(x)}] integer labels", where
    )
    for name, values in (("x", x), ("clean", clean)):
        _check_range(name, values, where)
    return InpaintData(
        x.astype(np.float32), clean.astype(np.float32), mask.astype(bool), y.astype(np.int64)
    )


def _check_range(name: str, values: np.ndarray, where: str) -> None:
    low, high = PIXEL_RANGE
    inside = np.isfinite(values) & (values >= low) & (values <= high)
    if inside.all():
        return
    bad = values[~inside].flat[0]
    raise PrimecError(
        f"{name} has {int((~inside).sum())} pixel(s) outside the declared range [{low:g}, {high:g}] "
        f"(first: {bad!r})",
        where=where,
        hint="pixels are -1 + k/128 with k in 0..255 (primec datasets digits-inpaint)",
    )


def _require(ok: bool, message: str, where: str) -> None:
    if not ok:
        raise PrimecError(message, where=where)
