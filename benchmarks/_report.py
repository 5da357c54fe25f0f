"""Render ``benchmarks/RESULTS.md`` from the machine-readable results; standard library only.

``RESULTS.md`` is a function of three files and nothing else, so whichever benchmark session ran
last can regenerate all of it consistently:

- ``results/latest.json`` (``nox -s bench``): each workload of ours against its floor;
- ``results/peers.json`` (``nox -s bench_peers``): asyncrun and MLflow on the same workloads,
  measured in the same invocation; every ratio to MLflow in ``RESULTS.md`` comes from here;
- ``ANALYSIS.md``: the hand-written reading of the figures, included at the end with every
  figure it quotes filled in from the two JSON files (``{{session.id.field}}``, see
  :func:`fill`), so that no figure in it outlives the run it came from.

Every ratio in ``RESULTS.md`` comes from one invocation at one size: each table's ratios are
computed within its own session, ``ANALYSIS.md`` may quote a ratio only through a placeholder
(a literal such as ``198x`` makes :func:`render` refuse, see :data:`LITERAL_RATIO`), and a
placeholder names one session's figure, never a quotient of two sessions'. The goals table
(:data:`GOALS`) is computed from the same figures, so its verdicts cannot disagree with them.
The header flags what differs between the two sessions (tree, sizes).

``benchmarks/run.py`` and ``benchmarks/peers/run.py`` call :func:`write` when they finish;
``python benchmarks/_report.py`` re-renders from the files as they are. Both sessions' venvs
import this module (the MLflow one has no asyncrun), hence the standard library only.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
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


def _floor_goal(result: dict[str, Any]) -> str:
    return str(result.get("goal", ""))


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


# -- which tree and sizes each session measured -----------------------------------------------


def tree() -> dict[str, Any]:
    """The commit the benchmarks run on, and whether the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    # What the figures depend on: the package, the benchmarks' code and the dependencies; not
    # the results, RESULTS.md and ANALYSIS.md (written after the runs).
    status = git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", "../asyncrun",
        "../pyproject.toml", ":!results", ":!RESULTS.md", ":!ANALYSIS.md",
    )  # fmt: skip
    return {"commit": commit or None, "dirty": bool(status)}


def _tree_text(meta: dict[str, Any]) -> str:
    t = meta.get("tree") or {}
    if not t.get("commit"):
        return "tree not recorded"
    return f"commit {t['commit'][:10]}" + (" with uncommitted changes" if t.get("dirty") else "")


def flags(latest: dict[str, Any] | None, peers: dict[str, Any] | None) -> list[str]:
    """What a reader must know before comparing the two tables (empty when nothing differs)."""
    out = []
    for name, data in (("nox -s bench", latest), ("nox -s bench_peers", peers)):
        if data is None:
            continue
        meta = data["meta"]
        if meta.get("scale", 1.0) != 1.0:
            out.append(
                f"`{name}` ran at {meta['scale']}x the recorded sizes: its figures are not the "
                "recorded ones."
            )
        if (meta.get("tree") or {}).get("dirty"):
            out.append(f"`{name}` ran on a tree with uncommitted changes.")
    if latest and peers:
        a, b = latest["meta"].get("tree") or {}, peers["meta"].get("tree") or {}
        if not a.get("commit") or not b.get("commit"):
            out.append(
                "The tree of one session is not recorded: the tables may not be of one tree."
            )
        elif a["commit"] != b["commit"]:
            out.append(
                f"The two sessions ran on different trees ({_tree_text(latest['meta'])} vs "
                f"{_tree_text(peers['meta'])}): compare each table only with itself."
            )
    return out


# -- the goals, judged from the figures -----------------------------------------------------


def _find(data: dict[str, Any] | None, id_: str) -> dict[str, Any] | None:
    if data is None:
        return None
    return next((r for r in data["results"] if r.get("id") == id_), None)


def _ours(r: dict[str, Any]) -> float:
    return float(r["ours"]["median"] if "ours" in r else r["asyncrun"]["median"])


