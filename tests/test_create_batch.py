"""Concurrent creates coalesce into ``runs:batchCreate`` requests, each run answered on its own."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import asyncrun
from asyncrun.client._transports._http import HTTPTransport
from tests.conftest import ServerProcess

pytestmark = pytest.mark.anyio

SPEC = {"command": ["true"]}


class Counting(httpx.AsyncBaseTransport):
    """Counts requests by path on their way to the real server."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def counted_client(server: ServerProcess, tmp_path: Path) -> tuple[asyncrun.AsyncClient, Counting]:
    counting = Counting()
    transport = HTTPTransport(server.url, transport=counting)
    client = asyncrun.AsyncClient(server.url, transport=transport, context=tmp_path / "ctx")
    return client, counting


async def create_all(
    client: asyncrun.AsyncClient, project: str, ids: list[str], spec: Any = SPEC
) -> dict[str, asyncrun.AsyncRun | BaseException]:
    results: dict[str, asyncrun.AsyncRun | BaseException] = {}

    async def one(index: int, id_: str) -> None:
        try:
            results[f"{index}:{id_}"] = await client.new_run(
                project, "command+job", id=id_, spec=spec
            )
        except asyncrun.AsyncRunError as exc:
            results[f"{index}:{id_}"] = exc

    async with anyio.create_task_group() as tasks:
        for index, id_ in enumerate(ids):
            tasks.start_soon(one, index, id_)
    return results


async def test_concurrent_creates_all_land(client: asyncrun.AsyncClient, project: str) -> None:
    ids = [f"r{i}" for i in range(300)]
    results = await create_all(client, project, ids)
    assert all(isinstance(r, asyncrun.AsyncRun) for r in results.values()), results
    stored = {run.id async for run in client.list_runs(project, page_size=1000)}
    assert stored == set(ids)
    run = await client.get_run(project, "r7")
    assert run.status.state is asyncrun.State.CREATED
    assert run.metadata.revision == 1


async def test_concurrent_creates_use_few_requests(
    server: ServerProcess, project: str, tmp_path: Path
) -> None:
    client, counting = counted_client(server, tmp_path)
    async with client:
        results = await create_all(client, project, [f"r{i}" for i in range(300)])
    assert all(isinstance(r, asyncrun.AsyncRun) for r in results.values())
    batches = [p for p in counting.paths if p.endswith("runs:batchCreate")]
    singles = [p for p in counting.paths if p.endswith("/runs")]
    assert batches, counting.paths
    # Two creates go out alone (nothing was in flight); the others ride in batches of <= 500.
    assert len(singles) + len(batches) <= 10, counting.paths


async def test_a_lone_create_is_one_plain_request(
    server: ServerProcess, project: str, tmp_path: Path
) -> None:
    client, counting = counted_client(server, tmp_path)
    async with client:
        await client.new_run(project, "command+job", spec=SPEC)
    assert [p.rsplit("/", 1)[-1] for p in counting.paths] == ["runs"]


async def test_each_run_of_a_batch_gets_its_own_answer(
    client: asyncrun.AsyncClient, project: str
) -> None:
    await client.new_run(project, "command+job", id="taken", spec=SPEC)
    ids = [f"ok{i}" for i in range(50)] + ["taken", "twice", "twice"]
    results = await create_all(client, project, ids)
    assert isinstance(results["50:taken"], asyncrun.AlreadyExists)
    assert "already exists" in str(results["50:taken"])
    twice = [results["51:twice"], results["52:twice"]]
    assert sorted(type(r).__name__ for r in twice) == ["AlreadyExists", "AsyncRun"]
    assert all(isinstance(results[f"{i}:ok{i}"], asyncrun.AsyncRun) for i in range(50))
    stored = {run.id async for run in client.list_runs(project, page_size=1000)}
    assert stored == {f"ok{i}" for i in range(50)} | {"taken", "twice"}


