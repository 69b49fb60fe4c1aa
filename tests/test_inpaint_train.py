"""Training prime-fsvae (PRIME's MSE + MMD) and the inpainting quality numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from primec.apps.inpaint import (
    hole_quality,
    mean_digit_fill,
    psp,
    run_prior,
    train_fsvae,
)
from primec.apps.train import state_bytes
from primec.cli import main
from primec.datasets.inpaint import InpaintData, make_split
from primec.nn.fsvae import mlp


@pytest.fixture(scope="module")
def tiny_data() -> dict[str, InpaintData]:
    train, cal = make_split("train"), make_split("calibration")
    return {
        "train": InpaintData(train.x[:8], train.clean[:8], train.mask, train.y[:8]),
        "calibration": InpaintData(cal.x[:4], cal.clean[:4], cal.mask, cal.y[:4]),
    }


def test_training_moves_scores_and_weights_but_never_the_formed_weights(tiny_data):
    from primec.apps.train import build_model
    from primec.hardware.target import DEFAULT_TARGET, load_target

    before = build_model("prime-fsvae", 3, load_target(DEFAULT_TARGET)).state_dict()
    model, history = train_fsvae(1, 4, 1e-3, seed=3, log=lambda _: None, data=tiny_data)
    after = model.state_dict()
    assert torch.equal(before["encoder.conv0.weight"], after["encoder.conv0.weight"])
    assert not torch.equal(before["encoder.conv0.scores"], after["encoder.conv0.scores"])
    assert not torch.equal(before["posterior.fc1.weight"], after["posterior.fc1.weight"])
    assert not torch.equal(before["prior.fc1.weight"], after["prior.fc1.weight"])  # MMD trains it
    assert len(history) == 1 and history[0].hole_mse > 0


def test_same_seed_same_bytes(tiny_data):
    runs = [
        state_bytes(train_fsvae(1, 4, 1e-3, seed=1, log=lambda _: None, data=tiny_data)[0])
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_hole_quality_is_mse_and_psnr_over_the_hole_only():
    mask = np.zeros((1, 2, 2), bool)
    mask[0, 0, 0] = True
    clean = np.zeros((2, 1, 2, 2))
    recon = clean.copy()
    recon[:, 0, 0, 0] = [0.5, 1.5]  # squared errors 0.25 and 2.25 inside the hole
    recon[:, 0, 1, 1] = 9.0  # outside the hole: ignored
    quality = hole_quality(recon, clean, mask)
    assert quality.hole_mse == pytest.approx(1.25)
    assert quality.hole_psnr_db == pytest.approx(10 * np.log10(4 / 1.25))


def test_mean_digit_fill_keeps_the_known_pixels():
    data = make_split("test", 1)
    filled = mean_digit_fill(data.clean, data.x[:, 0], data.mask)
    assert np.array_equal(filled[:, ~data.mask], data.x[:, 0][:, ~data.mask])
    assert np.allclose(filled[:, data.mask], data.clean.mean(0)[data.mask])


def test_psp_is_fsvae_first_order_filter():
    x = torch.tensor([[[1.0], [0.0], [1.0]]])
    assert psp(x).flatten().tolist() == [0.5, 0.25, 0.625]


def test_prior_sees_the_previous_latent_and_zero_first():
    prior = mlp(128, 16, 2).eval()
    latents = (torch.rand(2, 3, 128) > 0.5).float()
    with torch.no_grad():
        out = run_prior(prior, latents)
        first = run_prior(prior, torch.zeros_like(latents[:, :1]))
    assert out.shape == (2, 3, 256) and torch.equal(out[:, :1], first)


def test_train_cli_refuses_classifier_options_for_fsvae(tmp_path):
    out = tmp_path / "m.pt"
    args = ["train", "--arch", "prime-fsvae", "--loss", "final", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "MSE + MMD" in result.output and not out.exists()


def test_the_hole_weighted_loss_against_a_hand_computed_weighting(tiny_data):
    from primec.apps.inpaint import fsvae_loss
    from primec.nn.fsvae import prime_fsvae

    model = prime_fsvae().eval()
    x, clean = (
        torch.from_numpy(tiny_data["train"].x[:2]),
        torch.from_numpy(tiny_data["train"].clean[:2]),
    )
    mask = torch.from_numpy(tiny_data["train"].mask)
    with torch.no_grad():
        plain, _ = fsvae_loss(model, x, clean)
        same, _ = fsvae_loss(model, x, clean, mask, 1.0)
        weighted, _ = fsvae_loss(model, x, clean, mask, 15.0)
        errors = (model(x)[:, -1] - clean) ** 2
    assert torch.allclose(plain, torch.nn.functional.mse_loss(model(x)[:, -1], clean))
    assert torch.equal(plain, same)
    hole, rest = errors[:, mask].sum(), errors[:, ~mask].sum()
    # 64 hole pixels of weight 15, 960 of weight 1: mean weight (64*15 + 960)/1024 = 1.875
    expected = (15 * hole + rest) / 1.875 / errors.numel()
    assert torch.allclose(weighted, expected, rtol=1e-5)


def test_without_the_mmd_term_the_prior_stays_as_drawn(tiny_data):
    from primec.apps.train import build_model
    from primec.hardware.target import DEFAULT_TARGET, load_target

    before = build_model("prime-fsvae", 3, load_target(DEFAULT_TARGET)).state_dict()
    run = train_fsvae(1, 4, 1e-3, seed=3, log=lambda _: None, data=tiny_data, mmd_weight=0.0)
    after = run[0].state_dict()
    assert torch.equal(before["prior.fc1.weight"], after["prior.fc1.weight"])
    assert not torch.equal(before["posterior.fc1.weight"], after["posterior.fc1.weight"])


def test_every_epoch_is_handed_to_the_callback(tiny_data):
    seen = []
    train_fsvae(
        2, 8, 1e-3, log=lambda _: None, data=tiny_data, on_epoch=lambda e, m: seen.append(e)
    )
    assert seen == [1, 2]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "ndigits-small", "--hole-weight", "15"], "are for --arch prime-fsvae"),
        (["--arch", "prime-fsvae", "--hole-weight", "0"], "--hole-weight"),
        (["--arch", "prime-fsvae", "--mmd-weight", "-1"], "--mmd-weight"),
    ],
)
def test_train_cli_refuses_bad_loss_weights(tmp_path, args, message):
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(main, ["train", *args, "-o", str(out)])
    assert result.exit_code == 2 and message in result.output and not out.exists()


@pytest.mark.slow
def test_the_shipped_model_inpaints_the_test_split_better_than_the_mean_digit():
    from primec.apps.inpaint import reconstruct
    from primec.apps.inpaint_demo import CHECKPOINT
    from primec.apps.inpaint_eval import load_fsvae

    assert CHECKPOINT.stat().st_size < 8_000_000  # a state_dict (7.2 MB), loaded weights_only
    net = load_fsvae(CHECKPOINT)
    test = make_split("test")
    ours = hole_quality(reconstruct(net, test.x)[:, -1], test.clean, test.mask)
    mean = hole_quality(
        mean_digit_fill(make_split("train", 1).clean, test.x[:, 0], test.mask),
        test.clean,
        test.mask,
    )
    assert ours.hole_mse <= 0.65 * mean.hole_mse  # measured 0.601 (docs/inpainting.md)
    assert ours.hole_psnr_db > mean.hole_psnr_db
