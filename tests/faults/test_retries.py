"""Timeouts and retries of single requests, through a real fault proxy in front of a real server.

Idempotent requests (reads, creates with the client's id, updates with a revision, deletes)
are retried and end as if nothing happened, even when the first attempt was applied and only
its answer was lost; actions are not sent twice: the user gets a typed error instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from conftest import ServerProcess, job_spec

import asyncrun

from ._proxy import Fault, FaultPlan, FaultProxy

pytestmark = pytest.mark.anyio

SPEC = {"command": ["true"]}


def only(method: str, suffix: str = "") -> FaultPlan:
    """A plan whose script applies to requests of ``method`` whose path ends with ``suffix``."""

    def matches(m: str, target: str) -> bool:
        return m == method and target.split("?", 1)[0].endswith(suffix)

    return FaultPlan(matches=matches)


def scripted(plan: FaultPlan, *faults: Fault) -> FaultPlan:
    return FaultPlan(script=list(faults), matches=plan.matches, retry_after="0")


def attempts(proxy: FaultProxy, method: str, suffix: str = "") -> int:
    return sum(
        r.method == method and r.target.split("?", 1)[0].endswith(suffix) for r in proxy.records()
    )


@pytest.mark.parametrize("fault", [Fault.STATUS_503, Fault.STATUS_429, Fault.DROP, Fault.TRUNCATE])
async def test_a_read_is_retried_through_transient_faults(
    fault_proxy: FaultProxy, tmp_path: Path, fault: Fault
) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        fault_proxy.plan = scripted(only("GET", run.id), fault, fault)
        again = await client.get_run("p", run.id)
    assert again.record == run.record
    assert attempts(fault_proxy, "GET", run.id) == 3


async def test_a_create_whose_answer_was_lost_is_not_a_conflict(
    fault_proxy: FaultProxy, fault_server: ServerProcess, tmp_path: Path
) -> None:
    fault_proxy.plan = scripted(only("POST", "/runs"), Fault.RESET_AFTER_FORWARD)
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", id="once", spec=SPEC, labels=["a"])
        assert run.metadata.revision == 1
    assert fault_proxy.count("reset_after_forward") == 1
    assert attempts(fault_proxy, "POST", "/runs") == 2
    async with asyncrun.AsyncClient(fault_server.url, context=tmp_path) as direct:
        assert [r.id async for r in direct.list_runs("p")] == ["once"]


async def test_a_retried_create_still_refuses_someone_elses_run(
    fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        await client.new_run("p", "command+job", id="taken", spec={"command": ["echo", "other"]})
        fault_proxy.plan = scripted(only("POST", "/runs"), Fault.STATUS_503)
        with pytest.raises(asyncrun.AlreadyExists) as refused:
            await client.new_run("p", "command+job", id="taken", spec=SPEC)
    assert refused.value.attempts == 2


async def test_batched_creates_survive_a_lost_answer(
    fault_proxy: FaultProxy, fault_server: ServerProcess, tmp_path: Path
) -> None:
    fault_proxy.plan = scripted(only("POST", ":batchCreate"), Fault.RESET_AFTER_FORWARD)
    async with (
        asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client,
        anyio.create_task_group() as tasks,
    ):
        for i in range(60):
            tasks.start_soon(lambda i=i: client.new_run("p", "command+job", id=f"r{i}", spec=SPEC))
    assert fault_proxy.count("reset_after_forward") == 1
    async with asyncrun.AsyncClient(fault_server.url, context=tmp_path) as direct:
        assert sorted([r.id async for r in direct.list_runs("p")]) == sorted(
            f"r{i}" for i in range(60)
        )


async def test_an_update_whose_answer_was_lost_is_applied_once(
    fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        run.record.metadata.description = "changed"
        fault_proxy.plan = scripted(only("PUT", run.id), Fault.RESET_AFTER_FORWARD)
        await run.save(update=True)
        assert run.metadata.revision == 2
        assert (await client.get_run("p", run.id)).metadata.description == "changed"
    assert attempts(fault_proxy, "PUT", run.id) == 2


async def test_a_delete_whose_answer_was_lost_succeeds(
    fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        fault_proxy.plan = scripted(only("DELETE", run.id), Fault.RESET_AFTER_FORWARD)
        await run.delete()
        with pytest.raises(asyncrun.NotFound):
            await client.get_run("p", run.id)


async def test_an_action_is_not_sent_twice(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        fault_proxy.plan = scripted(only("POST", "/run"), Fault.RESET_AFTER_FORWARD)
        with pytest.raises(asyncrun.TransportError) as lost:
            await run.run()
        assert lost.value.attempts == 1
        assert attempts(fault_proxy, "POST", "/run") == 1
        # The server did start it: the user finds out by reading the run, not by a retry.
        await run.wait(log_info=False)
        assert run.status.state is asyncrun.State.COMPLETED


async def test_an_action_that_never_left_is_sent_again(
    fault_server: ServerProcess, tmp_path: Path
) -> None:
    # Straight to the server: through a proxy a refused connection looks like a reset one.
    async with asyncrun.AsyncClient(fault_server.url, context=tmp_path) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        fault_server.stop()  # connections are refused: nothing can be sent
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run.run)
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(fault_server.start)
        assert run.status.state is not asyncrun.State.CREATED
        await run.wait(log_info=False)
        assert run.status.state is asyncrun.State.COMPLETED


async def test_retries_stop_at_the_timeout_with_a_typed_error(
    fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(fault_proxy.url, context=tmp_path, timeout=1.0) as client:
        run = await client.new_run("p", "command+job", spec=SPEC)
        fault_proxy.plan = FaultPlan(rates={Fault.STATUS_503: 1.0}, matches=only("GET").matches)
        with pytest.raises(asyncrun.ServerError) as failed:
            await client.get_run("p", run.id)
    assert failed.value.attempts >= 3


async def test_a_long_wait_survives_a_server_crash_and_restart(
    fault_server: ServerProcess, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(fault_server.url, context=tmp_path) as client:
        runs = [
            await client.new_run("p", "python+job", spec=job_spec("count", n=20, delay=0.1))
            for _ in range(5)
        ]
        for run in runs:
            await run.run()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for run in runs:
                    tasks.start_soon(functools.partial(run.wait, log_info=False))
                await anyio.sleep(0.3)
                await anyio.to_thread.run_sync(functools.partial(fault_server.stop, kill=True))
                await anyio.sleep(0.5)  # waits see connection errors and back off meanwhile
                await anyio.to_thread.run_sync(fault_server.start)
    assert {run.status.state for run in runs} == {asyncrun.State.COMPLETED}
