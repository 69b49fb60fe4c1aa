"""The inpainting model end to end: PyTorch, the compiled chip (ideal and noisy), early exit.

`evaluate` compiles a prime-fsvae checkpoint to both artefacts, simulates the test samples on
the chip with no noise and with the target's own non-idealities, and reports, next to the
PyTorch model and the mean-digit baseline, the hole MSE and PSNR, the steps PRIME's hand-set
convergence rule and a calibrated one run, energy, arrays and macros.

The noisy chip (`inpaint_chip`) converts on ADC ranges calibrated on the calibration split and
repairs its stuck cells by read-back (`REPAIR`); it is reported on several chips, and also
without the repair (the raw chip).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from primec.apps.inpaint import Quality, hole_quality, mean_digit_fill, reconstruct
from primec.apps.inpaint_chip import (
    ADC_PER,
    CHIPS,
    REPAIR,
    calibrated_program,
    chip_readouts,
    chip_spread,
)
from primec.apps.inpaint_exit import ExitRule, at_exit, calibrate, exit_steps, hole_mse
from primec.apps.inpaint_score import image_score, load_classifier
from primec.backends.simulator import Noise, Simulator
from primec.datasets.inpaint import InpaintData
from primec.errors import PrimecError
from primec.hardware.energy import energy_report
from primec.hardware.mapreport import mapping_report
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.nn.fsvae import FSVAE, accumulators, partial_readouts, prime_fsvae
from primec.pipeline import BackendOptions, CompileResult, compile_model

BATCH = 32
EXIT_BUDGET = 0.05  # calibrated exit: hole MSE at most 5% above running all T steps


def load_fsvae(checkpoint: str | Path) -> FSVAE:
    """A prime-fsvae with the checkpoint's weights; a checkpoint of another model is refused."""
    net = prime_fsvae()
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    if not isinstance(state, dict):
        raise PrimecError("expected a state_dict", where=str(checkpoint))
    missing = sorted(set(net.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(net.state_dict()))
    if missing or unexpected:
        raise PrimecError(
            f"not a prime-fsvae checkpoint: {len(missing)} missing key(s) (first: "
            f"{(missing or ['-'])[0]}), {len(unexpected)} unexpected (first: {(unexpected or ['-'])[0]})",
            where=str(checkpoint),
            hint="train one with `primec train --arch prime-fsvae`",
        )
    net.load_state_dict(state)
    return net.eval()


def pytorch_readouts(net: FSVAE, x: np.ndarray, prime_quirk: bool) -> np.ndarray:
    """The readout after every step [N, T, ...] as the exit controller sees it."""
    with torch.no_grad():
        parts = []
        for start in range(0, len(x), BATCH):
            net.sampler.sample_offset = start
            acc = accumulators(net, torch.from_numpy(x[start : start + BATCH]))
            parts.append(partial_readouts(acc, prime_quirk=prime_quirk).numpy())
        net.sampler.sample_offset = 0
    return np.concatenate(parts)


def exit_summary(
    test: np.ndarray, calibration: np.ndarray, data: InpaintData, cal_data: InpaintData
) -> dict[str, Any]:
    """PRIME's hand-set rule and the calibrated rule on PyTorch readouts [N, T, ...]."""
    full = hole_mse(test[:, -1], data.clean, data.mask)
    rules = {
        "prime_hand_set": ExitRule(),
        "calibrated": calibrate(
            calibration, cal_data.clean, cal_data.mask, EXIT_BUDGET, ExitRule()
        ),
    }
    summary: dict[str, Any] = {"hole_mse_all_steps": full, "budget": EXIT_BUDGET}
    for name, rule in rules.items():
        steps = exit_steps(test, rule)
        mse = hole_mse(at_exit(test, steps), data.clean, data.mask)
        summary[name] = {
            "rule": {"window": rule.window, "threshold": rule.threshold, "scale": rule.scale},
            "avg_timesteps": float(steps.mean()),
            "compute_savings": 1 - float(steps.mean()) / test.shape[1],
            "hole_mse": mse,
            "quality_loss": mse / full - 1,
        }
    return summary


def _quality(q: Quality) -> dict[str, float]:
    return {"hole_mse": q.hole_mse, "hole_psnr_db": q.hole_psnr_db}


def _image_scores(images: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """The Inception-Score-like score and label accuracy of each set of images (inpaint_score)."""
    classifier = load_classifier()
    return {name: image_score(classifier, x, labels) for name, x in images.items()}


def compile_fsvae(checkpoint: str | Path) -> CompileResult:
    """The checkpoint compiled to both artefacts (bytecode and macro file)."""
    return compile_model(
        Path(checkpoint),
        "prime-fsvae",
        log=lambda _: None,
        backend=BackendOptions(("bytecode", "macro")),
    )


def _simulate(compiled: CompileResult, x: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
    """The chip's readout after every step [N, T, ...] and its energy report (all T steps)."""
    program = compiled.program
    result = Simulator(program, noise).run(x, BATCH, early_exit=False)
    energy = energy_report(result.counts, result.exit_step, program.meta, program.timesteps)
    return result.readouts, energy


def noisy_chips(
    compiled: CompileResult,
    data: dict[str, InpaintData],
    reference: float,
    chips: tuple[int, ...],
    log: Callable[[str], None],
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The target's noise on `chips`, ADC ranges calibrated on the calibration split, with and
    without stuck-cell repair: the summary's entries and chip `chips[0]`'s final readouts
    (repaired, raw)."""
    test = data["test"]
    program, adc = calibrated_program(compiled.program, data["calibration"].x)
    noise = Noise.from_target(program.meta["target_parameters"])
    finals = {
        repair: [r[:, -1] for r in chip_readouts(program, test.x, noise, chips, repair)]
        for repair in (REPAIR, None)
    }
    log(
        f"  simulated {len(test.x)} test samples on {len(chips)} noisy chip(s), with and without repair"
    )
    spreads = {
        repair: chip_spread(final, test.clean, test.mask, reference, chips)
        for repair, final in finals.items()
    }
    entries = {
        "chip_noise": {
            "adc_ranges": {
                "per": ADC_PER,
                "percentile": adc["percentile"],
                "samples": adc["samples"],
            },
            "stuck_repair": REPAIR,
        },
        "chips_sim_noisy": spreads[REPAIR],
        "chips_sim_noisy_unrepaired": spreads[None],
        "quality_sim_noisy_unrepaired": _quality(
            hole_quality(finals[None][0], test.clean, test.mask)
        ),
    }
    return entries, finals[REPAIR][0], finals[None][0]


def evaluate(
    checkpoint: str | Path,
    data: dict[str, InpaintData],
    log: Callable[[str], None] = print,
    chips: tuple[int, ...] = CHIPS,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The summary of one checkpoint, and the pictures' arrays (PyTorch and chip readouts)."""
    net = load_fsvae(checkpoint)
    test, cal = data["test"], data["calibration"]
    torch_steps = reconstruct(net, test.x)
    compiled = compile_fsvae(checkpoint)
    target = load_target(DEFAULT_TARGET)
    mapping = mapping_report(compiled.graph, target)
    log(
        f"  compiled: {mapping['arrays_used']} arrays (lower bound {mapping['arrays_lower_bound']}), {mapping['macros_used']} macros"
    )
    chip_steps, energy = _simulate(compiled, test.x, Noise())
    ideal = chip_steps[:, -1]
    pytorch = hole_quality(torch_steps[:, -1], test.clean, test.mask)
    chip_entries, noisy, raw = noisy_chips(compiled, data, pytorch.hole_mse, chips, log)
    quirk = pytorch_readouts(net, test.x, True)
    baseline = mean_digit_fill(data["train"].clean, test.x[:, 0], test.mask)
    summary = {
        "samples": len(test.x),
        "quality_pytorch": _quality(pytorch),
        "quality_sim_ideal": _quality(hole_quality(ideal, test.clean, test.mask)),
        "quality_sim_noisy": _quality(hole_quality(noisy, test.clean, test.mask)),
        "quality_mean_digit": _quality(hole_quality(baseline, test.clean, test.mask)),
        **chip_entries,
        "image_score": _image_scores(
            {"clean": test.clean, "holed": test.x[:, 0], "mean_digit": baseline}
            | {"pytorch": torch_steps[:, -1], "sim_ideal": ideal, "sim_noisy": noisy}
            | {"sim_noisy_unrepaired": raw},
            test.y,
        ),
        "max_abs_diff_sim_ideal_vs_pytorch": float(np.abs(ideal - torch_steps[:, -1]).max()),
        "early_exit": exit_summary(quirk, pytorch_readouts(net, cal.x, True), test, cal),
        "energy_per_inference_j": energy["energy_per_inference_j"],
        "energy_breakdown_j": energy["energy_breakdown_j"],
        "arrays_used": mapping["arrays_used"],
        "arrays_lower_bound": mapping["arrays_lower_bound"],
        "macros_used": mapping["macros_used"],
    }
    pictures = {
        "clean": test.clean,
        "holed": test.x[:, 0],
        "pytorch": torch_steps,
        "chip": chip_steps,
        "exit_step": exit_steps(quirk, ExitRule()),
        "at_exit": at_exit(quirk, exit_steps(quirk, ExitRule())),
    }
    return summary, pictures
