"""Energy and latency from executed operations and the target's table (`docs/energy.md`).

The simulator counts operations per sample over the steps it executed, so early exit (fewer
steps) and sparsity (fewer driven rows, fewer conducting cells) show up in the numbers. ADC
energy follows the ADC's bits; data moved between macros is counted once a placement spans
several (`macro_transfer_bits_per_step`, from the backend). The target's estimates give an
energy range (every estimate at its low, then its high bound), and the GPU baseline is a roofline
model (`primec.hardware.gpumodel`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from primec.errors import PrimecError
from primec.hardware import gpumodel
from primec.hardware.costmodel import adc_energy_pj, corner

PJ = 1e-12

# operation class -> (simulator counters, target energy keys), one energy per counter
CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    "array_reads": (("cell_reads", "energy.cell_read_pj"),),
    "row_drives": (("row_drives", "energy.row_drive_pj"),),
    "adc_conversions": (("adc_conversions", "energy.adc_conversion_pj"),),
    "digital_ops": (
        ("digital_adds", "energy.digital_add_pj"),
        ("digital_multiplies", "energy.digital_multiply_pj"),
    ),
    "neuron_updates": (("neuron_updates", "energy.lif_update_pj"),),
    "control": (("steps", "energy.controller_pj"),),
    "macro_transfers": (("macro_transfer_bits", "energy.macro_transfer_pj_per_bit"),),
}


def energy_per_sample(
    counts: dict[str, np.ndarray], parameters: dict[str, Any], adc_bits: int | None = None
) -> dict[str, np.ndarray]:
    """Joules per sample, by operation class (ADC conversions at `adc_bits`, default the target's)."""
    prices = parameters | {"energy.adc_conversion_pj": adc_energy_pj(parameters, adc_bits)}
    return {
        name: sum(
            np.asarray(counts.get(counter, 0), dtype=np.float64) * prices[key] * PJ
            for counter, key in terms
        )
        for name, terms in CLASSES.items()
    }


def energy_report(
    counts: dict[str, np.ndarray],
    steps: np.ndarray,
    meta: dict[str, Any],
    timesteps: int,
    adc_bits: int | None = None,
) -> dict[str, Any]:
    """Energy, latency and the GPU baseline, averaged over samples (and so over exit steps)."""
    parameters = _priced(meta)
    bounds, per_step = energy_meta(meta)
    moved = np.asarray(counts["steps"]) * per_step
    counts = counts | {"macro_transfer_bits": moved}
    breakdown = energy_per_sample(counts, parameters, adc_bits)
    total = float(sum(v.mean() for v in breakdown.values()))
    low, high = (
        float(sum(v.mean() for v in energy_per_sample(counts, side, adc_bits).values()))
        for side in (corner(parameters, bounds, "low"), corner(parameters, bounds, "high"))
    )
    read_cycles = meta["graph_meta"].get("read_cycles_per_timestep", 0)
    latency = [
        float(steps.mean()) * read_cycles * p["read.latency_ns"] * 1e-9
        for p in (parameters, corner(parameters, bounds, "low"), corner(parameters, bounds, "high"))
    ]
    return {
        "energy_per_inference_j": total,
        "energy_per_inference_range_j": [low, high],
        "energy_estimates": sorted(k for k in bounds if not k.startswith("baseline.")),
        "energy_breakdown_j": {name: float(v.mean()) for name, v in breakdown.items()},
        "operations_per_inference": {name: float(v.mean()) for name, v in counts.items()},
        "adc_bits": adc_bits or parameters["adc.bits"],
        "latency_per_inference_s": latency[0],
        "latency_per_inference_range_s": latency[1:],
    } | gpu_report(meta, parameters, bounds, timesteps, (total, low, high))


def gpu_report(
    meta: dict[str, Any],
    parameters: dict[str, Any],
    bounds: dict[str, list[float]],
    timesteps: int,
    ours: tuple[float, float, float],
) -> dict[str, Any]:
    """The GPU baseline (roofline, dense, all T steps) and our efficiency ratio against it.

    The ratio's range pairs the GPU's low corner with our high energy and vice versa.
    """
    work = gpumodel.Workload.from_meta(meta, timesteps)
    batch = parameters["baseline.large_batch"]
    gpu = {
        side: gpumodel.energy_per_inference(work, p, batch)
        for side, p in (
            ("central", parameters),
            ("low", corner(parameters, bounds, "low")),
            ("high", corner(parameters, bounds, "high")),
        )
    }
    batch1 = gpumodel.energy_per_inference(work, parameters, 1)
    prime_method = gpumodel.prime_method_energy(work, parameters)
    total, low, high = ours
    return {
        "gpu_baseline": parameters["baseline.name"],
        "gpu_baseline_method": f"roofline model, dense network, all {timesteps} steps, batch {batch}",
        "gpu_baseline_energy_j": gpu["central"],
        "gpu_baseline_energy_range_j": [gpu["low"], gpu["high"]],
        "gpu_baseline_batch1_energy_j": batch1,
        "energy_efficiency_vs_gpu": gpu["central"] / total if total else None,
        "energy_efficiency_vs_gpu_range": [gpu["low"] / high, gpu["high"] / low] if low else None,
        "energy_efficiency_vs_gpu_batch1": batch1 / total if total else None,
        "gpu_prime_method_energy_j": prime_method,
        "energy_efficiency_prime_method": prime_method / total if total else None,
    }


def energy_meta(meta: dict[str, Any]) -> tuple[dict[str, list[float]], int]:
    """The artefact's estimate bounds and transfer bits per step, checked (they come from a file)."""
    bounds, bits = meta.get("target_estimates", {}), meta.get("macro_transfer_bits_per_step", 0)
    numbers = (int, float)
    good = isinstance(bounds, dict) and all(
        key in meta["target_parameters"]
        and isinstance(pair, list)
        and len(pair) == 2
        and all(
            isinstance(v, numbers) and not isinstance(v, bool) and 0 <= v < math.inf for v in pair
        )
        for key, pair in bounds.items()
    )
    if not good or not isinstance(bits, int) or isinstance(bits, bool) or bits < 0:
        raise PrimecError(
            "the artefact's target_estimates or macro_transfer_bits_per_step are malformed",
            hint="compile the model again",
        )
    return bounds, bits


def _priced(meta: dict[str, Any]) -> dict[str, Any]:
    """The artefact's target parameters, checked to carry today's cost table."""
    parameters = meta["target_parameters"]
    missing = [
        k
        for k in ("energy.macro_transfer_pj_per_bit", "baseline.large_batch")
        if k not in parameters
    ]
    if missing:
        raise PrimecError(
            f"the artefact's target table lacks {', '.join(missing)}: it was compiled by an older primec",
            hint="compile the model again to price it with the current energy model",
        )
    return parameters
