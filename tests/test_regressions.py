"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import anyio
import httpx
import pytest
from conftest import ServerProcess, job_spec

import asyncrun

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("handler", ["huge", "deep"])
async def test_a_result_a_record_cannot_carry_is_an_error_and_other_jobs_go_on(
    client: asyncrun.AsyncClient, project: str, handler: str
) -> None:
    sleeper = await client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
    await sleeper.run()
    bad = await client.new_run(project, "python+job", spec=job_spec(handler))
    await bad.run()
    await bad.wait(timeout=60)
    assert bad.status.state is asyncrun.State.ERROR
    assert "cannot" in (bad.status.message or "")
    await bad.refresh()  # the run stays readable
    assert (await sleeper.refresh()).status.state is asyncrun.State.RUNNING  # agent still alive
    await sleeper.stop()
    await sleeper.wait(timeout=15)
    assert sleeper.status.state is asyncrun.State.STOPPED


async def test_waits_added_while_a_watch_is_in_flight(
    client: asyncrun.AsyncClient, project: str
) -> None:
    runs = [
        await client.new_run(project, "command+job", spec={"command": ["sleep", "0.3"]})
        for _ in range(10)
    ]
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for run in runs:
                await run.run()
                tg.start_soon(run.wait)
                await anyio.sleep(0.01)  # each new wait lands while a long-poll is held
    assert {r.status.state for r in runs} == {asyncrun.State.COMPLETED}


async def test_closing_the_client_wakes_pending_waits(
    backend: dict[str, object], project: str
) -> None:
    errors: list[BaseException] = []
    async with asyncrun.AsyncClient(**backend) as client:  # type: ignore[arg-type]
        run = await client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
        await run.run()

        async def waiter() -> None:
            try:
                await run.wait()
            except RuntimeError as exc:
                errors.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.2)
                await client.aclose()
        async with asyncrun.AsyncClient(**backend) as other:  # type: ignore[arg-type]
            again = await other.get_run(project, run.id)
            await again.stop()
            await again.wait(timeout=15)
    assert len(errors) == 1
    assert "closed" in str(errors[0])


@pytest.mark.parametrize("metrics", [{"loss": "x"}, {"loss": True}, {"": 1.0}, {"x": 2**63}])
def test_bad_metrics_in_a_created_record_are_refused(
    server: ServerProcess, project: str, metrics: dict[str, object]
) -> None:
    body = {"kind": "k", "id": "r1", "project": project, "metadata": {"project": project}}
    body["status"] = {"metrics": metrics}
    content = httpx.Request("POST", "http://x", json=body).content
    response = httpx.post(
        f"{server.url}/api/v1/projects/{project}/runs",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "status.metrics" in response.json()["message"]
    missing = httpx.get(f"{server.url}/api/v1/projects/{project}/runs/r1")
    assert missing.status_code == 404
