"""PostgreSQL and replicas (issue 15): the same workloads on SQLite, PostgreSQL, two replicas.

Every figure of a row is measured in the same run, interleaved per repetition, on a
PostgreSQL cluster of this machine's binaries (``initdb`` in a temporary folder, loopback,
``fsync=off`` as in the tests: the store is measured, not the disk) and a SQLite server
(WAL, synchronous=NORMAL).

- B2 on each store: metric values persisted per second, two writers each logging N values
  to a run of its own through one replica (both on one server; on PostgreSQL also one per
  replica).
- B3 on each store: create + start + wait of N ``true`` jobs, 50 in flight, split over the
  same servers as B2.
- Wake-up: the time from the acknowledgement of a write on one server to the answer of a
  feed watch held on another (or the same) server, p50 and p99: LISTEN/NOTIFY across
  replicas, against the same wait on one replica and on SQLite.

Two cores serve everything here (the client, PostgreSQL, both replicas, the jobs), so a second
replica can add no throughput: its figure shows what the store and a second process cost.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from _harness import REPEATS, free_port, process

import asyncrun
from asyncrun._core.query import WatchQuery

# The throwaway cluster of the tests (tests/_postgres.py): one helper for both.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _postgres import running_postgres

IN_FLIGHT = 50


@contextlib.contextmanager
def servers(db: str | Path, count: int) -> Iterator[list[str]]:
    """``count`` replicas of ``asyncrun server`` on ``db``; yields their URLs."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = []
        for i in range(count):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            jobs = str(Path(tmp) / f"jobs{i}")
            argv = [sys.executable, "-m", "asyncrun", "server", "--port", str(port), "--no-auth",
                    "--jobs-dir", jobs, "--log-level", "warning"]  # fmt: skip
            if isinstance(db, Path):
                argv += ["--db", str(db)]
            else:
                os.environ["ASYNCRUN_DB"] = db  # off the command line; read at start
            stack.enter_context(process(argv, f"{url}/healthz"))
            os.environ.pop("ASYNCRUN_DB", None)
            urls.append(url)
        yield urls


def metric_values(urls: list[str], n: int) -> float:
    """Values persisted per second by two writers, the first on ``urls[0]``, the second on the
    last (the same server when there is one)."""

    async def writer(url: str) -> None:
        async with asyncrun.AsyncClient(url) as client:
            run = await client.new_run("b2", "test+record")
            for i in range(n):
                run.log_metric("v", float(i))
            await run.flush()

    async def main() -> float:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, urls[0])
            tg.start_soon(writer, urls[-1])
        return 2 * n / (time.perf_counter() - start)

    return anyio.run(main)


def create_and_wait(urls: list[str], n: int) -> float:
    """Runs per second: ``n`` ``true`` jobs created, started and waited for, half per server."""

    async def main() -> float:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(asyncrun.AsyncClient(url)) for url in urls]
            limit = anyio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                async with limit:
                    client = clients[i % len(clients)]
                    run = await client.new_run("b3", "command+job", spec={"command": ["true"]})
                    await run.run()
                    await run.wait(log_info=False, timeout=300)
                    assert run.status.state is asyncrun.State.COMPLETED, run.status.message

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
            return n / (time.perf_counter() - start)

    return anyio.run(main)


def wake_ups(writer_url: str, watcher_url: str, reps: int) -> list[float]:
    """Milliseconds from a write's acknowledgement on one server to a feed watch's answer on
    another (``reps`` times)."""

    async def main() -> list[float]:
        async with (
            asyncrun.AsyncClient(writer_url) as writer,
            asyncrun.AsyncClient(watcher_url) as watcher,
        ):
            run = await writer.new_run("wake", "test+record")
            first = await watcher._transport.watch("wake", WatchQuery(since=None, feed=True))
            since = first.seq
            latencies = []
            for i in range(reps):
                done = anyio.Event()
                stamps: dict[str, float] = {}

                async def watch(since: int = since, stamps: dict[str, float] = stamps,
                                done: anyio.Event = done) -> int:  # fmt: skip
                    changes = await watcher._transport.watch(
                        "wake", WatchQuery(since=since, feed=True, timeout=10)
                    )
                    stamps["woke"] = time.perf_counter()
                    done.set()
                    return changes.seq

                async with anyio.create_task_group() as tg:
                    result: list[int] = []

                    async def held(result: list[int] = result) -> None:
                        result.append(await watch())

                    tg.start_soon(held)
                    await anyio.sleep(0.05)  # the watch is held on the server
                    run.metadata.labels = [str(i)]
                    await run.save(update=True)
                    stamps["acked"] = time.perf_counter()
                since = result[0]
                latencies.append(max(0.0, stamps["woke"] - stamps["acked"]) * 1000)
            return latencies

    return anyio.run(main)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(id_: str, what: str, unit: str, figures: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "id": id_,
        "what": what,
        "unit": unit,
        "figures": {
            name: {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "values": values,
            }
            for name, values in figures.items()
        },
    }


def run(scale: float) -> list[dict[str, Any]]:
    """B2, B3 and wake-ups on SQLite, PostgreSQL (one replica) and PostgreSQL (two)."""
    n_values = max(10_000, int(200_000 * scale))
    n_runs = max(50, int(500 * scale))
    reps = max(50, int(300 * scale))
    b2: dict[str, list[float]] = {"sqlite": [], "postgres": [], "postgres x2": []}
    b3: dict[str, list[float]] = {"sqlite": [], "postgres": [], "postgres x2": []}
    wake: dict[str, list[float]] = {}
    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp:
        sqlite_db = Path(tmp) / "bench.sqlite3"
        url = pg.create_database()
        with servers(sqlite_db, 1) as lite, servers(url, 2) as pair:
            setups = {"sqlite": lite, "postgres": pair[:1], "postgres x2": pair}
            for _ in range(REPEATS):  # interleaved: the machine's noise hits every setup
                for name, urls in setups.items():
                    b2[name].append(metric_values(urls, n_values))
                    b3[name].append(create_and_wait(urls, n_runs))
            for name, (writer, watcher) in {
                "sqlite, one server": (lite[0], lite[0]),
                "postgres, one replica": (pair[0], pair[0]),
                "postgres, across replicas": (pair[0], pair[1]),
            }.items():
                wake[name] = wake_ups(writer, watcher, reps)
    rows = [
        _row("B2-stores", f"metric values persisted/s, 2 writers x {n_values:,}", "values/s", b2),
        _row("B3-stores", f"create + run + wait of {n_runs:,} true jobs", "runs/s", b3),
    ]
    for name, values in wake.items():
        rows.append(
            {
                "id": f"wake {name}",
                "what": f"write acknowledged -> feed watch answered ({name}), {reps} times",
                "unit": "ms",
                "figures": {
                    "p50": {"median": _percentile(values, 0.5)},
                    "p99": {"median": _percentile(values, 0.99)},
                },
            }
        )
    return rows