# (goal, session, result ids, what is judged, test). Session "bench" is results/latest.json,
# "peers" results/peers.json; what is judged: "ours" (the figure), "ratio" (to the floor named
# in the row, same run) or "advantage" (over MLflow, same invocation).
GOALS: list[tuple[str, str, list[str], str, Callable[[float], bool]]] = [
    ("B1 `log_metric` < 1 µs median", "bench", ["b1_async", "b1_sync"], "ours",
     lambda x: x < 1000),
    ("B1 >= 400x faster than MLflow's faster async call (`MlflowClient.log_metric`)", "peers",
     ["b1_async_vs_client", "b1_sync_vs_client"], "advantage", lambda x: x >= 400),
    ("B2 >= 500,000 values/s end to end", "bench", ["b2"], "ours", lambda x: x >= 500_000),
    ("B2 >= 150x MLflow `log_batch`", "peers", ["b2"], "advantage", lambda x: x >= 150),
    ("B3 >= 2,000 runs/s created", "bench", ["b3_create"], "ours", lambda x: x >= 2000),
    ("B3 wait requests independent of N (within 1.3x for ten times the runs)", "bench",
     ["b3_wait_requests"], "ratio", lambda x: x <= 1.3),
    ("B4 wake-up p50 <= 20 ms over HTTP", "bench", ["b4_p50_http"], "ours",
     lambda x: x <= 20_000),
    ("B4 wake-up p99 <= 100 ms over HTTP", "bench", ["b4_p99_http"], "ours",
     lambda x: x <= 100_000),
    ("B5 >= 200,000 lines/s over HTTP", "bench", ["b5_rate_http"], "ours",
     lambda x: x >= 200_000),
    ("B5 p50 write->delivery <= 50 ms over HTTP (paced; as fast as the job prints)", "bench",
     ["b5_paced_p50_http", "b5_p50_http"], "ours", lambda x: x <= 50_000),
    ("B6 sync facade overhead <= 30 µs (threads as placed; on one CPU)", "bench",
     ["b6_overhead", "b6_overhead_one_cpu"], "ours", lambda x: x <= 30),
    ("B6 sync facade overhead <= 2x the Python ping-pong of the same run (as placed; one CPU)",
     "bench", ["b6_overhead", "b6_overhead_one_cpu"], "ratio", lambda x: x <= 2),
    ("B7 <= 2 KB per run held (built; completed and read back)", "bench",
     ["b7_built", "b7_completed"], "ours", lambda x: x <= 2048),
]  # fmt: skip


def _judged(r: dict[str, Any], on: str) -> float:
    return {"ours": _ours, "ratio": lambda r: r["ratio"], "advantage": _advantage}[on](r)


def _advantage(r: dict[str, Any]) -> float:
    return float(r["asyncrun_advantage"])


def _goal_figure(r: dict[str, Any], on: str) -> str:
    if on == "advantage":
        return (
            f"{_verdict(r['asyncrun_advantage'], r['unit'])}: `{r['asyncrun']['call']}` "
            f"{fmt(r['asyncrun']['median'])} vs {fmt(r['mlflow']['median'])} {r['unit']} "
            f"(size {r['size']:,})"
        )
    if on == "ratio":
        return (
            f"{fmt(r['ratio'])}x ({fmt(_ours(r))} vs {fmt(r['floor']['median'])} {r['unit']}; "
            f"{r['workload']})"
        )
    return f"{fmt(_ours(r))} {r['unit']} ({r['workload']})"


def goals_table(latest: dict[str, Any] | None, peers: dict[str, Any] | None) -> str:
    """Each goal, the figures it is judged on (all from one session) and the verdict."""
    lines = ["| goal | session | figures | met? |", "|---|---|---|---|"]
    sessions = {"bench": latest, "peers": peers}
    for goal, session, ids, on, test in GOALS:
        source = "`nox -s bench`" if session == "bench" else "`nox -s bench_peers`"
        found = [r for r in (_find(sessions[session], i) for i in ids) if r is not None]
        if not found:
            lines.append(f"| {goal} | {source} | not measured | {DASH} |")
            continue
        figures = "; ".join(_goal_figure(r, on) for r in found)
        held = [test(_judged(r, on)) for r in found]
        verdict = "yes" if all(held) else "**no**" if not any(held) else "**partly**"
        lines.append(f"| {goal} | {source} | {figures} | {verdict} |")
    return "\n".join(lines)


