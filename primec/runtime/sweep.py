"""Monte-Carlo sweeps: a grid over noise parameters, each point simulated on many chips.

A sweep is cut into shards of (point, block of chips); a shard runs its chips in one vectorised
simulator run (the chip axis) and returns one row per (point, chip). Chip c draws the same
random streams at every point (keyed by (seed, chip, ...)), so the points compare the same
chips. The rows are sorted by (point, chip) before anything is written, so the table does not
depend on how many workers ran the shards or in which order they finished (`sweepray`).
Per point: accuracy mean, standard deviation over chips and a 95% confidence interval of the
mean (Student's t), average timesteps, energy per inference (counted). The stuck-cell repair
(`stuck_repair`) is an axis like the noise parameters, though not part of `Noise`: a point that
asks for it runs the chips on `VerifiedSimulator` and its rows count the pairs it rewrote.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.ages import age_text, seconds
from primec.backends.simulator.noise import LIMITS, checked_number
from primec.backends.simulator.verify import VerifiedSimulator
from primec.errors import PrimecError
from primec.fileio import atomic_write_text
from primec.hardware.energy import energy_report
from primec.hardware.target import DriftSpec
from primec.runtime.simdata import SimData

# Sweepable parameters: name -> (type, lowest level, highest level or None, meaning); the noise
# settings' ranges are `--noise`'s (`noise.LIMITS`).
PARAMETERS: dict[str, tuple[type, float, float | None, str]] = {
    "program": (float, *LIMITS["program"], "relative std of each cell's static conductance error"),
    "read": (float, *LIMITS["read"], "relative std of each cell's current on every read"),
    "stuck": (float, *LIMITS["stuck"], "fraction of stuck cells"),
    "adc": (int, *LIMITS["adc"], "ADC bits (0: ideal converter)"),
    "input": (int, *LIMITS["input"], "input driver bits (0: as many as the values need)"),
    "adc_cal": (
        int,
        *LIMITS["adc_cal"],
        "ADC ranges (`calibrate-adc`): 0 the target's, 1 per tile, 2 per column",
    ),
    "age": (float, *LIMITS["age"], "seconds since programming (60s, 1h, 1d, 30d, 1y; 0: no drift)"),
    "drift_comp": (
        int,
        *LIMITS["drift_comp"],
        "drift compensation: 0 none, 1 global, 2 per column",
    ),
    "stuck_repair": (
        int,
        0,
        2,
        "stuck-cell repair after programming (`simulate --stuck-repair`): 0 none, 1 cancel, "
        "2 restore",
    ),
}
# An example of each parameter's levels, for the hints of the errors above.
EXAMPLES = {
    "program": "0,0.02,0.05",
    "read": "0,0.02",
    "stuck": "0,0.001,0.01",
    "adc": "4,6,8",
    "input": "4,8",
    "adc_cal": "0,1,2",
    "age": "60s,1d,1y",
    "drift_comp": "0,1,2",
    "stuck_repair": "0,1,2",
}
REPAIRS = ("none", "cancel", "restore")  # stuck_repair level -> `VerifiedSimulator` mode
CHIPS_PER_SHARD = 8


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep (parameter, levels), in the order given, and chips per point."""

    axes: tuple[tuple[str, tuple[float, ...]], ...]
    chips: int

    @staticmethod
    def parse(specs: list[str], chips: int) -> Grid:
        """Read `--grid program=0,0.02,0.05` options (one parameter each)."""
        if chips < 1:
            raise PrimecError(f"--chips must be at least 1, got {chips}", hint="e.g. --chips 32")
        axes: list[tuple[str, tuple[float, ...]]] = []
        for spec in specs:
            name, levels = _axis(spec)
            if name in dict(axes):
                raise PrimecError(
                    f"sweep parameter {name!r} is given twice in --grid",
                    hint=f"give all its levels in one --grid {name}=..., e.g. "
                    f"--grid {name}={EXAMPLES[name]}",
                )
            axes.append((name, levels))
        return Grid(tuple(axes), chips)

    def points(self) -> list[dict[str, float]]:
        """Every combination of levels, the first axis slowest."""
        names = [name for name, _ in self.axes]
        return [
            dict(zip(names, levels, strict=True))
            for levels in itertools.product(*(levels for _, levels in self.axes))
        ]


def level_text(name: str, value: float) -> str:
    """A swept level as a user writes it: an age with its unit (1d), anything else as is."""
    return age_text(value) if name == "age" else f"{value:g}"


