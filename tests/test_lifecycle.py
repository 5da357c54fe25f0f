"""Runs really execute: the same tests on both backends, on asyncio and on trio."""

from __future__ import annotations

import logging
import uuid
from contextlib import aclosing

import anyio
import pytest
from conftest import job_spec, processes_with

import asyncrun

pytestmark = pytest.mark.anyio


async def collect(run: asyncrun.AsyncRun, **kwargs: object) -> list[asyncrun.LogLine]:
    return [line async for line in run.logs(**kwargs)]  # type: ignore[arg-type]


async def test_python_job_streams_every_line_in_order_and_returns_its_result(
    client: asyncrun.AsyncClient, project: str
) -> None:
    n = 300
    run = await client.new_run(project, "python+job", spec=job_spec("count", n=n))
    assert (await run.run()) is run
    assert run.status.state in (asyncrun.State.READY, asyncrun.State.RUNNING)
    lines = await collect(run, follow=True)
    assert [line.offset for line in lines] == list(range(n))
    assert [line.text for line in lines] == [f"line {i}" for i in range(n)]
    assert {line.stream for line in lines} == {"stdout"}
    assert all(line.time.utcoffset() is not None for line in lines)
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.COMPLETED
    assert run.result() == {"n": n}
    assert run.results() == {"n": n}
    states = [t.state for t in run.status.transitions]
    assert states == ["COMPLETED", "RUNNING", "READY", "BUILT", "CREATED"]  # newest first
    times = [t.time for t in run.status.transitions]
    assert times == sorted(times, reverse=True)


async def test_logs_without_follow_pages_through_everything(
    client: asyncrun.AsyncClient, project: str
) -> None:
    n = 12_000  # more than one page
    run = await client.new_run(project, "python+job", spec=job_spec("count", n=n))
    await run.run()
    await run.wait(timeout=60)
    lines = await collect(run)
    assert [line.offset for line in lines] == list(range(n))
    tail = await collect(run, offset=n - 5)
    assert [line.text for line in tail] == [f"line {i}" for i in range(n - 5, n)]


async def test_failing_job_ends_in_error_with_its_message(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "python+job", spec=job_spec("fail", message="boom"))
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.ERROR
    assert run.status.message == "ValueError: boom"
    lines = await collect(run)
    assert lines[0].text == "about to fail"
    assert any(line.stream == "stderr" and "ValueError: boom" in line.text for line in lines)


async def test_handler_that_does_not_import_is_an_error(
    client: asyncrun.AsyncClient, project: str
) -> None:
    spec = {"handler": "no_such_module_anywhere:main", "cwd": "/"}
    run = await client.new_run(project, "python+job", spec=spec)
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.ERROR
    assert run.status.message is not None
    assert "cannot load handler 'no_such_module_anywhere:main'" in run.status.message


async def test_command_job_records_its_exit_code(
    client: asyncrun.AsyncClient, project: str
) -> None:
    ok = await client.new_run(project, "command+job", spec={"command": ["sh", "-c", "echo hi"]})
    bad = await client.new_run(project, "command+job", spec={"command": ["sh", "-c", "exit 3"]})
    missing = await client.new_run(project, "command+job", spec={"command": ["/no/such/binary"]})
    for run in (ok, bad, missing):
        await run.run()
    for run in (ok, bad, missing):
        await run.wait(timeout=60)
    assert ok.status.state is asyncrun.State.COMPLETED
    assert ok.status.extra["exit_code"] == 0
    assert [line.text for line in await collect(ok)] == ["hi"]
    assert bad.status.state is asyncrun.State.ERROR
    assert bad.status.extra["exit_code"] == 3
    assert "code 3" in (bad.status.message or "")
    assert missing.status.state is asyncrun.State.ERROR
    assert "/no/such/binary" in (missing.status.message or "")


