"""Plots of a sweep (`primec sweep`): the metric against each swept parameter with its 95%
confidence band over chips (other parameters: one line per level of the next axis, the rest at
their first level), and a heatmap of the mean over the first two swept parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from primec.apps.plots import pyplot, save_figure
from primec.runtime.sweep import level_text

METRIC = "accuracy_mean"


def plot_names() -> list[str]:
    """Every file name `plot_sweep` can write (one curve per parameter, a heatmap per pair)."""
    from primec.runtime.sweep import PARAMETERS

    curves = [f"accuracy_vs_{name}.png" for name in PARAMETERS]
    return curves + [
        f"heatmap_{rows}_{cols}.png" for rows in PARAMETERS for cols in PARAMETERS if rows != cols
    ]


def plot_sweep(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write the sweep's plots into folder; returns their paths (none without labels)."""
    points = report["points"]
    if not points or METRIC not in points[0]:
        return []
    swept = [name for name, levels in report["grid"]["axes"] if len(levels) > 1]
    paths = [_curve(report, name, swept, folder) for name in swept]
    if len(swept) >= 2:
        paths.append(_heatmap(report, swept[0], swept[1], folder))
    return paths


def _fixed(report: dict[str, Any], free: set[str]) -> dict[str, float]:
    """The first level of every axis not in `free`."""
    return {name: levels[0] for name, levels in report["grid"]["axes"] if name not in free}


def _selected(report: dict[str, Any], fixed: dict[str, float]) -> list[dict[str, Any]]:
    return [p for p in report["points"] if all(p[k] == v for k, v in fixed.items())]


def _curve(report: dict[str, Any], name: str, swept: list[str], folder: Path) -> Path:
    """The metric against `name`, one line per level of the next swept axis, with CI bands."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    others = [other for other in swept if other != name]
    group = others[0] if others else None
    fixed = _fixed(report, {name} | ({group} if group else set()))
    chosen = _selected(report, fixed)
    levels = sorted({p[group] for p in chosen}) if group else [None]
    for level in levels:
        line = sorted(
            (p for p in chosen if group is None or p[group] == level), key=lambda p: p[name]
        )
        x = [p[name] for p in line]
        mean = np.array([p[METRIC] for p in line])
        label = f"{group}={level_text(group, level)}" if group else "mean over chips"
        axis.plot(x, mean, marker="o", label=label)
        if all(p["ci95_low"] is not None for p in line):
            low, high = ([p[k] for p in line] for k in ("ci95_low", "ci95_high"))
            axis.fill_between(x, low, high, alpha=0.25)
    _level_axis(axis, name, sorted({p[name] for p in chosen}))
    axis.set_ylabel("accuracy (mean, 95% CI over chips)")
    shown = ", ".join(f"{k}={level_text(k, v)}" for k, v in fixed.items())
    axis.set_title(f"{report['grid']['chips']} chips per point" + (f"; {shown}" if shown else ""))
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    path = folder / f"accuracy_vs_{name}.png"
    save_figure(figure, path)
    return path


def _level_axis(axis: Any, name: str, levels: list[float]) -> None:
    """An x axis for a swept parameter: ages on a log scale (linear below 1 s, so a fresh
    chip's 0 stays on it) and integer parameters, both ticked at their levels as a user
    writes them (1d, 8)."""
    from primec.runtime.sweep import PARAMETERS

    if name == "age":
        axis.set_xscale("symlog", linthresh=1.0)
    if name == "age" or PARAMETERS[name][0] is int:
        axis.set_xticks(levels, [level_text(name, v) for v in levels])
        axis.minorticks_off()
    axis.set_xlabel(name)


def _heatmap(report: dict[str, Any], rows: str, cols: str, folder: Path) -> Path:
    """The mean over two swept parameters (the others at their first level)."""
    plt = pyplot()
    chosen = _selected(report, _fixed(report, {rows, cols}))
    row_levels = sorted({p[rows] for p in chosen})
    col_levels = sorted({p[cols] for p in chosen})
    grid = np.full((len(row_levels), len(col_levels)), np.nan)
    for p in chosen:
        grid[row_levels.index(p[rows]), col_levels.index(p[cols])] = p[METRIC]
    figure, axis = plt.subplots(figsize=(5.5, 4.2))
    image = axis.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    axis.set_xticks(range(len(col_levels)), [level_text(cols, v) for v in col_levels])
    axis.set_yticks(range(len(row_levels)), [level_text(rows, v) for v in row_levels])
    axis.set_xlabel(cols)
    axis.set_ylabel(rows)
    for (i, j), value in np.ndenumerate(grid):
        # Dark text on viridis's light (yellow, green) cells, white on its dark ones.
        ink = "black" if image.norm(value) > 0.6 else "white"
        axis.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color=ink)
    figure.colorbar(image, ax=axis, label="accuracy (mean over chips)")
    path = folder / f"heatmap_{rows}_{cols}.png"
    save_figure(figure, path)
    return path