def _axis(spec: str) -> tuple[str, tuple[float, ...]]:
    """One `--grid PARAM=LEVELS` option: the parameter and its levels (none repeated)."""
    name, equals, raw = spec.partition("=")
    name = name.strip()
    if not equals or not raw.strip():
        raise PrimecError(
            f"--grid {spec!r} is not PARAM=LEVELS",
            hint="give a parameter and its comma-separated levels, e.g. --grid program=0,0.02,0.05",
        )
    if name not in PARAMETERS:
        raise PrimecError(
            f"unknown sweep parameter {name!r} in --grid {spec!r}",
            hint=f"use one of {', '.join(PARAMETERS)}, e.g. --grid program=0,0.02,0.05",
        )
    levels = tuple(_level(name, part) for part in raw.split(","))
    repeated = [level for i, level in enumerate(levels) if level in levels[:i]]
    if repeated:
        raise PrimecError(
            f"sweep level {name}={repeated[0]:g} is given twice in --grid {spec!r}",
            hint=f"give each level once, e.g. --grid {name}={EXAMPLES[name]}",
        )
    return name, levels


def _level(name: str, raw: str) -> float:
    kind, low, high, _ = PARAMETERS[name]
    if name == "age":
        return seconds(raw)
    example = f"e.g. --grid {name}={EXAMPLES[name]}"
    words = "integers" if kind is int else "numbers"
    return checked_number(
        name,
        raw.strip(),
        (kind, low, high),
        "sweep level",
        (
            f"give {name} as comma-separated {words}, {example}",
            f"give {name} levels in {{bounds}}, {example}",
        ),
    )


@dataclass(frozen=True)
class Shard:
    """One unit of work: a point of the grid and a block of its chips."""

    point: int
    chips: tuple[int, ...]

    @property
    def name(self) -> str:
        if len(self.chips) == 1:
            return f"point {self.point}, chip {self.chips[0]}"
        return f"point {self.point}, chips {self.chips[0]}-{self.chips[-1]}"


def shards(grid: Grid, chips_per_shard: int = CHIPS_PER_SHARD) -> list[Shard]:
    """Every (point, chip block) of the grid, points first."""
    blocks = [
        tuple(range(first, min(first + chips_per_shard, grid.chips)))
        for first in range(0, grid.chips, chips_per_shard)
    ]
    return [Shard(p, block) for p in range(len(grid.points())) for block in blocks]


@dataclass(frozen=True)
class Job:
    """What every shard of one sweep shares."""

    program: Program
    data: SimData
    base: Noise  # the noise every point starts from (the grid overrides its parameters)
    points: tuple[dict[str, float], ...]
    batch_size: int = 64
    early_exit: bool = True
    drift: DriftSpec | None = None  # the target's drift model, when a point has an age
    device: str = "cpu"

    def noise(self, point: int) -> Noise:
        """The point's noise: the base with the point's noise parameters (not the repair)."""
        values = {
            k: (int(v) if PARAMETERS[k][0] is int else v)
            for k, v in self.points[point].items()
            if k != "stuck_repair"
        }
        return replace(self.base, **values)

    def repair(self, point: int) -> str:
        """The point's stuck-cell repair: none, cancel or restore."""
        return REPAIRS[int(self.points[point].get("stuck_repair", 0))]


def chip_simulator(job: Job, shard: Shard) -> Simulator:
    """The shard's chips: the plain simulator, or the repairing one where the point asks."""
    noise, repair = job.noise(shard.point), job.repair(shard.point)
    if repair == "none":
        return Simulator(job.program, noise, job.device, chips=shard.chips, drift=job.drift)
    return VerifiedSimulator(
        job.program, noise, job.device, chips=shard.chips, drift=job.drift, repair=repair
    )


def run_shard(job: Job, shard: Shard) -> list[dict[str, Any]]:
    """The shard's rows: one per chip, with the point's parameters (and, on a sweep of the
    repair, `pairs_repaired`: the chip's rewritten pairs, empty where the point repairs none)."""
    noise = job.noise(shard.point)
    simulator = chip_simulator(job, shard)
    results = simulator.run_chips(job.data.x, job.batch_size, job.early_exit)
    repaired = getattr(simulator, "repaired_per_chip", None)
    rows = []
    for chip, result in zip(shard.chips, results, strict=True):
        energy = energy_report(
            result.counts,
            result.exit_step,
            job.program.meta,
            job.program.timesteps,
            noise.adc or None,
        )
        row = {"point": shard.point, **job.points[shard.point], "chip": chip}
        if job.data.y is not None:
            row["accuracy"] = float((result.pred == job.data.y).mean())
        row["avg_timesteps"] = float(result.exit_step.mean())
        row["energy_per_inference_j"] = energy["energy_per_inference_j"]
        if "stuck_repair" in job.points[shard.point]:
            row["pairs_repaired"] = None if repaired is None else repaired.get(chip, 0)
        rows.append(row)
    return rows


