"""The inpainting picture grid: clean, holed, PyTorch and chip reconstructions over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from primec.apps.plots import pyplot, save_figure

STEPS = (1, 4, 8, 16)  # the timesteps shown (1-based)


def inpainting_grid(pictures: dict[str, np.ndarray], path: str | Path, rows: int = 4) -> None:
    """One row per sample: clean, holed, PyTorch at STEPS and at its exit step, chip at STEPS."""
    plt = pyplot()
    columns = [("clean", pictures["clean"]), ("holed", pictures["holed"])]
    columns += [(f"PyTorch t={t}", pictures["pytorch"][:, t - 1]) for t in STEPS]
    columns.append(("PyTorch at exit", pictures["at_exit"]))
    columns += [(f"chip t={t}", pictures["chip"][:, t - 1]) for t in STEPS]
    rows = min(rows, len(pictures["clean"]))
    figure, axes = plt.subplots(rows, len(columns), figsize=(1.3 * len(columns), 1.4 * rows))
    axes = np.asarray(axes).reshape(rows, len(columns))
    for r in range(rows):
        for c, (title, images) in enumerate(columns):
            axis = axes[r, c]
            axis.imshow(images[r].reshape(32, 32), cmap="gray", vmin=-1, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(title, fontsize=7)
        axes[r, len(STEPS) + 2].set_xlabel(f"step {int(pictures['exit_step'][r])}", fontsize=7)
    figure.suptitle(
        "prime-fsvae inpainting (test split; exit: PRIME's convergence rule)", fontsize=9
    )
    save_figure(figure, path, rect=(0, 0, 1, 0.95))
