"""The int32 grid of bit-plane reads (`grid.int32_grid`): a power-of-two quantum on which any
sum of `terms` values fits in int32, each value within half a quantum of where it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
from primec.backends.simulator.grid import int32_grid


@pytest.mark.parametrize("terms", [1, 50, 300, 511, 512, 1000])
@pytest.mark.parametrize("scale", [1e-6, 0.37, 100.0, 2.0**7])
def test_int32_grid_sums_fit_and_values_move_by_half_a_quantum(terms, scale) -> None:
    rng = np.random.default_rng(terms)
    values = rng.uniform(-1, 1, size=(terms, 9)) * scale
    # The largest; for scale 2^7 just under a power of two, so it rounds up to 2^bits.
    values[0, 4] = -scale * (1 - 2.0**-40)
    multiples, quantum = int32_grid(values, terms)
    assert multiples.dtype == np.int32
    assert math.frexp(quantum)[0] == 0.5  # a power of two
    assert np.abs(values - multiples * quantum).max() <= quantum / 2
    # The worst sum: every term at the largest magnitude, one sign.
    assert terms * int(np.abs(multiples).max()) < 2**31
    # The finest such grid: twice as fine would not fit.
    largest = np.abs(values).max()
    assert terms * largest / (quantum / 2) >= 2**30


def test_int32_grid_of_zeros_is_zeros() -> None:
    multiples, quantum = int32_grid(np.zeros((4, 3)), 4)
    assert quantum == 1.0 and multiples.dtype == np.int32 and not multiples.any()