# -- figures quoted in ANALYSIS.md ----------------------------------------------------------

# ``\{{`` stays as written, without the backslash (to write about placeholders).
PLACEHOLDER = re.compile(r"(?<!\\)\{\{\s*([a-z]+)\.([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}")
# A ratio written as a literal number ("198x", "1.5x", "8.5x"): refused in ANALYSIS.md, where
# it would outlive the run it came from. A factor of the work (not a measurement) is written in
# words ("ten times the runs"), a goal's own number after a comparison sign (">= 400x").
LITERAL_RATIO = re.compile(r"(?<![\w{.,])(?<![<>]= )(?<![<>] )\d[\d,]*(?:\.\d+)?x\b")


class ReportError(ValueError):
    """ANALYSIS.md quotes a figure the results cannot vouch for."""


def _field(r: dict[str, Any], field: str) -> str:
    unit = r["unit"]
    peers = "asyncrun" in r
    if field in ("", "ours", "asyncrun"):
        return f"{fmt(_ours(r))} {unit}"
    if field == "floor" and not peers:
        return f"{fmt(r['floor']['median'])} {unit}"
    if field == "mlflow" and peers:
        return f"{fmt(r['mlflow']['median'])} {unit}"
    if field == "ratio" and not peers:
        return f"{fmt(r['ratio'])}x"
    if field in ("advantage", "ratio") and peers:
        return _verdict(r["asyncrun_advantage"], unit)
    if field == "spread" and peers:
        return _spread(r["per_repetition"]["asyncrun_advantage"])
    if field == "size" and peers:
        return f"{r['size']:,}"
    if field == "range":
        key = "asyncrun" if peers else "ours"
        return f"{fmt(r[key]['min'])}-{fmt(r[key]['max'])} {unit}"
    raise KeyError(field)


def fill(text: str, latest: dict[str, Any] | None, peers: dict[str, Any] | None) -> str:
    """Replace ``{{bench.ID.FIELD}}`` / ``{{peers.ID.FIELD}}`` with that session's figure.

    FIELD: ``ours`` (the default; ``asyncrun`` in peers), ``floor``, ``ratio`` (ours / floor in
    bench; asyncrun's advantage in peers, in words), ``mlflow``, ``spread``, ``size``, ``range``;
    ``{{peers.derived.NAME}}`` is a ratio run.py derives within the peers session. A figure of a
    session not run yet reads "(not measured)".

    Raises:
        ReportError: for a literal ratio outside a placeholder, an unknown session, id or field.
    """
    bare = PLACEHOLDER.sub("", text)
    if literal := LITERAL_RATIO.findall(bare):
        raise ReportError(
            f"ANALYSIS.md quotes ratios as literals ({', '.join(literal)}): quote them as "
            "{{session.id.field}} so they come from the results (a factor of the work: in words)"
        )
    sessions = {"bench": latest, "peers": peers}

    def one(match: re.Match[str]) -> str:
        session, id_, field = match.group(1), match.group(2), match.group(3) or ""
        if session not in sessions:
            raise ReportError(f"unknown session in {match.group(0)}")
        data = sessions[session]
        if data is None or not any("id" in r for r in data["results"]):
            return "(not measured)"  # not run yet, or run before results carried ids
        if session == "peers" and id_ == "derived":
            derived = data.get("derived", {}).get(field)
            if derived is None:
                raise ReportError(f"no derived figure {field!r} in results/peers.json")
            return f"{fmt(derived['median'])}x"
        r = _find(data, id_)
        if r is None:
            raise ReportError(f"no result {id_!r} in the {session} session's results")
        try:
            return _field(r, field)
        except KeyError:
            raise ReportError(f"unknown field {field!r} in {match.group(0)}") from None

    return PLACEHOLDER.sub(one, text).replace("\\{{", "{{")


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


