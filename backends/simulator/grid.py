"""The fixed-point grid: perturbed conductances and variances sit on a power-of-two grid on
which every partial sum is exact in float64, so batch size and summation order cannot matter.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT64_BITS = 53


def on_grid(values: np.ndarray, terms: int, level_bits: int) -> np.ndarray:
    """values on a power-of-two grid on which a sum of `terms` of them times levels of
    `level_bits` bits is exact in float64. Each moves by at most half a step, about 2^-35 of the
    largest value for 8-bit levels and 512 rows: far below any physical precision."""
    largest = float(np.abs(values).max(initial=0.0))
    if largest == 0.0:
        return values
    bits = FLOAT64_BITS - 1 - level_bits - math.ceil(math.log2(terms + 1))
    quantum = 2.0 ** (math.floor(math.log2(largest)) + 1 - bits)
    return np.round(values / quantum) * quantum


def exact_product(factors: tuple[float, ...]) -> tuple[float, ...]:
    """The factors as one when that rounds the same: all but one are powers of two."""
    inexact = [f for f in factors if math.frexp(f)[0] not in (0.5, -0.5)]
    if len(factors) < 2 or len(inexact) > 1:
        return factors
    return (math.prod(factors),)
