"""The long fuzz run over every reader of a user file (issue 10): N mutated cases per format.

    .venv/bin/python bench/fuzz.py                      # 10000 cases per format, 2 workers
    .venv/bin/python bench/fuzz.py --cases 300 --formats pbc,pmac --findings /tmp/f.txt
    .venv/bin/python bench/fuzz.py --replay pmac:123 --save /tmp/cases   # one case, traceback

Cases are made and run by `tests/fuzzing.py` (seed corpus made by code; case i of a format is
the same bytes for the same --seed). Workers are forked from a parent that has built the corpus
and imported everything once; each case runs under a 20 s alarm, and a worker silent for longer
is killed and the case counted as a hang. Per format the report gives cases, accepted, refused,
every finding by signature (exception type + file:line of the innermost primec frame) with a
replayable example, hangs, peak RSS of the workers, and seconds. Results: --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzzing as fz  # noqa: E402

GRACE_SECONDS = 25.0  # past the per-case alarm, a silent worker is killed


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(1)
    formats = args.formats.split(",") if args.formats else list(fz.FORMATS)
    unknown = sorted(set(formats) - set(fz.FORMATS))
    if unknown:
        sys.exit(f"unknown formats {unknown}; known: {', '.join(fz.FORMATS)}")
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="primec-fuzz-"))
    corpus = fz.Corpus(folder / "corpus")
    if args.replay:
        replay(corpus, folder, args)
        return
    Campaign(corpus, folder, formats, args).run()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="cases per format")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (cases replay by it)")
    parser.add_argument("--formats", help=f"comma-separated, of: {', '.join(fz.FORMATS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    parser.add_argument("--findings", help="also write the distinct findings as text here")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--chunk", type=int, default=200, help="cases per forked worker")
    parser.add_argument("--hang", type=float, default=fz.HANG_SECONDS, help="seconds per case")
    parser.add_argument(
        "--address-space-gib",
        type=float,
        default=8.0,
        help="RLIMIT_AS of each worker (protects a shared machine; 0: none)",
    )
    parser.add_argument("--no-memo", action="store_true", help="torch.export every model case")
    parser.add_argument("--workdir", help="folder for the corpus and case files (default: temp)")
    parser.add_argument("--replay", metavar="FORMAT:INDEX", help="run one case and show it")
    parser.add_argument("--save", metavar="DIR", help="with --replay: write the case file here")
    return parser.parse_args()


def replay(corpus: fz.Corpus, folder: Path, args: argparse.Namespace) -> None:
    fmt, _, index = args.replay.partition(":")
    base, data, mutations = fz.make_case(corpus, fmt, int(index), args.seed)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        path = Path(args.save) / f"{fmt}-{index}{fz.SUFFIX[fmt]}"
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes) from seed {base.name}")
        if fmt in ("pir", "pir-weights"):
            other = base.extra.get("side") or base.extra.get("text")
            side = path.with_suffix(".npz" if fmt == "pir" else ".pir")
            side.write_bytes(other)
            print(f"wrote {side} (the unchanged {'side file' if fmt == 'pir' else 'IR text'})")
    runner = fz.CaseRunner(corpus, folder / "replay", memo=not args.no_memo)
    runner.warm(fmt)  # imports and first traces outside the case's time limit
    result = runner.run(fmt, int(index), args.seed, args.hang)
    finding = result.finding
    print(f"{fmt}:{index} seed {base.name}: {result.outcome}; stages {result.stages}")
    print("mutations:\n  " + "\n  ".join(mutations))
    if finding:
        print(f"FINDING {finding.kind} in {finding.stage}: {finding.signature}\n{finding.message}")
        print(finding.trace)


class Campaign:
    """Forked workers over (format, chunk) tasks; results gathered, hangs and deaths handled."""

    def __init__(self, corpus: fz.Corpus, folder: Path, formats: list[str], args: Any) -> None:
        self.corpus = corpus
        self.folder = folder
        self.formats = formats
        self.args = args
        self.results: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.worker_rss: dict[str, int] = defaultdict(int)
        self.load_samples: list[tuple[int, float, list]] = []
        self.started = time.time()
        self.format_wall: dict[str, list[float]] = {}

    def run(self) -> None:
        prepared = time.perf_counter()
        print(f"building the corpus and warming up in {self.folder} ...", flush=True)
        self.runner = fz.CaseRunner(self.corpus, self.folder / "parent", memo=not self.args.no_memo)
        fz.bomb()
        self.seed_check = {}
        for fmt in self.formats:  # every seed must be accepted as it is: a sanity check
            for result in self.runner.warm(fmt):
                self.seed_check[f"{fmt}/{result.seed}"] = result.outcome + (
                    f" ({result.finding.signature})" if result.finding else ""
                )
        bad = {k: v for k, v in self.seed_check.items() if v != "accepted"}
        if bad:
            print(f"warning: seeds not accepted: {bad}", flush=True)
        self.prepare_seconds = time.perf_counter() - prepared
        tasks = [
            (fmt, start, min(start + self.args.chunk, self.args.cases))
            for start in range(0, self.args.cases, self.args.chunk)
            for fmt in self.formats
        ]
        self.sample_load()
        active: dict[Any, dict[str, Any]] = {}
        last_save = time.time()
        while tasks or active:
            while tasks and len(active) < self.args.jobs:
                self.spawn(*tasks.pop(0), active)
            ready = wait(list(active), timeout=1.0)
            now = time.time()
            for conn in ready:
                self.receive(conn, active)
            for conn, worker in list(active.items()):
                if now - worker["last"] > self.args.hang + GRACE_SECONDS:
                    self.kill(conn, active, "hang", f"no answer for {now - worker['last']:.0f} s")
            if now - last_save > 60:
                self.sample_load()
                self.save(final=False)
                last_save = now
        self.sample_load()
        self.save(final=True)

    # --- workers -------------------------------------------------------------------------------

    def spawn(self, fmt: str, start: int, stop: int, active: dict) -> None:
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=self.work, args=(child, fmt, start, stop), daemon=True)
        process.start()
        child.close()
        span = self.format_wall.setdefault(fmt, [time.time(), time.time()])
        span[0] = min(span[0], time.time())
        active[parent] = {
            "process": process,
            "fmt": fmt,
            "next": start,
            "stop": stop,
            "last": time.time(),
        }

    def work(self, conn: Any, fmt: str, start: int, stop: int) -> None:
        limit = self.args.address_space_gib
        if limit:
            size = int(limit * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (size, resource.RLIM_INFINITY))
        runner = self.runner  # forked with the parent's warm traces
        runner.workdir = self.folder / "work"
        runner.workdir.mkdir(parents=True, exist_ok=True)
        for index in range(start, stop):
            result = runner.run(fmt, index, self.args.seed, self.args.hang)
            record = result.to_dict()
            if record["finding"] is None:
                record.pop("finding")
            conn.send(record)
        conn.send(None)
        conn.close()
        os._exit(0)

    def receive(self, conn: Any, active: dict) -> None:
        worker = active[conn]
        try:
            record = conn.recv()
        except (EOFError, OSError):
            self.died(conn, active)
            return
        worker["last"] = time.time()
        if record is None:
            worker["process"].join()
            self.finish(conn, active)
            return
        fmt = worker["fmt"]
        self.results[fmt].append(record)
        self.worker_rss[fmt] = max(self.worker_rss[fmt], record["max_rss"])
        worker["next"] = record["index"] + 1

    def died(self, conn: Any, active: dict) -> None:
        worker = active[conn]
        worker["process"].join(5)
        code = worker["process"].exitcode
        if worker["next"] < worker["stop"]:
            self.kill(conn, active, "worker-died", f"worker exited with {code} (killed by memory?)")
        else:
            self.finish(conn, active)

    def kill(self, conn: Any, active: dict, kind: str, message: str) -> None:
        worker = active.pop(conn)
        worker["process"].kill()
        worker["process"].join()
        conn.close()
        fmt, index = worker["fmt"], worker["next"]
        base, _, mutations = fz.make_case(self.corpus, fmt, index, self.args.seed)
        finding = {"kind": kind, "stage": "?", "signature": kind, "message": message, "trace": ""}
        self.results[fmt].append(
            {
                "format": fmt,
                "index": index,
                "seed": base.name,
                "mutations": mutations,
                "outcome": kind,
                "stages": [],
                "finding": finding,
                "seconds": self.args.hang + GRACE_SECONDS,
                "max_rss": 0,
                "refusal": "",
            }
        )
        if index + 1 < worker["stop"]:
            self.spawn(fmt, index + 1, worker["stop"], active)

    def finish(self, conn: Any, active: dict) -> None:
        worker = active.pop(conn)
        conn.close()
        self.format_wall[worker["fmt"]][1] = time.time()

    # --- reporting -----------------------------------------------------------------------------

    def sample_load(self) -> None:
        """Load average and the other processes that used over 20% of a core since last time."""
        now, ticks = time.time(), _cpu_ticks()
        previous = getattr(self, "_ticks", None)
        others = []
        if previous is not None:
            seconds = max(now - previous[0], 1e-3)
            ours = {os.getpid(), *_children()}
            for pid, (name, used) in ticks.items():
                share = (used - previous[1].get(pid, (name, used))[1]) / _HZ / seconds
                if share > 0.2 and pid not in ours:
                    others.append((_command(pid, name), round(share * 100)))
        self._ticks = (now, ticks)
        self.load_samples.append((round(now - self.started), os.getloadavg()[0], sorted(others)))

    def summary(self) -> dict[str, Any]:
        formats: dict[str, Any] = {}
        findings: dict[tuple[str, str], dict[str, Any]] = {}
        for fmt in self.formats:
            records = self.results.get(fmt, [])
            outcomes = Counter(r["outcome"] for r in records)
            kinds = Counter(r["finding"]["kind"] for r in records if r.get("finding"))
            signatures = Counter(
                (r["finding"]["kind"], r["finding"]["signature"])
                for r in records
                if r.get("finding")
            )
            refusals = Counter(fz._norm(r["refusal"]) for r in records if r["outcome"] == "refused")
            span = self.format_wall.get(fmt, [0, 0])
            formats[fmt] = {
                "cases": len(records),
                "accepted": outcomes.get("accepted", 0),
                "refused": outcomes.get("refused", 0),
                "crashed": outcomes.get("crashed", 0),
                "uncaught": kinds.get("uncaught", 0),
                "accepted_then_crash": kinds.get("accepted-then-crash", 0),
                "accepted_then_refused": kinds.get("accepted-then-refused", 0),
                "hangs": kinds.get("hang", 0),
                "canary": kinds.get("canary", 0),
                "memory": kinds.get("memory", 0),
                "worker_died": kinds.get("worker-died", 0),
                "distinct_signatures": len(signatures),
                "signatures": {f"{k}: {s}": n for (k, s), n in signatures.most_common()},
                "peak_rss_mib": round(self.worker_rss.get(fmt, 0) / (1 << 20), 1),
                "case_seconds_total": round(sum(r["seconds"] for r in records), 1),
                "slowest_case_s": round(max((r["seconds"] for r in records), default=0), 2),
                "wall_s": round(span[1] - span[0], 1),
                "top_refusals": dict(refusals.most_common(8)),
                "slowest_cases": [
                    {
                        "index": r["index"],
                        "seconds": round(r["seconds"], 2),
                        "mutations": r["mutations"],
                    }
                    for r in sorted(records, key=lambda r: -r["seconds"])[:3]
                ],
                "largest_rss_growth_cases": [
                    {
                        "index": r["index"],
                        "rss_growth_mib": r.get("rss_growth", 0) >> 20,
                        "mutations": r["mutations"],
                    }
                    for r in sorted(records, key=lambda r: -r.get("rss_growth", 0))[:3]
                ],
            }
            for r in records:
                f = r.get("finding")
                if not f:
                    continue
                key = (f["kind"], f["signature"])
                entry = findings.setdefault(
                    key,
                    {
                        "kind": f["kind"],
                        "signature": f["signature"],
                        "stage": f["stage"],
                        "count": 0,
                        "formats": Counter(),
                        "example": {
                            "format": fmt,
                            "index": r["index"],
                            "seed_file": r["seed"],
                            "mutations": r["mutations"],
                            "message": f["message"],
                            "replay": f"bench/fuzz.py --seed {self.args.seed} --replay {fmt}:{r['index']} --save /tmp/fuzz-cases",
                            "trace_tail": f.get("trace", "")[-1500:],
                        },
                    },
                )
                entry["count"] += 1
                entry["formats"][fmt] += 1
        ordered = sorted(findings.values(), key=lambda e: (e["kind"], -e["count"]))
        for entry in ordered:
            entry["formats"] = dict(entry["formats"])
        return {"formats": formats, "findings": ordered}

    def save(self, final: bool) -> None:
        summary = self.summary()
        loads = [s[1] for s in self.load_samples]
        busy = Counter(name for sample in self.load_samples for name, _ in sample[2])
        report = {
            "complete": final,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "commit": _git("rev-parse", "HEAD"),
            "worktree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "seed": self.args.seed,
            "cases_per_format": self.args.cases,
            "jobs": self.args.jobs,
            "hang_limit_s": self.args.hang,
            "memory_limit_mib": fz.MEMORY_LIMIT >> 20,
            "worker_address_space_gib": self.args.address_space_gib,
            "memo_export": not self.args.no_memo,
            "wall_s": round(time.time() - self.started, 1),
            "prepare_s": round(self.prepare_seconds, 1),
            "cpus": os.cpu_count(),
            "load_average_max": max(loads, default=0.0),
            "load_average_mean": round(sum(loads) / len(loads), 2) if loads else 0.0,
            "other_busy_processes": {
                "note": "processes not of this run using over 20% of a core between samples "
                "(sampled every 60 s): name -> samples in which they were busy",
                "samples": len(self.load_samples) - 1,
                "busy": dict(busy.most_common(20)),
            },
            "load_samples": [[t, round(load, 1), others] for t, load, others in self.load_samples],
            "seed_check": self.seed_check,
            "totals": {
                key: sum(f[key] for f in summary["formats"].values())
                for key in (
                    "cases",
                    "accepted",
                    "refused",
                    "crashed",
                    "uncaught",
                    "accepted_then_crash",
                    "accepted_then_refused",
                    "hangs",
                    "canary",
                    "memory",
                    "worker_died",
                )
            },
            **summary,
        }
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")
        if self.args.findings:
            Path(self.args.findings).write_text(findings_text(report))
        if final:
            print(table(report))
            print(f"wrote {out}" + (f" and {self.args.findings}" if self.args.findings else ""))


def findings_text(report: dict[str, Any]) -> str:
    """The distinct findings, one block each, for whoever fixes the readers."""
    lines = [
        f"primec fuzz findings ({'complete' if report['complete'] else 'in progress'}, "
        f"{report['date_utc']}, commit {report['commit'][:10]}{' + local changes' if report['worktree_dirty'] else ''}, "
        f"seed {report['seed']}, {report['cases_per_format']} cases per format)",
        f"totals: {report['totals']}",
        "",
    ]
    for entry in report["findings"]:
        ex = entry["example"]
        lines.append(
            f"[{entry['kind']}] {entry['signature']}  (x{entry['count']}, {entry['formats']}, stage {entry['stage']})"
        )
        lines.append(f"    seed {ex['seed_file']}; mutations: {' | '.join(ex['mutations'])}")
        lines.append(f"    message: {ex['message'][:300]}")
        lines.append(f"    replay: .venv/bin/python {ex['replay']}")
        lines.append("")
    if not report["findings"]:
        lines.append("no findings")
    return "\n".join(lines) + "\n"


def table(report: dict[str, Any]) -> str:
    """Per-format numbers as a small table."""
    head = f"{'format':12} {'cases':>6} {'accepted':>8} {'refused':>8} {'uncaught':>8} {'acc->crash':>10} {'acc->ref':>8} {'hangs':>5} {'peak MiB':>8} {'wall s':>7}"
    rows = [head]
    for fmt, f in report["formats"].items():
        rows.append(
            f"{fmt:12} {f['cases']:>6} {f['accepted']:>8} {f['refused']:>8} {f['uncaught']:>8} "
            f"{f['accepted_then_crash']:>10} {f['accepted_then_refused']:>8} {f['hangs']:>5} "
            f"{f['peak_rss_mib']:>8} {f['wall_s']:>7}"
        )
    rows.append(f"wall {report['wall_s']} s, load average max {report['load_average_max']:.1f}")
    return "\n".join(rows)


_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """utime + stime of every process, by pid (from /proc)."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return ticks


def _command(pid: int, name: str) -> str:
    """A process's command line, shortened (its name if unreadable)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    text = " ".join(a.decode(errors="replace") for a in args if a)
    return (text or name)[:80]


def _children() -> list[int]:
    try:
        text = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


if __name__ == "__main__":
    main()