async def test_stop_ends_a_sleeping_job_and_leaves_no_process(
    client: asyncrun.AsyncClient, project: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    spec = {"command": ["sh", "-c", f"echo started; sleep 3600; echo {marker}"]}
    run = await client.new_run(project, "command+job", spec=spec)
    await run.run()
    async with aclosing(run.logs(follow=True)) as lines:  # Trio wants early exits closed
        async for line in lines:
            assert line.text == "started"
            break
    assert processes_with(marker)
    with anyio.fail_after(15):
        await run.stop()
        assert run.status.state in (asyncrun.State.STOP, asyncrun.State.STOPPED)
        await run.wait()
    assert run.status.state is asyncrun.State.STOPPED
    assert processes_with(marker) == []


async def test_resume_runs_again_and_its_logs_follow_the_old_ones(
    client: asyncrun.AsyncClient, project: str
) -> None:
    spec = {"command": ["sh", "-c", "echo started; sleep 3600"]}
    run = await client.new_run(project, "command+job", spec=spec)
    await run.run()
    for expected_lines in (1, 2):
        with anyio.fail_after(30):
            while len(await collect(run)) < expected_lines:
                await anyio.sleep(0.02)
            await run.stop()
            await run.wait()
        assert run.status.state is asyncrun.State.STOPPED
        if expected_lines == 1:
            assert (await run.resume()) is run
            assert run.status.state in (asyncrun.State.READY, asyncrun.State.RUNNING)
    lines = await collect(run)
    assert [(line.offset, line.text) for line in lines] == [(0, "started"), (1, "started")]
    states = [t.state for t in reversed(run.status.transitions)]
    assert states == [
        "CREATED", "BUILT", "READY", "RUNNING", "STOP", "STOPPED",
        "READY", "RUNNING", "STOP", "STOPPED",
    ]  # fmt: skip


async def test_actions_the_state_does_not_allow_raise_invalid_transition(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec={"command": ["true"]})
    for action in (run.stop, run.resume):
        with pytest.raises(asyncrun.InvalidTransition) as info:
            await action()
        assert info.value.code == "invalid_transition"
        assert "CREATED" in str(info.value)
    await run.run()
    with pytest.raises(asyncrun.InvalidTransition):
        await run.run()
    await run.wait(timeout=60)
    for action in (run.run, run.stop, run.resume):
        with pytest.raises(asyncrun.InvalidTransition):
            await action()
    assert isinstance(info.value, asyncrun.Conflict)


async def test_wait_timeout_raises_and_the_run_goes_on(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
    await run.run()
    with pytest.raises(asyncrun.WaitTimeout) as info:
        await run.wait(timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert (await run.refresh()).status.state in (asyncrun.State.READY, asyncrun.State.RUNNING)
    await run.stop()
    await run.wait(timeout=15)


async def test_wait_is_cancelled_like_any_task(client: asyncrun.AsyncClient, project: str) -> None:
    slow = await client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
    quick = await client.new_run(project, "command+job", spec={"command": ["true"]})
    await slow.run()
    with anyio.move_on_after(0.3) as scope:
        await slow.wait()
    assert scope.cancelled_caught
    await quick.run()
    await quick.wait(timeout=30)  # the shared poller still serves other waits
    assert quick.status.state is asyncrun.State.COMPLETED
    await slow.stop()
    await slow.wait(timeout=15)


async def test_deleting_a_run_ends_its_wait(client: asyncrun.AsyncClient, project: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    spec = {"command": ["sh", "-c", f"sleep 3600; echo {marker}"]}
    run = await client.new_run(project, "command+job", spec=spec)
    await run.run()
    other = await client.get_run(project, run.id)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.wait)
        await anyio.sleep(0.2)
        await other.delete()
    assert run.status.state is asyncrun.State.DELETED
    with anyio.fail_after(5):
        while processes_with(marker):
            await anyio.sleep(0.05)


async def test_many_waits_share_one_poller(client: asyncrun.AsyncClient, project: str) -> None:
    runs = [
        await client.new_run(
            project, "command+job", spec={"command": ["sh", "-c", f"exit {i % 2}"]}
        )
        for i in range(40)
    ]
    for run in runs:
        await run.run()
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(run.wait)
    assert [r.status.state for r in runs] == [
        asyncrun.State.COMPLETED if i % 2 == 0 else asyncrun.State.ERROR for i in range(40)
    ]


async def test_wait_logs_state_changes_through_logging(
    client: asyncrun.AsyncClient, project: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncrun")
    run = await client.new_run(project, "python+job", spec=job_spec("count", n=3, delay=0.2))
    await run.run()
    await run.wait(timeout=60)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncrun"]
    assert messages[-1] == f"run {project}/{run.id} is COMPLETED"
    assert logging.getLogger("asyncrun").handlers == []  # never adds handlers
    caplog.clear()
    quiet = await client.new_run(project, "command+job", spec={"command": ["true"]})
    await quiet.run()
    await quiet.wait(log_info=False, timeout=60)
    assert [r for r in caplog.records if r.name == "asyncrun"] == []


async def test_current_run_inside_a_job(client: asyncrun.AsyncClient, project: str) -> None:
    run = await client.new_run(project, "python+job", spec=job_spec("identity"))
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.COMPLETED, run.status.message
    assert run.result() == {"id": run.id, "parameters": {}}


async def test_kinds_are_validated(client: asyncrun.AsyncClient, project: str) -> None:
    with pytest.raises(asyncrun.ValidationError, match="command"):
        await client.new_run(project, "command+job", spec={"command": "echo hi"})
    with pytest.raises(asyncrun.ValidationError, match="handler"):
        await client.new_run(project, "python+job", spec={"handler": "not a handler"})
    custom = await client.new_run(project, "custom+thing", spec={"anything": 1})
    with pytest.raises(asyncrun.ValidationError, match="cannot be executed"):
        await custom.run()
    assert (await custom.refresh()).status.state is asyncrun.State.CREATED


def test_sync_facade_runs_a_job(sync_client: asyncrun.Client, project: str) -> None:
    run = sync_client.new_run(project, "python+job", spec=job_spec("count", n=50))
    assert run.run() is run
    lines = list(run.logs(follow=True))
    assert [line.text for line in lines] == [f"line {i}" for i in range(50)]
    assert run.wait(timeout=60) is run
    assert run.status.state is asyncrun.State.COMPLETED
    assert run.result() == {"n": 50}
    sleeper = sync_client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
    sleeper.run()
    with pytest.raises(asyncrun.WaitTimeout):
        sleeper.wait(timeout=0.2)
    sleeper.stop()
    sleeper.wait(timeout=15)
    assert sleeper.status.state is asyncrun.State.STOPPED
    sleeper.resume()
    sleeper.stop().wait(timeout=15)
    assert sleeper.status.state is asyncrun.State.STOPPED
