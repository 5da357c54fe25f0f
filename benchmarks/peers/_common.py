"""What both sides of the peer benchmarks share; standard library only (it runs in both venvs).

A side script (``asyncrun_side.py``, ``mlflow_side.py``) starts its server with :func:`server`,
runs every workload once and writes one JSON record with :func:`write_record`; ``run.py`` calls
each side once per repetition and aggregates.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

# Workload sizes at --scale 1, the same on both sides (MLflow bounds them: ~15-60 ms per call).
# b3c: runs created 50 in flight; b7: run objects held (fetched from B7_DISTINCT stored runs).
SIZES = {"b1": 10_000, "b2": 50_000, "b3": 500, "b3c": 2_000, "get": 1_000, "b7": 1_000}
MIN_SIZES = {"b1": 1_000, "b2": 2_000, "b3": 20, "b3c": 100, "get": 20, "b7": 100}
IN_FLIGHT = 50  # B3: requests in flight (MLflow: worker threads; asyncrun: tasks in one loop)
B7_DISTINCT = 20  # B7: runs stored with content; the held objects cycle over them

# B7: what each stored run carries, the same on both sides (MLflow: params, latest metrics and
# tags; asyncrun: spec["parameters"], status.metrics with single values, labels).
B7_PARAMS = {"lr": "0.001", "epochs": "10", "batch_size": "64", "optimizer": "adam"}
B7_METRICS = {"loss": 0.25, "accuracy": 0.9}
B7_TAGS = {"team": "vision", "stage": "nightly"}


def sizes(scale: float) -> dict[str, int]:
    return {k: max(MIN_SIZES[k], int(v * scale)) for k, v in SIZES.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON record")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    return parser.parse_args()


def check(ok: bool, message: str) -> None:
    """An assertion that ``python -O`` keeps: a side that did not do the work must fail."""
    if not ok:
        raise RuntimeError(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_cpu_seconds(pgid: int) -> float:
    """CPU time used so far by the live processes of a process group (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _group_size(pgid: int) -> int:
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        count += int(fields[2]) == pgid and fields[0] != "Z"
    return count


def _settle(pgid: int, timeout: float = 90.0) -> float:
    """Wait until the server's processes use < 5% of a core over 1 s; return the time waited.

    A server that answers its health check may still be starting helpers (MLflow 3.x starts
    a job runner and seven huey consumers, ~20 CPU-seconds of imports): measuring then would
    charge their start-up to the first workload.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = _group_cpu_seconds(pgid)
        time.sleep(1.0)
        if _group_cpu_seconds(pgid) - before < 0.05:
            break
    return time.monotonic() - start


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def server(argv: list[str], health_url: str, cwd: Path, env: dict[str, str]) -> Iterator[dict]:
    """Start ``argv`` in its own process group; yield facts about it; stop the whole group.

    The group is stopped with SIGTERM, then SIGKILL after 30 s, so helpers the server spawned
    (uvicorn, job runners) go with it. Output goes to ``server.log`` in ``cwd``.
    """
    log = (cwd / "server.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        while not _healthy(health_url):
            if proc.poll() is not None or time.monotonic() - started > 120:
                tail = (cwd / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{argv[0]} did not come up (exit {proc.poll()}):\n{tail}")
            time.sleep(0.1)
        facts: dict[str, Any] = {"argv": argv, "startup_s": time.monotonic() - started}
        facts["settle_s"] = _settle(proc.pid)
        facts["processes"] = _group_size(proc.pid)
        yield facts
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so it does not count as alive
        if _group_size(pgid) == 0:
            break
        time.sleep(0.2)
    else:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)


def write_record(path: Path, side: str, version: str, facts: dict, figures: dict) -> None:
    """One repetition of one side: every figure, how it was checked, and the server's facts."""
    record = {
        "side": side,
        "version": version,
        "python": platform.python_version(),
        "executable": sys.executable,
        "server": facts,
        "figures": figures,
    }
    path.write_text(json.dumps(record, indent=2))


class Held:
    """Bytes still allocated at exit that were allocated inside the block (tracemalloc).

    Garbage is collected on both sides of the block, so only what the block keeps alive counts
    (the objects it built and anything they refer to that did not exist before).
    """

    def __enter__(self) -> Held:
        gc.collect()
        tracemalloc.start()
        self._before = tracemalloc.get_traced_memory()[0]
        self.bytes = 0
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        self.bytes = tracemalloc.get_traced_memory()[0] - self._before
        tracemalloc.stop()
