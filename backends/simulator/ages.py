"""Ages (time since programming) as users write them: a number with a unit, `60s`, `1h`, `1d`,
`30d`, `1y`, or plain seconds; 0 is a fresh chip. One reader for `--noise age=`, `simulate
--age`, `sweep --ages` and `--grid age=`."""

from __future__ import annotations

import math

from primec.errors import PrimecError

UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "y": 365.25 * 86400.0}
EXAMPLE = "e.g. 60s, 1h, 1d, 30d, 1y"


def seconds(text: str) -> float:
    """An age such as `60s`, `1h`, `1d`, `30d`, `1y` or `3600` (seconds), in seconds; 0 (in
    any unit) is a fresh chip: no drift."""
    raw = text.strip()
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :] or "s"
    try:
        value = float(number) * UNITS[unit]
    except (ValueError, KeyError):
        raise PrimecError(
            f"bad age {text!r}", hint=f"give a number with a unit of {', '.join(UNITS)}, {EXAMPLE}"
        ) from None
    if value == 0.0:
        return 0.0
    if not math.isfinite(value):
        raise PrimecError(f"age {text!r} is not a finite time", hint=f"give an age, {EXAMPLE}")
    if value < 0.0:
        raise PrimecError(
            f"age {text!r} is negative", hint=f"give 0 for a fresh chip or an age, {EXAMPLE}"
        )
    if value < 1.0:
        raise PrimecError(
            f"age {text!r} is under the drift model's origin of 1 s",
            hint=f"give 0 for a fresh chip (no drift), or an age of 1 s or more, {EXAMPLE}",
        )
    return value


def age_text(value: float) -> str:
    """An age in seconds as `seconds` reads it back, in its largest whole unit: 1y, 30d, 1h,
    90s; 0 for a fresh chip."""
    if value == 0.0:
        return "0"
    for unit in ("y", "d", "h", "min"):
        count = value / UNITS[unit]
        if count >= 1.0 and count == round(count):
            return f"{count:g}{unit}"
    return f"{value:g}s"
