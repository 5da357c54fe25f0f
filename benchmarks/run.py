"""Run the benchmarks, write ``results/latest.json`` and regenerate ``RESULTS.md``.

Usage: ``nox -s bench`` (or ``python benchmarks/run.py [--scale S] [--no-write]``).
Every figure is reported with the floor it is compared to, measured in the same run: this
machine is shared and noisy, so the ratio is the figure of merit, not the absolute number.
``RESULTS.md`` is rendered by ``_report.py`` from this run's ``results/latest.json`` and the
last ``nox -s bench_peers``'s ``results/peers.json`` (asyncrun and MLflow measured together).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import _report
import bench_crud
import bench_feed
import bench_growth
import bench_history
import bench_metrics
import bench_postgres
import bench_runs
from _harness import REPEATS

HERE = Path(__file__).parent
MODULES = {
    "crud": bench_crud,
    "metrics": bench_metrics,
    "runs": bench_runs,
    "history": bench_history,
    "growth": bench_growth,
    "feed": bench_feed,
    "postgres": bench_postgres,
}
GROWTH = ("history", "growth", "feed")
"""Modules whose rows set a large size against a small one (growth factors): their session is
``nox -s bench_growth`` (``--out growth``), so that each session's file holds one kind of row."""
SESSIONS = {
    "latest": "nox -s bench",
    "growth": "nox -s bench_growth",
    "postgres": "nox -s bench_postgres",
}
"""Each results file and the session that writes it (``postgres``: the stores compared)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    parser.add_argument(
        "--out", choices=list(SESSIONS), default="latest", help="results/<OUT>.json"
    )
    parser.add_argument("only", nargs="*", choices=[*MODULES, []], help="modules to run")
    args = parser.parse_args()

    def session(name: str) -> str:
        return "postgres" if name == "postgres" else "growth" if name in GROWTH else "latest"

    chosen = [
        name for name in MODULES if (name in args.only if args.only else session(name) == args.out)
    ]
    results = []
    for name, module in MODULES.items():
        if name not in chosen:
            continue
        print(f"running {name} ...", file=sys.stderr)
        results += module.run(args.scale)
    if args.out == "postgres":
        print(_report.stores_table(results))
    else:
        print(_report.floors_table(results))
    if args.no_write:
        return
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "scale": args.scale,
        "repeats": REPEATS,
        "modules": chosen,
        "command": SESSIONS[args.out],
        "tree": _report.tree(),
    }
    (HERE / "results").mkdir(exist_ok=True)
    out = HERE / "results" / f"{args.out}.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out} and {_report.write()}", file=sys.stderr)


if __name__ == "__main__":
    main()
