"""Checks of single fields an artefact's reader takes from a file: numbers, the early-exit
table's fields by type, the meta's layer records (`validate.py` runs them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from primec.backends.shapes import MAX_PLANES


def _thresholds(value: Any) -> bool:
    """A per-step threshold list: none (empty or null) or finite numbers; its length is the
    table's check (one per timestep)."""
    return value is None or (isinstance(value, list | tuple) and all(map(is_number, value)))


# The early-exit table's fields by their declared type: (check, what it must be). A field of a
# type not listed is refused, so a new table field cannot slip past the reader unchecked.
EXIT_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "float": (lambda v: is_number(v), "a finite float"),
    "int": (lambda v: is_int(v), "an int"),
    "str": (lambda v: isinstance(v, str), "a str"),
    "tuple[float, ...]": (_thresholds, "a list of finite floats (one per timestep) or empty"),
}


# What the periphery and the programmer read of each layer record: field -> check.
LAYER_FIELDS: dict[str, Callable[[Any], bool]] = {
    "layer": lambda v: isinstance(v, str),
    "value": lambda v: isinstance(v, str),
    "kind": lambda v: isinstance(v, str),
    "mode": lambda v: v in ("as_formed", "programmed"),
    "drive": lambda v: isinstance(v, str),
    "planes": lambda v: is_int(v) and 1 <= v <= MAX_PLANES,
    "input_quantum": lambda v: is_number(v) and v > 0,
    "gain": lambda v: is_number(v),
    "positions": lambda v: is_int(v) and v >= 1,
    "weight_shape": lambda v: (
        isinstance(v, list) and bool(v) and all(is_int(d) and d >= 1 for d in v)
    ),
}


def layer_problem(layer: Any) -> str | None:
    """What is wrong with one record of the meta's layer table, or None."""
    if not isinstance(layer, dict):
        return "not an object"
    bad = next((k for k, ok in LAYER_FIELDS.items() if k not in layer or not ok(layer[k])), None)
    return None if bad is None else f"field {bad} is missing or out of range ({layer.get(bad)!r})"


def is_str(value: Any) -> bool:
    """A string."""
    return isinstance(value, str)


def is_int(value: Any) -> bool:
    """An int (not a bool, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
