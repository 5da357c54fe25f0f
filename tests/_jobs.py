"""Handlers of the python+job runs the tests start (imported by the job's child process)."""

from __future__ import annotations

import signal
import time
from typing import Any


def count(n: int, delay: float = 0.0) -> dict[str, int]:
    for i in range(n):
        print(f"line {i}")
        if delay:
            time.sleep(delay)
    return {"n": n}


def fail(message: str) -> None:
    print("about to fail")
    raise ValueError(message)


def identity() -> dict[str, Any]:
    import asyncrun

    run = asyncrun.current_run()
    print(f"I am {run.id}")
    return {"id": run.id, "parameters": run.spec.get("parameters")}


def stubborn() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    time.sleep(3600)


def huge() -> int:
    return 2**64  # JSON can say it; a record cannot carry it


def deep() -> list[object]:
    value: list[object] = []
    for _ in range(100):
        value = [value]
    return value


def metrics(n: int) -> int:
    import asyncrun

    run = asyncrun.current_run()
    for i in range(n):
        run.log_metric("step", i)
    return n


def interpreter() -> str:
    import sys

    return sys.executable


def start_another() -> str:
    """Try to create and start a run in this job's project with the job's own token."""
    import asyncrun

    own = asyncrun.current_run()
    with asyncrun.Client() as client:
        other = client.new_run(own.project, "command+job", spec={"command": ["true"]})
        try:
            other.run()
        except asyncrun.AsyncRunError as exc:
            return f"refused: {exc}"
        return "started"
