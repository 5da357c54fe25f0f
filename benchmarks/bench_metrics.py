"""Metrics: the caller's cost of ``log_metric`` and values persisted per second end to end.

- B1 ``log_metric`` in a hot loop, ns per call in the caller, against the floor
  ``list.append((key, value))`` measured in the same process (the least a buffering call does).
- B2 values persisted per second through a real ``asyncrun server`` on SQLite (from the first
  ``log_metric`` to the server's acknowledgement of the last batch), against two SQLite figures
  (WAL, synchronous=NORMAL, one transaction per batch): ``executemany`` of one indexed row per
  value, which is what a store of one row per value could not beat (it is not a floor for
  asyncrun, which stores packed chunks); and the same values packed as asyncrun's store packs
  them (an orjson list of at most 8,192 values per row, one row per chunk), the floor of the
  layout asyncrun has: no more than this can reach SQLite in this process.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from _harness import asyncrun_server, measure

import asyncrun
from asyncrun.server._store._metrics import CHUNK_VALUES

FLUSH_AT = 50_000  # values the B2 client buffers before it sends a batch


def floor_append(n: int) -> float:
    items: list[tuple[str, float]] = []
    append = items.append
    start = time.perf_counter_ns()
    for _ in range(n):
        append(("loss", 0.5))
    return (time.perf_counter_ns() - start) / n


def async_log_metric(n: int) -> float:
    async def main() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            async with asyncrun.AsyncClient(home=tmp, exit_flush_timeout=60) as client:
                run = await client.new_run("bench", "command+job", spec={"command": ["true"]})
                start = time.perf_counter_ns()
                for _ in range(n):
                    run.log_metric("loss", 0.5)
                return (time.perf_counter_ns() - start) / n

    return anyio.run(main)


def sync_log_metric(n: int) -> float:
    with (
        tempfile.TemporaryDirectory() as tmp,
        asyncrun.Client(home=tmp, exit_flush_timeout=60) as client,
    ):
        run = client.new_run("bench", "command+job", spec={"command": ["true"]})
        start = time.perf_counter_ns()
        for _ in range(n):
            run.log_metric("loss", 0.5)
        return (time.perf_counter_ns() - start) / n


def persisted_per_second(url: str, n: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(url, flush_at=FLUSH_AT) as client:
            run = await client.new_run("bench", "command+job", spec={"command": ["true"]})
            start = time.perf_counter()
            for i in range(n):
                run.log_metric("loss", i * 0.5)
                if i % 10_000 == 0:
                    await anyio.lowlevel.checkpoint()  # a training loop yields now and then
            await run.flush()
            elapsed = time.perf_counter() - start
            await run.refresh()
            assert len(run.metrics["loss"]) == n
            return n / elapsed

    return anyio.run(main)


def sqlite_executemany_floor(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE m (run TEXT, key TEXT, step INTEGER, value REAL)")
        db.execute("CREATE INDEX m_by_run ON m (run, key, step)")
        rows = [("r", "loss", i, i * 0.5) for i in range(n)]
        start = time.perf_counter()
        for at in range(0, n, 1000):
            db.execute("BEGIN")
            db.executemany("INSERT INTO m VALUES (?, ?, ?, ?)", rows[at : at + 1000])
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        db.close()
    return n / elapsed


def sqlite_packed_chunks_floor(n: int, per_batch: int) -> float:
    """The values packed as the store packs them, one row per chunk, ``per_batch`` a commit."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE c (run TEXT, key TEXT, chunk INTEGER, vals BLOB,"
            " PRIMARY KEY (run, key, chunk)) WITHOUT ROWID"
        )
        values = [i * 0.5 for i in range(n)]
        start = time.perf_counter()
        chunk = 0
        for at in range(0, n, per_batch):
            batch = values[at : at + per_batch]
            rows = []
            for part in range(0, len(batch), CHUNK_VALUES):
                rows.append(("r", "loss", chunk, orjson.dumps(batch[part : part + CHUNK_VALUES])))
                chunk += 1
            db.execute("BEGIN")
            db.executemany("INSERT INTO c VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        db.close()
    return n / elapsed


def run(scale: float) -> list[dict[str, Any]]:
    """B1 and B2; ``scale`` multiplies the sizes."""
    calls = max(10_000, int(1_000_000 * scale))
    values = max(10_000, int(1_000_000 * scale))
    floor = measure(lambda: floor_append(calls))
    results = []
    for id_, name, fn in (("b1_async", "B1 log_metric, AsyncRun", async_log_metric),
                          ("b1_sync", "B1 log_metric, sync Run", sync_log_metric)):  # fmt: skip
        ours = measure(lambda fn=fn: fn(calls))  # type: ignore[misc]
        results.append(
            {
                "id": id_,
                "workload": name,
                "unit": "ns/call",
                "ours": ours,
                "floor": floor,
                "floor_name": "list.append((key, value))",
                "ratio": ours["median"] / floor["median"],
                "goal": "< 1,000 ns",
            }
        )
    with asyncrun_server() as url:
        ours = measure(lambda: persisted_per_second(url, values))
    floor_rows = measure(lambda: sqlite_executemany_floor(values))
    floor_chunks = measure(lambda: sqlite_packed_chunks_floor(values, FLUSH_AT))
    workload = f"B2 metrics persisted end to end, HTTP, SQLite ({values:,} values)"
    results += [
        {
            "id": "b2",
            "workload": workload,
            "unit": "values/s",
            "ours": ours,
            "floor": floor_rows,
            "floor_name": "one indexed SQLite row per value (executemany): not a floor for "
            "asyncrun, whose store writes packed chunks",
            "ratio": ours["median"] / floor_rows["median"],
            "goal": ">= 500,000/s",
        },
        {
            "id": "b2_packed_floor",
            "workload": f"B2 against packed chunks: metrics persisted end to end, HTTP, SQLite "
            f"({values:,} values)",
            "unit": "values/s",
            "ours": ours,
            "floor": floor_chunks,
            "floor_name": f"the same values packed as the store packs them ({CHUNK_VALUES:,} "
            f"per row, orjson), {FLUSH_AT:,} a transaction",
            "ratio": ours["median"] / floor_chunks["median"],
            "goal": "",
        },
    ]
    return results
