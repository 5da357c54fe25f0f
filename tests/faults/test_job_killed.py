"""A job killed from outside (the OOM killer, an operator): its run ends ERROR and says why."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest
from _stores import SyncStore
from conftest import job_spec

import asyncrun

pytestmark = pytest.mark.anyio


def job_pid(db: Path | str, project: str, id_: str) -> int | None:
    store = SyncStore(db)
    try:
        execution = store.latest_execution(project, id_)
        return None if execution is None else execution.pid
    finally:
        store.close()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
async def test_a_job_killed_from_outside_ends_error_with_its_signal(
    client: asyncrun.AsyncClient,
    backend: dict[str, object],
    project: str,
    signum: signal.Signals,
    backend_db: Path | str,
) -> None:
    run = await client.new_run(project, "python+job", spec=job_spec("count", n=1000, delay=0.01))
    await run.run()
    db = backend_db
    with anyio.fail_after(30):
        while (pid := job_pid(db, project, run.id)) is None or not any(
            [line async for line in run.logs()]
        ):
            await anyio.sleep(0.02)
    os.kill(pid, signum)
    await run.wait(log_info=False, timeout=30)
    assert run.status.state is asyncrun.State.ERROR
    assert run.status.message == f"the process was killed by signal {int(signum)}"
    lines = [line.text async for line in run.logs()]
    assert lines
    assert lines == [f"line {i}" for i in range(len(lines))]  # what it wrote is kept
