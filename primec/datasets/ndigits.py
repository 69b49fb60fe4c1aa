"""N-Digits: N-MNIST-like event frames made from scikit-learn's bundled handwritten digits.

N-MNIST was recorded by moving an event camera in three saccades over MNIST digits shown on a
monitor. N-MNIST cannot be downloaded here, so this module re-enacts that recording on the 1797
8x8 digits of ``sklearn.datasets.load_digits``, following shared/NDIGITS.md:

1. ink = value / 16, upscaled bicubically to 20 x 20 (the height of an MNIST digit), then a
   Gaussian blur with sigma 0.7 px;
2. a dark digit on a bright screen with a black level of 0.2: intensity = 0.2 + 1 - ink;
3. the digit's centre of mass, averaged over the motion path, sits at pixel (17, 17) of a
   34 x 34 sensor;
4. three straight saccades, (dy, dx) = (+7, +3.5), (-7, +3.5), (0, -7), 10 sub-steps each,
   bilinear resampling at every sub-step;
5. an ideal event pixel on log intensity, contrast threshold C = 0.25, seeded 5% per-pixel
   threshold mismatch, reference starting at a seeded random point of its threshold grid;
6. the span from first to last event cut into T equal bins (a sub-step goes to the bin of its
   midpoint), channel 0 = OFF, channel 1 = ON, raw counts.

With these frames the released PRIME classifier scores about 90% over all 1797 digits
(NDIGITS.md: 90.1-90.4% for seeds 0-4); about 3,300 events per sample, about 8% of pixel-frames
non-zero, counts up to about 8. Labels never influence the events.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from primec.fileio import write_npz

SPLITS = ("train", "calibration", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

SENSOR_SIZE = 34
DIGIT_SIZE = 20
BLUR_SIGMA = 0.7
BLACK_LEVEL = 0.2
PATH_CENTRE = (17.0, 17.0)
SACCADES = ((7.0, 3.5), (-7.0, 3.5), (0.0, -7.0))
SUBSTEPS_PER_SACCADE = 10
CONTRAST_THRESHOLD = 0.25
THRESHOLD_MISMATCH = 0.05
# Zero-ink border around the 20 x 20 digit so the blur can spread past its box.
BLUR_MARGIN = 3
# Keys' cubic parameter as in torch and OpenCV: PIL's softer -0.5 cost 0.8 points on seed 0.
BICUBIC_A = -0.75


def make_ndigits(seed: int = 0, timesteps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 N-Digits samples: x float32 [N, T, 2, 34, 34] event counts, y int64 [N].

    Fresh arrays of the caller's own; the process keeps the last set made (166 MB at T = 10),
    so asking again for the same seed and T costs a copy instead of about 3 s.
    """
    x, y = _full_set(seed, timesteps)
    return x.copy(), y.copy()


