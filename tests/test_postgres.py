"""Issue 15: a PostgreSQL store and several server replicas on it, on a real PostgreSQL.

The behavioural suite runs on PostgreSQL through the ``postgres`` backend (conftest); these
tests are what only replicas, a remote database and its faults can show. Each failed before
its part was built.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from _postgres import PASSWORD, Postgres, running_postgres
from conftest import ServerProcess, free_port, job_spec
from faults._proxy import FaultProxy

import asyncrun
from asyncrun.server._store._postgres import MIGRATIONS, SCHEMA, migrate, open_postgres
from asyncrun.server._store._sqlite import SCHEMA_VERSION
from asyncrun.server._store._sqlstore import Blocking

pytestmark = pytest.mark.anyio


class Replicas:
    """Two ``asyncrun server`` replicas on one database, behind one URL (a failover proxy)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.a = ServerProcess(url, "--jobs-dir", str(folder / "a-jobs"), log=folder / "a.log")
        self.b = ServerProcess(url, "--jobs-dir", str(folder / "b-jobs"), log=folder / "b.log")
        self.proxy = FaultProxy([self.a.port, self.b.port]).start()
        for replica in (self.a, self.b):
            # Jobs reach the service through the public URL, not the replica that started them.
            replica.extra = (*replica.extra, "--public-url", self.proxy.url)

    def start(self) -> None:
        self.a.start()
        self.b.start()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()
        self.proxy.stop()


@pytest.fixture
def replicas(postgres: Postgres, tmp_path: Path) -> Iterator[Replicas]:
    pair = Replicas(postgres.create_database(), tmp_path)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


async def test_a_wait_on_one_replica_wakes_when_another_changes_the_run(
    replicas: Replicas, tmp_path: Path
) -> None:
    async with (
        asyncrun.AsyncClient(endpoint=replicas.a.url, context=tmp_path) as on_a,
        asyncrun.AsyncClient(endpoint=replicas.b.url, context=tmp_path) as on_b,
    ):
        # Created and started on A, waited for on B.
        run = await on_a.new_run("p", "python+job", spec=job_spec("metrics", n=20))
        await run.run()
        seen = await on_b.get_run("p", run.id)
        with anyio.fail_after(60):
            await seen.wait()
        assert seen.status.state is asyncrun.State.COMPLETED, seen.status.message
        assert seen.metrics["step"] == list(range(20))
        # Lines written through A's agent, followed on B as they come.
        talker = await on_a.new_run("p", "python+job", spec=job_spec("count", n=200, delay=0.005))
        await talker.run()
        followed = await on_b.get_run("p", talker.id)
        with anyio.fail_after(60):
            lines = [(line.offset, line.text) async for line in followed.logs(follow=True)]
        assert lines == [(i, f"line {i}") for i in range(200)]
        # Started on B, stopped on A, the stop seen by a wait on B.
        long = await on_b.new_run("p", "python+job", spec=job_spec("count", n=6000, delay=0.01))
        await long.run()
        with anyio.fail_after(30):
            while (await on_a.get_run("p", long.id)).status.state is not asyncrun.State.RUNNING:
                await anyio.sleep(0.05)
        await (await on_a.get_run("p", long.id)).stop()
        with anyio.fail_after(30):
            await long.wait()
        assert long.status.state is asyncrun.State.STOPPED
        # Metrics from both replicas, each exactly once.
        record = await on_a.new_run("p", "test+record")
        from_b = await on_b.get_run("p", record.id)
        for i in range(100):
            record.log_metric("a", i)
            from_b.log_metric("b", i)
        await record.flush()
        await from_b.flush()
        await record.refresh()
        assert record.metrics == {"a": list(range(100)), "b": list(range(100))}


