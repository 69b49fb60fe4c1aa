"""The demo's inpainting part: the shipped prime-fsvae on digits-inpaint, chip against PyTorch.

Runs on the first `DEMO_SAMPLES` calibration and test samples (the chip simulation of the
whole test split takes minutes on 2 cores); `primec demo` adds the result to `summary.json`
as `models["prime-fsvae"]` and draws `inpainting.png`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from primec.apps.inpaint_eval import evaluate
from primec.apps.inpaint_plots import inpainting_grid
from primec.datasets.inpaint import InpaintData, make_split

CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "fsvae-inpaint.pt"
DEMO_SAMPLES = 48
DEMO_CHIPS = (0,)  # noisy chips the demo runs (the docs report more)
TITLE = "PRIME inpainting FSVAE (primec-trained)"


def _first(data: InpaintData, count: int) -> InpaintData:
    return InpaintData(data.x[:count], data.clean[:count], data.mask, data.y[:count])


def run_inpainting(
    out: Path, log: Callable[[str], None], samples: int | None = None
) -> dict[str, Any] | None:
    """The inpainting summary (None when the checkpoint is not shipped); writes the grid."""
    if not CHECKPOINT.exists():
        log(f"note: {CHECKPOINT.name} is not shipped; skipping the inpainting model")
        return None
    count = DEMO_SAMPLES if samples is None else min(samples, DEMO_SAMPLES)
    log(f"{TITLE}: {count} test samples")
    data = {
        "train": make_split("train", 1),
        "calibration": _first(make_split("calibration"), count),
        "test": _first(make_split("test"), count),
    }
    summary, pictures = evaluate(CHECKPOINT, data, log, chips=DEMO_CHIPS)
    inpainting_grid(pictures, out / "inpainting.png")
    return {"title": TITLE} | summary


def render_inpainting(model: dict[str, Any]) -> list[str]:
    """The inpainting model's lines of the printed demo summary."""
    quality = {
        k: model[f"quality_{k}"]
        for k in ("pytorch", "sim_ideal", "sim_noisy", "sim_noisy_unrepaired", "mean_digit")
    }
    hand, calibrated = model["early_exit"]["prime_hand_set"], model["early_exit"]["calibrated"]
    mse = " | ".join(
        f"{k} {v['hole_mse']:.4f} ({v['hole_psnr_db']:.1f} dB)" for k, v in quality.items()
    )
    score = " | ".join(f"{k} {v['inception_score']:.2f}" for k, v in model["image_score"].items())
    return [
        f"  {model['title']} ({model['samples']} test samples)",
        f"    hole MSE   {mse}",
        f"    IS-like    {score} (of 10; primec.apps.inpaint_score)",
        f"    timesteps  PRIME's rule {hand['avg_timesteps']:.2f} of 16 ({hand['compute_savings'] * 100:.1f}% saved, hole MSE {hand['quality_loss'] * 100:+.1f}%) | calibrated {calibrated['avg_timesteps']:.2f} ({calibrated['compute_savings'] * 100:.1f}% saved, {calibrated['quality_loss'] * 100:+.1f}%)",
        f"    energy     {model['energy_per_inference_j'] * 1e9:.1f} nJ per inference (16 steps); {model['arrays_used']} arrays (lower bound {model['arrays_lower_bound']}) on {model['macros_used']} macros",
    ]
