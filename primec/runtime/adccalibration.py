"""ADC range calibration: each tile's ADC full scale from the currents calibration data produce.

The target gives one full scale for every ADC (100 uA on prime-40nm-256k), but a tile's bit-plane
reads are far smaller (median a few uA), so a B-bit ADC wastes 2-3 of its bits. Calibration runs
the program ideally on calibration data, every step, every bit plane read one at a time as the
chip reads it, and collects each tile's nonzero read currents |I| (uA, differential, before the
ADC) in a fine logarithmic histogram; the tile's full scale is the `percentile` of them (reads
above it clip). The ranges go into the program as the tensor `adc.full_scale_ua` (one value per
Read, in program order), which both artefacts carry; the simulator uses them unless told not to
(`adc_cal=0`).

Per column (`per="column"`), each output's ADC (the converter of its column pair) gets its own
full scale, the percentile of that output's currents (its tile's when it never conducted):
tensors `adc.column_full_scale_ua.K`, one per Read K in program order, beside the per-tile
ranges, so that `adc_cal=1` still converts per tile and `adc_cal=2` per column.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from primec.backends.isa import Read
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.noise import ADC_RANGES
from primec.backends.validate import ADC_COLUMN_RANGES, column_ranges_name
from primec.core.exactmath import decades
from primec.errors import PrimecError

# Histogram bins: |I| from 1 nA to 10 mA, 200 bins per decade (about 1.2% wide).
EDGES = decades(-3, 4, 200)  # the same bits on every machine (`exactmath`)
PERCENTILE = 99.9
GRANULARITIES = ("tile", "column")


def read_currents(
    program: Program, x: np.ndarray, batch_size: int = 64, columns: dict | None = None
) -> dict[int, np.ndarray]:
    """Per Read (instruction index): the histogram over EDGES of its nonzero plane currents;
    and into `columns`, when given, per Read an [outputs, bins] histogram per output."""
    simulator = Simulator(program, Noise())
    simulator.per_plane = True  # read plane by plane, as the chip does, with no noise
    volts = program.meta["target_parameters"]["read.voltage_v"]
    counts = {i: np.zeros(len(EDGES) - 1, dtype=np.int64) for i in simulator.reads}

    def record(i: int, current: torch.Tensor) -> None:
        magnitudes = (current.abs() * volts).flatten().cpu().numpy()
        counts[i] += np.histogram(magnitudes[magnitudes > 0], EDGES)[0]
        if columns is not None:
            per_output = (current.abs() * volts).transpose(0, 1).flatten(1).cpu().numpy()
            columns[i] = columns.get(i, 0) + column_histograms(per_output)

    simulator.plane_hook = record
    simulator.run(x, batch_size, early_exit=False)
    return counts


def column_histograms(magnitudes: np.ndarray) -> np.ndarray:
    """[outputs, bins]: each output's nonzero |I| (uA; magnitudes [outputs, reads]) counted over
    EDGES as `np.histogram` counts them (half-open bins, the last one closed)."""
    bins = len(EDGES) - 1
    index = np.searchsorted(EDGES, magnitudes, side="right") - 1
    index[magnitudes == EDGES[-1]] = bins - 1
    keep = (magnitudes > 0) & (index >= 0) & (index < bins)
    flat = (np.arange(len(magnitudes))[:, None] * bins + index)[keep]
    return np.bincount(flat, minlength=len(magnitudes) * bins).reshape(-1, bins)


def full_scales(counts: dict[int, np.ndarray], percentile: float, fallback: float) -> np.ndarray:
    """Each tile's full scale (uA): the upper edge of the bin holding `percentile` of its
    currents; the target's `fallback` for a tile that never conducted."""
    scales = []
    for histogram in counts.values():
        total = histogram.sum()
        if total == 0:
            scales.append(fallback)
            continue
        index = int(np.searchsorted(np.cumsum(histogram), total * percentile / 100))
        scales.append(float(EDGES[min(index, len(histogram) - 1) + 1]))
    return np.array(scales, dtype=np.float64)


def column_tables(
    program: Program, columns: dict[int, np.ndarray], percentile: float, tiles: np.ndarray
) -> dict[str, np.ndarray]:
    """Per Read, the tensor of its outputs' full scales (uA): the `percentile` of each output's
    currents, its tile's full scale for an output that never conducted."""
    tables = {}
    reads = [(i, ins) for i, ins in enumerate(program.instrs) if isinstance(ins, Read)]
    for k, (i, ins) in enumerate(reads):
        outputs = len(program.tensors[ins.cols])
        histograms = columns.get(i, np.zeros((outputs, len(EDGES) - 1), dtype=np.int64))
        per_output = dict(enumerate(histograms))
        tables[column_ranges_name(k)] = full_scales(per_output, percentile, float(tiles[k]))
    return tables


def calibrate_adc(
    program: Program, x: np.ndarray, percentile: float = PERCENTILE, per: str = "tile"
) -> tuple[Program, dict[str, object]]:
    """The program with calibrated ADC ranges (per tile, and per column with `per="column"`),
    and a summary of what they are."""
    if not 50 <= percentile <= 100:
        raise PrimecError(
            f"--percentile must be between 50 and 100, got {percentile}", hint="e.g. 99.9"
        )
    if per not in GRANULARITIES:
        raise PrimecError(f"--per must be one of {', '.join(GRANULARITIES)}, got {per!r}")
    if len(x) == 0:
        raise PrimecError("the calibration data hold no samples")
    fallback = float(program.meta["target_parameters"]["adc.full_scale_ua"])
    columns: dict[int, np.ndarray] | None = {} if per == "column" else None
    counts = read_currents(program, x, columns=columns)
    scales = full_scales(counts, percentile, fallback)
    reads = [ins for ins in program.instrs if isinstance(ins, Read)]
    tables = {ADC_RANGES: scales}
    summary = {
        "percentile": percentile,
        "samples": len(x),
        "per": per,
        "target_full_scale_ua": fallback,
        "tiles": [
            {"read": k, "tile": ins.rows.removesuffix(".rows"), "full_scale_ua": float(fs)}
            for k, (ins, fs) in enumerate(zip(reads, scales, strict=True))
        ],
        # Tiles that read no current on these samples: they keep the target's range.
        "unread_tiles": [k for k, histogram in enumerate(counts.values()) if not histogram.sum()],
    }
    if columns is not None:
        tables |= column_tables(program, columns, percentile, scales)
        for k, tile in enumerate(summary["tiles"]):
            tile["column_full_scale_ua"] = tables[column_ranges_name(k)].tolist()
    kept = {k: v for k, v in program.tensors.items() if not k.startswith(ADC_COLUMN_RANGES)}
    return replace(program, tensors=kept | tables), summary
