"""Reading logs: pages and streamed batches bounded by bytes (issue 12 item 10), tails and the
end offset (issue 13 item 4). Each test failed on the code before its fix."""

from __future__ import annotations

import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

import asyncrun
from asyncrun import _serde
from asyncrun._core import logs
from asyncrun._core.protocol import runs_path

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
        page = service.store.read_logs("p", run.id, 0, 10_000)
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
