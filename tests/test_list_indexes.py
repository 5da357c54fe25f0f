"""Issue 13 item 3: every filter of the list API is served by an index, so its cost follows what
it returns, not the size of the project. Pinned by the query plan and by the number of steps the
SQLite virtual machine takes (never by timing). Each test failed on the code before its fix."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from _stores import SyncStore

import asyncrun
from asyncrun._core.query import ListQuery, cursor_after
from asyncrun._core.records import Run, State
from asyncrun.server._service import RunService
from asyncrun.server._store import _sqlite

pytestmark = pytest.mark.anyio

BASE = datetime(2024, 1, 1, tzinfo=UTC)
RARE = 10
FILTERS: dict[str, dict[str, Any]] = {
    "state": {"state": "COMPLETED"},
    "kind": {"kind": "rare+kind"},
    "name": {"name": "rare"},
    "label": {"label": "rare"},
    "created": {"created_after": BASE + timedelta(days=1)},
    "label and state": {"label": ["common", "rare"], "state": "COMPLETED"},
    "ids": {"ids": [f"rare{i:06}" for i in range(RARE)]},
}
"""Each filter matches the RARE runs made by :func:`populate`, whatever the project's size."""
INDEXED_COLUMN = {
    "state": "state=?",
    "kind": "kind=?",
    "name": "name=?",
    "label": "label=?",
    "created": "created_us>?",
    "label and state": "label=?",
    "ids": "id=?",
}


def record(project: str, i: int, rare: bool) -> dict[str, Any]:
    # The rare runs are the newest: a walk of the project in created order that filters as it
    # goes finds them first, but still reads every other run looking for a page of 100.
    created = BASE + (timedelta(days=1, hours=1 + i) if rare else timedelta(seconds=i))
    return {
        "kind": "rare+kind" if rare else "command+job",
        "id": f"{'rare' if rare else 'r'}{i:06}",
        "project": project,
        "name": "rare" if rare else f"run {i}",
        "metadata": {
            "project": project,
            "labels": ["common", "rare"] if rare else ["common"],
            "created": created.isoformat(),
        },
        "spec": {"command": ["true"]},
    }


async def populate(service: RunService, project: str, n: int) -> None:
    """``n`` runs, of which RARE match every filter of FILTERS."""
    for start in range(0, n, 1000):
        items = [record(project, i, False) for i in range(start, min(n, start + 1000))]
        await service.create_many(project, items)
    await service.create_many(project, [record(project, i, True) for i in range(RARE)])

    def completed(run: Run) -> Run:
        return attrs.evolve(run, status=attrs.evolve(run.status, state=State.COMPLETED))

    for i in range(RARE):
        await service.store.modify(project, f"rare{i:06}", completed)


def plan_of(store: SyncStore, project: str, filters: dict[str, Any]) -> tuple[list[str], int]:
    """The plan of the listing query of ``filters`` and the VM steps it took."""
    statements: list[str] = []
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    store._db.set_trace_callback(statements.append)
    store._db.set_progress_handler(step, 1)
    try:
        runs = store.list_runs(project, ListQuery.build(limit=100, **filters))
    finally:
        store._db.set_trace_callback(None)
        store._db.set_progress_handler(None, 1)
    assert sorted(run.id for run in runs) == [f"rare{i:06}" for i in range(RARE)], filters
    (listing,) = [sql for sql in statements if "doc FROM" in sql and "ORDER BY" in sql]
    rows = store._db.execute(f"EXPLAIN QUERY PLAN {listing}").fetchall()
    return [row[3] for row in rows], steps[0]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[int, SyncStore]:
    import anyio

    made = {}
    for n in (1_000, 10_000):
        store = SyncStore(tmp_path_factory.mktemp("indexes") / f"runs{n}.sqlite3")
        anyio.run(populate, RunService(store.store), "p", n)
        made[n] = store
    return made


@pytest.mark.parametrize("which", FILTERS)
def test_a_selective_filter_searches_an_index_and_costs_what_it_returns(
    stores: dict[int, SyncStore], which: str
) -> None:
    costs = {}
    for n, store in stores.items():
        plan, costs[n] = plan_of(store, "p", FILTERS[which])
        assert not any(step.startswith("SCAN") for step in plan), plan
        if which != "ids":  # ids are sorted: at most MAX_IDS of them
            assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort of all
        assert INDEXED_COLUMN[which] in plan[0], plan  # the filter drives the search
    # The same 10 runs from a project 10x the size: the same work, not 10x.
    assert costs[10_000] <= costs[1_000] * 1.05, costs


