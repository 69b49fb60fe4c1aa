"""Running a sweep's shards: in this process (`workers=0`), on local Ray workers (the default;
no cluster needed), or on an existing Ray cluster (`address`).

A shard that raises, or whose worker dies, is retried up to `retries` times (Ray's task
retries; the same loop in-process); a shard that keeps failing stops the sweep, names the shard
and keeps the rows of the shards that finished. Rows come back sorted by (point, chip), so the
table is the same bytes for 1, 2 or N workers. Ray is always shut down before returning, so no
worker process outlives the sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from primec.errors import PrimecError
from primec.runtime.sweep import Job, Shard, run_shard

Task = Callable[[Job, Shard], list[dict[str, Any]]]
Progress = Callable[[int, int, float], None]
CONNECT_TIMEOUT_S = 3.0
# A client's HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113, 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS = 4  # the frame type a server's preface starts with
GCS_TIMEOUT_S = 8.0


@dataclass
class Outcome:
    """The rows of the shards that finished, and the shard that failed for good, if one did."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: Shard | None = None
    error: str = ""

    @property
    def complete(self) -> bool:
        return self.failed is None


@dataclass(frozen=True)
class _Failed:
    """A shard whose task raised on every try, in a worker that stayed alive: what it raised."""

    error: str


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
        raise PrimecError(
            f"--workers must be 0 or more, got {workers}",
            hint="0 runs in this process; N starts N local Ray workers, e.g. --workers 2",
        )
    if retries < 0:
        raise PrimecError(
            f"--retries must be 0 or more, got {retries}",
            hint="0 stops at a shard's first failure; the default retries each shard twice",
        )
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
        rows = _tries(job, shard, task, retries)
        if isinstance(rows, _Failed):
            outcome.failed, outcome.error = shard, rows.error
            return outcome
        outcome.rows.extend(rows)
        if progress:
            progress(done, len(shards), time.perf_counter() - started)
    return outcome


def _tries(job: Job, shard: Shard, task: Task, retries: int) -> list[dict[str, Any]] | _Failed:
    """The shard's rows, tried up to 1 + retries times; what it raised last if every try did."""
    error = ""
    for _ in range(retries + 1):
        try:
            return task(job, shard)
        except Exception as exc:  # a shard's failure, whatever it is, is retried
            error = f"{type(exc).__name__}: {exc}"
    return _Failed(error)


def _remote(job: Job, shard: Shard, task: Task, retries: int) -> list[dict[str, Any]] | _Failed:
    """A shard on a Ray worker: one torch thread per worker (a worker is one CPU's share). An
    exception is retried here and comes back as `_Failed` (Ray would print each retry's remote
    traceback to the terminal); Ray itself retries only a worker that died."""
    torch.set_num_threads(1)
    return _tries(job, shard, task, retries)


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
    try:
        ray.init(
            address=address or "local",
            num_cpus=None if address else max(workers, 1),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except Exception as exc:  # Ray's errors, whatever they are (no cluster for "auto"): one line
        ray.shutdown()
        where = f"connect to the Ray cluster at {address}" if address else "start local Ray"
        raise PrimecError(
            f"cannot {where}: {_cause(exc)}",
            hint="check the address (docs/sweeps.md), or run in this process with --workers 0",
        ) from None
    # Ray prints its raylet's messages (a worker that died, before its retry) to stdout from a
    # thread of its own until it shuts down: to stderr with the progress, so that stdout keeps
    # the summary alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return _collect(ray, job, shards, retries, progress, task)
        finally:
            ray.shutdown()


def _collect(
    ray: Any, job: Job, shards: list[Shard], retries: int, progress: Progress | None, task: Task
) -> Outcome:
    outcome, started = Outcome(), time.perf_counter()
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_remote)
    shared = ray.put(job)
    pending = {remote.remote(shared, shard, task, retries): shard for shard in shards}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        try:
            rows = ray.get(ready[0])
        except ray.exceptions.RayError as exc:  # the worker died on every try
            rows = _Failed(_cause(exc))
        if isinstance(rows, _Failed):
            outcome.failed, outcome.error = shard, rows.error
            for ref in pending:
                ray.cancel(ref, force=True)
            return outcome
        outcome.rows.extend(rows)
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
    """Refuse, within seconds, a cluster address no Ray cluster answers at (Ray itself would
    wait long, or forever where another service listens): the port must open (3 s), speak gRPC
    (its HTTP/2 greeting, 3 s) and, for a head's GCS address, answer Ray's GCS client, which also
    tells a cluster that wants an authentication token. "auto" is checked at the address Ray
    finds for it (`RAY_ADDRESS`, the last cluster started here, or any running here)."""
    if address == "auto":
        address = _auto_address()
        if address is None:
            return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 host: [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PrimecError(
            f"bad --ray-address {address!r}",
            hint="give HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as sock:
            greeting = _grpc_greeting(sock)
    except OSError as exc:
        raise _unreachable(address, str(exc)) from None
    if greeting is not None and not _use_tls():
        raise _unreachable(address, f"the service there is not gRPC ({greeting})")
    if not address.startswith("ray://"):
        _check_gcs(address)


def _auto_address() -> str | None:
    """The HOST:PORT Ray connects to for "auto" (None where this Ray cannot say)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except Exception as exc:  # Ray's "no cluster" errors, whatever they are: one line
        raise _unreachable("auto", _cause(exc)) from None


def _grpc_greeting(sock: socket.socket) -> str | None:
    """None where the peer answers HTTP/2's connection preface with a SETTINGS frame, as a gRPC
    server (Ray's GCS, its client server) does at once; else what it did instead."""
    sock.settimeout(CONNECT_TIMEOUT_S)
    sock.sendall(HTTP2_PREFACE)
    header = b""
    try:
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                return "it closed the connection"
            header += chunk
    except TimeoutError:
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    return None if header[3] == SETTINGS and header[5:9] == bytes(4) else "it answered otherwise"


def _check_gcs(address: str) -> None:
    """Ray's GCS client at the address, quiet (it logs its retries to stderr) and for at most
    `GCS_TIMEOUT_S` (a gRPC service that is not Ray's keeps it waiting for half a minute): its
    error, one line, where it has one (no such cluster, or an authentication token missing)."""
    try:
        from ray._raylet import GcsClient  # Ray's own check (`ray status` makes it)
    except ImportError:
        return
    failures: list[BaseException] = []

    def connect() -> None:
        try:
            GcsClient(address=address)
        except Exception as exc:  # Ray's errors, whatever they are: one line, below
            failures.append(exc)

    with _quiet_stderr():
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(GCS_TIMEOUT_S)
    if thread.is_alive():
        raise _unreachable(address, f"no answer from a Ray GCS within {GCS_TIMEOUT_S:g} s")
    if failures:
        exc = failures[0]
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "uthenticat" in message:
            raise PrimecError(
                f"the Ray cluster at {address} wants an authentication token "
                f"({message.removeprefix('RPC error: ').split('. ')[0]})",
                hint="set RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN (docs/sweeps.md)",
            ) from None
        raise _unreachable(address, message) from None


def _unreachable(address: str, why: str) -> PrimecError:
    return PrimecError(
        f"cannot reach the Ray cluster at {address}: {why}",
        hint="start one with `ray start --head` (docs/sweeps.md), or leave out --ray-address "
        "to run on local workers",
    )


def _use_tls() -> bool:
    """Whether Ray talks TLS (RAY_USE_TLS): then the greeting is TLS's, not HTTP/2's."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while (Ray's C++ logging writes there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
