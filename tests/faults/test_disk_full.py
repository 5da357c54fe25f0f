"""A full disk, for real: the server's database lives on a tiny tmpfs that a filler fills up.

What the user sees: writes fail with :class:`asyncrun.StorageFull` (HTTP 507) naming the cause,
reads keep working, buffered metrics stay buffered; once space is freed everything resumes
and nothing that was acknowledged before is lost.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import ServerProcess, job_spec

import asyncrun

pytestmark = pytest.mark.anyio

SPEC = {"command": ["true"]}


@contextlib.contextmanager
def tiny_disk(where: Path, size: str = "4m") -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses more."""
    filler = disk / "filler"
    for size in (65536, 512):  # big pieces, then the last few bytes too
        with pytest.raises(OSError, match="No space left") as full:
            _write_forever(filler, b"\0" * size)
        assert full.value.errno == errno.ENOSPC
    return filler


def _write_forever(path: Path, chunk: bytes) -> None:
    with path.open("ab") as out:
        while True:
            out.write(chunk)
            out.flush()


@pytest.fixture
def full_disk_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with tiny_disk(tmp_path / "disk") as disk:
        server = ServerProcess(disk / "runs.sqlite3")
        server.log = tmp_path / "server.log"  # the log must not be what fills the disk
        server.start()
        try:
            yield server
        finally:
            server.stop(kill=True)


async def test_a_full_disk_refuses_writes_keeps_reads_and_loses_nothing(
    full_disk_server: ServerProcess, tmp_path: Path
) -> None:
    server = full_disk_server
    async with asyncrun.AsyncClient(server.url, context=tmp_path, timeout=2) as client:
        kept = await client.new_run("disk", "command+job", id="kept", spec=SPEC)
        for i in range(1000):
            kept.log_metric("loss", i)
        await kept.flush()

        filler = fill(server.db.parent)
        big = {"command": ["true"], "payload": "x" * 200_000}
        with pytest.raises(asyncrun.StorageFull, match="is full") as refused:
            await client.new_run("disk", "command+job", id="big", spec=big)
        assert refused.value.status_code == 507
        assert (await client.get_run("disk", "kept")).metrics["loss"] == list(range(1000))
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200

        for i in range(1000, 50_000):
            kept.log_metric("loss", i)
        with pytest.raises(asyncrun.TransportError):
            await kept.flush(timeout=1)  # refused, kept in the client's buffer

        filler.unlink()
        await kept.flush(timeout=30)
        await kept.refresh()
        assert kept.metrics["loss"] == list(range(50_000))
        await client.new_run("disk", "command+job", id="big", spec=big)
    with sqlite3.connect(server.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "Traceback" not in server.log.read_text()


async def test_a_job_outlives_a_full_disk_and_its_output_waits(
    full_disk_server: ServerProcess, tmp_path: Path
) -> None:
    server = full_disk_server
    async with asyncrun.AsyncClient(server.url, context=tmp_path, timeout=2) as client:
        run = await client.new_run("disk", "python+job", spec=job_spec("count", n=40, delay=0.05))
        await run.run()
        with anyio.fail_after(30):
            while (await run.refresh()).status.state is not asyncrun.State.RUNNING:
                await anyio.sleep(0.02)
        filler = fill(server.db.parent)
        await anyio.sleep(1.0)  # the job goes on printing while nothing can be written
        filler.unlink()
        await run.wait(log_info=False, timeout=60)
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
        lines = [line.text async for line in run.logs()]
    assert lines == [f"line {i}" for i in range(40)]