def _derived(peers: dict[str, Any]) -> str:
    """Ratios run.py derives within the invocation (MLflow against itself), one line each."""
    lines = [
        f"{d['what']}: {fmt(d['median'])}x ({fmt(d['min'])}-{fmt(d['max'])}x over the "
        "repetitions).\n\n"
        for d in peers.get("derived", {}).values()
        if "what" in d
    ]
    return "".join(lines)


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
- B1 MLflow, two calls: the fluent `mlflow.log_metric("loss", v, step=i, synchronous=False)`
  inside `mlflow.start_run()` (it looks up the active run and builds a client on every call),
  and the run-bound `MlflowClient.log_metric(run_id, "loss", v, step=i, synchronous=False)`
  (what the fluent call does underneath; the counterpart of `run.log_metric`, and the faster:
  B1's goal is stated against it). Both with `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1` (MLflow
  merges what arrived in 1 s into batches of up to 1,000 and sends them from a pool of 10
  threads), after a 100-call warm-up; "end to end" stops when `mlflow.flush_async_logging()`
  returns. asyncrun: `run.log_metric("loss", v)` in a loop that never yields, after the same
  warm-up, against `asyncrun server`; "end to end" stops when `flush()` returns.
- What each side stores per value differs: MLflow stores a (key, value, timestamp, step) row
  per value, the timestamp taken in the caller and the step passed by it; asyncrun stores the
  values of a batch packed in one row per key (no timestamp or step per value: a value's
  position is its step). So MLflow does more per value, by design, in all the metric rows.
- B2: MLflow `MlflowClient.log_batch` of 1,000 `Metric`s per call (built inside the timed
  region); asyncrun one `log_metric` per value (yielding every 1,000 values), then `flush()`.
- Durability differs: asyncrun's SQLite runs in WAL mode with `synchronous=NORMAL` (a power
  cut may lose the last commits, never corrupt the store), MLflow's with SQLite's defaults, a
  rollback journal and `synchronous=FULL` (each commit synced to disk). The row "MLflow's
  SQLite as durable as asyncrun's" repeats B3 sequential against a second MLflow server whose
  every SQLite connection is set to WAL and `synchronous=NORMAL` (a `sitecustomize` in front of
  its processes; the store is checked to be in WAL mode afterwards): the part of the create gap
  that is durability, not code.
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
        head + f"Produced by `{meta['command']}` on {meta['date']} ({_tree_text(meta)}): asyncrun "
        f"{meta['asyncrun_version']} vs MLflow {meta['mlflow_version']}, Python "
        f"{meta['python']}, {meta['machine']}{scale}. Medians of "
        f"{_repetitions(meta['repeats'])} with min-max, both sides measured in this one invocation "
        f"({meta['wall_s'] / 60:.1f} minutes). Raw numbers: `benchmarks/results/peers.json`."
        "\n\n"
        f"{peers_table(peers)}\n\n{_derived(peers)}{_servers(peers)}{PEERS_NOTES}\n"
    )


def _section(
    title: str, session: str, data: dict[str, Any] | None, raw: str, about: str, table: str
) -> str:
    """A results section: its title, where its figures come from, what they mean, its table."""
    head = f"## {title} (`{session}`)\n\n"
    if data is None:
        return head + f"Not measured yet: run `{session}`.\n\n"
    meta = data["meta"]
    scale = "" if meta.get("scale", 1.0) == 1.0 else f", workload sizes x{meta['scale']}"
    return (
        head + f"Produced by `{meta.get('command', session)}` on {meta['date']} "
        f"({_tree_text(meta)}; Python {meta['python']}, {meta['machine']}{scale}). {about} "
        f"Raw numbers: `benchmarks/results/{raw}`.\n\n{table}\n\n"
    )


