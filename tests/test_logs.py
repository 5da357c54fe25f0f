"""Reading logs: pages and streamed batches bounded by bytes (issue 12 item 10), tails and the
end offset (issue 13 item 4). Each test failed on the code before its fix."""

from __future__ import annotations

import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _stores import SyncStore
from test_cli import Cli, backend_env

import asyncrun
from asyncrun import _serde
from asyncrun._core import logs
from asyncrun._core.protocol import runs_path
from asyncrun.server._service import RunService

pytestmark = pytest.mark.anyio

# 42 lines of 60 KB of UTF-8 each: ASCII, three-byte characters, and control characters that
# JSON escapes six-fold (180 KB a line on the wire): about 4 MB of JSON in all.
LONG = 42
_PIECES = ("x" * 60_000, "\u20ac" * 20_000, "\x01" * 30_000)
LONG_SCRIPT = (
    f"pieces = {_PIECES[0][:1]!r} * 60000, {_PIECES[1][:1]!r} * 20000, {_PIECES[2][:1]!r} * 30000\n"
    f"for i in range({LONG}):\n"
    "    print(str(i), pieces[i % 3])\n"
)


def long_text(i: int) -> str:
    return f"{i} {_PIECES[i % 3]}"


async def long_run(client: asyncrun.AsyncClient, project: str) -> asyncrun.AsyncRun:
    run = await client.new_run(
        project, "command+job", spec={"command": [sys.executable, "-c", LONG_SCRIPT]}
    )
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.COMPLETED, run.status.message
    return run


def json_size(lines: list[asyncrun.LogLine]) -> int:
    return sum(len(_serde.dumps(_serde.log_line_to_dict(line))) + 1 for line in lines)


# -- issue 12 item 10: every log response is bounded by bytes --------------------------------


async def test_a_log_page_over_http_is_bounded_by_bytes_and_paging_reads_every_line_once(
    server: Any, project: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(server.url, context=tmp_path) as client:
        run = await long_run(client, project)
    path = server.url + runs_path(project, run.id, "logs")
    seen: list[int] = []
    offset = 0
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(LONG + 1):
            response = await http.get(path, params={"offset": offset, "limit": 10_000})
            assert response.status_code == 200
            assert len(response.content) <= logs.MAX_PAGE_BYTES
            page = response.json()
            if not page["lines"]:
                break
            assert len(page["lines"]) < LONG  # cut by bytes, not by the limit of lines
            for line in page["lines"]:
                assert line["text"] == long_text(line["offset"])
                seen.append(line["offset"])
            offset = page["next_offset"]
    assert seen == list(range(LONG))


async def test_pages_and_followed_batches_of_the_store_are_bounded_by_bytes(
    tmp_path: Path,
) -> None:
    async with asyncrun.AsyncClient(home=tmp_path / "home", context=tmp_path) as client:
        run = await long_run(client, "p")
        service = client._transport._service  # type: ignore[attr-defined]
        page = await service.store.read_logs("p", run.id, 0, 10_000)
        assert 1 < len(page) < LONG
        assert json_size(page) <= logs.PAGE_BUDGET
        batches = []
        async with aclosing(service.follow_logs("p", run.id, 0)) as stream:
            async for batch in stream:
                batches.append(batch)
    assert len(batches) > 2
    for batch in batches:
        assert json_size(batch) <= logs.PAGE_BUDGET
    offsets = [line.offset for batch in batches for line in batch]
    assert offsets == list(range(LONG))


async def test_long_lines_are_read_whole_and_once_by_both_facades(
    client: asyncrun.AsyncClient, sync_client: asyncrun.Client, project: str
) -> None:
    run = await long_run(client, project)
    expected = [long_text(i) for i in range(LONG)]
    assert [line.text async for line in run.logs()] == expected
    assert [line.text async for line in run.logs(follow=True)] == expected
    same = sync_client.get_run(project, run.id)
    assert [line.text for line in same.logs()] == expected


# -- issue 13 item 4: tails, limits and the end offset ----------------------------------------


async def counted_run(client: asyncrun.AsyncClient, project: str, n: int) -> asyncrun.AsyncRun:
    spec = {
        "command": ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); done"]
    }
    run = await client.new_run(project, "command+job", spec=spec)
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.COMPLETED, run.status.message
    return run


def texts(lines: list[asyncrun.LogLine]) -> list[str]:
    return [line.text for line in lines]


