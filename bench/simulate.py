"""Simulator throughput on the PRIME classifier against plain PyTorch, measured in one run.

The released N-MNIST classifier is compiled through every pass and lowered to a program; one
batch of 64 N-Digits test samples runs all T = 10 steps (no early exit). Four implementations
are timed in interleaved rounds (each round runs each once, so a change of machine load hits
all of them alike), after one untimed warm-up round; the median over `--repeats` rounds is
reported:

- `reference-float32`, `reference-float64`: plain PyTorch (`tests/prime_reference.run_prime`,
  F.conv2d / F.avg_pool2d / the PRIME cell), the same network in the usual float32 and in the
  float64 the simulator must compute in to be exact;
- `simulator-ideal`: `Simulator(program).run`, bit-identical to the float64 model (hidden
  layers sum in float32 and repair uncertain neurons exactly: `backends/simulator/certified.py`;
  every instruction over all T steps at once: `backends/simulator/layermajor.py`);
- `simulator-ideal-step-major`: the same, one step at a time (the certified path before
  layer-major runs);
- `simulator-ideal-exact`: the same with `certify=False`, every sum in float64;
- `simulator-read-adc`: with read noise 0.02 and an 8-bit ADC (`--noise read=0.02,adc=8`);
- `simulator-chips-1`, `simulator-chips-32`: every per-chip non-ideality (programming error,
  stuck cells, read noise, 8-bit ADC): one chip on the 64 samples (64 rows per batch), and 32
  chips at once on 8 samples (one batch of 8 samples x 32 chips, 256 rows; a sweep's shards run
  64 samples x 8 chips).

Ratios are throughputs per (chip, sample): simulator / reference, read+ADC / ideal, and
32 chips / 1 chip (the goal is a cost per (chip, sample) at most 1.2x a single chip's, that is a
throughput ratio of at least 1 / 1.2). torch runs on `--threads`
threads (default 1: on a small shared machine torch's thread pool stalls on small ops when the
cores are oversubscribed, which would measure the neighbours, not the code).

    .venv/bin/python bench/simulate.py            # about 40 s; writes bench/results/simulate.json
    .venv/bin/python bench/simulate.py --table    # prints the table of docs/performance.md
    .venv/bin/python bench/simulate.py --device cuda --batch 1024   # on a GPU: simulate-cuda.json

On CUDA the same contenders run on the GPU (batch >= 1024 is the issue's workload; goal: the
ideal simulator at >= 2x the float32 plain-PyTorch loop on the same GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "simulate.json"
MODEL = ROOT / "primec" / "models" / "prime_nmnist_classification.pt"
BATCH = 64
NOISE = "read=0.02,adc=8"
CHIP_NOISE = "program=0.05,stuck=0.002,read=0.02,adc=8"
CHIPS, CHIP_SAMPLES = 32, 8
IMPLEMENTATIONS = (
    "reference-float32",
    "reference-float64",
    "simulator-ideal",
    "simulator-ideal-step-major",
    "simulator-ideal-exact",
    "simulator-read-adc",
    "simulator-chips-1",
    "simulator-chips-32",
)
RATIOS = {
    "ideal_vs_reference_float32": ("simulator-ideal", "reference-float32"),
    "ideal_vs_reference_float64": ("simulator-ideal", "reference-float64"),
    "ideal_step_major_vs_reference_float32": ("simulator-ideal-step-major", "reference-float32"),
    "ideal_exact_vs_reference_float32": ("simulator-ideal-exact", "reference-float32"),
    "read_adc_vs_ideal": ("simulator-read-adc", "simulator-ideal"),
    "chips32_vs_chips1_per_row": ("simulator-chips-32", "simulator-chips-1"),
}
GOALS = {
    "ideal_vs_reference_float32": 1.5,
    "read_adc_vs_ideal": 0.5,
    "chips32_vs_chips1_per_row": round(1 / 1.2, 3),
}


def contenders(x: np.ndarray, device: str = "cpu") -> dict[str, Callable[[], np.ndarray]]:
    """Each implementation as a call that runs the batch and returns its predictions."""
    sys.path.insert(0, str(ROOT / "tests"))
    import prime_reference
    from primec.backends.simulator import Noise, Simulator

    from primec.hardware.target import DEFAULT_TARGET, load_target
    from primec.pipeline import BackendOptions, compile_model

    target = load_target(DEFAULT_TARGET)
    program = compile_model(
        MODEL, arch="prime-nmnist", target=target, log=lambda _: None, backend=BackendOptions()
    ).program
    weights = prime_reference.effective_weights(prime_reference.load_released(MODEL))
    weights = {key: value.to(device) for key, value in weights.items()}
    events = torch.from_numpy(x).to(device)
    ideal = Simulator(program, device=device)
    exact = Simulator(program, device=device, certify=False)
    step_major = Simulator(program, device=device)
    step_major.layer_major_schedule = None  # the step-major loop, as before layer-major runs
    noisy = Simulator(program, Noise.parse(NOISE, seed=0), device)
    chip_noise = Noise.parse(CHIP_NOISE, seed=0)
    one_chip = Simulator(program, chip_noise, device)
    many = Simulator(program, chip_noise, device, chips=range(CHIPS))
    few = x[:CHIP_SAMPLES]

    def reference(dtype: torch.dtype) -> Callable[[], np.ndarray]:
        return lambda: (
            prime_reference.run_prime(weights, events, dtype)["readout"][:, -1]
            .argmax(-1)
            .cpu()
            .numpy()
        )

    return {
        "reference-float32": reference(torch.float32),
        "reference-float64": reference(torch.float64),
        "simulator-ideal": lambda: ideal.run(x, len(x), early_exit=False).pred,
        "simulator-ideal-step-major": lambda: step_major.run(x, len(x), early_exit=False).pred,
        "simulator-ideal-exact": lambda: exact.run(x, len(x), early_exit=False).pred,
        "simulator-read-adc": lambda: noisy.run(x, len(x), early_exit=False).pred,
        "simulator-chips-1": lambda: one_chip.run(x[:BATCH], BATCH, early_exit=False).pred,
        "simulator-chips-32": lambda: np.concatenate(
            [r.pred for r in many.run_chips(few, CHIP_SAMPLES, early_exit=False)]
        ),
    }


def measure(repeats: int, device: str = "cpu", batch: int = BATCH) -> dict:
    """Time every implementation in interleaved rounds; medians, throughputs and ratios."""
    from primec.datasets import load_split

    x, y = load_split("test")
    x, y = np.resize(x, (batch, *x.shape[1:])), np.resize(y, batch)  # repeats the set if needed
    runs = contenders(np.ascontiguousarray(x), device)
    rows = dict.fromkeys(IMPLEMENTATIONS, batch) | {
        "simulator-chips-1": BATCH,
        "simulator-chips-32": CHIPS * CHIP_SAMPLES,
    }
    predictions = {name: run() for name, run in runs.items()}  # warm-up round
    load_before = os.getloadavg()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    labels = dict.fromkeys(runs, y) | {
        "simulator-chips-1": y[:BATCH],
        "simulator-chips-32": np.tile(y[:CHIP_SAMPLES], CHIPS),
    }
    results = {
        name: {
            "seconds_per_batch": round(statistics.median(wall[name]), 4),
            "cpu_seconds_per_batch": round(statistics.median(cpu[name]), 4),
            "rows": rows[name],
            "samples_per_s": round(rows[name] / statistics.median(wall[name]), 1),
            "seconds_all_rounds": [round(s, 4) for s in wall[name]],
            "accuracy": float((predictions[name] == labels[name]).mean()),
        }
        for name in runs
    }
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device if device == "cpu" else torch.cuda.get_device_name(device),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "workload": f"PRIME N-MNIST classifier, {batch} N-Digits test samples, T = 10, all steps",
        "noise": NOISE,
        "chip_noise": CHIP_NOISE,
        "repeats": repeats,
        "results": results,
        "ratios": {
            key: round(results[a]["samples_per_s"] / results[b]["samples_per_s"], 3)
            for key, (a, b) in RATIOS.items()
        },
        # The same ratios in CPU time per (chip, sample): less sensitive to neighbours' load.
        "ratios_cpu": {key: cpu_ratio(results[a], results[b]) for key, (a, b) in RATIOS.items()},
        "goals": GOALS,
        "ideal_predictions_equal_exact": bool(
            np.array_equal(predictions["simulator-ideal"], predictions["simulator-ideal-exact"])
        ),
        "ideal_predictions_equal_reference_float32": bool(
            np.array_equal(predictions["simulator-ideal"], predictions["reference-float32"])
        ),
    }


def cpu_ratio(a: dict, b: dict) -> float:
    """Throughput ratio a / b in CPU seconds per row."""
    return round(
        (b["cpu_seconds_per_batch"] / b["rows"]) / (a["cpu_seconds_per_batch"] / a["rows"]), 3
    )


def table(report: dict) -> str:
    """The results as the markdown table of docs/performance.md."""
    lines = [
        "| implementation | s per batch (median) | CPU s per batch | samples/s | accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in IMPLEMENTATIONS:
        r = report["results"][name]
        lines.append(
            f"| {name} | {r['seconds_per_batch']:.3f} | {r['cpu_seconds_per_batch']:.3f} | "
            f"{r['samples_per_s']:.0f} | {r['accuracy']:.3f} |"
        )
    lines += [
        "",
        "| ratio (throughput) | measured (wall) | in CPU time | goal |",
        "|---|---:|---:|---:|",
    ]
    cpu = report.get("ratios_cpu", {})
    for key, value in report["ratios"].items():
        goal = report["goals"].get(key)
        verdict = "" if not goal else (" (met)" if value >= goal else " (NOT met)")
        in_cpu = f"{cpu[key]:.2f}x" if key in cpu else ""
        lines.append(
            f"| {key} | {value:.2f}x | {in_cpu} | {f'>= {goal}x' if goal else ''}{verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the table of the last run")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--batch", type=int, default=BATCH, help="samples per batch")
    args = parser.parse_args()
    results = RESULTS if args.device == "cpu" else RESULTS.with_name("simulate-cuda.json")
    if args.table:
        print(table(json.loads(results.read_text())))
        return
    torch.set_num_threads(args.threads)
    report = measure(args.repeats, args.device, args.batch)
    if args.device != "cpu":
        report["goals"] = {"ideal_vs_reference_float32": 2.0}
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
