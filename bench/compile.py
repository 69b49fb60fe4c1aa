"""Compile-time benchmark: seconds per million weights and peak memory, 0.1 M to 10 M weights.

Each model is a VGG-style supermask conv SNN (tests/ir_zoo.py) written to a .pir file; a fresh
process then times `compile_model` on it end to end (read, verify, every pass), for T = 10 and
T = 1000 (compile time must not depend on T). Peak memory is the growth of the process's
maximum resident set size during the compile. The target is prime-40nm-256k with enough macros
for the largest model (its 64 would refuse 10 M weights).

    .venv/bin/python bench/compile.py            # writes bench/results/compile.json
    .venv/bin/python bench/compile.py --table    # prints the table of docs/performance.md
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "compile.json"
SIZES_M = (0.1, 0.3, 1.0, 3.0, 10.0)
TIMESTEPS = (10, 1000)
FULL_WIDTH_WEIGHTS = 5_736_576  # weights of tests/ir_zoo.vgg at width 1
BENCH_MACROS = 256


def write_model(weights_m: float, timesteps: int, path: Path) -> None:
    """Build the VGG-style model closest to `weights_m` million weights and save it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ir_zoo import vgg

    from primec.core.text import save_graph

    width = math.sqrt(weights_m * 1e6 / FULL_WIDTH_WEIGHTS)
    save_graph(vgg(width=width, timesteps=timesteps), path)


def measure(path: Path) -> dict:
    """Compile one .pir file in this (fresh) process: seconds, peak memory, arrays."""
    from primec.hardware.mapreport import mapping_report
    from primec.hardware.target import DEFAULT_TARGET, load_target
    from primec.pipeline import compile_model

    default = load_target(DEFAULT_TARGET)
    target = dataclasses.replace(
        default, chip=dataclasses.replace(default.chip, macros=BENCH_MACROS)
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = compile_model(path, target=target, log=lambda _: None)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    report = mapping_report(result.graph, target)
    weights = sum(layer["weights_total"] for layer in report["layers"])
    return {
        "weights": weights,
        "timesteps": result.graph.meta_value("timesteps"),
        "seconds": round(seconds, 4),
        "seconds_per_million_weights": round(seconds / (weights / 1e6), 4),
        "peak_memory_mib": round(peak_kib / 1024, 1),
        "arrays_used": report["arrays_used"],
        "arrays_lower_bound": report["arrays_lower_bound"],
        "arrays_ratio": round(report["arrays_used"] / report["arrays_lower_bound"], 3),
        "macros_used": report["macros_used"],
        "pass_seconds": {r.name: round(r.seconds, 4) for r in result.records},
    }


def in_fresh_process(*args: str) -> str:
    """Run this script with `args` in a new interpreter (clean peak-memory accounting)."""
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout


def run_all(sizes: tuple[float, ...]) -> dict:
    """Every size at every T, each write and each compile in its own process."""
    from primec.hardware.target import DEFAULT_TARGET

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size, timesteps in itertools.product(sizes, TIMESTEPS):
            path = Path(folder) / f"vgg-{size}m-t{timesteps}.pir"
            in_fresh_process("--write", str(size), str(timesteps), str(path))
            row = json.loads(in_fresh_process("--measure", str(path)))
            print(f"{size:>5} M weights, T={timesteps}: {row['seconds']:.3f} s", file=sys.stderr)
            rows.append({"model_million_weights": size, **row})
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "target": f"{DEFAULT_TARGET} with chip.macros = {BENCH_MACROS}",
        "results": rows,
    }


def table(results: dict) -> str:
    """The markdown table of docs/performance.md."""
    lines = [
        "| weights | T | compile s | s per M weights | peak MiB | arrays used | lower bound | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["results"]:
        lines.append(
            f"| {r['weights']:,} | {r['timesteps']} | {r['seconds']:.3f} | "
            f"{r['seconds_per_million_weights']:.3f} | {r['peak_memory_mib']:.0f} | "
            f"{r['arrays_used']} | {r['arrays_lower_bound']} | {r['arrays_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line: run the benchmark, or one of its steps, or print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs=3, metavar=("MWEIGHTS", "T", "PATH"))
    parser.add_argument("--measure", metavar="PATH")
    parser.add_argument("--table", action="store_true", help="print the table of the last run")
    parser.add_argument("--sizes", type=float, nargs="+", default=SIZES_M)
    args = parser.parse_args()
    if args.write:
        write_model(float(args.write[0]), int(args.write[1]), Path(args.write[2]))
    elif args.measure:
        print(json.dumps(measure(Path(args.measure))))
    elif args.table:
        print(table(json.loads(RESULTS.read_text())))
    else:
        results = run_all(tuple(args.sizes))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(table(results))


if __name__ == "__main__":
    main()