async def test_tail_and_limit_read_exactly_the_lines_asked_on_both_facades(
    client: asyncrun.AsyncClient, sync_client: asyncrun.Client, project: str
) -> None:
    n = 300
    run = await counted_run(client, project, n)

    async def read(**kwargs: Any) -> list[str]:
        return texts([line async for line in run.logs(**kwargs)])

    assert await read(tail=10) == [f"line {i}" for i in range(n - 10, n)]
    assert await read(tail=0) == []
    assert await read(tail=n + 50) == [f"line {i}" for i in range(n)]
    assert await read(limit=5) == [f"line {i}" for i in range(5)]
    assert await read(limit=0) == []
    assert await read(offset=100, limit=3) == ["line 100", "line 101", "line 102"]
    assert await read(tail=10, limit=3) == [f"line {i}" for i in range(n - 10, n - 7)]
    assert await read(tail=4, follow=True) == [f"line {i}" for i in range(n - 4, n)]
    assert await read(follow=True, limit=2) == ["line 0", "line 1"]
    assert await run.log_end() == n

    same = sync_client.get_run(project, run.id)
    assert texts(list(same.logs(tail=3))) == ["line 297", "line 298", "line 299"]
    assert texts(list(same.logs(offset=7, limit=2))) == ["line 7", "line 8"]
    assert texts(list(same.logs(tail=2, follow=True))) == ["line 298", "line 299"]
    assert same.log_end() == n

    for bad in ({"tail": 3, "offset": 2}, {"tail": -1}, {"limit": -1}, {"tail": True}):
        with pytest.raises(asyncrun.ValidationError) as refused:
            run.logs(**bad)  # refused at the call, not once iterated
        assert refused.value.detail["field"] in bad
        with pytest.raises(asyncrun.ValidationError):
            same.logs(**bad)
    with pytest.raises(asyncrun.ValidationError, match="pass offset or tail, not both"):
        run.logs(tail=1, offset=1)


async def test_the_end_offset_of_a_run_without_lines_is_zero(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec={"command": ["true"]})
    assert await run.log_end() == 0
    assert [line async for line in run.logs(tail=5)] == []


