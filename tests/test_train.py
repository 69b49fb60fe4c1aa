"""Training a PRIME model: only scores learn, weights stay as-formed (drawn or bound from a chip),
the same seed gives the same bytes, the CLI refuses bad input, and the shipped checkpoint
reaches its documented accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from recorded_cpu import bytes_reproducible

from primec.apps.train import accuracy, build_model, pair_std, save_model, state_bytes, train
from primec.cli import main
from primec.datasets import make_ndigits, split_indices
from primec.hardware.devicemap import save, synth
from primec.hardware.target import load_target
from primec.nn.archs import SMALL_WEIGHTS, ndigits_small

TARGET = load_target("prime-40nm-256k")
# docs/training.md and primec/models/README.md: the shipped checkpoint on the N-Digits test split.
SHIPPED_TEST_ACCURACY = 0.9331  # 335 of 359
SHIPPED_COMMAND = {"epochs": 20, "batch_size": 32, "lr": 0.1, "seed": 0}


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = make_ndigits(0)
    return {name: (x[index], y[index]) for name, index in split_indices(y, 0).items()}


@pytest.fixture(scope="module")
def small(splits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every 4th train and every 3rd calibration sample: all classes, a few seconds per epoch."""
    return {"train": _every(splits["train"], 4), "calibration": _every(splits["calibration"], 3)}


def _every(split: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    return split[0][::k], split[1][::k]


def quiet(_: str) -> None:
    """Swallow training's progress lines."""


def frozen(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}


def test_only_scores_train_and_weights_stay_bit_identical(small) -> None:
    before = build_model("ndigits-small", 0, TARGET)
    model, history = train("ndigits-small", epochs=1, data=small, log=quiet)
    assert len(history) == 1
    for name, weight in frozen(before).items():
        trained = dict(model.named_parameters())[name]
        assert not trained.requires_grad
        assert torch.equal(trained.detach().view(torch.int32), weight.view(torch.int32)), name
    scores = {n: p for n, p in before.named_parameters() if n.endswith("scores")}
    assert all(not torch.equal(p, scores[n]) for n, p in model.named_parameters() if n in scores)


def test_weights_are_drawn_from_the_targets_as_formed_distribution() -> None:
    model = build_model("ndigits-small", 0, TARGET)
    weights = torch.cat([w.flatten() for w in frozen(model).values()])
    assert pair_std(TARGET) == pytest.approx(6.35, abs=0.01)  # the released model's std
    assert float(weights.std()) == pytest.approx(pair_std(TARGET), rel=0.03)
    assert model.features.conv0.gain == 0.01


def test_one_epoch_is_byte_identical_for_a_seed(splits) -> None:
    data = {"train": splits["train"], "calibration": _every(splits["calibration"], 3)}
    first, _ = train("ndigits-small", epochs=1, seed=5, data=data, log=quiet)
    second, _ = train("ndigits-small", epochs=1, seed=5, data=data, log=quiet)
    other, _ = train("ndigits-small", epochs=1, seed=6, data=data, log=quiet)
    assert state_bytes(first) == state_bytes(second)
    assert state_bytes(first) != state_bytes(other)


def test_training_beats_the_untrained_mask(small) -> None:
    untrained = accuracy(build_model("ndigits-small", 0, TARGET), *small["calibration"])
    model, history = train("ndigits-small", epochs=2, data=small, log=quiet)
    assert history[-1].calibration_accuracy == accuracy(model, *small["calibration"])
    assert history[-1].calibration_accuracy > untrained + 0.15


def test_device_map_weights_are_the_chips_cells_before_and_after(small, tmp_path: Path) -> None:
    chip = synth(TARGET, seed=7, macros=1)
    bound = build_model("ndigits-small", 0, TARGET, chip)
    drawn = build_model("ndigits-small", 0, TARGET)
    model, _ = train("ndigits-small", epochs=1, data=small, device_map=chip, log=quiet)
    for name, weight in frozen(bound).items():
        trained = dict(model.named_parameters())[name].detach()
        assert torch.equal(trained.view(torch.int32), weight.view(torch.int32)), name
        assert not torch.equal(trained, frozen(drawn)[name])
    save(chip, tmp_path / "chip.npz")
    save_model(model, tmp_path / "model.pt")
    args = ["--arch", "ndigits-small", "--device-map", str(tmp_path / "chip.npz")]
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "model.pt"), *args])
    assert result.exit_code == 0, result.output


def tiny_target(tmp_path: Path) -> Path:
    """A target with 64 x 64 arrays: one macro cannot hold ndigits-small's 2048-row layer."""
    text = Path(TARGET.source).read_text()
    text = text.replace('name = "prime-40nm-256k"', 'name = "tiny-64"')
    text = text.replace("rows = 512 ", "rows = 64 ").replace("cols = 512 ", "cols = 64 ")
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    output = tmp_path / "model.pt"
    unknown = runner.invoke(main, ["train", "--arch", "ndigits-large", "-o", str(output)])
    assert unknown.exit_code == 2
    assert "unknown architecture 'ndigits-large'" in unknown.output
    assert "ndigits-small" in unknown.output
    target = tiny_target(tmp_path)
    chip = tmp_path / "chip.npz"
    save(synth(load_target(target), seed=1, macros=1), chip)
    args = ["--target", str(target), "--device-map", str(chip), "-o", str(output)]
    too_small = runner.invoke(main, ["train", "--arch", "ndigits-small", *args])
    assert too_small.exit_code == 2
    assert "does not fit the device map's 1 array(s) of 64 x 64 cells" in too_small.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.npz", "tiny.toml"]


def test_cli_help_shows_an_example() -> None:
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    assert "primec train --arch ndigits-small" in result.output


def test_shipped_checkpoint_reaches_its_documented_accuracy(splits) -> None:
    assert SMALL_WEIGHTS.stat().st_size < 400_000
    model = ndigits_small()
    model.load_state_dict(torch.load(SMALL_WEIGHTS, weights_only=True, map_location="cpu"))
    model.eval()
    assert abs(accuracy(model, *splits["test"]) - SHIPPED_TEST_ACCURACY) <= 0.005
    # As-formed: the frozen weights are seed 0's draw from the target, untouched by training.
    drawn = build_model("ndigits-small", SHIPPED_COMMAND["seed"], TARGET)
    for name, weight in frozen(drawn).items():
        assert torch.equal(model.state_dict()[name], weight), name


@pytest.mark.slow
def test_shipped_checkpoint_is_reproduced_byte_for_byte(splits) -> None:
    data = {"train": splits["train"], "calibration": splits["calibration"]}
    model, _ = train("ndigits-small", **SHIPPED_COMMAND, data=data, log=quiet)
    if bytes_reproducible():
        assert state_bytes(model) == SMALL_WEIGHTS.read_bytes()
    else:  # another kind of CPU rounds differently (recorded_cpu.py): the same quality
        model.eval()
        assert abs(accuracy(model, *splits["test"]) - SHIPPED_TEST_ACCURACY) <= 0.02
