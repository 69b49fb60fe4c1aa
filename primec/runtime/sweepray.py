"""Running a sweep's shards: in this process (`workers=0`), on local Ray workers (the default;
no cluster needed), or on an existing Ray cluster (`address`).

A shard that raises, or whose worker dies, is retried up to `retries` times (Ray's task
retries; the same loop in-process); a shard that keeps failing stops the sweep, names the shard
and keeps the rows of the shards that finished. Rows come back sorted by (point, chip), so the
table is the same bytes for 1, 2 or N workers. Ray is always shut down before returning, so no
worker process outlives the sweep.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from primec.errors import PrimecError
from primec.runtime.sweep import Job, Shard, run_shard

Task = Callable[[Job, Shard], list[dict[str, Any]]]
Progress = Callable[[int, int, float], None]
CONNECT_TIMEOUT_S = 3.0


@dataclass
class Outcome:
    """The rows of the shards that finished, and the shard that failed for good, if one did."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: Shard | None = None
    error: str = ""

    @property
    def complete(self) -> bool:
        return self.failed is None


def run_shards(
    job: Job,
    shards: list[Shard],
    workers: int = 1,
    address: str | None = None,
    retries: int = 2,
    progress: Progress | None = None,
    task: Task = run_shard,
) -> Outcome:
    """Run every shard; rows sorted by (point, chip)."""
    if workers < 0:
        raise PrimecError(f"--workers must be 0 or more, got {workers}")
    if retries < 0:
        raise PrimecError(f"--retries must be 0 or more, got {retries}")
    if address is None and workers == 0:
        outcome = _in_process(job, shards, retries, progress, task)
    else:
        outcome = _on_ray(job, shards, workers, address, retries, progress, task)
    outcome.rows.sort(key=lambda row: (row["point"], row["chip"]))
    return outcome


def _in_process(
    job: Job, shards: list[Shard], retries: int, progress: Progress | None, task: Task
) -> Outcome:
    outcome, started = Outcome(), time.perf_counter()
    for done, shard in enumerate(shards, 1):
        for attempt in range(retries + 1):
            try:
                outcome.rows.extend(task(job, shard))
                break
            except Exception as exc:  # a shard's failure, whatever it is, is retried
                if attempt == retries:
                    outcome.failed, outcome.error = shard, f"{type(exc).__name__}: {exc}"
                    return outcome
        if progress:
            progress(done, len(shards), time.perf_counter() - started)
    return outcome


def _remote(job: Job, shard: Shard, task: Task) -> list[dict[str, Any]]:
    """A shard on a Ray worker: one torch thread per worker (a worker is one CPU's share)."""
    torch.set_num_threads(1)
    return task(job, shard)


def _on_ray(
    job: Job,
    shards: list[Shard],
    workers: int,
    address: str | None,
    retries: int,
    progress: Progress | None,
    task: Task,
) -> Outcome:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is not None:
        check_reachable(address)
    ray.init(
        address=address or "local",
        num_cpus=None if address else max(workers, 1),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        return _collect(ray, job, shards, retries, progress, task)
    finally:
        ray.shutdown()


def _collect(
    ray: Any, job: Job, shards: list[Shard], retries: int, progress: Progress | None, task: Task
) -> Outcome:
    outcome, started = Outcome(), time.perf_counter()
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_remote)
    shared = ray.put(job)
    pending = {remote.remote(shared, shard, task): shard for shard in shards}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        try:
            outcome.rows.extend(ray.get(ready[0]))
        except ray.exceptions.RayError as exc:
            outcome.failed, outcome.error = shard, _cause(exc)
            for ref in pending:
                ray.cancel(ref, force=True)
            return outcome
        if progress:
            progress(len(shards) - len(pending), len(shards), time.perf_counter() - started)
    return outcome


def _cause(exc: Exception) -> str:
    """The first line of a Ray task error: what failed, without the remote traceback."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_reachable(address: str) -> None:
    """Refuse, within seconds, a cluster address nothing answers at (Ray would wait long)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PrimecError(
            f"bad --ray-address {address!r}",
            hint="give HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)",
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise PrimecError(
            f"cannot reach the Ray cluster at {address}: {exc}",
            hint="start one with `ray start --head` (docs/sweeps.md), or leave out --ray-address "
            "to run on local workers",
        ) from None
