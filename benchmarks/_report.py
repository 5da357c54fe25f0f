"""Render ``benchmarks/RESULTS.md`` from the machine-readable results; standard library only.

``RESULTS.md`` is a function of three files and nothing else, so whichever benchmark session ran
last can regenerate all of it consistently:

- ``results/latest.json`` (``nox -s bench``): each workload of ours against its floor;
- ``results/peers.json`` (``nox -s bench_peers``): asyncrun and MLflow on the same workloads,
  measured in the same invocation; every ratio to MLflow in ``RESULTS.md`` comes from here;
- ``ANALYSIS.md``: the hand-written reading of the figures, included verbatim at the end.

``benchmarks/run.py`` and ``benchmarks/peers/run.py`` call :func:`write` when they finish;
``python benchmarks/_report.py`` re-renders from the files as they are. Both sessions' venvs
import this module (the MLflow one has no asyncrun), hence the standard library only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DASH = "\N{EN DASH}"


def fmt(x: float) -> str:
    """Three significant digits at most, thousands separated."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


# -- ours against the floors (nox -s bench) -------------------------------------------------

# bench_metrics.py's goals quote MLflow figures from an older document ("(419 us)", "(3,345/s)")
# and its records carry a "vs_mlflow" ratio to them: neither is shown. The ratio to MLflow is
# reported only as measured in the same invocation, in the side-by-side table.
_QUOTED_MLFLOW_FIGURE = re.compile(r" \((?:[\d,.]+ ?(?:us|µs|/s))\)")


def _floor_goal(result: dict[str, Any]) -> str:
    goal = str(result.get("goal", ""))
    if "MLflow" in goal:
        goal = _QUOTED_MLFLOW_FIGURE.sub("", goal) + " (MLflow: see the side-by-side table)"
    return goal