async def test_revisions_and_metric_batches_hold_across_replicas(
    replicas: Replicas, tmp_path: Path
) -> None:
    async with (
        asyncrun.AsyncClient(endpoint=replicas.a.url, context=tmp_path) as on_a,
        asyncrun.AsyncClient(endpoint=replicas.b.url, context=tmp_path) as on_b,
    ):
        run = await on_a.new_run("p", "test+record")
        first = await on_a.get_run("p", run.id)
        second = await on_b.get_run("p", run.id)
        first.metadata.labels = ["from A"]
        await first.save(update=True)
        second.metadata.labels = ["from B"]
        with pytest.raises(asyncrun.RevisionConflict):
            await second.save(update=True)  # B saw the revision before A's write
    # The same batch (writer, seq) sent to A, then retried on B: applied once.
    batch = {"writer": "w", "seq": 1, "ops": [["v", 1, 1.0]]}  # mode 1: append
    path = f"/api/v1/projects/p/runs/{run.id}/status"
    async with httpx.AsyncClient() as http:
        on_a_answer = await http.patch(replicas.a.url + path, json=batch)
        on_b_answer = await http.patch(replicas.b.url + path, json=batch)
        gap = await http.patch(replicas.b.url + path, json={**batch, "seq": 3})
        record = await http.get(f"{replicas.b.url}/api/v1/projects/p/runs/{run.id}")
    assert on_a_answer.json()["applied"] is True
    assert on_b_answer.json()["applied"] is False
    assert gap.status_code == 409
    assert gap.json()["code"] == "sequence_gap"
    assert record.json()["status"]["metrics"] == {"v": [1.0]}
    assert record.json()["metadata"]["labels"] == ["from A"]


async def test_a_replica_killed_mid_flush_loses_nothing_acknowledged(
    replicas: Replicas, tmp_path: Path
) -> None:
    n, per_flush, kill_at = 4000, 200, 1500
    async with asyncrun.AsyncClient(endpoint=replicas.proxy.url, context=tmp_path) as client:
        run = await client.new_run("p", "test+record")
        for i in range(n):
            run.log_metric("v", i)
            if i % per_flush == per_flush - 1:
                await run.flush()
            if i == kill_at:
                # A dies with a batch in flight (logged, not flushed yet); the proxy sends the
                # client's reconnection to B, and the retry is applied there exactly once.
                replicas.a.stop(kill=True)
        await run.flush()
        await run.refresh()
        assert run.metrics["v"] == list(range(n))
    assert replicas.proxy.count("upstream_refused") + replicas.proxy.count("upstream_lost") >= 0