def load_split(split: str, seed: int = 0, timesteps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One split of N-Digits: train 1078, calibration 360, test 359 samples (stratified)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    x, y = _full_set(seed, timesteps)
    indices = split_indices(y, seed)[split]
    return x[indices], y[indices]


@functools.lru_cache(maxsize=1)
def _full_set(seed: int, timesteps: int) -> tuple[np.ndarray, np.ndarray]:
    """make_ndigits's arrays, made once per (seed, timesteps) and read-only: callers copy."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    images, labels = _load_digits()
    rng = np.random.default_rng(seed)
    ink = _digit_ink(images)
    origin = _path_origin(ink)
    sensor = (len(ink), SENSOR_SIZE, SENSOR_SIZE)
    thresholds = CONTRAST_THRESHOLD * (1.0 + THRESHOLD_MISMATCH * rng.standard_normal(sensor[1:]))
    phase = rng.random(sensor)
    # One sub-step at a time keeps memory small: the whole path in float64 would be ~0.5 GB.
    screens = (BLACK_LEVEL + 1.0 - _render(ink, origin + offset) for offset in _path_offsets())
    events = _sense((np.log(screen) for screen in screens), thresholds, phase)
    x = _bin_events(events, timesteps)
    x.flags.writeable = labels.flags.writeable = False
    return x, labels


def split_indices(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted, disjoint sample indices per split: 60/20/20 of every class, fixed per seed."""
    rng = np.random.default_rng([seed, 1])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(np.cumsum(SPLIT_FRACTIONS)[:-1] * len(members)).astype(int)
        for name, chunk in zip(SPLITS, np.split(members, cuts), strict=True):
            parts[name].append(chunk)
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def save_npz(path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write {"x": float32 [N, T, ...], "y": int64 [N]} atomically, as the simulator reads it."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim < 2 or y.shape != x.shape[:1]:
        raise ValueError(f"need x [N, T, ...] and y [N], got {x.shape} and {y.shape}")
    write_npz(path, {"x": x, "y": y})


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits as ink in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images / 16.0, digits.target.astype(np.int64)


def _cubic_kernel(distance: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    d = np.abs(distance)
    a = BICUBIC_A
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((d - 5) * d + 8) * d * a - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _resize_matrix(size_out: int, size_in: int) -> np.ndarray:
    """[size_out, size_in] bicubic resampling matrix; pixel areas align, outside is zero ink."""
    source = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    return _cubic_kernel(source[:, None] - np.arange(size_in)[None, :])


def _digit_ink(images: np.ndarray) -> np.ndarray:
    """Upscaled, blurred ink [N, 20 + 2 margin, 20 + 2 margin]."""
    resize = _resize_matrix(DIGIT_SIZE, images.shape[-1])
    # Cubic overshoot would make ink darker than black or lighter than the screen.
    ink = np.clip(resize @ images @ resize.T, 0.0, 1.0)
    ink = np.pad(ink, ((0, 0), (BLUR_MARGIN, BLUR_MARGIN), (BLUR_MARGIN, BLUR_MARGIN)))
    return gaussian_filter(ink, sigma=(0, BLUR_SIGMA, BLUR_SIGMA), mode="constant")


def _path_offsets() -> np.ndarray:
    """Image offsets [1 + 3 * 10, 2] (dy, dx): the start, then the end of every sub-step."""
    fractions = np.arange(1, SUBSTEPS_PER_SACCADE + 1) / SUBSTEPS_PER_SACCADE
    offsets = [np.zeros((1, 2))]
    for saccade in np.asarray(SACCADES):
        offsets.append(offsets[-1][-1] + fractions[:, None] * saccade)
    return np.concatenate(offsets)


def _bilinear_matrix(source: np.ndarray, size_in: int) -> np.ndarray:
    """[..., n, size_in] weights sampling positions `source` [..., n] with a tent; zero outside."""
    return np.maximum(0.0, 1.0 - np.abs(source[..., None] - np.arange(size_in)))


def _path_origin(ink: np.ndarray) -> np.ndarray:
    """Sensor position [N, 2] of ink pixel (0, 0) at the start of the path."""
    grid = np.arange(ink.shape[-1])
    mass = ink.sum(axis=(1, 2))
    rows = (ink.sum(axis=2) * grid).sum(axis=1) / mass
    cols = (ink.sum(axis=1) * grid).sum(axis=1) / mass
    # The centre of mass, averaged over the whole path, lands on the sensor's centre.
    path_mean = _path_offsets()[1:].mean(axis=0)
    return np.asarray(PATH_CENTRE) - path_mean - np.stack([rows, cols], axis=1)


def _render(ink: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Sensor ink [N, 34, 34] with ink pixel (0, 0) at sensor position shift [N, 2]."""
    pixels = np.arange(SENSOR_SIZE)
    rows = _bilinear_matrix(pixels[None, :] - shift[:, :1], ink.shape[1])
    cols = _bilinear_matrix(pixels[None, :] - shift[:, 1:], ink.shape[2])
    return rows @ ink @ cols.transpose(0, 2, 1)


def _sense(
    log_frames: Iterator[np.ndarray], thresholds: np.ndarray, phase: np.ndarray
) -> np.ndarray:
    """Signed event counts [sub-steps, N, 34, 34] (ON > 0) of ideal log-intensity pixels."""
    # Start each reference at a random point of its grid, else the first sub-step is silent.
    reference = next(log_frames) - phase * thresholds
    events = []
    for frame in log_frames:
        change = frame - reference
        count = np.sign(change) * np.floor(np.abs(change) / thresholds)
        reference = reference + count * thresholds
        events.append(count.astype(np.int8))
    return np.stack(events)


def _bin_events(events: np.ndarray, timesteps: int) -> np.ndarray:
    """Frames [N, T, 2, 34, 34]: each sample's event span cut into T equal bins, OFF then ON."""
    steps, samples = events.shape[:2]
    active = np.abs(events).reshape(steps, samples, -1).sum(axis=2) > 0
    first = active.argmax(axis=0)
    last = steps - 1 - active[::-1].argmax(axis=0)
    # Sub-step s covers time [s, s + 1); the span runs from the first to the last active one.
    width = (last + 1 - first) / timesteps
    frames = np.zeros((samples, timesteps, 2) + events.shape[2:], dtype=np.float32)
    everyone = np.arange(samples)
    for step in range(steps):
        bins = np.clip(np.floor((step + 0.5 - first) / width), 0, timesteps - 1).astype(int)
        frames[everyone, bins, 0] += np.maximum(-events[step], 0)
        frames[everyone, bins, 1] += np.maximum(events[step], 0)
    return frames
