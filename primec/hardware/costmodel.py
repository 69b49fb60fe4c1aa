"""The target's cost table: units, provenance, estimate bounds, and how ADC energy scales with bits.

A cost entry is every `energy.*` and `baseline.*` key and `read.latency_ns`. Each must say where
it comes from (`[provenance]`); an entry whose provenance is `estimate:` must give its (low,
high) bounds in `[estimates]`, and the simulation report turns those bounds into an energy range
(`corner`). Values may carry their unit ("2 pJ", "1500 fJ"), converted here to the key's unit;
a unit of another quantity (an energy given in W) is an error naming the key. docs/energy.md
gives the sources; docs/targets.md the keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PREFIXES = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0}
PREFIXES |= {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
SYMBOLS = ("FLOP/s", "B/s", "J", "s", "S", "A", "V", "W")  # longest first
QUANTITY = re.compile(r"^\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*(\S+)\s*$")

Fail = Callable[..., None]


def is_cost_key(key: str) -> bool:
    """Whether a parameter is an energy, latency or GPU-baseline entry (it needs provenance)."""
    return key.startswith(("energy.", "baseline.")) or key == "read.latency_ns"


def split_unit(unit: str) -> tuple[float, str] | None:
    """("pJ per conversion") -> (1e-12, "J"); None when the unit is no SI quantity."""
    word = unit.split(" ")[0]
    for symbol in SYMBOLS:
        prefix = word.removesuffix(symbol)
        if word.endswith(symbol) and prefix in PREFIXES:
            return PREFIXES[prefix], symbol
    return None


def quantity(key: str, raw: str, unit: str, fail: Fail) -> float:
    """A value written with its unit ("1500 fJ"), in the key's unit (1.5 for pJ)."""
    expected = split_unit(unit)
    match = QUANTITY.match(raw)
    if expected is None or match is None:
        fail(key, f"must be a number in {unit or 'the key unit'}, got {raw!r}")
    given = split_unit(match.group(2))
    if given is None or given[1] != expected[1]:
        fail(
            key,
            f"wrong unit {match.group(2)!r}: expects {unit.split(' ')[0]} ({expected[1]}), got {raw!r}",
            f"write a number in {unit}, or a value with a unit of {expected[1]} such as '1.5 {unit.split(' ')[0]}'",
        )
    return float(match.group(1)) * given[0] / expected[0]


def estimates(
    table: Any, sections: dict[str, Any], fail: Fail
) -> tuple[tuple[str, float, float], ...]:
    """The `[estimates]` table as (key, low, high), checked: low <= value <= high, low >= 0."""
    if not isinstance(table, dict):
        fail("[estimates]", "must be a table of 'section.key' = [low, high]")
    rows = []
    for key, bounds in sorted(table.items()):
        section, _, name = key.partition(".")
        value = getattr(sections.get(section), name, None)
        if not is_cost_key(key) or not isinstance(value, float):
            fail(f"estimates.{key}", "not an energy, latency or baseline number of this target")
        low, high = _bounds(f"estimates.{key}", bounds, fail)
        if not 0 <= low <= value <= high:
            fail(
                f"estimates.{key}",
                f"needs 0 <= low <= value <= high, got low {low}, value {value}, high {high}",
            )
        rows.append((key, low, high))
    return tuple(rows)


def _bounds(key: str, bounds: Any, fail: Fail) -> tuple[float, float]:
    numbers = [b for b in bounds if _number(b)] if isinstance(bounds, list) else []
    if len(numbers) != 2 or len(bounds) != 2:
        fail(key, f"must be [low, high], two numbers in the key's unit, got {bounds!r}")
    return float(numbers[0]), float(numbers[1])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_costs(target: Any, fail: Fail) -> None:
    """Every cost entry has provenance; every estimate has bounds and only estimates do."""
    notes = dict(target.provenance)
    bounded = {key for key, _, _ in target.estimates}
    for key, _, unit in target.parameters():
        if not is_cost_key(key):
            continue
        note = notes.get(key)
        if note is None:
            fail(
                key,
                "no provenance",
                f'add "{key}" = "fact|derived|estimate|assumption: where it comes from" to [provenance]',
            )
        if note.startswith("estimate:") and key not in bounded:
            fail(
                key,
                "an estimate needs its bounds",
                f'add "{key}" = [low, high] ({unit}) to [estimates]',
            )
    for key in sorted(bounded):
        if not notes.get(key, "").startswith("estimate:"):
            fail(f"estimates.{key}", "bounds given for a value whose provenance is not 'estimate:'")


def adc_energy_pj(parameters: dict[str, Any], bits: int | None = None) -> float:
    """pJ per conversion at `bits` (default: the target's): linear in bits, one SAR cycle each."""
    reference = parameters["adc.bits"]
    return parameters["energy.adc_conversion_pj"] * (bits or reference) / reference


def corner(parameters: dict[str, Any], bounds: dict[str, list[float]], side: str) -> dict[str, Any]:
    """The parameters with every estimate at its low (side 'low') or high bound."""
    index = {"low": 0, "high": 1}[side]
    return parameters | {key: pair[index] for key, pair in bounds.items()}