async def test_a_dead_replicas_runs_are_taken_over_and_end_lost(
    replicas: Replicas, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(endpoint=replicas.b.url, context=tmp_path) as on_b:
        run = await on_b.new_run("p", "python+job", spec=job_spec("count", n=12000, delay=0.01))
        async with asyncrun.AsyncClient(endpoint=replicas.a.url, context=tmp_path) as on_a:
            await (await on_a.get_run("p", run.id)).run()
        with anyio.fail_after(30):
            while (await on_b.get_run("p", run.id)).status.state is not asyncrun.State.RUNNING:
                await anyio.sleep(0.05)
        agents = await anyio.to_thread.run_sync(agents_of, replicas.a)
        assert agents, "replica A's agent runs the job"
        # Replica A dies whole: its server and its agent (and so the job, by PDEATHSIG). B's
        # agent takes the execution over once A's heartbeat is stale.
        replicas.a.stop(kill=True)
        for pid in agents:
            os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(60):
            await run.wait()
        assert run.status.state is asyncrun.State.ERROR
        assert "lost" in (run.status.message or "")


def agents_of(replica: ServerProcess) -> list[int]:
    """Pids of the agents a replica started (they carry its jobs folder in their command)."""
    jobs = replica.extra[replica.extra.index("--jobs-dir") + 1]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"asyncrun.server._agent" in cmdline and jobs.encode() in b" ".join(cmdline):
            found.append(int(entry.name))
    return found


def command_lines() -> list[str]:
    """Every process's command line: what any local user can read."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue  # it ended meanwhile
    return found


def test_replicas_starting_at_once_migrate_the_schema_once(postgres: Postgres) -> None:
    url = postgres.create_database()
    versions: list[int] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            versions.append(migrate(url))
        except BaseException as exc:  # a failed migration fails the test with its error
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions == [SCHEMA_VERSION] * 4
    tables = postgres.psql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        url.rsplit("/", 1)[1],
    )
    steps = [*SCHEMA, *(step for steps in MIGRATIONS.values() for step in steps)]
    created = sum(statement.lstrip().startswith("CREATE TABLE") for statement in steps)
    assert int(tables) == created + 1  # and schema_version


def test_an_unreachable_database_is_a_one_line_error_without_the_password() -> None:
    port = free_port()
    url = f"postgresql://asyncrun:{PASSWORD}@127.0.0.1:{port}/nowhere"
    done = subprocess.run(
        [sys.executable, "-m", "asyncrun", "server", "--port", str(free_port()), "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"postgresql://asyncrun:***@127.0.0.1:{port}/nowhere" in lines[0]
    assert PASSWORD not in done.stderr + done.stdout


async def test_the_password_never_shows(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.create_database()
    server = ServerProcess(
        url, "--jobs-dir", str(tmp_path / "jobs"), log=tmp_path / "s.log", log_level="debug"
    )
    server.start()
    try:
        async with asyncrun.AsyncClient(endpoint=server.url, context=tmp_path) as client:
            run = await client.new_run("p", "command+job", spec={"command": ["env"]})
            await run.run()
            with anyio.fail_after(60):
                await run.wait()
            assert run.status.state is asyncrun.State.COMPLETED, run.status.message
            job_environment = "\n".join([line.text async for line in run.logs()])
            assert "ASYNCRUN_TOKEN" in job_environment
        async with httpx.AsyncClient(base_url=server.url) as http:
            bodies = [
                (await http.get("/openapi.json")).text,
                (await http.get("/api/v1/projects/p/runs/nope")).text,
                (await http.get("/healthz")).text,
            ]
        assert server.proc is not None
        cmdlines = await anyio.to_thread.run_sync(command_lines)
        holders = [server.proc.pid, *await anyio.to_thread.run_sync(agents_of, server)]
        assert len(holders) == 2, "the server and its agent hold the URL"
        if os.geteuid() == 0:  # another local user: their environment is not theirs to read
            for pid in holders:
                read = await anyio.run_process(
                    ["runuser", "-u", "nobody", "--", "cat", f"/proc/{pid}/environ"], check=False
                )
                assert read.returncode != 0
                assert PASSWORD.encode() not in read.stdout
    finally:
        server.stop()
    shown = [server.log.read_text(), job_environment, *bodies, *cmdlines]
    assert [text[:300] for text in shown if PASSWORD in text] == []
    assert PASSWORD in url  # the test would prove nothing otherwise


async def test_a_postgresql_restart_mid_flush_loses_nothing_and_answers_503_meanwhile(
    tmp_path: Path,
) -> None:
    with running_postgres() as pg:
        server = ServerProcess(
            pg.create_database(), "--jobs-dir", str(tmp_path / "jobs"), log=tmp_path / "s.log"
        )
        server.start()
        try:
            async with asyncrun.AsyncClient(endpoint=server.url, context=tmp_path) as client:
                run = await client.new_run("p", "test+record")
                for i in range(1000):
                    run.log_metric("v", i)
                await run.flush()
                # A job running through the outage: its agent outlives it, and so does the job.
                job = await client.new_run(
                    "p", "python+job", spec=job_spec("count", n=400, delay=0.01)
                )
                await job.run()
                with anyio.fail_after(30):
                    while not [line async for line in job.logs()]:
                        await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(pg.stop, "fast")
                for i in range(1000, 2000):
                    run.log_metric("v", i)
                async with httpx.AsyncClient(base_url=server.url) as http:
                    down = await http.get(f"/api/v1/projects/p/runs/{run.id}")
                assert down.status_code == 503, down.text
                assert down.json()["code"] == "store_unavailable"
                assert int(down.headers["retry-after"]) >= 1
                assert PASSWORD not in down.text

                async def restart() -> None:
                    await anyio.sleep(2)
                    await anyio.to_thread.run_sync(pg.start)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(restart)
                    with anyio.fail_after(90):
                        await run.flush()  # retried across the outage
                await run.refresh()
                assert run.metrics["v"] == list(range(2000))
                with anyio.fail_after(60):
                    await job.wait()
                assert job.status.state is asyncrun.State.COMPLETED, job.status.message
                lines = [line.text async for line in job.logs()]
                assert lines == [f"line {i}" for i in range(400)]
        finally:
            server.stop()


def test_the_agent_calls_postgresql_through_a_portal(postgres: Postgres) -> None:
    store = open_postgres(postgres.create_database())
    call = Blocking(store)
    try:
        assert call(store.current_seq) == 0
        assert call(store.open_executions) == []
    finally:
        call.close()
