"""The chip axis: many simulated chips in one vectorised run. Chip c's results (every output:
readouts after every step, predictions, exit steps, operation counts) are the same whether it
runs alone or among 32 chips, in any order of chips, in batches of 1, 7 or 64 samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from primec.backends.program import Program
from primec.backends.simulator import Noise, SimResult, Simulator
from released import single_thread
from simresults import assert_same, released_with_exit_rule

from primec.datasets import load_split
from primec.errors import PrimecError

# Every per-chip non-ideality at once: programming error and stuck cells differ per chip, read
# noise per (chip, sample, step); the ADC and the exit table make rows leave at different steps.
CHIP_NOISE = Noise(program=0.05, read=0.02, stuck=0.002, adc=8, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def program() -> Program:
    """The released classifier with PRIME's early-exit rule (rows exit at different steps)."""
    return released_with_exit_rule()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return load_split("test")[0][:8]


@pytest.fixture(scope="module")
def among_32(program: Program, x: np.ndarray) -> list[SimResult]:
    return Simulator(program, CHIP_NOISE, chips=range(32)).run_chips(x, 64)


@pytest.mark.slow
@pytest.mark.parametrize("chip", [0, 13, 31])
def test_chip_alone_equals_chip_among_32(program, x, among_32, chip: int) -> None:
    alone = Simulator(program, CHIP_NOISE, chips=(chip,)).run(x, 64)
    assert_same(alone, among_32[chip])


def test_chips_differ_and_exit_at_different_steps(among_32) -> None:
    """Not one chip copied 32 times: cells and read noise are each chip's own."""
    readouts = np.stack([r.readouts for r in among_32])
    assert len({r.tobytes() for r in readouts}) == 32
    assert len({tuple(r.exit_step) for r in among_32}) > 1


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batch_size_and_chip_order_do_not_change_a_chip(program, x, among_32, batch) -> None:
    chips = (31, 4, 17)
    results = Simulator(program, CHIP_NOISE, chips=chips).run_chips(x, batch)
    for chip, result in zip(chips, results, strict=True):
        assert_same(result, among_32[chip])


def test_ideal_chips_are_the_compiled_chip(program, x) -> None:
    """Without non-idealities every chip is the compiled one, exactly."""
    single = Simulator(program).run(x, 64)
    for result in Simulator(program, chips=range(3)).run_chips(x, 5):
        assert_same(result, single)


@pytest.mark.parametrize("chips", [(), (1, 1), (-1,)])
def test_bad_chip_lists_are_refused(program, chips) -> None:
    with pytest.raises(PrimecError, match="bad chip list"):
        Simulator(program, chips=chips)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_chips_on_cuda_equal_the_cpu(program, x, among_32) -> None:
    """The same code on the GPU: every chip's every output equals the CPU's, bit for bit."""
    chips = (0, 13, 31)
    on_gpu = Simulator(program, CHIP_NOISE, "cuda", chips=chips).run_chips(x, 64)
    for chip, result in zip(chips, on_gpu, strict=True):
        assert_same(result, among_32[chip])
    ideal_cpu = Simulator(program).run(x, 64)
    assert_same(Simulator(program, device="cuda").run(x, 64), ideal_cpu)