def test_a_common_label_reads_one_page_not_every_run_carrying_it(
    stores: dict[int, SyncStore],
) -> None:
    costs = {}
    for n, store in stores.items():
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        try:
            runs = store.list_runs("p", ListQuery.build(label="common", limit=20))
        finally:
            store._db.set_trace_callback(None)
        assert len(runs) == 21  # a page and one more, newest first: the rare runs lead
        assert [run.id for run in runs[:RARE]] == [f"rare{i:06}" for i in reversed(range(RARE))]
        (listing,) = [sql for sql in statements if "doc FROM" in sql and "ORDER BY" in sql]
        plan = [row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {listing}")]
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), plan
        costs[n] = len(plan)
    assert costs[10_000] == costs[1_000]


@pytest.mark.parametrize("filters", [{}, {"state": "CREATED"}, {"label": "common"}])
def test_a_deep_page_starts_where_the_last_one_ended(
    stores: dict[int, SyncStore], filters: dict[str, Any]
) -> None:
    store = stores[10_000]
    first = store.list_runs("p", ListQuery.build(limit=100, **filters))
    deep = store.get("p", "r001010")  # about 9,000 runs into any of these listings
    assert deep is not None
    costs = []
    for last in (first[99], deep):
        statements: list[str] = []
        steps = [0]

        def step(steps: list[int] = steps) -> int:
            steps[0] += 1
            return 0

        store._db.set_trace_callback(statements.append)
        store._db.set_progress_handler(step, 1)
        try:
            query = ListQuery.build(limit=20, cursor=cursor_after(last), **filters)
            page = store.list_runs("p", query)
        finally:
            store._db.set_trace_callback(None)
            store._db.set_progress_handler(None, 1)
        assert len(page) == 21
        (listing,) = [sql for sql in statements if "doc FROM" in sql and "ORDER BY" in sql]
        plan = [row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {listing}")]
        assert "<(?,?)" in plan[0], plan  # the cursor is a range of the index walked
        costs.append(steps[0])
    assert costs[1] <= costs[0] * 1.05, costs  # page 90 costs what page 1 did


def test_an_older_database_gets_the_indexes_and_its_labelled_runs_stay_in_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.sqlite3"
    before = next(
        version
        for version, steps in enumerate(_sqlite.MIGRATIONS)
        if any("runs_by_state_created" in str(step) for step in steps)
    )
    with sqlite3.connect(db) as old:  # the schema of the release before these indexes
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statements in _sqlite.MIGRATIONS[:before]:
            for step in statements:  # a statement, or a function doing what SQL cannot
                old.execute(step) if isinstance(step, str) else step(old)
        old.execute("INSERT INTO schema_version VALUES (?)", (before,))
        for i in range(3):
            created = int((BASE + timedelta(seconds=i)).timestamp() * 1_000_000)
            doc = json.dumps(
                {
                    "kind": "command+job",
                    "id": f"o{i}",
                    "project": "p",
                    "metadata": {
                        "project": "p",
                        "labels": ["old"],
                        "created": (BASE + timedelta(seconds=i)).isoformat(),
                        "revision": 1,
                    },
                    "spec": {"command": ["true"]},
                    "status": {"state": "CREATED"},
                }
            )
            old.execute(
                "INSERT INTO runs (project, id, kind, name, state, created_us, revision, doc)"
                " VALUES ('p', ?, 'command+job', NULL, 'CREATED', ?, 1, ?)",
                (f"o{i}", created, doc.encode()),
            )
            old.execute("INSERT INTO run_labels VALUES ('p', ?, 'old')", (f"o{i}",))
    store = SyncStore(db)
    try:
        assert store.schema_version() == _sqlite.SCHEMA_VERSION > before
        runs = store.list_runs("p", ListQuery.build(label="old", limit=2))
        assert [run.id for run in runs] == ["o2", "o1", "o0"]
        after = store.list_runs(
            "p", ListQuery.build(label="old", limit=2, cursor=cursor_after(runs[1]))
        )
        assert [run.id for run in after] == ["o0"]
    finally:
        store.close()


async def test_label_pages_of_runs_created_at_the_same_instant_list_each_run_once(
    client: asyncrun.AsyncClient, project: str
) -> None:
    same_instant = datetime.now(UTC)
    runs = []
    for labels in [["a"], ["a", "b"], ["b"]] * 7:
        run = client.build_run(project, "command+job", spec={"command": ["true"]}, labels=labels)
        run.metadata.created = same_instant  # ties: the id orders them
        runs.append(await run.save())
    with_a = sorted(run.id for run in runs if "a" in run.metadata.labels)
    listed = [run.id async for run in client.list_runs(project, label="a", page_size=4)]
    assert listed == sorted(with_a, reverse=True)  # newest first, then by id, each once
    both = [run.id async for run in client.list_runs(project, label=["a", "b"], page_size=3)]
    assert len(both) == len(set(both)) == 7
    assert [run.id async for run in client.list_runs(project, label="a", state="COMPLETED")] == []
    assert [run.id async for run in client.list_runs(project, label="a", kind="command+job")] == (
        listed
    )
