"""asyncrun vs MLflow 3.x on the same workloads, measured in one invocation.

Usage: ``nox -s bench_peers`` (or ``python benchmarks/peers/run.py --asyncrun-python PY``
from the venv that has MLflow). Standard library only.

Each repetition runs ``asyncrun_side.py`` with the asyncrun interpreter and ``mlflow_side.py``
with the MLflow one, one after the other (the order alternates between repetitions), each in a
fresh process against a fresh server on loopback with a fresh SQLite store. Interleaving the
two sides spreads this shared machine's drift over both, so the ratio of their medians is
the figure of merit. Writes ``benchmarks/results/peers.json`` (every value, the server's facts,
how each figure was checked) and ``benchmarks/PEERS_RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

HERE = Path(__file__).parent
BENCHMARKS = HERE.parent

# (workload, unit, better, asyncrun figure, asyncrun call, MLflow figure, MLflow call)
ROWS = [
    ("B1 cost per log_metric call in the caller", "us/call", "lower",
     "b1_async_call", "AsyncRun.log_metric",
     "b1_call", "mlflow.log_metric(synchronous=False), 1 s buffering"),
    ("B1 cost per log_metric call in the caller", "us/call", "lower",
     "b1_sync_call", "sync Run.log_metric",
     "b1_call", "mlflow.log_metric(synchronous=False), 1 s buffering"),
    ("B1 end to end: those calls, then flush", "values/s", "higher",
     "b1_async_e2e", "AsyncRun.log_metric + flush()",
     "b1_e2e", "mlflow.log_metric(synchronous=False) + flush_async_logging()"),
    ("B1 end to end: those calls, then flush", "values/s", "higher",
     "b1_sync_e2e", "sync Run.log_metric + flush()",
     "b1_e2e", "mlflow.log_metric(synchronous=False) + flush_async_logging()"),
    ("B2 metric values persisted end to end", "values/s", "higher",
     "b2", "log_metric per value + flush(), asyncrun server",
     "b2", "MlflowClient.log_batch, 1,000 metrics per call"),
    ("B3 runs created over HTTP, sequential", "runs/s", "higher",
     "b3", "AsyncClient.new_run",
     "b3", "MlflowClient.create_run"),
    ("B-get get_run over HTTP, sequential", "runs/s", "higher",
     "get", "AsyncClient.get_run",
     "get", "MlflowClient.get_run"),
]  # fmt: skip


def side(python: str, script: str, scale: float) -> dict[str, Any]:
    """Run one side once; return its record."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        argv = [python, str(HERE / script), "--out", str(out), "--scale", str(scale)]
        started = time.monotonic()
        subprocess.run(argv, check=True)
        record: dict[str, Any] = json.loads(out.read_text())
        record["wall_s"] = time.monotonic() - started
        return record


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def fmt(x: float) -> str:
    """Three significant digits at most, thousands separated."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def aggregate(records: dict[str, list[dict[str, Any]]], n: dict[str, int]) -> list[dict[str, Any]]:
    results = []
    for workload, unit, better, ours_id, ours_call, theirs_id, theirs_call in ROWS:
        ours = stats([r["figures"][ours_id]["value"] for r in records["asyncrun"]])
        theirs = stats([r["figures"][theirs_id]["value"] for r in records["mlflow"]])
        ratio = ours["median"] / theirs["median"]
        size_key = ours_id.split("_")[0]
        results.append(
            {
                "workload": workload,
                "unit": unit,
                "better": better,
                "size": n[size_key],
                "asyncrun": {"call": ours_call, "figure": ours_id, **ours},
                "mlflow": {"call": theirs_call, "figure": theirs_id, **theirs},
                "ratio_asyncrun_over_mlflow": ratio,
                "asyncrun_advantage": 1 / ratio if better == "lower" else ratio,
                "checks": {
                    "asyncrun": records["asyncrun"][0]["figures"][ours_id]["check"],
                    "mlflow": records["mlflow"][0]["figures"][theirs_id]["check"],
                },
            }
        )
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | size | asyncrun call | asyncrun: median (min-max) | MLflow call "
        "| MLflow: median (min-max) | asyncrun / MLflow | asyncrun is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, theirs, unit = r["asyncrun"], r["mlflow"], r["unit"]
        adv = r["asyncrun_advantage"]
        verdict = f"{fmt(adv)}x faster" if adv >= 1 else f"{fmt(1 / adv)}x slower"
        lines.append(
            f"| {r['workload']} | {r['size']:,} | `{ours['call']}` "
            f"| {fmt(ours['median'])} {unit} ({fmt(ours['min'])}-{fmt(ours['max'])}) "
            f"| `{theirs['call']}` "
            f"| {fmt(theirs['median'])} {unit} ({fmt(theirs['min'])}-{fmt(theirs['max'])}) "
            f"| {r['ratio_asyncrun_over_mlflow']:.4g} | {verdict} |"
        )
    return "\n".join(lines)


NOTES = """\
How it was measured (`benchmarks/peers/`):

