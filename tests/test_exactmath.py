"""`primec.core.exactmath`: grids whose every value is the float64 nearest the exact one, checked
in exact rational arithmetic (independent of the decimal arithmetic that makes them)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from primec.core.exactmath import decades, geometric


def _nearest(value: float, below: Fraction, above: Fraction, power: int) -> bool:
    """Whether value^power's exact counterpart lies within half an ulp of value: for a positive
    increasing map x -> x^power, (value - ulp/2)^power < exact^power < (value + ulp/2)^power."""
    half = Fraction(math.ulp(value)) / 2
    return (Fraction(value) - half) ** power <= below and above <= (Fraction(value) + half) ** power


@pytest.mark.parametrize(
    "start, stop, count", [(1e-4, 20.0, 80), (1e4, 1e-4, 41), (1e4 / 0.37, 1e-4, 33)]
)
def test_geometric_values_are_the_nearest_floats(start, stop, count) -> None:
    values = geometric(start, stop, count)
    assert len(values) == count and values[0] == start and values[-1] == stop
    np.testing.assert_allclose(values, np.geomspace(start, stop, count), rtol=1e-14)
    n, ratio = count - 1, Fraction(stop) / Fraction(start)
    for i, value in enumerate(values[1:-1], start=1):
        # value is nearest start x ratio^(i/n): (value -+ ulp/2) / start, to the n, bracket ratio^i.
        assert _nearest(
            value / 1.0, ratio**i * Fraction(start) ** n, ratio**i * Fraction(start) ** n, n
        ), i


def test_decades_are_the_nearest_floats_and_exact_at_each_decade() -> None:
    values = decades(-2, 1, 50)
    assert len(values) == 151
    assert [values[k] for k in range(0, 151, 50)] == [1e-2, 1e-1, 1.0, 10.0]
    for k, value in zip(range(-100, 51), values, strict=True):
        assert _nearest(value, Fraction(10) ** k, Fraction(10) ** k, 50), k


def test_small_counts() -> None:
    assert geometric(2.0, 8.0, 1).tolist() == [2.0]
    assert geometric(2.0, 8.0, 0).size == 0
    assert geometric(2.0, 8.0, 3).tolist() == [2.0, 4.0, 8.0]
