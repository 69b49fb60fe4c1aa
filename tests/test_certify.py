"""Risk certificates against independent references: binomial tails summed by hand and by
scipy's exact binomial test, the Hoeffding-Bentkus bound from its formula, the minimum sample
size in closed form, and fixed-sequence testing's coverage simulated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from primec.errors import PrimecError
from primec.hardware import certify as cert


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), summed term by term."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("k", "n", "eps"), [(0, 10, 0.1), (1, 10, 0.1), (3, 900, 0.01), (12, 900, 0.02), (0, 299, 0.01)])  # fmt: skip
def test_binomial_pvalue_by_hand_and_scipy(k: int, n: int, eps: float) -> None:
    p = cert.binomial_pvalue(k, n, eps)
    assert p == pytest.approx(binomial_tail(k, n, eps), rel=1e-9)
    assert p == pytest.approx(stats.binomtest(k, n, eps, alternative="less").pvalue, rel=1e-9)


def test_binomial_pvalue_hand_numbers() -> None:
    assert cert.binomial_pvalue(0, 10, 0.1) == pytest.approx(0.9**10)  # 0.3487
    assert cert.binomial_pvalue(1, 10, 0.1) == pytest.approx(0.9**10 + 10 * 0.1 * 0.9**9)  # 0.7361


def test_hoeffding_bentkus_from_its_formula() -> None:
    # mean 0.05 of 100 losses in [0, 1] against eps 0.1:
    # Hoeffding exp(-100 KL(0.05 || 0.1)), Bentkus e P(Bin(100, 0.1) <= 5); the smaller one.
    kl = 0.05 * math.log(0.05 / 0.1) + 0.95 * math.log(0.95 / 0.9)
    expected = min(math.exp(-100 * kl), math.e * binomial_tail(5, 100, 0.1))
    assert cert.hoeffding_bentkus_pvalue(0.05, 100, 0.1) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(math.e * binomial_tail(5, 100, 0.1))  # Bentkus wins here
    # No loss at all: Hoeffding gives (1 - eps)^n, Bentkus e times that.
    assert cert.hoeffding_bentkus_pvalue(0.0, 100, 0.1) == pytest.approx(0.9**100)
    # At or above eps the bound is vacuous.
    assert cert.hoeffding_bentkus_pvalue(0.2, 100, 0.1) == 1.0
    # For 0/1 losses the binomial p-value is never larger.
    for k in range(0, 12):
        hb = cert.pvalue(k, 100, 0.1, "hoeffding-bentkus")
        assert cert.binomial_pvalue(k, 100, 0.1) <= hb * (1 + 1e-9)


def test_samples_needed_closed_form() -> None:
    assert cert.samples_needed(0.01, 0.05) == 299  # 0.99^298 = 0.0502 > 0.05 >= 0.99^299
    assert 0.99**298 > 0.05 >= 0.99**299
    assert cert.samples_needed(0.02, 0.1) == 114
    assert cert.samples_needed(0.01, 0.05, method="hoeffding-bentkus") == 299
    # With an observed rate the smallest n whose p-value certifies, checked around it.
    n = cert.samples_needed(0.02, 0.1, rate=0.01)
    assert cert.binomial_pvalue(math.floor(0.01 * n + 1e-9), n, 0.02) <= 0.1
    assert cert.samples_needed(0.02, 0.1, rate=0.02) == 0  # never certifiable


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    assert cert.fixed_sequence([0.01, 0.02, 0.3, 0.01], 0.05) == 2
    assert cert.fixed_sequence([0.2, 0.01], 0.05) == 0
    assert cert.fixed_sequence([0.01, 0.05], 0.05) == 2


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_levels_outside_zero_one_are_refused(value: float) -> None:
    with pytest.raises(PrimecError, match="must lie strictly between 0 and 1"):
        cert.check_level("--exit-risk", value)


def test_too_few_samples_names_the_number_needed() -> None:
    with pytest.raises(PrimecError, match="has 120 samples.*needs at least 299 samples"):
        cert.certify(np.zeros((120, 3), dtype=bool), 0.01, 0.05)


@pytest.mark.parametrize("shape", ["monotone", "bumpy"])
def test_fixed_sequence_coverage_simulated(shape: str) -> None:
    """Over many calibration draws, a certified candidate with true risk > eps appears at most
    delta of the time (plus sampling error), whether or not risk grows along the sequence."""
    rng = np.random.default_rng(0)
    eps, delta, n, draws = 0.05, 0.1, 300, 2000
    risks = np.linspace(0.0, 0.12, 40)
    if shape == "bumpy":
        risks = risks + 0.03 * np.sin(np.arange(40))
        risks = np.clip(risks, 0.0, 1.0)
    bad = risks > eps
    failures = 0
    for _ in range(draws):
        u = rng.random((n, 1))
        losses = u < risks[None, :]  # coupled draws: one uniform per sample
        certified = cert.certify(losses, eps, delta).certified
        failures += bool(bad[:certified].any())
    rate = failures / draws
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / draws), rate
    assert rate > 0.02  # the test has power: it is not trivially conservative
