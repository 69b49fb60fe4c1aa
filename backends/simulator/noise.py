"""Non-idealities and their random streams: the `Noise` settings, seeds keyed by what a draw
belongs to (never by batch position), read-noise normals, and the chip's static cell errors.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np
from primec.backends.simulator.ages import seconds
from primec.backends.simulator.gauss import keyed_normals
from primec.backends.validate import ADC_RANGES

from primec.errors import PrimecError

__all__ = ["ADC_RANGES", "LIMITS", "Noise", "Normals", "chip_cells", "stream_seed"]

# Each setting's lowest and highest value (None: no bound but a finite one), the one range that
# `--noise` and a sweep's `--grid` check. A relative std above 1 (100%) would make conductances
# negative more often than not (they are clipped at 0): not a device, and it overflows the
# exact-sum grid. Converters and drivers take at most 16 bits here, as in a sweep's grid (a
# target may declare more; its own setting runs as it is).
LIMITS: dict[str, tuple[float, float | None]] = {
    "program": (0.0, 1.0),
    "read": (0.0, 1.0),
    "stuck": (0.0, 1.0),
    "adc": (0, 16),
    "input": (0, 16),
    "adc_cal": (0, 2),
    "age": (0.0, None),
    "drift_comp": (0, 2),
}


@dataclass(frozen=True)
class Noise:
    """Device non-idealities; all zero is ideal. See `docs/simulator.md`."""

    program: float = 0.0  # relative std of each cell's static conductance error
    read: float = 0.0  # relative std of each cell's current on every read
    stuck: float = 0.0  # fraction of cells stuck (half at g_off, half at g_max)
    adc: int = 0  # ADC bits per read (0: ideal converter)
    input: int = 0  # input driver bits (0: as many as the values need)
    adc_cal: int = 2  # ADC ranges, the finest the artefact has of: 2 column, 1 tile, 0 target
    age: float = 0.0  # seconds since programming: cells drift by the target's model (0: none)
    drift_comp: int = 0  # drift compensation: 0 none, 1 one gain per tile, 2 one per output
    seed: int = 0

    @property
    def ideal(self) -> bool:
        """No non-ideality switched on."""
        return not (self.program or self.read or self.stuck or self.adc or self.input or self.age)

    @property
    def perturbs_cells(self) -> bool:
        """Each chip's cells differ from the compiled ones (and from other chips')."""
        return bool(self.program or self.stuck or self.age)

    @staticmethod
    def parse(text: str, seed: int = 0) -> Noise:
        """Read `program=0.05,read=0.02,stuck=0.001,adc=8,input=8`."""
        known = {f.name: f.type for f in fields(Noise) if f.name != "seed"}
        values: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, raw = (part.strip() for part in item.partition("="))
            if key not in known or not raw:
                raise PrimecError(
                    f"bad noise setting {item!r}",
                    hint=f"use KEY=VALUE with KEY one of {', '.join(known)}, e.g. read=0.02,adc=8",
                )
            if key in values:
                raise PrimecError(
                    f"noise setting {key} is given twice in {text!r}",
                    hint="give each setting once, e.g. read=0.02,adc=8",
                )
            values[key] = _number(key, raw, known[key])
        return Noise(**values, seed=seed)

    @staticmethod
    def from_target(params: dict, seed: int = 0) -> Noise:
        """The non-idealities the artefact's target describes: its cells' read noise and stuck
        rates, its ADC bits. (The simulator sticks cells half low, half high: the stuck rate is
        the target's low and high rates together.)"""
        stuck = params["cells.stuck_low_rate"] + params["cells.stuck_high_rate"]
        return Noise(
            read=params["cells.read_noise"], stuck=stuck, adc=params["adc.bits"], seed=seed
        )

    @staticmethod
    def choose(spec: str | None, params: dict, seed: int = 0) -> tuple[Noise, str]:
        """The noise of `primec simulate --noise SPEC` and where it came from, in words: the
        target's non-idealities without SPEC, none for `ideal` (or an empty SPEC), else SPEC's."""
        if spec is None:
            return Noise.from_target(params, seed), "the artefact's target"
        if spec.strip() in ("", "ideal"):
            return Noise(seed=seed), "ideal (--noise ideal)"
        return Noise.parse(spec, seed), "--noise"


def _number(key: str, raw: str, kind: str) -> float | int:
    """One `--noise` value, checked against `LIMITS`; an age may carry a unit (`1d`)."""
    if key == "age":
        return seconds(raw)
    words = "an integer" if kind == "int" else "a number"
    return checked_number(
        key,
        raw,
        (int if kind == "int" else float, *LIMITS[key]),
        "noise setting",
        (f"give {key} as {words} in {{bounds}}", f"give {key} in {{bounds}}, e.g. read=0.02,adc=8"),
    )


def checked_number(
    key: str, raw: str, spec: tuple[type, float, float | None], what: str, hints: tuple[str, str]
) -> float | int:
    """raw read as spec's type, finite and within its lowest and highest (None: no highest),
    else one error naming `what` (a noise setting, a sweep level) with hints[0] (not a number)
    or hints[1] (out of range), in which {bounds} stands for the range."""
    kind, low, high = spec
    bounds = f"{low}..{high}" if high is not None else f">= {low}"
    try:
        value = kind(raw)
    except ValueError:
        words = "n integer" if kind is int else " number"
        raise PrimecError(
            f"{what} {key}={raw!r} is not a{words}", hint=hints[0].format(bounds=bounds)
        ) from None
    if not (math.isfinite(value) and low <= value and (high is None or value <= high)):
        raise PrimecError(
            f"{what} {key}={raw} is out of range ({bounds})", hint=hints[1].format(bounds=bounds)
        )
    return value


def stream_seed(*keys: int) -> int:
    """A 63-bit seed for the random stream keyed by `keys` (seed, kind, sample or array, ...)."""
    digest = hashlib.sha256(",".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class Normals:
    """Read-noise streams of one step: one 64-bit key per (chip, sample) row of the batch,
    `stream_seed(seed, 2, chip, sample, step)`.

    A draw is keyed by (row's key, read, bit plane, draw number) (`gauss.py`), never by order,
    so a batch whose inputs use fewer planes, or a kernel that draws only the column reads
    that carry noise, changes no sample's numbers.
    """

    def __init__(self, seed: int, rows: list[tuple[int, int]], t: int) -> None:
        keys = [stream_seed(seed, 2, chip, sample, t) for chip, sample in rows]
        self.keys = np.array(keys, dtype=np.uint64)

    @staticmethod
    def draws(keys: np.ndarray, read: int, plane: int, size: int) -> np.ndarray:
        """[rows, size] float64 standard normals: draws 0 .. size - 1 of (read, plane)."""
        return keyed_normals(keys, read, plane, size)


def chip_cells(
    key: tuple[int, int], cells: np.ndarray, noise: Noise, params: dict, chip: int = 0
) -> np.ndarray:
    """The cells of array `key` (macro, array) as chip `chip` has them: static programming error
    and stuck cells applied, drawn from the stream keyed by (seed, chip, macro, array)."""
    return programmed_cells(key, cells, noise, params, chip)[0]


def programmed_cells(
    key: tuple[int, int], cells: np.ndarray, noise: Noise, params: dict, chip: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """`chip_cells`, and which cells are stuck (None when none can be)."""
    if not (noise.program or noise.stuck):
        return cells, None
    rng = np.random.default_rng(stream_seed(noise.seed, 1, chip, *key))
    chip_values = cells * (1 + noise.program * rng.standard_normal(cells.shape))
    chip_values = np.clip(chip_values, 0.0, None)
    draws = rng.random(cells.shape)
    low, stuck = draws < noise.stuck / 2, draws < noise.stuck
    chip_values = np.where(low, params["cells.g_off_us"], chip_values)
    return np.where(stuck & ~low, params["cells.g_max_us"], chip_values), stuck
