"""`primec demo`: the whole of primec on the embedded default, end to end, with pictures.

For the PRIME authors' released N-MNIST classifier and for the small model primec trained, on
N-Digits (N-MNIST-like events made from scikit-learn's digits): compile to the macro, calibrate
the early-exit threshold on the calibration split, simulate the test split ideal and with device
noise, compare with PyTorch and with PRIME's hand-set exit rule, and write `summary.json` and
plots into the output folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from primec.apps.inpaint_demo import render_inpainting, run_inpainting
from primec.apps.plots import (
    accuracy_vs_noise,
    energy_breakdown,
    exit_histogram,
    occupancy,
    plot_curve,
)
from primec.backends import BACKENDS
from primec.backends.macrofile import (
    PAIR_KEEP,
    PAIR_PROGRAM,
    PAIR_RESET,
    PAIR_UNUSED,
    pair_operations,
)
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.datasets import load_split
from primec.fileio import atomic_write_bytes, atomic_write_text
from primec.hardware.choices import resolve_target
from primec.hardware.earlyexit import PRIME_RULE, apply_table, predictions
from primec.hardware.energy import energy_report
from primec.hardware.mapreport import mapping_report
from primec.hardware.target import DEFAULT_TARGET
from primec.pipeline import BackendOptions, CompileResult, ExitOptions, compile_model
from primec.runtime.simdata import SimData

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
NOISY = Noise(program=0.02, read=0.02, adc=8, seed=0)  # the demo's "realistic chip" setting
NOISE_LEVELS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # read noise: relative std per cell and read
BUDGET_POINTS = 0.5
# N-Digits event counts stay far below 16 (at most 7 in all 1797 samples), so the demo's chip
# drives the first layer with 4-bit inputs instead of the target's default 8 bit planes.
INPUT_BITS = 4
BATCH = 64


@dataclass(frozen=True)
class DemoModel:
    """One model of the demo: its file, architecture and display name."""

    key: str
    title: str
    checkpoint: Path
    arch: str


DEMO_MODELS = (
    DemoModel(
        "prime-nmnist",
        "PRIME released classifier",
        MODELS_DIR / "prime_nmnist_classification.pt",
        "prime-nmnist",
    ),
    DemoModel(
        "ndigits-small",
        "primec-trained supermask SNN",
        MODELS_DIR / "ndigits-supermask.pt",
        "ndigits-small",
    ),
)


def pytorch_accuracy(model: DemoModel, data: SimData) -> float:
    """Accuracy of the model itself in PyTorch (float32), all T steps, mean readout."""
    from primec.nn.archs import ARCHS

    net = ARCHS[model.arch]()
    net.load_state_dict(torch.load(model.checkpoint, weights_only=True, map_location="cpu"))
    net.eval()
    with torch.no_grad():
        readout = net(torch.from_numpy(data.x))
    return float((readout[:, -1].argmax(dim=-1).numpy() == data.y).mean())


def _run(
    program: Program, data: SimData, noise: Noise | None = None, early_exit: bool = True
) -> dict[str, Any]:
    result = Simulator(program, noise).run(data.x, BATCH, early_exit)
    report = energy_report(result.counts, result.exit_step, program.meta, program.timesteps)
    report |= {
        "accuracy": float((result.pred == data.y).mean()),
        "avg_timesteps": float(result.exit_step.mean()),
        "compute_savings": 1 - float(result.exit_step.mean()) / program.timesteps,
        "samples_per_s": len(result.pred) / result.seconds,
    }
    return {"report": report, "result": result}


def compile_demo_model(model: DemoModel, calibration: SimData) -> CompileResult:
    """Compile one demo model to both artefacts, its exit threshold calibrated on `calibration`."""
    target, choices = resolve_target(DEFAULT_TARGET, input_bits=INPUT_BITS)
    exits = ExitOptions(
        temperature=PRIME_RULE.temperature, calibrate=calibration, budget_points=BUDGET_POINTS
    )
    return compile_model(
        model.checkpoint,
        model.arch,
        target=target,
        log=lambda _: None,
        choices=choices,
        backend=BackendOptions(tuple(BACKENDS), exits),
    )


def run_model(
    model: DemoModel, calibration: SimData, test: SimData, out: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Compile, calibrate, simulate and plot one model; return its summary."""
    target, _ = resolve_target(DEFAULT_TARGET, input_bits=INPUT_BITS)
    started = time.perf_counter()
    compiled = compile_demo_model(model, calibration)
    mapping = mapping_report(compiled.graph, target)
    log(
        f"  compiled in {time.perf_counter() - started:.1f} s: {mapping['arrays_used']} array(s) (lower bound {mapping['arrays_lower_bound']}), {mapping['macros_used']} macro(s)"
    )
    program, cal = compiled.program, compiled.calibration
    log(
        f"  calibrated on {len(calibration.x)} samples: threshold {cal.table.threshold:.3f} ({cal.avg_timesteps:.2f} steps, oracle {cal.oracle_avg_timesteps:.2f})"
    )
    for name, data in compiled.artefacts.items():
        atomic_write_bytes(out / f"{model.key}{BACKENDS[name].suffix}", data)
    full = _run(program, test, early_exit=False)
    ideal = _run(program, test)
    noisy = _run(program, test, NOISY)
    log(
        f"  simulated {len(test.x)} test samples ideal ({ideal['report']['samples_per_s']:.0f}/s) and noisy"
    )
    readouts = full["result"].readouts
    hand_steps, hand_at = apply_table(PRIME_RULE, readouts)
    summary = {
        "title": model.title,
        "accuracy_pytorch": pytorch_accuracy(model, test),
        "accuracy_sim_all_steps": full["report"]["accuracy"],
        "accuracy_sim_ideal": ideal["report"]["accuracy"],
        "accuracy_sim_noisy": noisy["report"]["accuracy"],
        "noise": {k: v for k, v in vars(NOISY).items()},
        "avg_timesteps": ideal["report"]["avg_timesteps"],
        "compute_savings": ideal["report"]["compute_savings"],
        "exit_table": program.exit_table.to_dict(),
        "prime_hand_set": {
            "avg_timesteps": float(hand_steps.mean()),
            "compute_savings": 1 - float(hand_steps.mean()) / program.timesteps,
            "accuracy": float((predictions(hand_at) == test.y).mean()),
        },
        "oracle_avg_timesteps_test": float(_oracle(readouts)),
        "energy_per_inference_j": ideal["report"]["energy_per_inference_j"],
        "energy_breakdown_j": ideal["report"]["energy_breakdown_j"],
        "latency_per_inference_s": ideal["report"]["latency_per_inference_s"],
        "gpu_baseline_energy_j": ideal["report"]["gpu_baseline_energy_j"],
        "energy_efficiency_vs_gpu": ideal["report"]["energy_efficiency_vs_gpu"],
        **{key: ideal["report"][key] for key in RANGE_KEYS},
        "arrays_used": mapping["arrays_used"],
        "arrays_lower_bound": mapping["arrays_lower_bound"],
        "macros_used": mapping["macros_used"],
        "calibration": cal.to_dict() | {"curve": None},
        "simulator_samples_per_s": ideal["report"]["samples_per_s"],
    }
    _plot_model(model, program, cal, summary, test, {"full": full, "ideal": ideal}, out)
    summary["accuracy_vs_read_noise"] = _noise_curve(program, test)
    return summary


