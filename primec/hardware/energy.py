"""Energy and latency from executed operations and the target's table (`docs/energy.md`).

The simulator counts operations per sample over the steps it executed, so early exit (fewer
steps) and sparsity (fewer driven rows, fewer conducting cells) show up in the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
}


def energy_per_sample(
    counts: dict[str, np.ndarray], parameters: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Joules per sample, by operation class."""
    return {
        name: sum(
            counts[counter].astype(np.float64) * parameters[key] * PJ for counter, key in terms
        )
        for name, terms in CLASSES.items()
    }


def energy_report(
    counts: dict[str, np.ndarray], steps: np.ndarray, meta: dict[str, Any], timesteps: int
) -> dict[str, Any]:
    """Energy, latency and the GPU baseline, averaged over samples (and so over exit steps)."""
    parameters = meta["target_parameters"]
    breakdown = energy_per_sample(counts, parameters)
    total = float(sum(v.mean() for v in breakdown.values()))
    read_cycles = meta["graph_meta"].get("read_cycles_per_timestep", 0)
    latency = float(steps.mean()) * read_cycles * parameters["read.latency_ns"] * 1e-9
    # The baseline runs the dense network (no pruning, no early exit) for all T steps.
    gpu = meta["dense_macs_per_step"] * timesteps * parameters["baseline.energy_per_mac_pj"] * PJ
    return {
        "energy_per_inference_j": total,
        "energy_breakdown_j": {name: float(v.mean()) for name, v in breakdown.items()},
        "operations_per_inference": {name: float(v.mean()) for name, v in counts.items()},
        "latency_per_inference_s": latency,
        "gpu_baseline": parameters["baseline.name"],
        "gpu_baseline_energy_j": gpu,
        "energy_efficiency_vs_gpu": gpu / total if total else None,
    }
