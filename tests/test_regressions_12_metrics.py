"""Issue 12 item 11: reading a run costs the same whatever its metric history.

Before the fix, lists and watches carried every value of every run (a list of 5 runs with 1 M
values each was 78 MB) and every read of a run, also inside the server (an action, an update),
read its whole history. Each test here failed on that code.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _stores import SyncStore
from conftest import ServerProcess

import asyncrun
from asyncrun import _config
from asyncrun._core.query import ListQuery
from asyncrun._core.summary import MAX_HISTORY_PAGE, MAX_INLINE_VALUES, MetricSummary
from asyncrun.server._store import _metrics
from asyncrun.server._store._sqlite import MIGRATIONS

BIG = MAX_INLINE_VALUES + 25_000  # more than a single answer carries inline


async def _big_run(client: asyncrun.AsyncClient, project: str) -> asyncrun.AsyncRun:
    run = await client.new_run(project, "test+record")
    run.log_metric("loss", [float(i % 1000) / 7 for i in range(BIG)])
    run.log_metric("loss", [-1.5, float("nan")])  # NaN is left out of min, kept as last
    run.log_metric("steps", 3, single_value=True)
    await run.flush()
    return run


@pytest.mark.anyio
async def test_lists_carry_summaries_not_histories(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await _big_run(client, project)
    (listed,) = [r async for r in client.list_runs(project)]
    loss = listed.metric_summary["loss"]
    assert (loss.count, loss.min, loss.max, loss.single) == (BIG + 2, -1.5, 999 / 7, False)
    assert math.isnan(loss.last)  # type: ignore[arg-type]
    assert listed.metric_summary["steps"] == MetricSummary(1, 3, 3, 3, single=True)
    with pytest.raises(asyncrun.MetricsNotLoaded, match="refresh"):
        _ = listed.metrics
    await listed.refresh()  # the values, in full, when asked for
    assert len(listed.metrics["loss"]) == BIG + 2
    assert listed.metrics["steps"] == 3
    assert listed.metrics["loss"][:3] == [0.0, 1 / 7, 2 / 7]
    assert run.id == listed.id


@pytest.mark.anyio
async def test_a_fetched_run_has_the_specs_full_metrics_whatever_their_size(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await _big_run(client, project)
    fetched = await client.get_run(project, run.id)
    assert len(fetched.metrics["loss"]) == BIG + 2
    assert fetched.metrics["loss"][-2] == -1.5
    assert fetched.metrics["steps"] == 3
    values = [v async for v in fetched.metric_history("loss", offset=BIG - 1)]
    assert values[:2] == [float((BIG - 1) % 1000) / 7, -1.5]
    assert len(values) == 3
    with pytest.raises(asyncrun.NotFound, match="no metric 'nope'"):
        [v async for v in fetched.metric_history("nope")]


def test_every_answer_about_a_big_run_is_bounded(server: ServerProcess, tmp_path: Path) -> None:
    with asyncrun.Client(server.url) as client:
        runs = []
        for _ in range(3):
            run = client.new_run("bounded", "test+record")
            run.log_metric("loss", list(range(BIG)))
            runs.append(run)
        run.flush()
    base = f"{server.url}/api/v1/projects/bounded/runs"
    listing = httpx.get(base)
    assert listing.status_code == 200
    assert len(listing.content) < 5_000, len(listing.content)  # was every value of 3 runs
    one = httpx.get(f"{base}/{runs[0].id}")
    assert len(one.content) < 5_000, len(one.content)
    assert "metrics" not in one.json()["status"]  # too many to inline: summary only
    assert one.json()["status"]["metric_summary"]["loss"]["count"] == BIG
    watch = httpx.post(
        f"{base}:watch", json={"ids": [r.id for r in runs], "since": 0, "timeout": 1}
    )
    assert len(watch.content) < 5_000, len(watch.content)
    page = httpx.get(f"{base}/{runs[0].id}/metrics", params={"key": "loss", "offset": 10})
    assert page.json()["values"][:2] == [10, 11]
    assert len(page.json()["values"]) == MAX_HISTORY_PAGE  # a page never grows further
    refused = httpx.get(f"{base}/{runs[0].id}/metrics", params={"key": "loss", "limit": 10**6})
    assert refused.status_code == 422
    assert httpx.get(f"{base}/{runs[0].id}/metrics").status_code == 422  # no key


def test_reading_a_run_inside_the_service_never_reads_its_values(tmp_path: Path) -> None:
    statements: list[str] = []
    with asyncrun.Client(home=tmp_path / "home") as client:
        run = client.new_run("p", "test+record")
        run.log_metric("loss", list(range(1000)))
        run.flush()
    store = SyncStore(tmp_path / "home" / _config.DB_FILENAME)
    store._db.set_trace_callback(statements.append)
    store.get("p", run.id)
    store.list_runs("p", ListQuery())
    store.changes("p", [run.id], 0)
    store.modify("p", run.id, lambda r: r)
    assert not [s for s in statements if "metric_chunks" in s], statements
    store.close()


def test_metrics_stored_before_summaries_get_them_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old = MIGRATIONS.index(_metrics.SUMMARY_MIGRATION)
    for steps in MIGRATIONS[:old]:
        for step in steps:
            assert isinstance(step, str)
            db.execute(step)
    db.execute("INSERT INTO schema_version VALUES (?)", (old,))
    doc = {
        "kind": "test+record",
        "id": "r",
        "project": "p",
        "metadata": {"project": "p", "created": "2026-01-01T00:00:00+00:00", "revision": 1},
    }
    db.execute(
        "INSERT INTO runs (project, id, kind, name, state, created_us, revision, doc, seq)"
        " VALUES ('p', 'r', 'test+record', NULL, 'CREATED', 0, 1, ?, 1)",
        (orjson.dumps(doc),),
    )

    def rows(key: str, chunks: list[list[Any]], single: Any = None) -> None:
        shape = "single" if single is not None else "list"
        packed = None if single is None else orjson.dumps([single])
        db.execute(
            "INSERT INTO metric_keys VALUES ('p', 'r', ?, ?, ?, 1, ?)",
            (key, shape, packed, len(chunks)),
        )
        for number, values in enumerate(chunks):
            db.execute(
                "INSERT INTO metric_chunks VALUES ('p', 'r', ?, 1, ?, ?)",
                (key, number, orjson.dumps(values)),
            )

    rows("loss", [[3, 1], [2, "NaN"], [7]])
    rows("best", [], single=0.5)
    db.close()
    store = SyncStore(path)
    record = store.get("p", "r")
    assert record is not None
    assert record.status.metric_summary == {
        "best": MetricSummary(1, 0.5, 0.5, 0.5, single=True),
        "loss": MetricSummary(5, 7, 1, 7),
    }
    assert store.metric_history("p", "r", "loss", 2, 2) is not None
    assert store.metric_history("p", "r", "loss", 1, 4)[::3] == [1, 7]  # type: ignore[index]
    assert store.metrics("p", "r")["best"] == 0.5
    store.close()