- Two virtualenvs, so neither side's dependencies change the other's: the `bench_peers` nox
  venv holds MLflow and runs `mlflow_side.py`; a venv nested in it holds asyncrun
  (`pip install -e .[server]`) and runs `asyncrun_side.py`. `run.py` (standard library) runs
  the two sides alternately, once per repetition, each in a fresh process against a fresh
  server with a fresh SQLite store, and writes this file and `benchmarks/results/peers.json`.
- Servers: `mlflow server --backend-store-uri sqlite:///PATH --host 127.0.0.1 --port P
  --workers 1` (one worker: uvicorn in multi-process mode never sets TCP_NODELAY, see
  shared/PEERS.md) and `asyncrun server --port P --db PATH`. Each is measured only once it is
  idle (its process group under 5% of a core for 1 s), and its whole process group is stopped
  afterwards.
- B1 MLflow: `mlflow.log_metric("loss", v, step=i, synchronous=False)` inside
  `mlflow.start_run()`, with `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1` (MLflow merges what
  arrived in 1 s into batches of up to 1,000 and sends them from a pool of 10 threads), after a
  100-call warm-up; "end to end" stops when `mlflow.flush_async_logging()` returns. asyncrun:
  `run.log_metric("loss", v)` in a loop that never yields, after the same warm-up, against
  `asyncrun server`; "end to end" stops when `flush()` returns.
- B2: MLflow `MlflowClient.log_batch` of 1,000 `Metric`s per call (built inside the timed
  region); asyncrun one `log_metric` per value (yielding every 1,000 values), then `flush()`.
- Nothing is measured doing nothing: every metric workload reads the whole history back and
  checks its length, B3 counts the runs created (`search_runs` / `list_runs`), both outside the
  timed regions; B-get compares the id of every reply with the one asked for.
- The ratio is of the medians, both measured in this invocation; "asyncrun is" reads it in
  the direction where more is better (for a cost per call, MLflow / asyncrun).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asyncrun-python", required=True, help="interpreter with asyncrun")
    parser.add_argument("--mlflow-python", default=sys.executable, help="interpreter with MLflow")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (at least 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    args = parser.parse_args()
    if args.repeats < 3 and not args.no_write:
        parser.error("--repeats below 3 only with --no-write")
    started = time.monotonic()
    sides = {
        "asyncrun": (args.asyncrun_python, "asyncrun_side.py"),
        "mlflow": (args.mlflow_python, "mlflow_side.py"),
    }
    records: dict[str, list[dict[str, Any]]] = {"asyncrun": [], "mlflow": []}
    for rep in range(args.repeats):
        order = ["asyncrun", "mlflow"] if rep % 2 == 0 else ["mlflow", "asyncrun"]
        for name in order:
            print(f"repetition {rep + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            records[name].append(side(*sides[name], args.scale))
    n = _common.sizes(args.scale)
    results = aggregate(records, n)
    rendered = table(results)
    print(rendered)
    if args.no_write:
        return
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "nox -s bench_peers",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeats": args.repeats,
        "scale": args.scale,
        "sizes": n,
        "asyncrun_version": records["asyncrun"][0]["version"],
        "mlflow_version": records["mlflow"][0]["version"],
        "wall_s": time.monotonic() - started,
        "mlflow_env": {"MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1"},
    }
    (BENCHMARKS / "results").mkdir(exist_ok=True)
    (BENCHMARKS / "results" / "peers.json").write_text(
        json.dumps({"meta": meta, "results": results, "records": records}, indent=2)
    )
    servers = {
        name: {
            "startup_s": statistics.median(r["server"]["startup_s"] for r in recs),
            "settle_s": statistics.median(r["server"]["settle_s"] for r in recs),
            "processes": recs[0]["server"]["processes"],
        }
        for name, recs in records.items()
    }
    (BENCHMARKS / "PEERS_RESULTS.md").write_text(
        "# asyncrun vs MLflow\n\n"
        f"Produced by `nox -s bench_peers` on {meta['date']}: asyncrun {meta['asyncrun_version']}"
        f" vs MLflow {meta['mlflow_version']}, Python {meta['python']}, {meta['machine']}, "
        "2 shared vCPUs, loopback. Medians of "
        f"{args.repeats} repetitions with min-max, both sides measured in the same invocation "
        f"({meta['wall_s'] / 60:.1f} minutes). Raw numbers: `benchmarks/results/peers.json`.\n\n"
        f"{rendered}\n\n"
        f"Servers (medians): MLflow answered its health check after "
        f"{servers['mlflow']['startup_s']:.1f} s and was idle after another "
        f"{servers['mlflow']['settle_s']:.1f} s, as {servers['mlflow']['processes']} processes; "
        f"asyncrun after {servers['asyncrun']['startup_s']:.1f} s and "
        f"{servers['asyncrun']['settle_s']:.1f} s, as {servers['asyncrun']['processes']} "
        "process.\n\n"
        f"{NOTES}"
    )


if __name__ == "__main__":
    main()
