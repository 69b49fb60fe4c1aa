"""The demo end to end on a few samples: summary keys, exact ideal simulation, real plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from primec.apps.demo import TOP_KEYS
from primec.apps.inpaint_demo import CHECKPOINT
from primec.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_on_a_few_samples(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--samples", "40"])
    assert result.exit_code == 0, result.output
    assert "primec demo summary" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(TOP_KEYS) <= set(summary)
    for key, model in summary["models"].items():
        if key == "prime-fsvae":
            _check_inpainting(model)
            continue
        assert set(TOP_KEYS) <= set(model)
        # With all steps the simulated artefact predicts exactly what PyTorch predicts.
        assert model["accuracy_sim_all_steps"] == model["accuracy_pytorch"]
        assert 1 <= model["avg_timesteps"] <= 10
        assert model["energy_per_inference_j"] > 0 and model["arrays_used"] >= 1
        levels = [accuracy for _, accuracy in model["accuracy_vs_read_noise"]]
        assert levels[0] == model["accuracy_sim_ideal"]  # read noise 0 is the ideal run
        assert np.isfinite(levels).all()
    plots = sorted(p.name for p in out.glob("*.png"))
    assert "accuracy-vs-noise.png" in plots and "energy-breakdown.png" in plots
    assert any(p.endswith("occupancy.png") for p in plots) and any(
        p.endswith("exit-steps.png") for p in plots
    )
    assert all((out / p).read_bytes().startswith(PNG) for p in plots)
    if CHECKPOINT.exists():  # the inpainting model runs when its checkpoint is shipped
        assert "prime-fsvae" in summary["models"] and "inpainting.png" in plots
    assert any(p.suffix == ".pmac" for p in out.iterdir()) and any(
        p.suffix == ".pbc" for p in out.iterdir()
    )


def _check_inpainting(model: dict) -> None:
    """The shipped inpainting model's entry: the ideal chip is PyTorch; it beats the mean digit."""
    assert model["samples"] == 40
    assert model["max_abs_diff_sim_ideal_vs_pytorch"] < 1e-6
    torch_q, ideal = model["quality_pytorch"], model["quality_sim_ideal"]
    assert abs(ideal["hole_mse"] - torch_q["hole_mse"]) < 1e-6
    assert torch_q["hole_mse"] < model["quality_mean_digit"]["hole_mse"]
    assert model["quality_sim_noisy"]["hole_mse"] > 0
    assert (model["arrays_used"], model["macros_used"]) == (8, 8)
    for rule in model["early_exit"].values():
        if isinstance(rule, dict):
            assert 1 <= rule["avg_timesteps"] <= 16
    assert 1 <= model["image_score"]["pytorch"]["inception_score"] <= 10
    assert model["energy_per_inference_j"] > 0
