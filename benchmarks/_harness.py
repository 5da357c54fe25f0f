"""Shared plumbing of the benchmarks: repetitions, servers on loopback, result records."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(argv: list[str], health_url: str) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(health_url, proc)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def asyncrun_server() -> Iterator[str]:
    """A real ``asyncrun server`` on a fresh database; yields its URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable,
            "-m",
            "asyncrun",
            "server",
            "--port",
            str(port),
            "--db",
            str(Path(tmp) / "bench.sqlite3"),
            "--no-auth",  # like the peers' servers: no tokens on loopback
        ]
        with process(argv, f"{url}/healthz"):
            yield url


@contextmanager
def trivial_server() -> Iterator[str]:
    """The floor of the HTTP stack: a Starlette app on uvicorn that answers a fixed JSON body."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(Path(__file__).with_name("_trivial_app.py")), str(port)]
    with process(argv, f"{url}/healthz"):
        yield url


def measure(fn: Callable[[], float]) -> dict[str, Any]:
    """Run ``fn`` (which returns one figure) REPEATS times: median, min, max."""
    values = [fn() for _ in range(REPEATS)]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }
