"""The tiny model, data and files the sweep tests share (`test_sweep.py`,
`test_sweep_repair.py`): a small conv net compiled through every pass, random event counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ir_zoo import tiny_conv
from primec.backends import bytecode
from primec.backends.program import Program

from primec.core.text import save_graph
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.pipeline import BackendOptions, compile_model
from primec.runtime.simdata import SimData


def tiny_program(folder: Path) -> Program:
    """`ir_zoo.tiny_conv` compiled for the default target (its .pir written in folder)."""
    path = folder / "tiny.pir"
    save_graph(tiny_conv(), path)
    target = load_target(DEFAULT_TARGET)
    return compile_model(path, target=target, log=lambda _: None, backend=BackendOptions()).program


def tiny_data(seed: int, samples: int) -> SimData:
    """samples x 4 steps of 1 x 6 x 6 event counts 0..2, labels cycling over 5 classes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (samples, 4, 1, 6, 6)).astype(np.float64)
    return SimData(x=x, y=np.arange(samples) % 5)


def write_files(program: Program, data: SimData, folder: Path) -> tuple[Path, Path]:
    """The program as folder/tiny.pbc and the data as folder/data.npz (what the CLI reads)."""
    artefact, inputs = folder / "tiny.pbc", folder / "data.npz"
    bytecode.write(program, artefact)
    np.savez(inputs, x=data.x.astype(np.float32), y=data.y)
    return artefact, inputs
