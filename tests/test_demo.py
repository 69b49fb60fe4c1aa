"""The demo end to end on a few samples: summary keys, exact ideal simulation, real plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from primec.apps.demo import TOP_KEYS
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
            continue  # the inpainting model: tests/test_inpaint_demo.py
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
    assert any(p.suffix == ".pmac" for p in out.iterdir()) and any(
        p.suffix == ".pbc" for p in out.iterdir()
    )
