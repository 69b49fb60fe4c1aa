"""The released PRIME classifier, compiled for the default target, and a single-thread guard:
shared by the tests of the chip axis, the ADC and drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from primec.backends.program import Program

from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.pipeline import BackendOptions, compile_model

RELEASED = (
    Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
)


def released_program() -> Program:
    """The released classifier through every pass, lowered (no early-exit table)."""
    return compile_model(
        RELEASED,
        arch="prime-nmnist",
        target=load_target(DEFAULT_TARGET),
        log=lambda _: None,
        backend=BackendOptions(),
    ).program


def single_thread() -> Iterator[None]:
    """Body of a module fixture: one torch thread (a shared machine's thread pool stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
