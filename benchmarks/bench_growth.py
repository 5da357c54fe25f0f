"""Costs that must follow what is returned, not the size of the store: growth factors.

- Filters (issue 13 item 3): ``list_runs(project, state="COMPLETED")`` and
  ``list_runs(project, label=<a rare label>)``, each matching the same 10 runs, in a project of
  N runs and in one of 100 N (every run carries a common label too; the 10 are spread over the
  project's history). Embedded and HTTP.
- Log tail (issue 13 item 4): ``logs(tail=100)`` of a run of L lines and of one of 100 L lines.
  Embedded and HTTP.

Each figure is the median time of one call (of 200) at the large size; its "floor" is the same
call at the small size, the two measured alternately in each repetition, so the ratio is the
growth factor (goal: at most 1.3 for 100x the runs or lines, the output being the same). The
stores are filled through the service layer and the store (creating 100,000 runs through the
public API would take minutes); the measured calls go through the public client.
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
from _harness import REPEATS, free_port, process

import asyncrun
from asyncrun._config import DB_FILENAME
from asyncrun.server._service import RunService
from asyncrun.server._store._sqlite import SQLiteDriver, open_sqlite
from asyncrun.server._store._sqlstore import SQLStore, finish

RARE = 10
TAIL = 100
GOAL = "<= 1.3x for 100x the store"


def _record(project: str, i: int, rare: bool) -> dict[str, Any]:
    return {
        "kind": "command+job",
        "id": f"r{i:07}",
        "project": project,
        "metadata": {"project": project, "labels": ["common", "rare"] if rare else ["common"]},
        "spec": {"command": ["true"]},
    }


async def _fill(store: SQLStore, runs: list[int], lines: list[int]) -> None:
    service = RunService(store)
    assert isinstance(store.driver, SQLiteDriver)
    db = store.driver.db
    for n in runs:
        project = f"runs{n}"
        rare = set(range(0, n, n // RARE))  # spread over the project's history
        for start in range(0, n, 1000):
            items = [_record(project, i, i in rare) for i in range(start, min(n, start + 1000))]
            await service.create_many(project, items)

        def completed(run: Any) -> Any:
            state = asyncrun.State.COMPLETED
            return attrs.evolve(run, status=attrs.evolve(run.status, state=state))

        for i in rare:
            await store.modify(project, f"r{i:07}", completed)
    for n in lines:
        await service.create("logs", {**_record("logs", n, False), "id": f"l{n}"})
        for start in range(0, n, 100_000):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO logs VALUES ('logs', ?, ?, 'stdout', 0, ?)",
                [
                    (f"l{n}", i, f"line {i} {'x' * 60}")
                    for i in range(start, min(n, start + 100_000))
                ],
            )
            db.execute("COMMIT")


CALLS = 200


async def _median_call_us(once: Callable[[], Awaitable[object]]) -> float:
    """The median time of one call over CALLS calls: robust to the machine's other load."""
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        await once()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def listing_us(client_kwargs: dict[str, Any], project: str, filters: dict[str, Any]) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(**client_kwargs) as client:

            async def once() -> int:
                return len([run async for run in client.list_runs(project, **filters)])

            assert await once() == RARE
            return await _median_call_us(once)

    return anyio.run(main)


def tail_us(client_kwargs: dict[str, Any], n: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(**client_kwargs) as client:
            run = await client.get_run("logs", f"l{n}")

            async def once() -> list[int]:
                return [line.offset async for line in run.logs(tail=TAIL)]

            assert await once() == list(range(n - TAIL, n))
            return await _median_call_us(once)

    return anyio.run(main)


def growth(
    workload: str, floor: str, at: Callable[[int], float], small: int, big: int
) -> dict[str, Any]:
    """``at(big)`` against ``at(small)``, the two measured alternately in each repetition."""
    figures: dict[int, list[float]] = {small: [], big: []}
    for _ in range(REPEATS):
        for n in (small, big):
            figures[n].append(at(n))
    ours, floor_figures = replay(figures[big]), replay(figures[small])
    return {
        "workload": workload,
        "unit": "us",
        "ours": ours,
        "floor": floor_figures,
        "floor_name": f"{floor} (ratio = growth factor)",
        "ratio": ours["median"] / floor_figures["median"],
        "goal": GOAL,
        "per_repetition": [b / a for a, b in zip(figures[small], figures[big], strict=True)],
    }


def replay(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def run(scale: float) -> list[dict[str, Any]]:
    """Filters at N and 100 N runs, tails at L and 100 L lines; N = 1,000 x scale, L = 10,000."""
    small_runs = max(2 * RARE, int(1_000 * scale))
    small_lines = max(TAIL, int(10_000 * scale))
    runs = [small_runs, 100 * small_runs]
    lines = [small_lines, 100 * small_lines]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as home:
        db = Path(home) / DB_FILENAME
        store = open_sqlite(db)
        anyio.run(_fill, store, runs, lines)
        finish(store.aclose())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "asyncrun", "server", "--port", str(port), "--db", str(db),
                "--no-auth"]  # fmt: skip
        with process(argv, f"{url}/healthz"):
            for backend, kwargs in (("embedded", {"home": home}), ("HTTP", {"endpoint": url})):
                for what, filters in (
                    ("state=COMPLETED", {"state": "COMPLETED"}),
                    ("a rare label", {"label": "rare"}),
                ):
                    results.append(
                        growth(
                            f"filter {what} (10 runs) among {runs[1]:,} runs, {backend}",
                            f"the same among {runs[0]:,} runs",
                            lambda n, kw=kwargs, f=filters: listing_us(kw, f"runs{n}", f),
                            *runs,
                        )
                    )
                results.append(
                    growth(
                        f"logs(tail={TAIL}) of {lines[1]:,} lines, {backend}",
                        f"the same of {lines[0]:,} lines",
                        functools.partial(tail_us, kwargs),
                        *lines,
                    )
                )
    return results
