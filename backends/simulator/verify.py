"""Stuck-cell repair by read-back and verify: an opt-in periphery step after programming.

The simulator's chip (`noise.programmed_cells`) sticks a fraction of cells at g_off or g_max.
A stuck cell of a differential pair is a full-scale error: one stuck at g_max where the mask
pruned the weight (both cells reset to g_off) reads as a weight of g_max - g_off, 99.5 uS on
prime-40nm-256k, against an as-formed weight spread of 6.35 uS.

What a real flow can do about it: every cell is read back after programming (as-formed pruned
layers need that read-back anyway, since their weights are the cells' as-formed conductances;
programmed layers run program-and-verify, which sees a cell that does not move). A cell found
stuck has its pair partner written with write-verify, within the target's tolerance
(`cells.write_verify_tolerance_us`, the error drawn uniformly from the stream keyed by (seed, 4,
chip, macro, array)):

- `cancel`: the partner goes to the stuck cell's state (reset to g_off, or set to g_max), so
  the weight is pruned (0 within the tolerance) instead of wrong by a full scale. Only the two
  extreme states are written: no analog programming of an as-formed layer.
- `restore`: the partner is programmed so that the pair reads the compiled weight again
  (stuck value minus or plus the weight), clipped to [g_off, g_max]; where the range does not
  allow it (a cell stuck at g_off under a positive weight, say) the nearest weight is kept.

A pair whose two cells are both stuck stays as it is. Nothing else of the chip changes: read
noise, the ADC and the other cells are the model's, and the partner's read noise is that of
its new conductance.

`VerifiedSimulator` is the `Simulator` with this step; it is a per-run choice, not part of any
target's noise (the target's stuck rates are unchanged, only what the periphery does after
programming differs).
"""

from __future__ import annotations

import numpy as np
from primec.backends.isa import Read
from primec.backends.simulator.executor import Simulator
from primec.backends.simulator.noise import programmed_cells, stream_seed

from primec.errors import PrimecError
from primec.hardware.geometry import PAIR
from primec.hardware.target import DriftSpec


def repair_stuck(
    cells: np.ndarray,
    stuck: np.ndarray,
    compiled: np.ndarray,
    bounds: tuple[float, float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """The [rows, columns] array with each stuck cell's pair partner set, within +-tolerance,
    so that the pair reads `compiled`'s weight as nearly as [g_low, g_high] allows; and how
    many pairs were repaired. `compiled` zero everywhere cancels (partner = stuck cell). Pairs
    start at even columns (`PAIR`); a pair with both cells stuck is left as it is."""
    g_low, g_high, tolerance = bounds
    cells = cells.copy()
    g_pos, g_neg = PAIR.split(cells)
    s_pos, s_neg = PAIR.split(stuck)
    c_pos, c_neg = PAIR.split(compiled)
    weight = c_pos - c_neg
    pos_only, neg_only = s_pos & ~s_neg, s_neg & ~s_pos
    error = rng.uniform(-tolerance, tolerance, g_pos.shape)
    want_neg = np.clip(g_pos - weight, g_low, g_high) + error
    want_pos = np.clip(g_neg + weight, g_low, g_high) + error
    g_neg[pos_only] = np.clip(want_neg[pos_only], 0.0, None)
    g_pos[neg_only] = np.clip(want_pos[neg_only], 0.0, None)
    return cells, int(pos_only.sum() + neg_only.sum())


REPAIRS = ("cancel", "restore")


class VerifiedSimulator(Simulator):
    """The simulator with stuck cells found by read-back and their pairs repaired (above):
    `repair="cancel"` sets the partner to the stuck cell's state, `"restore"` programs it to
    give the compiled weight back where the conductance range allows."""

    def __init__(self, *args, repair: str = "cancel", **kwargs) -> None:
        if repair not in REPAIRS:
            raise PrimecError(f"unknown stuck-cell repair {repair!r}", hint=" or ".join(REPAIRS))
        noise = kwargs.get("noise", args[1] if len(args) > 1 else None)
        if noise is not None and noise.age:
            raise PrimecError(
                "stuck-cell repair is modelled right after programming only, not with drift",
                hint="drop age=... or the repair",
            )
        self.repair = repair
        self.repaired = 0
        self.repaired_per_chip: dict[int, int] = {}  # chip -> its pairs rewritten
        super().__init__(*args, **kwargs)

    def _chip_arrays(self, params: dict, drift: DriftSpec | None) -> tuple[list[dict], list[dict]]:
        _check_pairs_aligned(self.program.instrs)
        cells, references = super()._chip_arrays(params, drift)
        if not self.noise.stuck:
            return cells, references
        bounds = (
            float(params["cells.g_off_us"]),
            float(params["cells.g_max_us"]),
            float(params["cells.write_verify_tolerance_us"]),
        )
        for arrays, chip in zip(cells, self.chips, strict=False):
            for key, values in self.program.arrays.items():
                stuck = programmed_cells(key, values, self.noise, params, chip)[1]
                rng = np.random.default_rng(stream_seed(self.noise.seed, 4, chip, *key))
                compiled = values if self.repair == "restore" else np.zeros_like(values)
                arrays[key], count = repair_stuck(arrays[key], stuck, compiled, bounds, rng)
                self.repaired += count
                self.repaired_per_chip[chip] = self.repaired_per_chip.get(chip, 0) + count
        return cells, cells


def _check_pairs_aligned(instrs: list) -> None:
    """The repair pairs columns 2j and 2j+1 of an array: every tile must start on a pair."""
    for ins in instrs:
        if isinstance(ins, Read) and ins.col0 % PAIR.columns:
            raise PrimecError(
                f"a tile starts at column {ins.col0}, not on a pair boundary",
                hint="stuck-cell repair needs pair-aligned tiles",
            )