def floors_table(results: list[dict[str, Any]]) -> str:
    """One row per workload: ours (median, min-max), the floor, their ratio, the goal."""
    lines = [
        "| workload | ours (median, min-max) | floor (median) | floor | ours / floor | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, floor, unit = r["ours"], r["floor"], r["unit"]
        lines.append(
            f"| {r['workload']} | {ours['median']:,.0f} {unit} "
            f"({ours['min']:,.0f}-{ours['max']:,.0f}) | {floor['median']:,.0f} {unit} "
            f"| {r['floor_name']} | {r['ratio']:.2f} | {_floor_goal(r)} |"
        )
    return "\n".join(lines)


# -- side by side with MLflow (nox -s bench_peers) ------------------------------------------


def _verdict(advantage: float, unit: str) -> str:
    """How many times better (or worse) asyncrun is, in words that fit the unit."""
    good, bad = ("smaller", "larger") if unit == "bytes" else ("faster", "slower")
    return f"{fmt(advantage)}x {good}" if advantage >= 1 else f"{fmt(1 / advantage)}x {bad}"


def _spread(advantages: list[float]) -> str:
    low, high = min(advantages), max(advantages)
    if low >= 1 or high < 1:
        a, b = sorted(x if low >= 1 else 1 / x for x in (low, high))
        return f"{fmt(a)}-{fmt(b)}x"
    return f"{fmt(1 / low)}x worse to {fmt(high)}x better"


def _met(r: dict[str, Any]) -> str:
    goal = r.get("goal")
    if not goal:
        return DASH
    per_rep = r["per_repetition"]["asyncrun_advantage"]
    held = sum(a >= goal["min_advantage"] for a in per_rep)
    verdict = "yes" if r["asyncrun_advantage"] >= goal["min_advantage"] else "**no**"
    return f"{verdict} ({held} of {len(per_rep)} repetitions)"


def peers_table(peers: dict[str, Any]) -> str:
    """Workload, asyncrun and MLflow medians (min-max), their ratio, the goal, met or not."""
    lines = [
        "| workload | size | asyncrun | asyncrun: median (min-max) | MLflow "
        "| MLflow: median (min-max) | ratio: medians (repetitions) | goal | met? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in peers["results"]:
        ours, theirs, unit = r["asyncrun"], r["mlflow"], r["unit"]
        per_rep = r.get("per_repetition", {}).get("asyncrun_advantage")
        spread = f" ({_spread(per_rep)})" if per_rep else ""
        goal = r.get("goal") or {}
        lines.append(
            f"| {r['workload']} | {r['size']:,} | `{ours['call']}` "
            f"| {fmt(ours['median'])} {unit} ({fmt(ours['min'])}-{fmt(ours['max'])}) "
            f"| `{theirs['call']}` "
            f"| {fmt(theirs['median'])} {unit} ({fmt(theirs['min'])}-{fmt(theirs['max'])}) "
            f"| {_verdict(r['asyncrun_advantage'], unit)}{spread} "
            f"| {goal.get('text', DASH)} | {_met(r)} |"
        )
    for row in peers.get("without_counterpart", []):
        lines.append(
            f"| {row['workload']} | {DASH} | {row['asyncrun']} | see the floors table "
            f"| none | {row['why']} | {DASH} | {DASH} | {DASH} |"
        )
    return "\n".join(lines)


def _servers(peers: dict[str, Any]) -> str:
    s = peers.get("servers")
    if not s:
        return ""
    ml, ar = s["mlflow"], s["asyncrun"]
    return (
        f"Servers (medians): MLflow answered its health check after {ml['startup_s']:.1f} s and "
        f"was idle after another {ml['settle_s']:.1f} s, as {ml['processes']} processes; asyncrun "
        f"after {ar['startup_s']:.1f} s and {ar['settle_s']:.1f} s, as {ar['processes']} "
        f"process{'es' if ar['processes'] != 1 else ''}.\n\n"
    )


PEERS_NOTES = """\
How it was measured (`benchmarks/peers/`):

- Two virtualenvs, so neither side's dependencies change the other's: the `bench_peers` nox
  venv holds MLflow and runs `mlflow_side.py`; a venv nested in it holds asyncrun
  (`pip install -e .[server]`) and runs `asyncrun_side.py`. `run.py` (standard library) runs
  the two sides alternately (asyncrun first in odd repetitions, MLflow first in even ones), each
  in a fresh process against a fresh server with a fresh SQLite store, writes
  `benchmarks/results/peers.json` and regenerates this file.
- Servers: `mlflow server --backend-store-uri sqlite:///PATH --host 127.0.0.1 --port P
  --workers 1` (one worker: uvicorn in multi-process mode never sets TCP_NODELAY, see
  shared/PEERS.md), with `MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=50` and `..._MAX_OVERFLOW=50` (with
  the default pool of 5 + 10, 50 concurrent `create_run` fail with "QueuePool limit ...
  reached"), and `asyncrun server --port P --db PATH --no-auth` (no tokens on loopback, as
  MLflow's server; the flag is passed when the server has it). Each is measured only once it
  is idle (its process group under 5% of a core for 1 s), and its whole process group is
  stopped afterwards.
- B1 MLflow: `mlflow.log_metric("loss", v, step=i, synchronous=False)` inside
  `mlflow.start_run()`, with `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1` (MLflow merges what
  arrived in 1 s into batches of up to 1,000 and sends them from a pool of 10 threads), after a
  100-call warm-up; "end to end" stops when `mlflow.flush_async_logging()` returns. asyncrun:
  `run.log_metric("loss", v)` in a loop that never yields, after the same warm-up, against
  `asyncrun server`; "end to end" stops when `flush()` returns.
- B2: MLflow `MlflowClient.log_batch` of 1,000 `Metric`s per call (built inside the timed
  region); asyncrun one `log_metric` per value (yielding every 1,000 values), then `flush()`.
- B3, 50 in flight: MLflow `MlflowClient.create_run` from a `ThreadPoolExecutor` of 50 threads
  (how MLflow's users parallelise; its HTTP pool raised to 50 with `MLFLOW_HTTP_POOL_MAXSIZE`
  so each thread keeps its connection); asyncrun 50 tasks in one event loop, each awaiting
  `new_run` until the runs are all created. Timed from the first request to the last reply.
- B7: 20 runs stored with the same content (4 parameters, 2 metrics with one value each,
  2 tags; asyncrun: `spec["parameters"]`, `status.metrics`, 2 labels) and finished (MLflow
  `set_terminated`; asyncrun ran `true` to COMPLETED); then `get_run` called once per object and
  every object kept in a list, cycling over the 20 runs. The figure is tracemalloc's count of
  the bytes still allocated after the list is built (garbage collected before and after),
  divided by the number of objects, after one warm-up `get_run` of each run.
- Nothing is measured doing nothing: every metric workload reads the whole history back and
  checks its length, B3 counts the runs created (`search_runs` / `list_runs`), both outside the
  timed regions; B-get compares the id of every reply with the one asked for; B7 checks the
  state and content of what it holds.
- The ratio is of the medians, read in the direction where asyncrun is better or worse; in
  brackets the range of the per-repetition ratios (a repetition's two sides ran back to back).
  "met?" compares the ratio of the medians with the goal, and counts the repetitions that meet
  it on their own.
"""


def _peers_section(peers: dict[str, Any] | None) -> str:
    head = "## Side by side with MLflow (same invocation)\n\n"
    if peers is None:
        return head + "Not measured yet: run `nox -s bench_peers`.\n\n"
    meta = peers["meta"]
    scale = "" if meta.get("scale", 1.0) == 1.0 else f", workload sizes x{meta['scale']}"
    return (
        head + f"Produced by `{meta['command']}` on {meta['date']}: asyncrun "
        f"{meta['asyncrun_version']} vs MLflow {meta['mlflow_version']}, Python "
        f"{meta['python']}, {meta['machine']}{scale}. Medians of "
        f"{_repetitions(meta['repeats'])} with min-max, both sides measured in this one invocation "
        f"({meta['wall_s'] / 60:.1f} minutes). Raw numbers: `benchmarks/results/peers.json`."
        "\n\n"
        f"{peers_table(peers)}\n\n{_servers(peers)}{PEERS_NOTES}\n"
    )


def _floors_section(latest: dict[str, Any] | None) -> str:
    head = "## Against the floors (`nox -s bench`)\n\n"
    if latest is None:
        return head + "Not measured yet: run `nox -s bench`.\n\n"
    meta = latest["meta"]
    scale = "" if meta.get("scale", 1.0) == 1.0 else f", workload sizes x{meta['scale']}"
    return (
        head + f"Produced by `{meta.get('command', 'nox -s bench')}` on {meta['date']} "
        f"(Python {meta['python']}, {meta['machine']}{scale}). Medians of "
        f"{_repetitions(meta.get('repeats', 3))} with "
        "min-max (1 where the workload says so); each workload is compared with its floor, the "
        "least the same work can cost on this machine, measured in the same run. Raw numbers: "
        "`benchmarks/results/latest.json`.\n\n"
        f"{floors_table(latest['results'])}\n\n"
    )


def _repetitions(n: int) -> str:
    return f"{n} repetition{'s' if n != 1 else ''}"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def render(benchmarks: Path = HERE) -> str:
    """The whole of ``RESULTS.md`` from the results and ``ANALYSIS.md`` under ``benchmarks``."""
    latest = _load(benchmarks / "results" / "latest.json")
    peers = _load(benchmarks / "results" / "peers.json")
    analysis = benchmarks / "ANALYSIS.md"
    return (
        "# Benchmark results\n\n"
        "<!-- Generated by benchmarks/_report.py from results/latest.json, results/peers.json "
        "and ANALYSIS.md: edit those, not this file. -->\n\n"
        "Two sessions, each measuring everything it compares in the same invocation: "
        "`nox -s bench` measures asyncrun against the floor of each workload, `nox -s "
        "bench_peers` asyncrun and MLflow on the same workloads, alternating. Whichever ran last "
        "regenerates this file from both sessions' JSON results. The machine (2 shared vCPUs, "
        "loopback only) is noisy: the ratios, not the absolute figures, are what to read.\n\n"
        f"{_peers_section(peers)}"
        f"{_floors_section(latest)}"
        "<!-- From here on: benchmarks/ANALYSIS.md, hand-written (edit it there). -->\n\n"
        f"{analysis.read_text() if analysis.exists() else ''}"
    ).rstrip("\n") + "\n"


def write(benchmarks: Path = HERE) -> Path:
    """Regenerate ``RESULTS.md``; return its path."""
    path = benchmarks / "RESULTS.md"
    path.write_text(render(benchmarks))
    return path


if __name__ == "__main__":
    print(write())
