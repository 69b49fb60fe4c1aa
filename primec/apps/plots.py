"""Plots for reports and the demo (matplotlib, no display needed), written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from primec.fileio import atomic_write_bytes
from primec.hardware.earlyexit import Calibration


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    figure: Any, path: str | Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)
) -> None:
    """Write a figure as PNG atomically (fixed metadata, so the same plot gives the same bytes)."""
    buffer = io.BytesIO()
    figure.tight_layout(rect=rect)
    figure.savefig(buffer, format="png", metadata={"Software": None})
    pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def exit_histogram(
    exit_steps: dict[str, np.ndarray], timesteps: int, path: str | Path, title: str
) -> None:
    """Histogram of exit steps, one bar group per rule."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    width = 0.8 / max(len(exit_steps), 1)
    for i, (label, steps) in enumerate(exit_steps.items()):
        counts = np.bincount(steps, minlength=timesteps + 1)[1:]
        axes.bar(
            np.arange(1, timesteps + 1) + (i - (len(exit_steps) - 1) / 2) * width,
            counts,
            width,
            label=f"{label} (mean {steps.mean():.2f})",
        )
    axes.set_xlabel("exit step")
    axes.set_ylabel("samples")
    axes.set_xticks(range(1, timesteps + 1))
    axes.set_title(title)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def occupancy(
    pair_maps: dict[tuple[int, int], np.ndarray],
    labels: dict[int, str],
    path: str | Path,
    title: str,
) -> None:
    """Array occupancy: per array, which pairs are kept, reset or programmed."""
    plt = pyplot()
    keys = sorted(pair_maps)
    columns = min(len(keys), 4)
    rows = (len(keys) + columns - 1) // columns
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns + 1, 3.2 * rows), dpi=110, squeeze=False
    )
    colours = plt.matplotlib.colors.ListedColormap(["#eeeeee", "#2ca02c", "#d62728", "#1f77b4"])
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.imshow(
            pair_maps[key],
            cmap=colours,
            vmin=-0.5,
            vmax=3.5,
            interpolation="nearest",
            aspect="auto",
        )
        ax.set_title(f"macro {key[0]} array {key[1]}", fontsize=9)
        ax.set_xlabel("column pair")
        ax.set_ylabel("row")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles = [
        plt.matplotlib.patches.Patch(color=colours(i), label=labels[i]) for i in sorted(labels)
    ]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path, rect=(0, 0.12, 1, 1))


def energy_breakdown(breakdowns: dict[str, dict[str, float]], path: str | Path, title: str) -> None:
    """Stacked bars of energy per inference by operation class, one bar per model."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    names = list(breakdowns)
    classes = sorted({c for b in breakdowns.values() for c in b})
    bottom = np.zeros(len(names))
    for cls in classes:
        values = np.array([breakdowns[n].get(cls, 0.0) * 1e9 for n in names])
        axes.bar(names, values, bottom=bottom, label=cls)
        bottom += values
    axes.set_ylabel("energy per inference (nJ)")
    axes.set_title(title)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def accuracy_vs_noise(
    curves: dict[str, list[tuple[float, float]]], path: str | Path, title: str, xlabel: str
) -> None:
    """Accuracy against a noise level, one line per model."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    for label, points in curves.items():
        axes.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def plot_curve(
    result: Calibration,
    path: str | Path,
    hand_set: tuple[float, float] | None = None,
    title: str = "",
) -> None:
    """Accuracy vs average timesteps over the threshold sweep, the chosen point marked."""
    plt = pyplot()
    steps = [p.avg_timesteps for p in result.curve]
    accuracy = [100 * p.accuracy for p in result.curve]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    axes.plot(
        steps,
        accuracy,
        ".-",
        color="0.5",
        markersize=3,
        label=f"{result.table.rule} threshold sweep",
    )
    axes.axhline(
        100 * result.accuracy_full,
        color="0.7",
        linestyle=":",
        label=f"all {result.timesteps} steps",
    )
    axes.plot(
        [result.avg_timesteps],
        [100 * result.accuracy],
        "o",
        color="tab:green",
        markersize=9,
        label=f"calibrated (threshold {result.table.threshold:.3g})",
    )
    if hand_set is not None:
        axes.plot(
            [hand_set[0]],
            [100 * hand_set[1]],
            "s",
            color="tab:red",
            markersize=8,
            label="PRIME hand-set (0.8)",
        )
    axes.axvline(
        result.oracle_avg_timesteps,
        color="tab:blue",
        linestyle="--",
        linewidth=1,
        label=f"oracle ({result.oracle_avg_timesteps:.2f} steps)",
    )
    axes.set_xlabel("average timesteps per inference")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title or "Early exit: accuracy vs average timesteps")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def plot_certified(report: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Observed loss rate vs average timesteps along the tested sequence, certified part marked."""
    plt = pyplot()
    curve, n = report["curve"], report["certificate"]["samples"]
    certified = report["certificate"]["certified_candidates"]
    steps = np.array([p["avg_timesteps"] for p in curve])
    rate = 100 * np.array([p["losses"] for p in curve]) / n
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    axes.plot(steps, rate, ".", color="0.6", markersize=3, label="tested, not certified")
    axes.plot(steps[:certified], rate[:certified], ".", color="tab:green", label="certified")
    axes.axhline(100 * report["certificate"]["eps"], color="tab:red", linestyle=":", label="eps")
    chosen = 100 * report["certificate"]["losses"] / n
    axes.plot([report["avg_timesteps"]], [chosen], "o", color="tab:blue",
              markersize=9, label="chosen")  # fmt: skip
    axes.set_xlabel("average timesteps per inference")
    axes.set_ylabel(f"{report['risk']} losses on calibration data (%)")
    axes.set_title(title or "Certified early exit")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    save_figure(figure, path)
