"""N-Digits: determinism, statistics, splits, file format and the released model's accuracy."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from primec.datasets import SPLITS, load_split, make_ndigits, ndigits, save_npz, split_indices

sys.path.insert(0, str(Path(__file__).parent))
import prime_reference  # noqa: E402

SAMPLES = 1797
# make_ndigits keeps its last set; these tests make theirs afresh, and leave that set alone.
made_afresh = ndigits._full_set.__wrapped__


@pytest.fixture(scope="module")
def seed0() -> tuple[np.ndarray, np.ndarray]:
    return make_ndigits(seed=0)


def test_shape_and_dtype(seed0):
    x, y = seed0
    assert x.shape == (SAMPLES, 10, 2, 34, 34)
    assert x.dtype == np.float32
    assert y.shape == (SAMPLES,)
    assert y.dtype == np.int64
    assert np.array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


def test_same_seed_gives_identical_bytes_and_other_seed_differs(seed0):
    x, y = seed0
    again_x, again_y = made_afresh(0, 10)
    assert x.tobytes() == again_x.tobytes()
    assert y.tobytes() == again_y.tobytes()
    other_x, other_y = made_afresh(1, 10)
    assert x.tobytes() != other_x.tobytes()
    # Only the sensor's randomness changes with the seed, never the labels.
    assert np.array_equal(y, other_y)


def test_statistics_match_ndigits_md(seed0):
    x, _ = seed0
    assert np.all(x >= 0)
    assert np.array_equal(x, np.round(x)), "frames hold raw integer counts"
    events = x.sum(axis=(1, 2, 3, 4))
    assert 2800 < events.mean() < 3800, "NDIGITS.md: about 3,300 events per sample"
    assert events.min() > 0, "every digit moves past the sensor and must make events"
    assert 0.06 < np.count_nonzero(x) / x.size < 0.10, "NDIGITS.md: about 8% non-zero"
    assert 5 <= x.max() <= 12, "NDIGITS.md: counts up to about 8"
    off, on = x[:, :, 0].sum(), x[:, :, 1].sum()
    # The path returns to its start, so brightening and darkening balance.
    assert 0.8 < on / off < 1.25


def test_every_timestep_sees_events(seed0):
    x, _ = seed0
    per_step = x.sum(axis=(2, 3, 4))
    # The random reference phase keeps the first sub-step from being silent, so no bin is empty.
    assert np.all(per_step > 0)


def test_timesteps_rebin_the_same_events(seed0):
    x, _ = seed0
    coarse, _ = made_afresh(0, 5)
    assert coarse.shape == (SAMPLES, 5, 2, 34, 34)
    assert np.array_equal(coarse.sum(axis=1), x.sum(axis=1))


def test_splits_are_disjoint_cover_and_stratified(seed0):
    _, y = seed0
    indices = split_indices(y, seed=0)
    assert tuple(indices) == SPLITS
    joined = np.concatenate([indices[name] for name in SPLITS])
    assert len(joined) == SAMPLES
    assert np.array_equal(np.sort(joined), np.arange(SAMPLES))
    assert {name: len(part) for name, part in indices.items()} == {
        "train": 1078,
        "calibration": 360,
        "test": 359,
    }
    for name, fraction in zip(SPLITS, (0.6, 0.2, 0.2), strict=True):
        per_class = np.bincount(y[indices[name]], minlength=10)
        assert np.all(np.abs(per_class - fraction * np.bincount(y)) <= 1)


def test_load_split_takes_its_samples_from_the_full_set(seed0):
    x, y = seed0
    test_x, test_y = load_split("test", seed=0)
    chosen = split_indices(y, seed=0)["test"]
    assert np.array_equal(test_x, x[chosen])
    assert np.array_equal(test_y, y[chosen])


def test_every_call_gets_arrays_of_its_own(seed0):
    """The kept set is never handed out: writing into one result changes no later one."""
    x, y = make_ndigits(seed=0)
    split, _ = load_split("test")
    assert x.flags.writeable and split.flags.writeable
    x[:], y[:], split[:] = -1, -1, -1
    assert np.array_equal(make_ndigits(seed=0)[0], seed0[0])
    assert np.array_equal(make_ndigits(seed=0)[1], seed0[1])
    assert np.array_equal(load_split("test")[0], seed0[0][split_indices(seed0[1])["test"]])


def test_unknown_split_names_the_known_ones():
    with pytest.raises(ValueError, match="train, calibration, test"):
        load_split("validation")


def test_save_npz_round_trip(tmp_path, seed0):
    x, y = seed0
    path = tmp_path / "ndigits.npz"
    save_npz(path, x[:7].astype(np.float64), y[:7].astype(np.int32))
    with np.load(path) as data:
        assert sorted(data.files) == ["x", "y"]
        assert data["x"].dtype == np.float32
        assert data["y"].dtype == np.int64
        assert np.array_equal(data["x"], x[:7])
        assert np.array_equal(data["y"], y[:7])
    assert [p.name for p in tmp_path.iterdir()] == ["ndigits.npz"], "no temporary file left"


def test_save_npz_rejects_mismatched_labels(tmp_path):
    with pytest.raises(ValueError):
        save_npz(tmp_path / "bad.npz", np.zeros((3, 10, 2)), np.zeros(4))


def test_mask_keeps_exactly_half_of_every_layer():
    weights = prime_reference.effective_weights(prime_reference.load_released())
    kept = {key: int(torch.count_nonzero(w)) for key, w in weights.items()}
    assert kept == {"features.conv0": 300, "features.conv1": 9600, "classifier.linear0": 11520}


def test_reference_output_shapes(seed0):
    x, _ = seed0
    weights = prime_reference.effective_weights(prime_reference.load_released())
    result = prime_reference.run_prime(weights, torch.from_numpy(x[:3]))
    assert result["out"].shape == (3, 10, 10)
    assert result["readout"].shape == (3, 10, 10)
    assert result["spikes0"].shape == (3, 10, 12, 32, 32)
    assert result["spikes1"].shape == (3, 10, 64, 12, 12)
    assert set(result["spikes1"].unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(result["readout"][:, -1], result["out"].mean(dim=1))


def test_released_model_classifies_about_90_percent(seed0):
    x, y = seed0
    weights = prime_reference.effective_weights(prime_reference.load_released())
    batches = (torch.from_numpy(x[i : i + 300]) for i in range(0, SAMPLES, 300))
    readouts = [prime_reference.run_prime(weights, batch)["readout"][:, -1] for batch in batches]
    accuracy = (torch.cat(readouts).argmax(dim=-1).numpy() == y).mean()
    # NDIGITS.md: 90.1-90.4% for seeds 0-4; this recipe gives 90.5% on seed 0.
    assert accuracy >= 0.88


def test_shipped_released_model_is_the_published_file() -> None:
    import hashlib

    published = (
        Path(__file__).resolve().parents[2] / "shared" / "models" / "prime_nmnist_classification.pt"
    )
    if not published.exists():
        pytest.skip("shared/ is not beside the checkout")
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert hashlib.sha256(prime_reference.RELEASED_PATH.read_bytes()).hexdigest() == digest
