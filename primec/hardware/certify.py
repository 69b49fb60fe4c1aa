"""Finite-sample risk certificates: p-values for "risk > eps" and fixed-sequence testing.

This is the Learn-then-Test procedure (Angelopoulos, Bates et al. 2021) as primec's early-exit
calibration uses it (`docs/early-exit.md` has the argument). Each candidate setting j has a null
hypothesis H_j: R_j > eps, where R_j is the expected loss (a 0/1 event such as "the early
prediction differs from the all-T one") on a new sample. Given n independent calibration
samples with k_j losses, a valid p-value p_j satisfies P(p_j <= u) <= u under H_j. Fixed-sequence
testing walks the candidates in an order fixed before looking at the calibration losses and
rejects H_1, H_2, ... while p_j <= delta; the first failure stops the walk. With probability at
least 1 - delta over the calibration draw, every rejected (certified) candidate has R_j <= eps,
whether or not R is monotone along the sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from primec.errors import PrimecError

PVALUES = ("binomial", "hoeffding-bentkus")


def check_level(name: str, value: float) -> float:
    """Raise unless 0 < value < 1 (a risk level or an error probability); return it."""
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise PrimecError(f"{name} must lie strictly between 0 and 1, got {value}")
    return float(value)


def binomial_pvalue(losses: int, n: int, eps: float) -> float:
    """P(Bin(n, eps) <= losses): exact for 0/1 losses under R = eps, conservative for R > eps."""
    from scipy import stats

    return float(stats.binom.cdf(losses, n, eps))


def hoeffding_bentkus_pvalue(mean_loss: float, n: int, eps: float) -> float:
    """The Hoeffding-Bentkus p-value for losses in [0, 1] with sample mean `mean_loss`.

    min(exp(-n h(min(mean, eps), eps)), e P(Bin(n, eps) <= ceil(n mean))), h the binary
    relative entropy (Bates et al. 2021, "Distribution-free, risk-controlling prediction sets").
    """
    from scipy import stats

    low = min(mean_loss, eps)
    hoeffding = math.exp(-n * _relative_entropy(low, eps))
    bentkus = math.e * stats.binom.cdf(math.ceil(n * mean_loss - 1e-9), n, eps)
    return float(min(hoeffding, bentkus, 1.0))


def _relative_entropy(a: float, b: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(b))."""
    terms = 0.0
    if a > 0:
        terms += a * math.log(a / b)
    if a < 1:
        terms += (1 - a) * math.log((1 - a) / (1 - b))
    return terms


def pvalue(losses: int, n: int, eps: float, method: str = "binomial") -> float:
    """The p-value of H: risk > eps from `losses` 0/1 losses among n samples."""
    if method == "binomial":
        return binomial_pvalue(losses, n, eps)
    if method == "hoeffding-bentkus":
        return hoeffding_bentkus_pvalue(losses / n, n, eps)
    raise PrimecError(f"unknown p-value {method!r}", hint=f"known: {', '.join(PVALUES)}")


def pvalues_of(counts: np.ndarray, n: int, eps: float, method: str = "binomial") -> list[float]:
    """`pvalue` of every loss count at once (the binomial one vectorised)."""
    if method != "binomial":
        return [pvalue(int(k), n, eps, method) for k in counts]
    from scipy import stats

    return [float(p) for p in stats.binom.cdf(counts, n, eps)]


def fixed_sequence(pvalues: Sequence[float], delta: float) -> int:
    """How many leading hypotheses fixed-sequence testing rejects at level delta."""
    for j, p in enumerate(pvalues):
        if p > delta:
            return j
    return len(pvalues)


def samples_needed(eps: float, delta: float, rate: float = 0.0, method: str = "binomial") -> int:
    """The fewest samples with which an observed loss rate `rate` certifies risk <= eps at delta.

    With rate 0 this is ceil(log delta / log(1 - eps)) for the binomial p-value; for a rate at or
    above eps no sample size suffices and this returns 0.
    """
    if rate >= eps:
        return 0
    if rate == 0.0 and method == "binomial":
        return math.ceil(math.log(delta) / math.log1p(-eps) - 1e-12)

    def certifies(n: int) -> bool:
        return pvalue(math.floor(rate * n + 1e-9), n, eps, method) <= delta

    high = 1
    while not certifies(high):
        high *= 2
        if high > 1 << 40:
            return 0
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if certifies(middle) else (middle, high)
    return high


@dataclass(frozen=True)
class Certificate:
    """The outcome of fixed-sequence testing over a candidate sequence."""

    eps: float
    delta: float
    method: str
    samples: int
    losses: tuple[int, ...]  # per candidate, in test order
    pvalues: tuple[float, ...]
    certified: int  # the first `certified` candidates are certified

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready summary (without the per-candidate lists)."""
        return {
            "eps": self.eps,
            "delta": self.delta,
            "pvalue": self.method,
            "samples": self.samples,
            "candidates": len(self.pvalues),
            "certified_candidates": self.certified,
        }


def certify(losses: np.ndarray, eps: float, delta: float, method: str = "binomial") -> Certificate:
    """Fixed-sequence testing of candidates whose 0/1 losses are the columns of `losses` [n, m],
    in column order. Raises if n is too small for any candidate to ever be certified."""
    n = losses.shape[0]
    needed = samples_needed(eps, delta, 0.0, method)
    if n < needed:
        raise PrimecError(
            f"calibration data has {n} samples: certifying risk <= {eps:g} at delta {delta:g} "
            f"needs at least {needed} samples, even if no early prediction changed",
            hint="give more calibration samples, or a larger --exit-risk or --exit-delta",
        )
    counts = losses.sum(axis=0).astype(np.int64)
    pvalues = pvalues_of(counts, n, eps, method)
    return Certificate(
        eps,
        delta,
        method,
        n,
        tuple(counts.tolist()),
        tuple(pvalues),
        fixed_sequence(pvalues, delta),
    )
