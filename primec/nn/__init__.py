"""primec.nn: PyTorch modules for authoring and training PRIME-style spiking networks.

Neurons (`LIF` and its named variants, `Integrator`), readouts over time, supermask layers with
frozen random weights, the `SNN` container whose step function primec exports, and the built-in
architectures (`ARCHS`). See docs/frontend.md.
"""

from primec.hardware.devicemap import bind_device_map
from primec.nn.archs import ARCHS, RELEASED_WEIGHTS, prime_nmnist
from primec.nn.functional import keep_mask
from primec.nn.network import SNN, StepModule, export_step, run_over_time, save_step
from primec.nn.neurons import FSVAELIF, IF, LIF, Integrator, Leaky, PrimeCell, Stateful
from primec.nn.readout import ExpTanhReadout, MeanReadout
from primec.nn.supermask import (
    Supermask,
    SupermaskConv2d,
    SupermaskConvTranspose2d,
    SupermaskLinear,
    draw_weights,
)

__all__ = [
    "ARCHS",
    "FSVAELIF",
    "IF",
    "LIF",
    "RELEASED_WEIGHTS",
    "SNN",
    "ExpTanhReadout",
    "Integrator",
    "Leaky",
    "MeanReadout",
    "PrimeCell",
    "Stateful",
    "StepModule",
    "Supermask",
    "SupermaskConv2d",
    "SupermaskConvTranspose2d",
    "SupermaskLinear",
    "bind_device_map",
    "draw_weights",
    "export_step",
    "keep_mask",
    "prime_nmnist",
    "run_over_time",
    "save_step",
]
