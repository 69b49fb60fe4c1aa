"""Could ideal mode compute its crossbar sums in float32 and certify the spikes? Measured here.

A float32 sum of n products has a rigorous error bound (Higham): |fl(sum) - sum| <= gamma_n x
sum |x| |w|, gamma_n = n u / (1 - n u), u = 2^-24. A certified fast path would compute each
layer's sums in float32, carry that bound through the neuron (with keep < 1 the membrane's error
is at most keep x its previous error + the new one; a reset zeroes both), and redo in float64
every sample (row) in which some membrane lies within its bound of the threshold. That pays
only if few rows need the redo. This script runs PRIME in float64 on the N-Digits test split and
counts, per layer, the rows in which some neuron at some step lies within twice its bound of the
threshold, for two bounds:

- `per-channel`: sum |x| |w| <= (the row's largest input level) x ||w_c||_1, a constant per
  output channel and row (cheap: no tensor of bounds);
- `per-neuron`: sum |x| |w| exactly, a second convolution with |w| (as dear as the sum itself).

    .venv/bin/python bench/float32_certification.py   # ~1 min; writes bench/results/float32_certification.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "float32_certification.json"
UNIT = 2.0**-24
SAFETY = 2.0  # the check's margin on top of the bound


def gamma(n: int) -> float:
    """Higham's gamma_n for float32."""
    return n * UNIT / (1 - n * UNIT)


def measure() -> dict:
    """Rows of the test split that a certified float32 path would have to redo, per bound."""
    sys.path.insert(0, str(ROOT / "tests"))
    import prime_reference as pr

    from primec.datasets import load_split

    released = pr.load_released(pr.RELEASED_PATH)
    w0, w1 = (
        (released[f"{key}.weight"] * pr.keep_mask(released[f"{key}.scores"])).double()
        for key in pr.LAYER_KEYS[:2]
    )
    x = torch.from_numpy(np.asarray(load_split("test")[0], dtype=np.float64))
    rows = len(x)
    near = {
        f"{bound}{layer}": torch.zeros(rows) for bound in ("channel", "neuron") for layer in "01"
    }
    error = dict.fromkeys(near, 0.0)
    u0 = s0 = torch.zeros(rows, 12, 32, 32, dtype=torch.float64)
    u1 = s1 = torch.zeros(rows, 64, 12, 12, dtype=torch.float64)
    for t in range(x.shape[1]):
        inputs = x[:, t]
        pooled = None
        for layer, (w, pad, scale, n) in enumerate(
            ((w0, 1, pr.GAIN, 50), (w1, 0, pr.GAIN / 4, 300))
        ):
            source = inputs if layer == 0 else pooled
            largest = source.amax((1, 2, 3)).view(-1, 1, 1, 1)
            bounds = {
                "channel": largest * w.abs().sum((1, 2, 3)).view(1, -1, 1, 1),
                "neuron": F.conv2d(source, w.abs(), padding=pad),
            }
            current = F.conv2d(source, w, padding=pad) * scale
            if layer == 0:
                u0, new = pr.prime_cell(u0, s0, current)
                membrane, spikes, s0 = u0, s0, new
                pooled = F.avg_pool2d(s0, 2) * 4
            else:
                u1, new = pr.prime_cell(u1, s1, current)
                membrane, spikes, s1 = u1, s1, new
            for bound, total in bounds.items():
                key = f"{bound}{layer}"
                error[key] = pr.LEAK * error[key] * (1 - spikes) + scale * gamma(n) * total
                close = (membrane - pr.THRESHOLD).abs() <= SAFETY * error[key]
                near[key] += close.flatten(1).sum(1)
    return {
        "workload": f"PRIME in float64, {rows} N-Digits test samples, T = {x.shape[1]}",
        "safety_factor": SAFETY,
        "rows": rows,
        "rows_to_redo": {
            f"{key[:-1]} bound, layer {key[-1]}": round(float((v > 0).double().mean()), 3)
            for key, v in near.items()
        },
        "uncertain_neurons_per_row": {
            f"{key[:-1]} bound, layer {key[-1]}": round(float(v.mean()), 3)
            for key, v in near.items()
        },
    }


def main() -> None:
    torch.set_num_threads(1)
    report = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
