"""A roofline energy model of the GPU baseline: the plain PyTorch network, dense, all T steps.

Per timestep and batch B (docs/energy.md, "The GPU baseline"):

    time   t = max(kernels x kernel_launch_us, FLOPs x B / peak, bytes(B) / bandwidth)
    energy E = static_power_w x t + pj_per_flop x FLOPs x B + pj_per_byte x bytes(B)

with FLOPs = 2 x dense MACs of a step, bytes(B) = 4 x (dense weights + B x activation
elements) (float32; every weight read once per step and batch, every activation written once and
read once; the network's input is small beside them and left out), kernels = kernels_per_layer x layers. Energy per inference = T x E / B. At batch 1
the launch term dominates (the GPU mostly waits), at a large batch the FLOPs do: the two bound
what a GPU spends on the network. The PRIME-method count (`prime_method_energy`) is the simpler
estimate that reproduces PRIME's 37.83x: dense MACs x T x energy per MAC at the GPU's datasheet
peak efficiency (`baseline.energy_per_mac_pj`; docs/energy.md, "How 37.83x can arise").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PJ = 1e-12
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Workload:
    """What the plain PyTorch network does per timestep and sample."""

    macs: int  # dense multiply-accumulates (pruned weights included: the GPU multiplies them)
    weights: int  # dense weights, read once per step and batch
    activations: int  # currents and neuron outputs, written and read per sample
    layers: int  # crossbar layers (conv, linear)
    timesteps: int

    @staticmethod
    def from_meta(meta: dict[str, Any], timesteps: int) -> Workload:
        """The workload of a compiled program (its `meta`), as the GPU would run it."""
        layers = meta["layers"]
        weights = sum(math.prod(layer["weight_shape"]) for layer in layers)
        outputs = sum(layer["weight_shape"][0] * layer["positions"] for layer in layers)
        return Workload(
            macs=int(meta["dense_macs_per_step"]),
            weights=weights,
            activations=2 * outputs,  # current and output of every neuron
            layers=len(layers),
            timesteps=timesteps,
        )


def energy_per_inference(work: Workload, parameters: dict[str, Any], batch: int) -> float:
    """Joules per inference of the roofline model at `batch` samples per launch."""
    flops = 2.0 * work.macs * batch
    traffic = FLOAT32_BYTES * (work.weights + 2 * batch * work.activations)
    kernels = parameters["baseline.kernels_per_layer"] * work.layers
    seconds = max(
        kernels * parameters["baseline.kernel_launch_us"] * 1e-6,
        flops / (parameters["baseline.peak_tflops"] * 1e12),
        traffic / (parameters["baseline.memory_gbs"] * 1e9),
    )
    step = (
        parameters["baseline.static_power_w"] * seconds
        + parameters["baseline.pj_per_flop"] * flops * PJ
        + parameters["baseline.pj_per_byte"] * traffic * PJ
    )
    return work.timesteps * step / batch


def prime_method_energy(work: Workload, parameters: dict[str, Any]) -> float:
    """Joules per inference counted at the datasheet peak efficiency: dense MACs x T x pJ per MAC."""
    return work.macs * work.timesteps * parameters["baseline.energy_per_mac_pj"] * PJ