async def test_a_tail_longer_than_a_page_of_bytes_reads_every_line_once(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await long_run(client, project)
    lines = [line async for line in run.logs(tail=LONG - 1)]
    assert [line.offset for line in lines] == list(range(1, LONG))
    assert texts(lines) == [long_text(i) for i in range(1, LONG)]


async def test_tail_then_follow_starts_at_the_tail_and_streams_what_follows(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = (
        "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done; "
        f"while [ ! -e {go} ]; do sleep 0.02; done; "
        "while [ $i -lt 105 ]; do echo line $i; i=$((i+1)); done"
    )
    run = await client.new_run(project, "command+job", spec={"command": ["sh", "-c", script]})
    await run.run()
    with anyio.fail_after(60):
        while await run.log_end() < 100:
            await anyio.sleep(0.02)
    seen = []
    async with aclosing(run.logs(tail=10, follow=True)) as lines:
        async for line in lines:
            seen.append(line.offset)
            if line.offset == 99:
                go.touch()  # the rest is written only once the tail was delivered
    assert seen == list(range(90, 105))


async def test_tail_and_end_offset_over_http(server: Any, project: str, tmp_path: Path) -> None:
    async with asyncrun.AsyncClient(server.url, context=tmp_path) as client:
        run = await counted_run(client, project, 50)
    path = server.url + runs_path(project, run.id, "logs")
    async with httpx.AsyncClient(timeout=60) as http:
        page = (await http.get(path, params={"tail": 3})).json()
        assert [line["text"] for line in page["lines"]] == ["line 47", "line 48", "line 49"]
        assert (page["next_offset"], page["end_offset"]) == (50, 50)
        assert (await http.get(path, params={"tail": 0})).json() == {
            "lines": [],
            "next_offset": 50,
            "end_offset": 50,
        }
        page = (await http.get(path, params={"offset": 10, "limit": 2})).json()
        assert [line["offset"] for line in page["lines"]] == [10, 11]
        assert (page["next_offset"], page["end_offset"]) == (12, 50)
        page = (await http.get(path, params={"tail": 30, "limit": 2})).json()
        assert [line["offset"] for line in page["lines"]] == [20, 21]
        refused = await http.get(path, params={"tail": 3, "offset": 4})
        assert refused.status_code == 422
        assert refused.json()["detail"] == {"field": "tail"}
        assert "offset or tail" in refused.json()["message"]
        for bad in ("-1", "x"):
            refused = await http.get(path, params={"tail": bad})
            assert refused.status_code == 422
            assert refused.json()["detail"] == {"field": "tail"}
        streamed = await http.get(path, params={"tail": 2, "follow": "true"})
        assert streamed.status_code == 200
        lines = [line for line in streamed.content.split(b"\n") if line.strip()]
        assert [_serde.loads(line).get("text") for line in lines] == ["line 48", "line 49", None]
        assert _serde.loads(lines[-1]) == {"end": True}


def test_the_tail_parameter_is_documented() -> None:
    from asyncrun.server._openapi import openapi_document

    operation = openapi_document()["paths"]["/api/v1/projects/{project}/runs/{id}/logs"]["get"]
    names = {param["name"] for param in operation["parameters"]}
    assert {"offset", "limit", "tail", "follow"} <= names
    page = openapi_document()["components"]["schemas"]["LogPage"]
    assert "end_offset" in page["required"]


@pytest.fixture(params=["embedded", "http"])
def cli(request: pytest.FixtureRequest) -> Cli:
    return Cli(request.param, backend_env(request, request.param))


def test_cli_logs_tail_prints_the_last_lines_and_follows_from_there(cli: Cli) -> None:
    run_id = cli.ok("run", "command+job", "--", "sh", "-c", "seq 1 20").strip()
    cli.ok("wait", run_id)
    assert cli.ok("logs", "--tail", "3", run_id) == "18\n19\n20\n"
    assert cli.ok("logs", "-f", "--tail", "2", run_id) == "19\n20\n"
    assert cli.ok("logs", "--tail", "0", run_id) == ""
    refused = cli("logs", "--tail", "2", "--offset", "3", run_id)
    assert refused.returncode != 0
    assert "offset or tail" in refused.stderr


# -- the cost of a tail does not grow with the log -------------------------------------------


def vm_steps(store: SyncStore) -> list[int]:
    """A counter of the SQLite virtual machine's steps on the store's connection."""
    counter = [0]

    def step() -> int:
        counter[0] += 1
        return 0

    store._db.set_progress_handler(step, 1)
    return counter


async def test_a_tail_costs_the_same_whatever_the_length_of_the_log(tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "runs.sqlite3")
    service = RunService(store.store)
    steps = {}
    for n in (1_000, 50_000):
        id_ = f"r{n}"
        record = {
            "kind": "command+job",
            "id": id_,
            "project": "p",
            "metadata": {"project": "p"},
            "spec": {"command": ["true"]},
        }
        await service.create("p", record)
        store._db.executemany(
            "INSERT INTO logs VALUES ('p', ?, ?, 'stdout', 0, ?)",
            [(id_, i, f"line {i:06}") for i in range(n)],
        )
        counter = vm_steps(store)
        page = await service.read_logs("p", id_, 0, 100, tail=10)
        store._db.set_progress_handler(None, 1)
        assert [line.offset for line in page.lines] == list(range(n - 10, n))
        assert page.end_offset == n
        steps[n] = counter[0]
    assert steps[50_000] == steps[1_000], steps
    store.close()


async def test_a_tail_of_a_trimmed_log_starts_at_its_oldest_kept_line(tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "runs.sqlite3")
    service = RunService(store.store)
    record = {"kind": "command+job", "id": "r", "project": "p", "metadata": {"project": "p"}}
    await service.create("p", {**record, "spec": {"command": ["true"]}})
    # What --max-log-lines leaves: the oldest lines dropped, offsets never reused.
    store._db.executemany(
        "INSERT INTO logs VALUES ('p', 'r', ?, 'stdout', 0, ?)",
        [(i, f"line {i}") for i in range(500, 1000)],
    )
    page = await service.read_logs("p", "r", 0, 10_000, tail=600)
    assert [line.offset for line in page.lines] == list(range(500, 1000))
    page = await service.read_logs("p", "r", 0, 3, tail=2)
    assert ([line.offset for line in page.lines], page.next_offset) == ([998, 999], 1000)
    page = await service.read_logs("p", "r", 100, 3)
    assert [line.offset for line in page.lines] == [500, 501, 502]
    assert await service.tail_offset("p", "r", 10_000) == 500
    store.close()
