"""Run the benchmarks and write ``results/latest.json`` and ``RESULTS.md``.

Usage: ``nox -s bench`` (or ``python benchmarks/run.py [--scale S] [--no-write]``).
Every figure is reported with the floor it is compared to, measured in the same run: this
machine is shared and noisy, so the ratio is the figure of merit, not the absolute number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import bench_crud
import bench_metrics
import bench_runs

HERE = Path(__file__).parent
MODULES = {"crud": bench_crud, "metrics": bench_metrics, "runs": bench_runs}


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| workload | ours (median, min-max) | floor (median) | floor | ours / floor | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, floor = r["ours"], r["floor"]
        assert isinstance(ours, dict)
        assert isinstance(floor, dict)
        goal = str(r.get("goal", ""))
        if "vs_mlflow" in r:
            goal += f" (now {r['vs_mlflow']:,.0f}x MLflow's figure in PEERS.md)"
        lines.append(
            f"| {r['workload']} | {ours['median']:,.0f} {r['unit']} "
            f"({ours['min']:,.0f}-{ours['max']:,.0f}) | {floor['median']:,.0f} {r['unit']} "
            f"| {r['floor_name']} | {r['ratio']:.2f} | {goal} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    parser.add_argument("only", nargs="*", choices=[*MODULES, []], help="modules to run")
    args = parser.parse_args()
    results = []
    for name, module in MODULES.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr)
        results += module.run(args.scale)
    rendered = table(results)
    print(rendered)
    if args.no_write:
        return
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "scale": args.scale,
        "command": "nox -s bench",
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "latest.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    (HERE / "RESULTS.md").write_text(
        "# Benchmark results\n\n"
        f"Produced by `nox -s bench` on {meta['date']} (Python {meta['python']}, "
        f"{meta['machine']}, 2 shared vCPUs, loopback). Medians of 3 repetitions with min-max; "
        "each workload is compared with the floor measured in the same run. Raw numbers: "
        "`benchmarks/results/latest.json`.\n\n"
        f"{rendered}\n"
    )


if __name__ == "__main__":
    main()
