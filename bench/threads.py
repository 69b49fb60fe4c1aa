"""`primec simulate` with and without one other busy process, under two thread policies.

The issue's check: on a machine with one other busy process, `primec simulate` should take at
most 1.5x its time without it. This script compiles the released classifier, writes the
N-Digits test set, and times the whole `primec simulate` command (its own wall clock, the
`seconds` of its report, and torch's thread count) under:

- `policy`: primec's default (`--threads` left out: one thread per CPU the load leaves idle);
- `torch-default`: `--threads` = the CPU count, what torch would choose by itself;

each with no extra load and with one busy process (a Python spin loop this script starts and
stops). Rounds are interleaved, so a change of the machine's other load hits every case alike;
the median of `--repeats` rounds is reported, with the load average before and after.

    .venv/bin/python bench/threads.py      # a few minutes; writes bench/results/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "threads.json"
MODEL = ROOT / "primec" / "models" / "prime_nmnist_classification.pt"
PRIMEC = str(Path(sys.executable).with_name("primec"))
SPIN = "while True: pass"


def run(artefact: Path, data: Path, report: Path, threads: int | None) -> dict:
    args = [PRIMEC, "simulate", str(artefact), "--input", str(data), "--report", str(report)]
    args += ["--force", "--no-statistical-energy"]
    args += [] if threads is None else ["--threads", str(threads)]
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - started
    summary = json.loads(report.read_text())
    return {"wall_s": wall, "simulate_s": summary["seconds"], "threads": summary["torch_threads"]}


def measure(repeats: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="primec-threads-"))
    artefact, data, report = folder / "m.pbc", folder / "test.npz", folder / "r.json"
    subprocess.run(
        [PRIMEC, "compile", str(MODEL), "--arch", "prime-nmnist", "--emit", "bytecode"]
        + ["-o", str(artefact)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [PRIMEC, "datasets", "ndigits", "--split", "test", "-o", str(data)],
        check=True,
        capture_output=True,
    )
    cpus = os.cpu_count() or 1
    cases = {
        (policy, busy): threads
        for policy, threads in (("policy", None), ("torch-default", cpus))
        for busy in (False, True)
    }
    times: dict[tuple[str, bool], list[dict]] = {case: [] for case in cases}
    load_before = os.getloadavg()
    for _ in range(repeats):
        for (policy, busy), threads in cases.items():
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
            try:
                time.sleep(1.0 if busy else 0.0)  # let the spinner take its core
                times[(policy, busy)].append(run(artefact, data, report, threads))
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    results = {
        f"{policy}{', one busy process' if busy else ''}": {
            "median_wall_s": round(statistics.median(r["wall_s"] for r in rounds), 2),
            "median_simulate_s": round(statistics.median(r["simulate_s"] for r in rounds), 2),
            "threads": [r["threads"] for r in rounds],
            "simulate_s_all_rounds": [round(r["simulate_s"], 2) for r in rounds],
        }
        for (policy, busy), rounds in times.items()
    }
    ratios = {
        policy: round(
            results[f"{policy}, one busy process"]["median_simulate_s"]
            / results[policy]["median_simulate_s"],
            2,
        )
        for policy in ("policy", "torch-default")
    }
    return {
        "cpus": cpus,
        "workload": "primec simulate, released classifier, 359 N-Digits test samples, target noise",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "repeats": repeats,
        "results": results,
        "busy_over_quiet": ratios,
        "goal_busy_over_quiet": 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = measure(args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