def _plot_model(
    model: DemoModel,
    program: Program,
    cal: Any,
    summary: dict[str, Any],
    test: SimData,
    runs: dict[str, dict[str, Any]],
    out: Path,
) -> None:
    """The model's plots: accuracy vs timesteps on the test split, exit steps, occupancy."""
    hand_steps, _ = apply_table(PRIME_RULE, runs["full"]["result"].readouts)
    test_curve = replace(
        cal,
        curve=tuple(_test_curve(cal, runs["full"]["result"].readouts, test.y)),
        accuracy=summary["accuracy_sim_ideal"],
        avg_timesteps=summary["avg_timesteps"],
        accuracy_full=summary["accuracy_sim_all_steps"],
        oracle_avg_timesteps=summary["oracle_avg_timesteps_test"],
    )
    plot_curve(
        test_curve,
        out / f"{model.key}-accuracy-vs-timesteps.png",
        (summary["prime_hand_set"]["avg_timesteps"], summary["prime_hand_set"]["accuracy"]),
        f"{model.title}: early exit on the test split",
    )
    exit_histogram(
        {"calibrated": runs["ideal"]["result"].exit_step, "PRIME hand-set 0.8": hand_steps},
        program.timesteps,
        out / f"{model.key}-exit-steps.png",
        f"{model.title}: exit steps (test split)",
    )
    occupancy(
        pair_operations(program),
        {
            PAIR_UNUSED: "unused",
            PAIR_KEEP: "kept (as formed)",
            PAIR_RESET: "reset (pruned)",
            PAIR_PROGRAM: "programmed",
        },
        out / f"{model.key}-occupancy.png",
        f"{model.title}: array occupancy",
    )


def _oracle(readouts: np.ndarray) -> float:
    from primec.hardware.earlyexit import oracle_steps

    return float(oracle_steps(readouts).mean())


def _test_curve(cal, readouts: np.ndarray, labels: np.ndarray) -> list:
    from primec.hardware.earlyexit import evaluate

    return [
        evaluate(replace(cal.table, threshold=p.threshold), readouts, labels) for p in cal.curve
    ]


