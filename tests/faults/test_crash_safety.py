"""Crash safety of the store: the server is SIGKILLed many times in the middle of writes.

Afterwards SQLite reports no corruption, every batch the server acknowledged (its 200 reached
the client) is in the store exactly once, and every run it acknowledged creating exists.
"""

from __future__ import annotations

import functools
import random
import sqlite3
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from _stores import SyncStore
from conftest import ServerProcess

import asyncrun
from asyncrun._core.query import ListQuery

from ._proxy import FORWARDED, FaultProxy, RequestRecord, metric_batches

pytestmark = pytest.mark.anyio

KILLS = 6
N = 40_000
SPEC = {"command": ["true"]}


def acknowledged_batches(proxy: FaultProxy) -> list[RequestRecord]:
    """The metric batches the server applied and whose 200 reached the client."""
    return [
        record
        for record in proxy.records()
        if metric_batches(record.method, record.target)
        and record.outcome == FORWARDED
        and record.status == 200
    ]


async def restart_repeatedly(
    server: ServerProcess, proxy: FaultProxy, kills: int, seed: int
) -> None:
    """SIGKILL and restart the server ``kills`` times, each once a new batch got through.

    Waiting for a condition, not a duration: however slow the machine, every kill falls
    while metrics are flowing (the writer goes on until the last restart), never after.
    """
    rng = random.Random(seed)
    for _ in range(kills):
        seen = len(acknowledged_batches(proxy))
        with anyio.fail_after(120):  # a bound, not a timing assertion
            while len(acknowledged_batches(proxy)) <= seen:
                await anyio.sleep(0.01)
        await anyio.sleep(rng.uniform(0, 0.05))  # jitter: inside a flush or a create, or not
        await anyio.to_thread.run_sync(functools.partial(server.stop, kill=True))
        await anyio.to_thread.run_sync(server.start)


def integrity(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


async def test_sigkill_mid_flush_many_times_loses_nothing_acknowledged(
    fault_server: ServerProcess, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(
        fault_proxy.url, context=tmp_path, flush_at=500, flush_interval=0.02, timeout=10
    ) as client:
        run = await client.new_run("crash", "command+job", spec=SPEC)
        created: list[str] = []
        restarted = anyio.Event()
        logged = 0

        async def writer() -> None:
            # At least N values, and on until the last restart: each kill waits for a batch.
            nonlocal logged
            while logged < N or not restarted.is_set():
                run.log_metric("v", logged)
                logged += 1
                if logged % 250 == 0:
                    await anyio.sleep(0.002 if logged < N else 0.02)  # a training step

        async def creator() -> None:
            for i in range(300):
                try:
                    made = await client.new_run("crash", "command+job", id=f"c{i}", spec=SPEC)
                    created.append(made.id)
                except asyncrun.TransportError:
                    pass  # not acknowledged: may or may not exist
                await anyio.sleep(0.005)

        async def killer() -> None:
            await restart_repeatedly(fault_server, fault_proxy, KILLS, 7)
            restarted.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(killer)
            tasks.start_soon(writer)
            tasks.start_soon(creator)
        await run.flush(timeout=60)

    assert integrity(fault_server.db) == ["ok"]
    acknowledged = [record.json() for record in acknowledged_batches(fault_proxy)]
    assert len(acknowledged) >= KILLS  # one at least before each kill, by construction
    store = SyncStore(fault_server.db)
    try:
        metrics = store.metrics("crash", run.id)
        # Exactly once and in order: every value logged, none twice, acknowledged or retried.
        assert metrics["v"] == list(range(logged))
        for batch in acknowledged:  # each acknowledged batch is in, at its place
            for key, _mode, values in batch["ops"]:  # type: ignore[index]
                assert key == "v"
                first = values[0] if isinstance(values, list) else values
                assert metrics["v"][first] == first
        ids = {r.id for r in store.list_runs("crash", ListQuery.build(limit=1000))}
        assert set(created) <= ids
    finally:
        store.close()


def test_a_started_run_and_its_execution_are_written_in_one_transaction(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from asyncrun._core.launch import Launch
    from asyncrun._core.records import new_run

    launch = Launch(python="python3", env={})
    store = SyncStore(tmp_path / "runs.sqlite3")
    try:
        run = new_run(project="p", kind="command+job", id="r", now=datetime.now(UTC), spec=SPEC)
        store.insert(run)

        def refuse(_: asyncrun.RunRecord) -> asyncrun.RunRecord:
            raise asyncrun.InvalidTransition("no")

        with pytest.raises(asyncrun.InvalidTransition):
            store.modify("p", "r", refuse, execute=launch)
        assert store.latest_execution("p", "r") is None  # nothing half-written

        store.modify("p", "r", lambda r: r, execute=launch)
        execution = store.latest_execution("p", "r")
        assert execution is not None
        assert execution.number == 1
        assert execution.launch == launch
    finally:
        store.close()
