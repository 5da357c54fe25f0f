"""Handlers of the python+job runs the benchmarks start (imported by the job's child process).

Standard library only: the same function also runs outside asyncrun as the B5 floor.
"""

from __future__ import annotations

import sys
import time


def emit(n: int, rate: float = 0.0) -> int:
    """Print ``n`` lines, each starting with its ``time.time_ns()``.

    As fast as possible, or ``rate`` lines per second. The runner sets ``PYTHONUNBUFFERED=1``,
    so each line is written to the pipe by its own ``write`` call, as ``print`` would in a job:
    the stamp is taken right before the write.
    """
    write = sys.stdout.write
    clock = time.time_ns
    if not rate:
        for i in range(n):
            write(f"{clock()} {i}\n")
        return n
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        write(f"{clock()} {i}\n")
    return n
