"""The fixed-point grids: perturbed conductances and variances sit on a power-of-two grid on
which every partial sum is exact in float64, so batch size and summation order cannot matter.
Bit-plane reads (read noise or the ADC on) take a coarser one on which every plane's sum is
exact in int32 (`int32_grid`), so the sparse kernel sums integers.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT64_BITS = 53
INT32_BITS = 31  # magnitude bits of an int32


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


def int32_grid(values: np.ndarray, terms: int) -> tuple[np.ndarray, float]:
    """values as int32 multiples of a power-of-two quantum on which any sum of up to `terms` of
    them fits in int32: (multiples, quantum). Each value moves by at most half a quantum, which
    is 2^-21 .. 2^-20 of the largest value for 512 terms. Multiples x quantum are exact float64
    values, and so is any sum of up to `terms` of them."""
    values = np.asarray(values, dtype=np.float64)
    largest = float(np.abs(values).max(initial=0.0))
    if largest == 0.0:
        return np.zeros(values.shape, dtype=np.int32), 1.0
    bits = INT32_BITS - math.ceil(math.log2(terms + 1))  # terms x 2^bits < 2^31
    quantum = 2.0 ** (math.floor(math.log2(largest)) + 1 - bits)
    return np.round(values / quantum).astype(np.int32), quantum


def exact_product(factors: tuple[float, ...]) -> tuple[float, ...]:
    """The factors as one when that rounds the same: all but one are powers of two."""
    inexact = [f for f in factors if math.frexp(f)[0] not in (0.5, -0.5)]
    if len(factors) < 2 or len(inexact) > 1:
        return factors
    return (math.prod(factors),)