def summarise(
    points: list[dict[str, float]], rows: list[dict[str, Any]], labelled: bool = True
) -> list[dict]:
    """Per point: chips, accuracy mean, std over chips, 95% CI of the mean, timesteps, energy.
    A point without finished chips (a partial sweep) has the same columns, empty."""
    table = []
    for p, point in enumerate(points):
        mine = [row for row in rows if row["point"] == p]
        entry: dict[str, Any] = {"point": p, **point, "chips": len(mine)}
        if mine and "accuracy" in mine[0]:
            accuracy = np.array([row["accuracy"] for row in mine])
            entry |= _mean_ci(accuracy, "accuracy", (0.0, 1.0))
        elif labelled and not mine:
            entry |= dict.fromkeys(("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high"))
        entry["avg_timesteps"] = _mean(mine, "avg_timesteps")
        entry["energy_per_inference_j"] = _mean(mine, "energy_per_inference_j")
        if mine and "pairs_repaired" in mine[0]:
            counts = [row["pairs_repaired"] for row in mine]
            entry["pairs_repaired_mean"] = None if None in counts else float(np.mean(counts))
        elif "stuck_repair" in point and not mine:
            entry["pairs_repaired_mean"] = None
        table.append(entry)
    return table


def sweep_report(
    job: Job, grid: Grid, data: SimData, noise_source: str, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The sweep's JSON report without its rows and completion (the caller adds those)."""
    return {
        "artefact": job.program.name,
        "target": job.program.meta["target"],
        "samples": len(data.x),
        "base_noise": vars(job.base),
        "noise_source": noise_source,
        "grid": {"axes": [[name, list(levels)] for name, levels in grid.axes], "chips": grid.chips},
        "early_exit": job.early_exit and job.program.exit_table is not None,
        "points": summarise(list(job.points), rows, data.y is not None),
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    return float(np.mean([row[key] for row in rows])) if rows else None


def _mean_ci(
    values: np.ndarray, key: str, bounds: tuple[float, float] | None = None
) -> dict[str, float | None]:
    """Mean, sample std and the 95% Student-t confidence interval of the mean (None for 1 chip),
    the interval clipped to the metric's bounds where it has known ones (accuracy: a proportion,
    0..1; with few chips the t interval can reach past them)."""
    mean = float(values.mean())
    if len(values) < 2:
        return {f"{key}_mean": mean, f"{key}_std": None, "ci95_low": None, "ci95_high": None}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * std / math.sqrt(len(values))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {f"{key}_mean": mean, f"{key}_std": std, "ci95_low": low, "ci95_high": high}


def csv_text(rows: list[dict[str, Any]], first: list[str] | None = None) -> str:
    """Rows as CSV: the `first` columns, then any other in first-seen order; floats as Python
    writes them, None empty."""
    columns: list[str] = list(first or [])
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_cell(row.get(key)) for key in columns))
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def table_names(suffix: str = "") -> list[str]:
    """The names `write_tables` writes: the per-point table, the per-chip rows and the report,
    with `suffix` (".partial" for an incomplete sweep)."""
    return [f"sweep{suffix}.csv", f"sweep-chips{suffix}.csv", f"sweep{suffix}.json"]


def chip_columns(report: dict[str, Any]) -> list[str]:
    """The per-chip table's columns (`run_shard`'s rows), known even when no chip finished."""
    names = [name for name, _ in report["grid"]["axes"]]
    labelled = bool(report["points"]) and "accuracy_mean" in report["points"][0]
    columns = ["point", *names, "chip", *(["accuracy"] if labelled else [])]
    columns += ["avg_timesteps", "energy_per_inference_j"]
    return columns + (["pairs_repaired"] if "stuck_repair" in names else [])


def write_tables(folder: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> list[Path]:
    """The per-point table (sweep.csv), the per-chip rows (sweep-chips.csv) and the report with
    both (sweep.json). An incomplete sweep writes only `.partial` files, never the complete
    names. Returns the paths written."""
    names = table_names("" if report["complete"] else ".partial")
    texts = (
        csv_text(report["points"]),
        csv_text(rows, chip_columns(report)),
        json.dumps(report | {"rows": rows}, indent=2) + "\n",
    )
    files = {folder / name: text for name, text in zip(names, texts, strict=True)}
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)
