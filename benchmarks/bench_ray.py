"""The Ray executor against the local agent: start latency, throughput, log delivery latency.

Usage: ``nox -s bench_ray`` (or, in a venv with ``ray[default]``, ``python
benchmarks/bench_ray.py [--jobs N] [--no-write]``). It starts a Ray head on loopback (as
tests/ray does), one ``asyncrun server`` per executor, and measures on both:

- **start to RUNNING**: from the run's READY transition to its RUNNING transition (both
  stamped by the server side), one run at a time;
- **jobs/s**: N short ``command+job`` runs started back to back, until all have completed;
- **log delivery**: a job prints its clock 20 times, 0.1 s apart; a client following the log
  notes when each line arrives (one machine: one clock).

Writes ``benchmarks/results/ray.json``. Figures from a shared, noisy machine: compare the two
executors measured in the same invocation, not across invocations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixtures() -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT / "tests"))  # tests/conftest.py imports tests/_postgres.py
    top = _load("bench_tests_conftest", ROOT / "tests" / "conftest.py")
    ray = _load("bench_ray_conftest", ROOT / "tests" / "ray" / "conftest.py")
    return top, ray


def _transition(run: Any, state: str) -> float:
    for item in run.status.transitions:
        if str(item.state) == state:
            return float(item.time.timestamp())
    raise AssertionError(f"no {state} transition")


def measure(url: str, jobs: int) -> dict[str, Any]:
    import asyncrun

    py = sys.executable
    with asyncrun.Client(url) as client:
        latencies = []
        for _ in range(max(3, jobs // 4)):
            run = client.new_run("bench", "command+job", spec={"command": [py, "-c", "pass"]})
            run.run()
            done = run.wait(timeout=300)
            assert str(done.status.state) == "COMPLETED", done.status.message
            latencies.append(_transition(done, "RUNNING") - _transition(done, "READY"))
        started = time.perf_counter()
        runs = []
        for _ in range(jobs):
            run = client.new_run("bench", "command+job", spec={"command": [py, "-c", "pass"]})
            run.run()
            runs.append(run)
        for run in runs:
            assert str(run.wait(timeout=600).status.state) == "COMPLETED"
        throughput = jobs / (time.perf_counter() - started)
        script = (
            "import time\nfor _ in range(20):\n    print(time.time(), flush=True)\n"
            "    time.sleep(0.1)"
        )
        run = client.new_run("bench", "command+job", spec={"command": [py, "-c", script]})
        run.run()
        delays = [time.time() - float(line.text) for line in run.logs(follow=True)]
    return {
        "start_to_running_ms": {
            "median": round(statistics.median(latencies) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
        "jobs_per_s": round(throughput, 2),
        "log_delivery_ms": {
            "median": round(statistics.median(delays) * 1000, 1),
            "max": round(max(delays) * 1000, 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    top, ray = _fixtures()
    head = ray.RayHead()
    results: dict[str, Any] = {"jobs": args.jobs}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, extra in (
                ("local", ()),
                ("ray", ("--executor", "ray", "--ray-address", head.address)),
            ):
                db = Path(tmp) / name / "runs.sqlite3"
                db.parent.mkdir()
                server = top.ServerProcess(db, *extra)
                server.start()
                try:
                    results[name] = measure(server.url, args.jobs)
                finally:
                    server.stop()
                print(name, json.dumps(results[name]), flush=True)
    finally:
        head.stop()
    if not args.no_write:
        import _report

        meta = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "command": "nox -s bench_ray",
            "tree": _report.tree(),
        }
        out = HERE / "results" / "ray.json"
        out.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
        print(f"wrote {out} and {_report.write()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
