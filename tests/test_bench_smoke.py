"""The benchmarks still run: every module at a tiny scale, printing one table row per workload.

Benchmarks are never run inside the test suite otherwise; this only catches a benchmark broken
by a change of the package (or of the harness) before ``nox -s bench`` does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# Workload names (their start: sizes in them depend on the scale) each module reports.
EXPECTED = {
    "crud": [
        "create, embedded, sequential",
        "create, HTTP, 1 in flight",
        "get, HTTP, 1 in flight",
        "create, HTTP, 50 in flight",
        "get, HTTP, 50 in flight",
        "list, HTTP, pages of 1,000",
        "list, embedded, pages of 1,000",
    ],
    "metrics": [
        "B1 log_metric, AsyncRun",
        "B1 log_metric, sync Run",
        "B2 metrics persisted end to end",
        "B2 against packed chunks",
    ],
    "runs": [
        "B3 create ",
        "B3 against batched POSTs",
        "B3 requests while waiting",
        "B3 requests per second of waiting",
        "B3 wall time",
        "B4 wake-up latency p50, HTTP",
        "B4 wake-up latency p99, HTTP",
        "B4 wake-up latency p50, embedded",
        "B4 wake-up latency p99, embedded",
        "B5 log lines delivered, HTTP",
        "B5 write->delivery latency p50, HTTP",
        "B5 paced write->delivery latency p50, HTTP",
        "B5 log lines delivered, embedded",
        "B5 write->delivery latency p50, embedded",
        "B5 paced write->delivery latency p50, embedded",
        "B6 sync facade overhead",
        "B6 facade round trip alone",
        "B6 asyncio.run_coroutine_threadsafe",
        "B6 Python Future ping-pong",
        "B6 threads on one CPU, sync facade overhead",
        "B6 threads on one CPU, facade round trip alone",
        "B6 threads on one CPU, asyncio.run_coroutine_threadsafe",
        "B6 threads on one CPU, Python Future ping-pong",
        "B7 memory per AsyncRun held, built",
        "B7 memory per AsyncRun held, COMPLETED",
    ],
    "growth": [
        "filter state=COMPLETED (10 runs) among 2,000 runs, embedded",
        "filter a rare label (10 runs) among 2,000 runs, embedded",
        "logs(tail=100) of 10,000 lines, embedded",
        "filter state=COMPLETED (10 runs) among 2,000 runs, HTTP",
        "filter a rare label (10 runs) among 2,000 runs, HTTP",
        "logs(tail=100) of 10,000 lines, HTTP",
    ],
}
NUMBER = r"-?[\d,]+"
# | workload | ours unit (min-max) | floor unit | floor name | ratio | goal |
ROW = re.compile(
    rf"^\| (?P<workload>[^|]+) \| {NUMBER} \S+ \([^)]*\) \| {NUMBER} \S+ \| [^|]+ "
    r"\| (?:-?[\d.]+|inf) \| [^|]* \|$"
)


# bench_crud needs scale >= 0.05 (below it, its 50-in-flight workloads send nothing and it
# divides by zero); the others clamp their sizes to small minimums.
SCALES = {"crud": "0.05", "metrics": "0.001", "runs": "0.001", "growth": "0.001"}


def _table_rows(modules: list[str], scale: str, home: Path) -> list[str]:
    env = {
        **os.environ,
        "BENCH_REPEATS": "1",
        "ASYNCRUN_HOME": str(home),  # nothing lands in the user's data dir
        "PYTHONHASHSEED": "0",
    }
    env.pop("ASYNCRUN_ENDPOINT", None)
    done = subprocess.run(
        [sys.executable, "run.py", "--scale", scale, "--no-write", *modules],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]  # no header


def test_every_benchmark_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    rows = []
    for scale in sorted(set(SCALES.values())):
        modules = [name for name, at in SCALES.items() if at == scale]
        rows += _table_rows(modules, scale, tmp_path)
    matches = [ROW.match(row) for row in rows]
    bad = [row for row, match in zip(rows, matches, strict=True) if match is None]
    assert not bad, f"malformed rows: {bad}"
    names = [match["workload"] for match in matches if match is not None]
    for module, workloads in EXPECTED.items():
        for want in workloads:
            assert sum(name.startswith(want) for name in names) == 1, (module, want, names)
