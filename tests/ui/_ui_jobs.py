"""Handlers of the python+job runs the dashboard's tests start."""

from __future__ import annotations

import os
import sys
import time


def _wait_for(gate: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def talk(gate: str, every: float = 0.2) -> str:
    """Print a numbered stdout line, and a stderr line every third, until ``gate`` exists."""
    i = 0
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        print(f"tick {i}", flush=True)
        if i % 3 == 0:
            print(f"warn {i}", file=sys.stderr, flush=True)
        i += 1
        time.sleep(every)
    print("done", flush=True)
    return "done"


def hold(gate: str) -> str:
    """Print one line, then wait for ``gate`` to exist."""
    print("holding", flush=True)
    _wait_for(gate)
    return "released"
