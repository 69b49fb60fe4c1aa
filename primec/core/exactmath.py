"""Grids of floats with the same bits on every machine.

`np.logspace` and `np.geomspace` take `pow`/`log`, whose last bits differ between CPUs and
math libraries (numpy picks SIMD kernels by CPU). A grid that ends up in an artefact (ADC
histogram edges behind calibrated ranges, candidate exit thresholds behind an exit table)
then moves by an ulp between machines, and so do the artefact's bytes. These grids are worked
out in decimal arithmetic at 40 digits, in software, and rounded once to float64: the nearest
float to each exact value (up to a tie within 10^-40, which no real grid meets).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

DIGITS = 40


def geometric(start: float, stop: float, count: int) -> np.ndarray:
    """`np.geomspace(start, stop, count)`: start x (stop / start)^(i / (count - 1)), i = 0 ..
    count - 1, each the float64 nearest the exact value; the ends are start and stop exactly.
    start and stop are nonzero and of one sign."""
    if count < 1:
        return np.empty(0)
    if count == 1:
        return np.array([float(start)])
    with localcontext() as context:
        context.prec = DIGITS
        first, ratio = Decimal(start), Decimal(stop) / Decimal(start)
        values = [float(first * ratio ** (Decimal(i) / (count - 1))) for i in range(count)]
    values[0], values[-1] = float(start), float(stop)
    return np.array(values)


def decades(low: int, high: int, per_decade: int) -> np.ndarray:
    """10^(k / per_decade) for k = low x per_decade .. high x per_decade, each the float64
    nearest it (the decades 10^low .. 10^high themselves exactly)."""
    with localcontext() as context:
        context.prec = DIGITS
        exponents = range(low * per_decade, high * per_decade + 1)
        return np.array([float(Decimal(10) ** (Decimal(k) / per_decade)) for k in exponents])
