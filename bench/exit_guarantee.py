"""Does the early-exit guarantee hold? Repeated random calibration/test splits of N-Digits.

The released N-MNIST classifier (not trained on N-Digits, so all 1797 digits are fresh data) is
compiled and run once for all T steps on every digit; the readouts of every step are cached
(`--cache`). Each of `--splits` random splits then takes `--calibration` digits to calibrate
(`primec.hardware.exitpolicies.certify_exit`, exactly what `primec compile --calibrate` runs) and tests
the chosen table on the others, for every policy and (EPS, DELTA) pair. Reported per policy:
the violation rates (splits whose chosen table's risk exceeds EPS) and the savings distribution
with the mean exit step over the oracle's. Two violation rates: on the pool, the risk of the
chosen table over all digits (the calibration digits are a uniform draw without replacement from
the pool, so this is the risk the certificate is about, and it must exceed EPS in at most DELTA
of the splits up to the 200 splits' own sampling error); and on the test split alone, which
adds the noise of a finite test set (1% of 897 digits is 9 digits) on top. Today's uncertified calibration (`--accuracy-budget 0.5`,
temperature 2) runs on the same splits for comparison.

With `--noise program=0.05,read=0.02` every digit runs on a chip of its own (calibration and
test alike), so the test risk is the risk on randomly programmed chips.

    .venv/bin/python bench/exit_guarantee.py                      # ideal chip, ~10 min on 2 cores
    .venv/bin/python bench/exit_guarantee.py --noise program=0.05,read=0.02
    .venv/bin/python bench/exit_guarantee.py --splits 20 --table   # quicker; prints the table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "primec" / "models" / "prime_nmnist_classification.pt"
RESULTS = ROOT / "bench" / "results"
PAIRS = ((0.01, 0.05), (0.02, 0.1))
POLICIES = ("threshold", "per-step", "lead")
LEGACY = "uncertified (0.5 pt budget, T=2)"


def compiled_program() -> Any:
    """The released classifier, compiled through every pass and lowered."""
    from primec.core.passmanager import PassOptions
    from primec.hardware.target import DEFAULT_TARGET, load_target
    from primec.pipeline import BackendOptions, compile_model

    target = load_target(DEFAULT_TARGET)
    return compile_model(
        MODEL,
        arch="prime-nmnist",
        options=PassOptions(),
        target=target,
        log=lambda _: None,
        backend=BackendOptions(),
    ).program


def cached_readouts(noise_spec: str, seed: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """All-T readouts [1797, T, 10] of every N-Digits digit and the labels, computed once."""
    from primec.backends.simulator import Noise

    from primec.datasets import make_ndigits
    from primec.runtime.exitcalibration import all_step_readouts

    key = hashlib.sha256(f"{MODEL.read_bytes().hex()[:64]},{noise_spec},{seed}".encode())
    path = cache / f"readouts-{key.hexdigest()[:12]}.npz"
    x, y = make_ndigits(seed=0)
    if path.exists():
        with np.load(path) as stored:
            return stored["readouts"], y
    noise = Noise.parse(noise_spec, seed) if noise_spec else None

    def progress(done: int, total: int) -> None:
        print(f"\rreadouts: {done}/{total}", end="", file=sys.stderr, flush=True)

    readouts = all_step_readouts(compiled_program(), x, noise, progress=progress)
    print(file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, readouts=readouts)
    return readouts, y


def one_split(
    readouts: np.ndarray, labels: np.ndarray, calibration: int, split: int
) -> dict[str, dict[str, float]]:
    """Calibrate on one random split, test on the rest: per method and pair, test risk and steps."""
    from primec.hardware.earlyexit import ExitTable, calibrate
    from primec.hardware.exitpolicies import certify_exit, oracle_steps_of
    from primec.hardware.exitrules import StepStats, exit_steps

    order = np.random.default_rng(split).permutation(len(readouts))
    cal, test = order[:calibration], order[calibration:]
    oracle = float(oracle_steps_of(readouts[test].argmax(-1)).mean())
    out: dict[str, dict[str, float]] = {}

    def measure(name: str, table: ExitTable) -> None:
        stats = StepStats.of(readouts, table.rule, table.temperature)
        steps = len(table.thresholds) or readouts.shape[1]
        thresholds = np.array(table.thresholds or [table.threshold] * steps)
        exits = exit_steps(stats, table, thresholds)
        changed = stats.pred[np.arange(len(readouts)), exits] != stats.pred[:, -1]
        out[name] = {
            "test_risk": float(changed[test].mean()),
            "pool_risk": float(changed.mean()),
            "avg_timesteps": float(exits[test].mean() + 1),
            "oracle": oracle,
        }

    base = ExitTable("max-softmax", 0.5, temperature=1.0)
    for eps, delta in PAIRS:
        for policy in POLICIES:
            name = f"{policy} eps={eps} delta={delta}"
            try:
                result = certify_exit(base, readouts[cal], None, eps, delta, policy, seed=split)
            except Exception as exc:  # nothing certified: the split counts, saving nothing
                out[name] = {"test_risk": 0.0, "pool_risk": 0.0}
                out[name]["avg_timesteps"] = float(readouts.shape[1])
                out[name]["oracle"], out[name]["failed"] = oracle, str(exc)[:80]
                continue
            measure(name, result.table)
    legacy = calibrate(ExitTable("max-softmax", 0.5, 2.0), readouts[cal], labels[cal], 0.5)
    measure(LEGACY, legacy.table)
    return out


def summarise(runs: list[dict[str, dict[str, float]]], steps: int) -> dict[str, Any]:
    """Per method: violation rate (with a 95% Clopper-Pearson interval) and savings quantiles."""
    from scipy import stats

    summary: dict[str, Any] = {}
    for name in runs[0]:
        risk = np.array([r[name]["test_risk"] for r in runs])
        pool = np.array([r[name]["pool_risk"] for r in runs])
        mean_steps = np.array([r[name]["avg_timesteps"] for r in runs])
        ratio = mean_steps / np.array([r[name]["oracle"] for r in runs])
        eps = float(name.split("eps=")[1].split()[0]) if "eps=" in name else 0.005
        violations = int((risk > eps).sum())
        low, high = stats.binomtest(violations, len(runs)).proportion_ci(0.95)
        pool_violations = int((pool > eps).sum())
        pool_low, pool_high = stats.binomtest(pool_violations, len(runs)).proportion_ci(0.95)
        savings = 1 - mean_steps / steps
        summary[name] = {
            "eps": eps,
            "violation_rate": violations / len(runs),
            "violation_rate_ci95": [low, high],
            "pool_violation_rate": pool_violations / len(runs),
            "pool_violation_rate_ci95": [pool_low, pool_high],
            "pool_risk_mean": float(pool.mean()),
            "test_risk_mean": float(risk.mean()),
            "test_risk_p95": float(np.quantile(risk, 0.95)),
            "savings_mean": float(savings.mean()),
            "savings_quantiles_5_50_95": [
                float(q) for q in np.quantile(savings, [0.05, 0.5, 0.95])
            ],
            "avg_timesteps_mean": float(mean_steps.mean()),
            "over_oracle_mean": float(ratio.mean()),
            "nothing_certified": int(sum("failed" in r[name] for r in runs)),
        }
    return summary


def table(summary: dict[str, Any], calibration: int) -> str:
    """Markdown table of a summary."""
    lines = [
        f"| method (n_cal = {calibration}) | pool violation rate [95% CI] | test-split violation rate [95% CI] | test risk mean / p95 | saving mean [5%, 50%, 95%] | steps | / oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        q = s["savings_quantiles_5_50_95"]
        ci, pool = s["violation_rate_ci95"], s["pool_violation_rate_ci95"]
        lines.append(
            f"| {name} | {s['pool_violation_rate']:.3f} [{pool[0]:.3f}, {pool[1]:.3f}] | "
            f"{s['violation_rate']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
            f"{100 * s['test_risk_mean']:.2f}% / {100 * s['test_risk_p95']:.2f}% | "
            f"{100 * s['savings_mean']:.1f}% [{100 * q[0]:.1f}, {100 * q[1]:.1f}, {100 * q[2]:.1f}] | "
            f"{s['avg_timesteps_mean']:.2f} | {s['over_oracle_mean']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the check and write bench/results/exit_guarantee[-noisy].json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=900, help="calibration digits per split")
    parser.add_argument(
        "--noise", default="", help="e.g. program=0.05,read=0.02 (one chip per digit)"
    )
    parser.add_argument("--seed", type=int, default=0, help="chip and read-noise seed")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/primec-exit-cache"))
    parser.add_argument(
        "--readouts",
        type=Path,
        nargs="*",
        help="precomputed all-T readouts (.npy, digits 0.. in order, e.g. in chunks) instead of simulating",
    )
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/...)")
    parser.add_argument("--table", action="store_true", help="print the markdown table")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.readouts:
        from primec.datasets import make_ndigits

        readouts = np.concatenate([np.load(path) for path in sorted(args.readouts)])
        labels = make_ndigits(seed=0)[1][: len(readouts)]
    else:
        readouts, labels = cached_readouts(args.noise, args.seed, args.cache)
    suffix = f"-noisy-{args.calibration}" if args.noise else f"-{args.calibration}"
    out = args.out or RESULTS / f"exit_guarantee{suffix}.json"
    runs = []
    for split in range(args.splits):
        runs.append(one_split(readouts, labels, args.calibration, split))
        print(f"\rsplits: {split + 1}/{args.splits}", end="", file=sys.stderr, flush=True)
        if (split + 1) % 20 == 0 or split + 1 == args.splits:
            write(out, runs, readouts, args, started)
    print(file=sys.stderr)
    print(f"wrote {out}")
    if args.table:
        print(table(summarise(runs, readouts.shape[1]), args.calibration))


def write(
    out: Path, runs: list, readouts: np.ndarray, args: argparse.Namespace, started: float
) -> None:
    """The results so far (rewritten every 20 splits, so a long run can be read early)."""
    summary = summarise(runs, readouts.shape[1])
    oracle = oracle_all(readouts)
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "workload": f"released PRIME classifier, N-Digits ({len(readouts)} digits), {len(runs)} random splits, "
        f"{args.calibration} calibration / {len(readouts) - args.calibration} test digits",
        "noise": args.noise or "ideal",
        "oracle_avg_timesteps_all_digits": oracle,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")


def oracle_all(readouts: np.ndarray) -> float:
    """The oracle's mean exit step over every digit."""
    from primec.hardware.exitpolicies import oracle_steps_of

    return float(oracle_steps_of(readouts.argmax(-1)).mean())


if __name__ == "__main__":
    main()
