"""Shared by the framework tests: compile a framework model from its state_dict and --arch,
simulate it, and run the framework's own forward pass in float32 or float64."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from primec.backends.isa import Lif
from primec.backends.program import Program
from primec.backends.simulator import Simulator
from torch import nn

from primec.pipeline import BackendOptions, compile_model

ARCHS = Path(__file__).resolve().parent / "framework_archs.py"


def quiet(_: str) -> None:
    """Swallow the compiler's log lines."""


def compile_framework(name: str, build: Callable[[], nn.Module], folder: Path) -> Program:
    """Save the framework model's own state_dict and compile it with --arch FILE.py:name."""
    path = folder / f"{name}.pt"
    torch.save(build().state_dict(), path)
    arch = f"{ARCHS}:{name}"
    return compile_model(path, arch=arch, log=quiet, backend=BackendOptions()).program


def simulated_output_spikes(program: Program, x: np.ndarray) -> np.ndarray:
    """The last LIF layer's spikes at every step, [N, T, ...], from the compiled artefact."""
    last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
    result = Simulator(program, trace=(last,)).run(x, 64, early_exit=False)
    return result.spikes[last]


def as_dtype(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The network in `dtype`; spikes the framework emits as float32 are cast as layers read them
    (0 and 1 are exact in every dtype, so this changes no value)."""
    net = net.to(dtype)
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            layer.register_forward_pre_hook(lambda _, args: (args[0].to(dtype),))
    return net


def assert_output_spikes_equal(
    name: str,
    build: Callable[[], nn.Module],
    reference: Callable[[str, np.ndarray, torch.dtype], np.ndarray],
    x: np.ndarray,
    folder: Path,
) -> None:
    """Compile the framework model, simulate it on x, and require the output spikes of every
    step to equal the framework's own forward pass (`reference`) in float64 and float32."""
    torch.set_num_threads(1)
    simulated = simulated_output_spikes(compile_framework(name, build, folder), x)
    for dtype in (torch.float64, torch.float32):
        expected = reference(name, x, dtype)
        assert 0.05 < expected.mean() < 0.9, "the model must spike, or the test proves nothing"
        flips = int((simulated.reshape(expected.shape) != expected).sum())
        assert flips == 0, f"{name}: {flips} of {expected.size} output spikes differ ({dtype})"
