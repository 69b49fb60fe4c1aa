"""The demo's inpainting part on a few samples, and the checks on the checkpoint it reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_fsvae import active_fsvae  # noqa: E402

from primec.apps import inpaint_demo  # noqa: E402
from primec.apps.inpaint_eval import load_fsvae  # noqa: E402
from primec.errors import PrimecError  # noqa: E402
from primec.nn import prime_nmnist  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_inpainting_demo_summary_and_grid(tmp_path, monkeypatch):
    checkpoint = tmp_path / "fsvae.pt"
    torch.save(active_fsvae().float().state_dict(), checkpoint)
    monkeypatch.setattr(inpaint_demo, "CHECKPOINT", checkpoint)
    summary = inpaint_demo.run_inpainting(tmp_path, lambda _: None, samples=3)
    assert summary["samples"] == 3
    # all T steps: the ideal chip reconstructs what float32 PyTorch does, up to rounding
    assert summary["max_abs_diff_sim_ideal_vs_pytorch"] < 1e-6
    ideal, torch_q = summary["quality_sim_ideal"], summary["quality_pytorch"]
    assert abs(ideal["hole_mse"] - torch_q["hole_mse"]) < 1e-6
    assert (summary["arrays_used"], summary["macros_used"]) == (8, 8)
    # the demo's one noisy chip, repaired and raw, on ADC ranges calibrated per column
    repaired, raw = summary["chips_sim_noisy"], summary["chips_sim_noisy_unrepaired"]
    assert repaired["chips"] == raw["chips"] == [0]
    assert repaired["hole_mse"][0] == summary["quality_sim_noisy"]["hole_mse"]
    assert raw["hole_mse"][0] == summary["quality_sim_noisy_unrepaired"]["hole_mse"]
    assert repaired["ratio_mean"] == repaired["hole_mse"][0] / torch_q["hole_mse"]
    assert summary["chip_noise"]["adc_ranges"] == {
        "per": "column",
        "percentile": 99.9,
        "samples": 3,
    }
    hand = summary["early_exit"]["prime_hand_set"]
    assert 1 <= hand["avg_timesteps"] <= 16 and summary["energy_per_inference_j"] > 0
    assert (tmp_path / "inpainting.png").read_bytes().startswith(PNG)
    assert any("hole MSE" in line for line in inpaint_demo.render_inpainting(summary))


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    wrong = tmp_path / "nmnist.pt"
    torch.save(prime_nmnist().state_dict(), wrong)
    with pytest.raises(PrimecError, match="not a prime-fsvae checkpoint"):
        load_fsvae(wrong)


def test_a_missing_checkpoint_is_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(inpaint_demo, "CHECKPOINT", tmp_path / "absent.pt")
    notes = []
    assert inpaint_demo.run_inpainting(tmp_path, notes.append) is None
    assert "not shipped" in notes[0]