def _floors_section(latest: dict[str, Any] | None) -> str:
    repeats = _repetitions((latest or {}).get("meta", {}).get("repeats", 3))
    return _section(
        "Against the floors",
        "nox -s bench",
        latest,
        "latest.json",
        f"Medians of {repeats} with min-max (1 where the workload says so); each workload is "
        "compared with its floor, the least the same work can cost on this machine, measured "
        "in the same run.",
        floors_table(latest["results"]) if latest else "",
    )


def _growth_section(growth: dict[str, Any] | None) -> str:
    return _section(
        "Growth factors",
        "nox -s bench_growth",
        growth,
        "growth.json",
        "Each row sets the cost at a large size against the cost at a small one, measured in "
        "the same run: the ratio is the growth factor, near 1 where the answer does not grow "
        "with the work.",
        floors_table(growth["results"]) if growth else "",
    )


def stores_table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown: each store's median (min-max), and the ratio to SQLite."""
    lines = [
        "| Workload | SQLite | PostgreSQL | PostgreSQL, 2 replicas | PG / SQLite | 2 / 1 replica |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        figures = row["figures"]
        if "sqlite" not in figures:
            continue

        def cell(name: str, figures: dict[str, Any] = figures) -> str:
            f = figures[name]
            return f"{f['median']:,.0f} ({f['min']:,.0f}-{f['max']:,.0f})"

        lite, one, two = (figures[k]["median"] for k in ("sqlite", "postgres", "postgres x2"))
        lines.append(
            f"| {row['what']} ({row['unit']}) | {cell('sqlite')} | {cell('postgres')} | "
            f"{cell('postgres x2')} | {one / lite:.2f}x | {two / one:.2f}x |"
        )
    lines += ["", "| Wake-up (ms) | p50 | p99 |", "|---|---|---|"]
    for row in rows:
        if row["id"].startswith("wake "):
            p50, p99 = row["figures"]["p50"]["median"], row["figures"]["p99"]["median"]
            lines.append(f"| {row['id'].removeprefix('wake ')} | {p50:.2f} | {p99:.2f} |")
    return "\n".join(lines)


def _stores_section(stores: dict[str, Any] | None) -> str:
    repeats = _repetitions((stores or {}).get("meta", {}).get("repeats", 3))
    about = (
        "The same workloads on a server on SQLite, a server on PostgreSQL, and two replicas on "
        "that PostgreSQL database (the two writers, or the jobs, split between them), "
        f"interleaved per repetition, medians of {repeats} with min-max; PostgreSQL is a "
        "cluster of this machine's binaries on loopback (fsync off: the store is measured, not "
        "the disk)."
    )
    table = stores_table(stores["results"]) if stores else ""
    if stores:
        table += (
            "\n\nTwo cores serve the client, PostgreSQL, both replicas and the jobs here, so a "
            "second replica cannot add throughput: what the 2 / 1 column shows is the cost of a "
            "second process on the same cores (and of one more connection pool contending for "
            "the same row lock). On more cores, replicas add request handling (HTTP, JSON, "
            "validation: most of a request's cost) and job capacity; writes stay one queue on "
            "the database."
        )
    return _section(
        "PostgreSQL and replicas", "nox -s bench_postgres", stores, "postgres.json", about, table
    )


def executors_table(ray: dict[str, Any]) -> str:
    """``nox -s bench_ray``'s figures: the local agent and Ray, side by side."""
    rows = [
        ("start to RUNNING, median (max)", "start_to_running_ms", "ms"),
        ("log line printed to a follower, median (max)", "log_delivery_ms", "ms"),
    ]
    lines = ["| | local agent | Ray | Ray / local |", "|---|---|---|---|"]
    for what, key, unit in rows:
        local, remote = ray["local"][key], ray["ray"][key]
        lines.append(
            f"| {what} | {local['median']:,.1f} {unit} ({local['max']:,.1f}) | "
            f"{remote['median']:,.1f} {unit} ({remote['max']:,.1f}) | "
            f"{remote['median'] / local['median']:.1f}x |"
        )
    local_rate, ray_rate = ray["local"]["jobs_per_s"], ray["ray"]["jobs_per_s"]
    lines.append(
        f"| short jobs per second ({ray['jobs']} jobs) | {local_rate:.2f} | {ray_rate:.2f} | "
        f"{ray_rate / local_rate:.2f}x |"
    )
    return "\n".join(lines)


def _executors_section(ray: dict[str, Any] | None) -> str:
    about = (
        "The same jobs through `asyncrun server` with the local agent and with `--executor ray` "
        "(a Ray head on loopback, 2 CPUs), in one invocation. A Ray job costs a supervisor "
        "actor and a runtime environment on the head, and its lines travel through the "
        "launcher's batches (at most 0.2 s each): Ray is for work that needs a cluster."
    )
    if ray is not None and "meta" not in ray:
        ray = None  # a file from before the report knew its provenance: measure again
    return _section(
        "Executors: the local agent and Ray",
        "nox -s bench_ray",
        ray,
        "ray.json",
        about,
        executors_table(ray) if ray else "",
    )


def _repetitions(n: int) -> str:
    return f"{n} repetition{'s' if n != 1 else ''}"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _flags_section(latest: dict[str, Any] | None, peers: dict[str, Any] | None) -> str:
    found = flags(latest, peers)
    if not found:
        return ""
    return "**Read with care:**\n\n" + "".join(f"- {flag}\n" for flag in found) + "\n"


def _goals_section(latest: dict[str, Any] | None, peers: dict[str, Any] | None) -> str:
    return (
        "## Goals met and missed\n\n"
        "Computed from the two tables above by `benchmarks/_report.py` (`GOALS`): each goal is "
        "judged on figures of one session, at the size that session measured, so a verdict "
        "cannot disagree with the table it comes from.\n\n"
        f"{goals_table(latest, peers)}\n\n"
    )


def render(benchmarks: Path = HERE) -> str:
    """The whole of ``RESULTS.md`` from the results and ``ANALYSIS.md`` under ``benchmarks``.

    Raises:
        ReportError: if ``ANALYSIS.md`` quotes a ratio that is not filled in from the results.
    """
    latest = _load(benchmarks / "results" / "latest.json")
    peers = _load(benchmarks / "results" / "peers.json")
    analysis = benchmarks / "ANALYSIS.md"
    analysis_text = fill(analysis.read_text(), latest, peers) if analysis.exists() else ""
    return (
        "# Benchmark results\n\n"
        "<!-- Generated by benchmarks/_report.py from results/latest.json, results/peers.json "
        "and ANALYSIS.md: edit those, not this file. -->\n\n"
        "Two sessions, each measuring everything it compares in the same invocation: "
        "`nox -s bench` measures asyncrun against the floor of each workload, `nox -s "
        "bench_peers` asyncrun and MLflow on the same workloads, alternating. Whichever ran last "
        "regenerates this file from both sessions' JSON results. Every ratio below comes from "
        "one session at one size; none divides a figure of one session by one of the other. The "
        "machine (2 shared vCPUs, loopback only) is noisy: the ratios, not the absolute "
        "figures, are what to read.\n\n"
        f"{_flags_section(latest, peers)}"
        f"{_peers_section(peers)}"
        f"{_floors_section(latest)}"
        f"{_growth_section(_load(benchmarks / 'results' / 'growth.json'))}"
        f"{_stores_section(_load(benchmarks / 'results' / 'postgres.json'))}"
        f"{_executors_section(_load(benchmarks / 'results' / 'ray.json'))}"
        f"{_goals_section(latest, peers)}"
        "<!-- From here on: benchmarks/ANALYSIS.md, hand-written (edit it there); its figures "
        "are filled in from the results. -->\n\n"
        f"{analysis_text}"
    ).rstrip("\n") + "\n"


def write(benchmarks: Path = HERE) -> Path:
    """Regenerate ``RESULTS.md``; return its path."""
    path = benchmarks / "RESULTS.md"
    path.write_text(render(benchmarks))
    return path


if __name__ == "__main__":
    print(write())
