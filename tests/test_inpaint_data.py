"""Digits-inpaint: the 32x32 holed digits, their splits, and the checks of their reader."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from primec.cli import main
from primec.datasets.inpaint import clean_images, load_inpaint, make_split, save_inpaint
from primec.errors import PrimecError


@pytest.fixture(scope="module")
def test_split():
    return make_split("test", timesteps=4)


def test_images_are_upscaled_digits_in_minus_one_to_one():
    images, labels = clean_images()
    assert images.shape == (1797, 1, 32, 32) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == np.float32(127 / 128)
    levels = (images.astype(np.float64) + 1) * 128
    assert np.array_equal(levels, np.round(levels))  # exactly on the 8-bit grid
    ink = (images[:, 0] + 1) / 2
    rows = (ink.sum(2) * np.arange(32)).sum(1) / ink.sum((1, 2))
    assert abs(rows.mean() - 15.5) < 1.0  # the digit box is centred
    assert np.all(images[:, :, :3] == -1) and np.all(images[:, :, 29:] == -1)  # padding
    # the first sklearn digit is a 0: its centre is empty, its ring is inked
    assert labels[0] == 0 and ink[0, 15, 15] < 0.2 and ink[0, 15, 11] > 0.5


def test_hole_is_rows_and_cols_12_to_19_filled_with_background(test_split):
    mask = test_split.mask[0]
    assert mask.sum() == 64 and mask[12:20, 12:20].all()
    holed, clean = test_split.x[:, 0, 0], test_split.clean[:, 0]
    assert np.all(holed[:, mask] == -1.0)
    assert np.array_equal(holed[:, ~mask], clean[:, ~mask])
    assert (clean[:, mask] > -1).mean() > 0.3  # the hole hides ink, there is something to inpaint
    assert np.array_equal(test_split.x[:, 0], test_split.x[:, 3])  # repeated every step


def test_splits_never_overlap_and_cover_every_digit():
    everything = make_split("all", timesteps=1).clean.reshape(1797, -1)
    index = {row.tobytes(): i for i, row in enumerate(everything)}
    seen = []
    for split, size in (("train", 1078), ("calibration", 360), ("test", 359)):
        part = make_split(split, timesteps=1).clean.reshape(-1, 32 * 32)
        assert len(part) == size
        seen.append({index[row.tobytes()] for row in part})
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == len(set(index.values()))


def test_file_round_trips_and_the_cli_writes_it(tmp_path, test_split):
    out = tmp_path / "t.npz"
    result = CliRunner().invoke(
        main, ["datasets", "digits-inpaint", "--split", "test", "--timesteps", "4", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    loaded = load_inpaint(out, timesteps=4)
    assert np.array_equal(loaded.x, test_split.x) and np.array_equal(loaded.y, test_split.y)
    assert loaded.mask.dtype == bool and loaded.mask.sum() == 64


def _broken(tmp_path, data, **change):
    arrays = {"x": data.x, "clean": data.clean, "mask": data.mask.astype(np.uint8), "y": data.y}
    arrays.update(change)
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mask": None}, "missing array.*mask"),
        ({"x": "scaled"}, "outside the declared range"),
        ({"mask": "empty"}, "no hole pixel"),
        ({"y": "float"}, "integer labels"),
    ],
)
def test_bad_inpainting_files_get_one_clear_error(tmp_path, test_split, change, message):
    key, how = next(iter(change.items()))
    values = {
        "scaled": test_split.x * 255,
        "empty": np.zeros((1, 32, 32), np.uint8),
        "float": test_split.y.astype(float),
        None: None,
    }[how]
    with pytest.raises(PrimecError, match=message):
        load_inpaint(_broken(tmp_path, test_split, **{key: values}), timesteps=4)


def test_t_mismatch_between_data_and_model_is_refused(tmp_path, test_split):
    path = tmp_path / "t4.npz"
    save_inpaint(path, test_split)
    with pytest.raises(PrimecError, match="T=4 timesteps; the model runs T=16"):
        load_inpaint(path, timesteps=16)


def test_cli_refuses_an_unknown_split_and_writes_nothing(tmp_path):
    out = tmp_path / "x.npz"
    result = CliRunner().invoke(
        main, ["datasets", "digits-inpaint", "--split", "dev", "-o", str(out)]
    )
    assert result.exit_code == 2 and "dev" in result.output and not out.exists()
