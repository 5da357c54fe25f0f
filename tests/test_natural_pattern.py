"""Issue 13 item 2: the natural pattern, one task per run doing new_run, run() and wait().

Before the fix, 5,000 such tasks on one client made 170 ``run()`` calls fail with a
TransportError (PoolTimeout after 30 s): the server handled ``run()`` one request at a time
while the pool held 100 connections. Now ``run()``, ``stop()`` and ``resume()`` coalesce into
batch requests like creates, and waits share one poller on the project's changes feed.
"""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

import asyncrun

N = {"asyncio": 2000, "trio": 500}
"""Runs per test: the full size once, a smaller one for the second event loop."""


@pytest.mark.anyio
async def test_thousands_of_tasks_each_create_run_and_wait(
    client: asyncrun.AsyncClient, project: str, anyio_backend: str
) -> None:
    n = N[anyio_backend]
    done: list[asyncrun.AsyncRun] = []
    errors: list[BaseException] = []
    requests = Counter[str]()
    transport = client._transport
    for name in ("create_run", "create_runs", "action", "actions"):
        inner = getattr(transport, name)

        async def counted(*args: object, _inner: object = inner, _name: str = name) -> object:
            requests[_name] += 1
            return await _inner(*args)  # type: ignore[operator]

        setattr(transport, name, counted)

    async def one() -> None:
        try:
            run = await client.new_run(project, "command+job", spec={"command": ["true"]})
            await run.run()
            done.append(await run.wait(log_info=False))
        except Exception as exc:  # every failure is reported below, not just the first
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    assert errors == [], errors[:3]
    assert Counter(run.status.state for run in done) == {asyncrun.State.COMPLETED: n}
    # Creates and starts went out in batches: far fewer requests than runs.
    assert requests["create_run"] + requests["create_runs"] < n / 5, requests
    assert requests["action"] + requests["actions"] < n / 5, requests
