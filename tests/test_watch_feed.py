"""Issue 13 item 1: the cost of waiting follows the changes, not the number of waits.

Before the feed, every watch request named every waited id and the server ran an ``IN (N ids)``
query per tick: 5x the runs cost 25x the bytes. Now the client's poller follows the project's
changes feed: after a wait's first request, requests carry no ids at all.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

import asyncrun
from asyncrun import _serde
from asyncrun._core.query import Changes, WatchQuery


class _Recorder:
    """Wraps a transport's ``watch``: what each request asked and what it was told."""

    def __init__(self, client: asyncrun.AsyncClient) -> None:
        self.requests: list[WatchQuery] = []
        self.answers: list[Changes] = []
        transport = client._transport
        inner = transport.watch

        async def watch(project: str, query: WatchQuery) -> Changes:
            self.requests.append(query)
            changes = await inner(project, query)
            self.answers.append(changes)
            return changes

        transport.watch = watch  # type: ignore[method-assign]

    def fresh_ids(self) -> set[str]:
        return {id_ for query in self.requests for id_ in query.fresh}

    def seen(self, id_: str, label: str) -> bool:
        return any(
            run.id == id_ and label in run.metadata.labels
            for changes in self.answers
            for run in changes.runs
        )


async def _eventually(check: Any, what: str) -> None:
    with anyio.fail_after(60, shield=True):
        while not check():
            await anyio.sleep(0.01)
    assert check(), what


async def _waiting_cost(
    client: asyncrun.AsyncClient, other: asyncrun.AsyncClient, project: str, n: int
) -> tuple[int, int]:
    """Requests and request bytes of ``n`` waits while 10 runs change one at a time."""
    recorder = _Recorder(client)
    runs = [client.build_run(project, "test+record") for _ in range(n)]
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(run.save)
    results: dict[str, asyncrun.AsyncRun] = {}

    async def wait(run: asyncrun.AsyncRun) -> None:
        results[run.id] = await run.wait(log_info=False)

    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(wait, run)
        ids = {run.id for run in runs}
        await _eventually(lambda: recorder.fresh_ids() >= ids, "every wait's first request")
        first = len(recorder.requests)
        for i, run in enumerate(runs[:10]):
            changed = await other.get_run(project, run.id)
            changed.metadata.labels.append(f"change-{i}")
            await changed.save(update=True)
            label = f"change-{i}"
            await _eventually(functools.partial(recorder.seen, run.id, label), "the change")
        steady = recorder.requests[first:]
        for run in runs:  # deleted runs end their waits
            await other._transport.delete_run(project, run.id)
    assert all(results[run.id].status.state is asyncrun.State.DELETED for run in runs)
    assert all(not query.ids for query in recorder.requests)  # the feed: no watched ids sent
    body_bytes = sum(len(_serde.dumps(query.to_body())) for query in steady)
    return len(steady), body_bytes


@pytest.mark.anyio
async def test_waits_cost_what_changes_not_how_many_wait(
    client: asyncrun.AsyncClient, backend: dict[str, Any], project: str
) -> None:
    async with asyncrun.AsyncClient(**backend) as other:
        few = await _waiting_cost(client, other, project, 20)
        many = await _waiting_cost(client, other, project + "-many", 400)
    # Ten changes, seen one by one: a request or two each, whatever the number of waits.
    for requests, body_bytes in (few, many):
        assert requests <= 30, (few, many)
        assert body_bytes <= requests * 120, (few, many)  # no ids: a small, fixed body


@pytest.mark.anyio
async def test_a_run_deleted_and_created_again_wakes_only_the_old_waits(
    client: asyncrun.AsyncClient, backend: dict[str, Any], project: str
) -> None:
    run = await client.new_run(project, "test+record")
    recorder = _Recorder(client)
    async with asyncrun.AsyncClient(**backend) as other:
        async with anyio.create_task_group() as tg:
            done: list[asyncrun.AsyncRun] = []

            async def wait() -> None:
                done.append(await run.wait(log_info=False))

            tg.start_soon(wait)
            await _eventually(lambda: recorder.answers, "the wait's first answer")
            await other._transport.delete_run(project, run.id)
            await other.new_run(project, "test+record", id=run.id)
        assert done[0].status.state is asyncrun.State.DELETED


def test_the_feed_reports_deletions_and_pages_many_changes(tmp_path: Any) -> None:
    from _stores import SyncStore

    with asyncrun.Client(home=tmp_path) as client:
        runs = [client.new_run("p", "test+record") for _ in range(5)]
    store = SyncStore(tmp_path / "asyncrun.sqlite3")
    try:
        start = store.changes("p", (), None, feed=True)
        assert start.runs == []
        assert start.deleted == []
        store.delete("p", runs[0].id)
        store.modify("p", runs[1].id, lambda r: r)
        changes = store.changes("p", (), start.seq, feed=True)
        assert changes.deleted == [runs[0].id]
        assert [r.id for r in changes.runs] == [runs[1].id]
        assert store.changes("p", (), changes.seq, feed=True).runs == []
        everything = store.changes("p", (), 0, feed=True)
        assert {r.id for r in everything.runs} == {r.id for r in runs[1:]}
        limited, more = store.feed("p", 0, 2)
        assert len(limited) == 2
        assert more
    finally:
        store.close()
