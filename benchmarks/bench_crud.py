"""CRUD throughput of run records, each figure set against the floor it cannot beat.

- create (embedded): ``new_run`` per second vs raw SQLite, one JSON row per commit (WAL, NORMAL).
- create / get (HTTP): requests per second through ``asyncrun server`` vs the same httpx client
  against a trivial Starlette app on uvicorn (same stack, no work), sequential and 50 in flight.
- list: runs per second listed in pages of 1,000 vs SQLite ``SELECT`` + ``orjson.loads``.
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from _harness import asyncrun_server, measure, trivial_server

import asyncrun
from asyncrun import _serde

SPEC = {"command": ["echo", "hi"], "parameters": {"lr": 0.1, "epochs": 10}}


def _doc() -> bytes:
    async def build() -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            async with asyncrun.AsyncClient(home=tmp) as client:
                return _serde.dumps(client.build_run("bench", "command+job", spec=SPEC).record)

    return anyio.run(build)


def sqlite_floor(n: int) -> float:
    doc = _doc()
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (project TEXT, id TEXT, doc BLOB, PRIMARY KEY (project, id))")
        start = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?, ?)", ("bench", str(i), doc))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        db.close()
    return n / elapsed


def embedded_create(n: int) -> float:
    async def main() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            async with asyncrun.AsyncClient(home=tmp) as client:
                start = time.perf_counter()
                for _ in range(n):
                    await client.new_run("bench", "command+job", spec=SPEC)
                return n / (time.perf_counter() - start)

    return anyio.run(main)


async def _parallel(n: int, concurrency: int, one: Any) -> float:
    start = time.perf_counter()
    per_task = n // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await one()

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return per_task * concurrency / (time.perf_counter() - start)


def http_create(url: str, n: int, concurrency: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(url) as client:
            return await _parallel(
                n, concurrency, lambda: client.new_run("bench", "command+job", spec=SPEC)
            )

    return anyio.run(main)


def http_get(url: str, n: int, concurrency: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(url) as client:
            run = await client.new_run("bench", "command+job", spec=SPEC)
            return await _parallel(n, concurrency, lambda: client.get_run("bench", run.id))

    return anyio.run(main)


def trivial_http(url: str, n: int, concurrency: int, method: str) -> float:
    body = _doc() if method == "POST" else None

    async def main() -> float:
        async with httpx.AsyncClient(base_url=url) as http:
            return await _parallel(
                n,
                concurrency,
                lambda: http.request(
                    method, "/echo", content=body, headers={"Content-Type": "application/json"}
                ),
            )

    return anyio.run(main)


def listing(client_kwargs: dict[str, Any], n: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(**client_kwargs) as client:
            project = f"list{time.monotonic_ns()}"
            for _ in range(n):
                await client.new_run(project, "command+job", spec=SPEC)
            start = time.perf_counter()
            count = 0
            async for _ in client.list_runs(project, page_size=1000):
                count += 1
            assert count == n
            return n / (time.perf_counter() - start)

    return anyio.run(main)


def list_floor(n: int) -> float:
    doc = _doc()
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3")
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, doc BLOB)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(str(i), doc) for i in range(n)])
        start = time.perf_counter()
        rows = [orjson.loads(doc) for (doc,) in db.execute("SELECT doc FROM t")]
        elapsed = time.perf_counter() - start
        db.close()
    assert len(rows) == n
    return n / elapsed


def run(scale: float) -> list[dict[str, Any]]:
    """Run every workload; ``scale`` multiplies the sizes (1.0 is the recorded size)."""
    n = max(20, int(2000 * scale))
    results: list[dict[str, Any]] = []

    def add(
        name: str, unit: str, ours: dict[str, Any], floor: dict[str, Any], floor_name: str
    ) -> None:
        results.append(
            {
                "workload": name,
                "unit": unit,
                "ours": ours,
                "floor": floor,
                "floor_name": floor_name,
                "ratio": ours["median"] / floor["median"],
            }
        )

    add(
        "create, embedded, sequential",
        "runs/s",
        measure(lambda: embedded_create(n)),
        measure(lambda: sqlite_floor(n)),
        "SQLite insert+commit per row",
    )
    with asyncrun_server() as url, trivial_server() as floor_url:
        for c in (1, 50):
            add(
                f"create, HTTP, {c} in flight",
                "runs/s",
                measure(functools.partial(http_create, url, n // 2, c)),
                measure(functools.partial(trivial_http, floor_url, n // 2, c, "POST")),
                "httpx POST to trivial Starlette app",
            )
            add(
                f"get, HTTP, {c} in flight",
                "runs/s",
                measure(functools.partial(http_get, url, n, c)),
                measure(functools.partial(trivial_http, floor_url, n, c, "GET")),
                "httpx GET to trivial Starlette app",
            )
        add(
            "list, HTTP, pages of 1,000",
            "runs/s",
            measure(lambda: listing({"endpoint": url}, n)),
            measure(lambda: list_floor(n)),
            "SQLite SELECT + orjson.loads",
        )
    with tempfile.TemporaryDirectory() as tmp:
        add(
            "list, embedded, pages of 1,000",
            "runs/s",
            measure(lambda: listing({"home": tmp}, n)),
            measure(lambda: list_floor(n)),
            "SQLite SELECT + orjson.loads",
        )
    return results
