"""What each of the target's non-idealities costs the inpainting model on the chip, before and
after the flow's two choices (calibrated ADC ranges, stuck-cell repair: `inpaint_chip`).

    python -m primec.apps.inpaint_noise -o breakdown.json

measures it for the shipped checkpoint on the test split (PyTorch's hole MSE the reference),
several chips per row, the ADC ranges calibrated on the calibration split.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from primec.apps.inpaint import hole_quality, reconstruct
from primec.apps.inpaint_chip import CHIPS, calibrated_program, chip_readouts, chip_spread
from primec.apps.inpaint_demo import CHECKPOINT
from primec.apps.inpaint_eval import compile_fsvae, load_fsvae
from primec.backends.program import Program
from primec.backends.simulator import Noise
from primec.datasets.inpaint import make_split


def breakdown_rows(target: Noise) -> dict[str, tuple[Noise, bool, str | None]]:
    """name -> (noise, calibrated ADC ranges, repair): each non-ideality of the target alone,
    then all of them, before (target ranges, raw) and after (calibrated, repaired)."""
    read = Noise(read=target.read, seed=target.seed)
    stuck = Noise(stuck=target.stuck, seed=target.seed)
    adc = Noise(adc=target.adc, seed=target.seed)
    return {
        "read noise": (read, False, None),
        "stuck cells, raw": (stuck, False, None),
        "stuck cells, cancel": (stuck, False, "cancel"),
        "stuck cells, restore": (stuck, False, "restore"),
        "ADC, target range": (replace(adc, adc_cal=0), False, None),
        "ADC, calibrated per tile": (replace(adc, adc_cal=1), True, None),
        "ADC, calibrated per column": (adc, True, None),
        "all, target range, raw": (replace(target, adc_cal=0), False, None),
        "all, calibrated, raw": (target, True, None),
        "all, calibrated, cancel": (target, True, "cancel"),
        "all, calibrated, restore": (target, True, "restore"),
    }


def breakdown(
    programs: tuple[Program, Program],
    x: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray, float],
    chips: Sequence[int],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every `breakdown_rows` row on (raw, calibrated) programs: its chips' spread against
    PyTorch's hole MSE (`truth`: clean, mask, PyTorch hole MSE). A row whose chips cannot
    differ (no cell is perturbed, no read noise) runs one chip."""
    clean, mask, reference = truth
    target = Noise.from_target(programs[0].meta["target_parameters"])
    rows = {}
    for name, (noise, calibrated, repair) in breakdown_rows(target).items():
        started = time.perf_counter()
        used = chips if (noise.perturbs_cells or noise.read) else chips[:1]
        readouts = chip_readouts(programs[calibrated], x, noise, used, repair)
        rows[name] = chip_spread([r[:, -1] for r in readouts], clean, mask, reference, used)
        log(
            f"  {name}: hole MSE x{rows[name]['ratio_mean']:.3f} of PyTorch "
            f"({rows[name]['ratio_min']:.3f}-{rows[name]['ratio_max']:.3f} over {len(used)} "
            f"chip(s)), {time.perf_counter() - started:.0f} s"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the breakdown of the shipped checkpoint on the test split (JSON to -o)."""
    parser = argparse.ArgumentParser(prog="python -m primec.apps.inpaint_noise")
    parser.add_argument("--checkpoint", default=str(CHECKPOINT))
    parser.add_argument("--samples", type=int, default=None, help="first N test samples")
    parser.add_argument("--chips", type=int, default=len(CHIPS))
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    test, cal = make_split("test"), make_split("calibration")
    x, clean = test.x[: args.samples], test.clean[: args.samples]
    reference = hole_quality(reconstruct(load_fsvae(args.checkpoint), x)[:, -1], clean, test.mask)
    program = compile_fsvae(args.checkpoint).program
    programs = (program, calibrated_program(program, cal.x)[0])
    print(f"PyTorch hole MSE {reference.hole_mse:.4f} on {len(x)} test samples", flush=True)
    rows = breakdown(
        programs,
        x,
        (clean, test.mask, reference.hole_mse),
        tuple(range(args.chips)),
        lambda line: print(line, flush=True),
    )
    summary = {"samples": len(x), "pytorch": reference.__dict__, "rows": rows}
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
