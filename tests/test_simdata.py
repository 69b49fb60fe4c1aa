"""Simulator input files: every malformed case gets one clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from primec.errors import PrimecError
from primec.runtime.simdata import load_inputs

SHAPE = (2, 4, 4)


def write(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_good_file(tmp_path: Path) -> None:
    x = np.zeros((3, 5, *SHAPE), dtype=np.float32)
    data = load_inputs(write(tmp_path, x=x, y=np.array([0, 1, 2])), SHAPE, 5, classes=3)
    assert data.x.shape == x.shape and data.y.tolist() == [0, 1, 2]
    assert load_inputs(write(tmp_path, x=x.astype(np.int16)), SHAPE, 5).y is None


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((3, 5, 2, 4, 5))},
            r"x has shape \[3, 5, 2, 4, 5\]; expected \[N, 5, 2, 4, 4\]",
        ),
        ({"x": np.zeros((3, 7, *SHAPE))}, "x has T=7 timesteps; the model runs T=5"),
        ({"x": np.zeros((3, 5, *SHAPE), dtype=np.complex64)}, "x has dtype complex64"),
        ({"x": np.zeros((3, 5, *SHAPE), dtype=bool)}, "x has dtype bool"),
        ({"x": np.full((3, 5, *SHAPE), np.nan)}, "NaN or infinite values in 3 samples"),
        ({"y": np.zeros(3, dtype=np.int64)}, "no array `x`"),
        (
            {"x": np.zeros((3, 5, *SHAPE)), "y": np.zeros(4, dtype=np.int64)},
            r"y has shape \[4\]; expected \[3\]",
        ),
        ({"x": np.zeros((3, 5, *SHAPE)), "y": np.zeros(3)}, "y has dtype float64"),
        ({"x": np.zeros((3, 5, *SHAPE)), "y": np.array([0, 1, 9])}, r"labels outside 0..2"),
    ],
)
def test_bad_files(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(PrimecError, match=message):
        load_inputs(write(tmp_path, **arrays), SHAPE, 5, classes=3)


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(b"hello")
    with pytest.raises(PrimecError, match="cannot read input data"):
        load_inputs(path, SHAPE, 5)


def test_single_array_file(tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(PrimecError, match="single array"):
        load_inputs(path, SHAPE, 5)