def _noise_curve(program: Program, test: SimData) -> list[tuple[float, float]]:
    """Accuracy on the test split at each read-noise level (same seed)."""
    return [
        (level, _run(program, test, Noise(read=level, seed=0))["report"]["accuracy"])
        for level in NOISE_LEVELS
    ]


def _available(models: tuple[DemoModel, ...], log: Callable[[str], None]) -> list[DemoModel]:
    found = [m for m in models if m.checkpoint.exists()]
    for missing in sorted(set(models) - set(found), key=lambda m: m.key):
        log(f"note: {missing.checkpoint.name} is not shipped; skipping {missing.title}")
    return found


def run_demo(
    out: Path, log: Callable[[str], None] = print, samples: int | None = None
) -> dict[str, Any]:
    """Run the demo; write summary.json and the plots into `out`; return the summary.

    `samples` keeps only the first samples of each split: a quick look, not the real numbers.
    """
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out.mkdir(parents=True, exist_ok=True)
    log("making N-Digits (N-MNIST-like events from scikit-learn's digits)...")
    calibration, test = (
        SimData(*(a[:samples] for a in load_split(split))) for split in ("calibration", "test")
    )
    models = {}
    for model in _available(DEMO_MODELS, log):
        log(f"{model.title}:")
        models[model.key] = run_model(model, calibration, test, out, log)
    energy_breakdown(
        {m["title"]: m["energy_breakdown_j"] for m in models.values()},
        out / "energy-breakdown.png",
        "Energy per inference by operation class (ideal, test split)",
    )
    accuracy_vs_noise(
        {m["title"]: m["accuracy_vs_read_noise"] for m in models.values()},
        out / "accuracy-vs-noise.png",
        "Accuracy vs read noise (test split, calibrated early exit)",
        "read noise (relative std per cell and read)",
    )
    inpainting = run_inpainting(out, log, samples)
    if inpainting is not None:
        models["prime-fsvae"] = inpainting
    summary = _top_level(models) | {
        "models": models,
        "seconds": time.perf_counter() - started,
        "output_dir": str(out),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log(render_summary(summary))
    return summary


RANGE_KEYS = (
    "energy_per_inference_range_j",
    "energy_efficiency_vs_gpu_range",
    "energy_efficiency_vs_gpu_batch1",
    "energy_efficiency_prime_method",
)
TOP_KEYS = (
    "accuracy_pytorch",
    "accuracy_sim_ideal",
    "accuracy_sim_noisy",
    "avg_timesteps",
    "compute_savings",
    "energy_per_inference_j",
    "energy_efficiency_vs_gpu",
    "arrays_used",
)


def _top_level(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    released = models.get("prime-nmnist") or next(iter(models.values()))
    return {key: released[key] for key in TOP_KEYS}


def render_summary(summary: dict[str, Any]) -> str:
    """The demo's printed summary: one block per model."""
    lines = ["", "primec demo summary (N-Digits test split)"]
    for model in summary["models"].values():
        if "quality_pytorch" in model:  # the inpainting model
            lines += render_inpainting(model)
            continue
        hand = model["prime_hand_set"]
        low, high = model["energy_per_inference_range_j"]
        ratio_low, ratio_high = model["energy_efficiency_vs_gpu_range"]
        lines += [
            f"  {model['title']}",
            f"    accuracy   PyTorch {model['accuracy_pytorch'] * 100:.2f}% | simulated ideal {model['accuracy_sim_ideal'] * 100:.2f}% | noisy chip {model['accuracy_sim_noisy'] * 100:.2f}%",
            f"    timesteps  {model['avg_timesteps']:.2f} of 10 ({model['compute_savings'] * 100:.1f}% saved) vs PRIME's hand-set rule {hand['avg_timesteps']:.2f} ({hand['compute_savings'] * 100:.1f}% saved); oracle {model['oracle_avg_timesteps_test']:.2f}",
            f"    energy     {model['energy_per_inference_j'] * 1e9:.1f} nJ per inference (estimates span {low * 1e9:.1f}-{high * 1e9:.1f} nJ), {model['energy_efficiency_vs_gpu']:.0f}x vs the GPU baseline, roofline at a large batch (range {ratio_low:.0f}-{ratio_high:.0f}x; batch 1: {model['energy_efficiency_vs_gpu_batch1']:.0f}x; PRIME's method: {model['energy_efficiency_prime_method']:.0f}x)",
            f"    arrays     {model['arrays_used']} used (lower bound {model['arrays_lower_bound']}) on {model['macros_used']} macro(s)",
        ]
    lines.append(
        f"  wrote summary.json, artefacts and plots to {summary['output_dir']} in {summary['seconds']:.0f} s"
    )
    return "\n".join(lines)