async def test_an_invalid_spec_fails_only_its_own_run(
    client: asyncrun.AsyncClient, project: str
) -> None:
    results = await create_all(client, project, [f"bad{i}" for i in range(20)], spec={})
    assert all(isinstance(r, asyncrun.ValidationError) for r in results.values()), results
    assert "command" in str(next(iter(results.values())))
    assert [run async for run in client.list_runs(project)] == []


async def test_a_client_not_entered_creates_one_by_one(
    backend: dict[str, Any], project: str, tmp_path: Path
) -> None:
    client = asyncrun.AsyncClient(**backend, context=tmp_path / "ctx")
    try:
        results = await create_all(client, project, [f"r{i}" for i in range(30)])
    finally:
        await client.aclose()
    assert all(isinstance(r, asyncrun.AsyncRun) for r in results.values())


async def test_a_cancelled_queued_create_is_never_sent(
    server: ServerProcess, project: str, tmp_path: Path
) -> None:
    client, counting = counted_client(server, tmp_path)
    async with client:
        async with anyio.create_task_group() as tasks:
            for i in range(2):  # these two occupy both slots of the project
                tasks.start_soon(
                    functools.partial(
                        client.new_run, project, "command+job", spec=SPEC, id=f"busy{i}"
                    )
                )
            for _ in range(100):  # until both have started (the order differs per backend)
                await anyio.lowlevel.checkpoint()
                state = client._creates._projects.get(project)
                if state is not None and state.in_flight == 2:
                    break
            assert client._creates._projects[project].in_flight == 2  # so the next one queues
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.new_run(project, "command+job", id="cancelled", spec=SPEC)
        with pytest.raises(asyncrun.NotFound):
            await client.get_run(project, "cancelled")
    assert not any(p.endswith("runs:batchCreate") for p in counting.paths)


def test_sync_client_threads_share_batches(
    backend: dict[str, Any], project: str, tmp_path: Path
) -> None:
    with asyncrun.Client(**backend, context=tmp_path / "ctx") as client:
        with ThreadPoolExecutor(16) as pool:
            runs = list(
                pool.map(
                    lambda i: client.new_run(project, "command+job", id=f"t{i}", spec=SPEC),
                    range(100),
                )
            )
        assert sorted(run.id for run in runs) == sorted(f"t{i}" for i in range(100))
        assert sum(1 for _ in client.list_runs(project, page_size=1000)) == 100


@pytest.mark.parametrize(
    "body",
    [[], {"runs": []}, {"runs": {}}, {"runs": [{}] * 1001}, {"items": []}, "runs"],
    ids=["list", "empty", "not-a-list", "too-many", "wrong-key", "string"],
)
def test_batch_create_refuses_a_bad_envelope(
    server: ServerProcess, project: str, body: Any
) -> None:
    url = f"{server.url}/api/v1/projects/{project}/runs:batchCreate"
    response = httpx.post(url, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "1 to 1000" in response.json()["message"]
    assert httpx.get(f"{server.url}/api/v1/projects/{project}/runs").json()["items"] == []


def test_batch_create_answers_each_record(server: ServerProcess, project: str) -> None:
    good = {"kind": "command+job", "id": "good", "project": project, "spec": SPEC,
            "metadata": {"project": project}}  # fmt: skip
    runs = [good, {**good, "id": "other-project", "project": "elsewhere"}, {"kind": 3}, good]
    url = f"{server.url}/api/v1/projects/{project}/runs:batchCreate"
    response = httpx.post(url, json={"runs": runs})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["run"]["id"] == "good"
    assert results[0]["run"]["status"]["state"] == "CREATED"
    assert [r["error"]["status"] for r in results[1:]] == [422, 422, 409]
    assert [r["error"]["code"] for r in results[1:]] == [
        "validation_error",
        "validation_error",
        "already_exists",
    ]
    items = httpx.get(f"{server.url}/api/v1/projects/{project}/runs").json()["items"]
    assert [item["id"] for item in items] == ["good"]
