"""Lifecycle against a real ``asyncrun server`` that is crashed, restarted and configured.

Every test starts its own server on a fresh database (the ``servers`` fixture), so it can kill
the server, its agent or both without disturbing anything else; the fixture kills the server,
its agent and every job process left behind, whatever the test did.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import anyio
import anyio.to_thread
import psutil
import pytest
from conftest import ServerProcess, agent_pids, job_spec, processes_with

import asyncrun
import asyncrun.client._run

pytestmark = pytest.mark.anyio

COMPLETED = asyncrun.State.COMPLETED

# uvicorn's access log: INFO:     127.0.0.1:40404 - "POST /api/v1/projects/p/runs HTTP/1.1" 201
_ACCESS = re.compile(
    r'^INFO: +\S+ - "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<code>\d+)'
)


# -- servers and the processes they leave behind ------------------------------------------------


def _job_processes(server: ServerProcess) -> list[psutil.Process]:
    """Live processes of the server's jobs, children and grandchildren included.

    The agent gives every job ``ASYNCRUN_ENDPOINT`` = the server's URL (a port of its own), and
    the job's own children inherit it, even once they are orphaned.
    """
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("ASYNCRUN_ENDPOINT") == server.url:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _agent_pids(server: ServerProcess) -> list[int]:
    """Pids of the agent serving the server's database.

    Stricter than conftest's ``agent_pids``, which also matches the server itself when the
    test's folder name contains "_agent" (as it does for ``test_killed_agent_*``).
    """
    found = []
    for pid in agent_pids(server.db):
        with contextlib.suppress(psutil.Error):
            argv = psutil.Process(pid).cmdline()
            if "asyncrun.server._agent" in argv and str(server.db) in argv:
                found.append(pid)
    return found


def _kill_agents(server: ServerProcess) -> list[int]:
    pids = _agent_pids(server)
    _kill(pids)
    return pids


def _shutdown(server: ServerProcess) -> None:
    """Kill the server, its agent and every job process still alive.

    SIGKILL rather than SIGTERM: a SIGTERM'd server waits for held watches (see
    ``test_sigterm_is_prompt_after_a_client_dropped_its_held_watch``).
    """
    try:
        server.stop(kill=True)
    finally:
        _kill_agents(server)
        _kill([proc.pid for proc in _job_processes(server)])


class Servers:
    """Starts servers on fresh databases of one test; shuts all of them down at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[ServerProcess] = []

    def start(self, *extra: str, log_level: str = "warning") -> ServerProcess:
        db = self.folder / f"runs-{len(self.started)}.sqlite3"
        server = ServerProcess(db, *extra, log_level=log_level)
        self.started.append(server)
        server.start()
        return server

    def shutdown(self) -> None:
        for server in self.started:
            _shutdown(server)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.shutdown()


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


# -- helpers ------------------------------------------------------------------------------------


async def kill_server(server: ServerProcess) -> None:
    """SIGKILL the server (like a crash), without blocking the event loop."""
    await anyio.to_thread.run_sync(functools.partial(server.stop, kill=True))


async def wait_for_state(run: asyncrun.AsyncRun, state: asyncrun.State, within: float) -> None:
    with anyio.fail_after(within):
        while (await run.refresh()).status.state is not state:
            await anyio.sleep(0.05)


async def wait_until_gone(marker: str, within: float) -> None:
    with anyio.fail_after(within):
        while processes_with(marker):
            await anyio.sleep(0.05)


def requests_in(log: str) -> list[tuple[str, str]]:
    """(method, target) of every request in uvicorn's access log text."""
    found = []
    for line in log.splitlines():
        match = _ACCESS.match(line)
        if match:
            found.append((match["method"], match["target"]))
    return found


def python_command(code: str) -> list[str]:
    """A command+job argv running ``code`` in one Python process (no shell, no grandchild)."""
    return [sys.executable, "-c", code]


# -- tests --------------------------------------------------------------------------------------


async def test_500_runs_waited_share_one_poller(servers: Servers, project: str) -> None:
    n = 500
    server = servers.start(log_level="info")
    async with asyncrun.AsyncClient(server.url) as client:
        runs = [
            await client.new_run(project, "command+job", spec={"command": ["sleep", "1"]})
            for _ in range(n)
        ]
        for run in runs:
            await run.run()
        # uvicorn writes (and flushes) the access line before the response leaves, so every
        # request made so far is in the log.
        mark = server.log.stat().st_size
        started = anyio.current_time()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(functools.partial(run.wait, log_info=False))
        elapsed = anyio.current_time() - started
        with server.log.open("rb") as log:
            log.seek(mark)
            during = requests_in(log.read().decode())

    watch_path = f"/api/v1/projects/{project}/runs%3Awatch"
    watches = [r for r in during if r == ("POST", watch_path)]
    per_run = [
        r for r in during if r[0] == "GET" and r[1].startswith(f"/api/v1/projects/{project}/runs/")
    ]
    others = [r for r in during if r != ("POST", watch_path)]
    print(
        f"\n{n} runs waited in {elapsed:.2f} s: {len(watches)} watch requests, "
        f"{len(per_run)} per-run GETs, {len(others)} other requests"
    )
    assert Counter(run.status.state for run in runs) == {COMPLETED: n}
    assert all(run.status.extra["exit_code"] == 0 for run in runs)
    assert per_run == []
    assert others == []
    # One poller for all 500 waits: at most one watch request per TICK (20 ms) while changes
    # keep coming, so the count follows the time the runs took, never the number of runs (one
    # per change would far exceed the TICK rate: the server answers a watch within
    # milliseconds of a change). Under load the runs take longer, and so may the requests.
    assert 1 <= len(watches) <= elapsed / 0.02 + 10


async def test_log_stream_survives_server_kill_and_restart(servers: Servers, project: str) -> None:
    n = 400
    server = servers.start(log_level="info")
    async with asyncrun.AsyncClient(server.url) as client:
        run = await client.new_run(project, "python+job", spec=job_spec("count", n=n, delay=0.01))
        await run.run()
        lines: list[asyncrun.LogLine] = []
        half_way = anyio.Event()
        received_at_kill: list[int] = []
        restarted = anyio.Event()

        async def crash_and_restart() -> None:
            await half_way.wait()
            await kill_server(server)
            received_at_kill.append(len(lines))
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(server.start)  # same port, same database
            restarted.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(crash_and_restart)
                async with aclosing(run.logs(follow=True)) as stream:
                    async for line in stream:
                        lines.append(line)
                        if len(lines) == 50:
                            half_way.set()
            await run.wait(timeout=30)

    assert restarted.is_set()
    assert [line.offset for line in lines] == list(range(n))
    assert [line.text for line in lines] == [f"line {i}" for i in range(n)]
    assert run.status.state is COMPLETED
    assert run.result() == {"n": n}
    # The kill really broke the stream: the job was still printing, and after the restart the
    # client asked the new server for the lines from where the old stream had stopped.
    assert 50 <= received_at_kill[0] < n
    follows = [
        int(match[1])
        for method, target in requests_in(server.log.read_text())
        if method == "GET" and (match := re.search(r"/logs\?offset=(\d+)&follow=true$", target))
    ]
    assert follows[0] == 0
    assert len(follows) >= 2
    assert all(received_at_kill[0] <= offset < n for offset in follows[1:])


async def test_log_stream_that_cannot_resume_raises(
    servers: Servers, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncrun.client._run, "RESUME_WITHIN", 2.0)
    marker = f"marker-{uuid.uuid4().hex}"
    code = (
        "import time\n"
        "for i in range(100000):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.02)\n"
        f"# {marker}"
    )
    server = servers.start()
    try:
        async with asyncrun.AsyncClient(server.url) as client:
            run = await client.new_run(
                project, "command+job", spec={"command": python_command(code)}
            )
            await run.run()
            lines: list[asyncrun.LogLine] = []
            killed_at: list[float] = []

            async def follow() -> None:
                async with aclosing(run.logs(follow=True)) as stream:
                    async for line in stream:
                        lines.append(line)
                        if len(lines) == 5:
                            await kill_server(server)  # and it never comes back
                            killed_at.append(anyio.current_time())

            with anyio.fail_after(30):
                with pytest.raises(asyncrun.TransportError, match="could not be resumed"):
                    await follow()
            # It kept trying to resume for RESUME_WITHIN before giving up.
            assert anyio.current_time() - killed_at[0] >= 1.9
            assert len(lines) >= 5
            assert [line.text for line in lines] == [f"line {i}" for i in range(len(lines))]
            assert processes_with(marker)  # the job outlived the server
    finally:
        killed = _kill_agents(server)
    assert killed
    await wait_until_gone(marker, 10)  # the job died with its agent


async def test_killed_agent_marks_running_run_error(servers: Servers, project: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    server = servers.start()
    async with asyncrun.AsyncClient(server.url) as client:
        spec = {"command": ["sh", "-c", f"sleep 3600; echo {marker}"]}
        run = await client.new_run(project, "command+job", spec=spec)
        await run.run()
        await wait_for_state(run, asyncrun.State.RUNNING, 30)
        assert processes_with(marker)
        assert _kill_agents(server)
        await wait_until_gone(marker, 10)  # PR_SET_PDEATHSIG: the job dies with its agent
        await run.wait(timeout=30)
    assert run.status.state is asyncrun.State.ERROR
    assert "lost" in (run.status.message or "")


async def test_killed_agent_leaves_no_process_of_the_job(servers: Servers, project: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    child = f"{sys.executable} -c 'import time; time.sleep(3600)' {marker}-child"
    server = servers.start()
    async with asyncrun.AsyncClient(server.url) as client:
        spec = {"command": ["sh", "-c", f"{child}; echo {marker}"]}
        run = await client.new_run(project, "command+job", spec=spec)
        await run.run()
        await wait_for_state(run, asyncrun.State.RUNNING, 30)
        with anyio.fail_after(10):
            while len(processes_with(marker)) < 2:  # the shell and its child
                await anyio.sleep(0.05)
        assert _kill_agents(server)
        await run.wait(timeout=30)  # a new agent has recovered the run
        assert run.status.state is asyncrun.State.ERROR
        with anyio.move_on_after(2):
            while processes_with(f"{marker}-child"):
                await anyio.sleep(0.05)
    # Outside the client's task group, so the failure is a plain AssertionError.
    assert processes_with(f"{marker}-child") == [], "the job's child outlived its agent"


async def test_server_restart_marks_lost_runs_error(servers: Servers, project: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    server = servers.start()
    async with asyncrun.AsyncClient(server.url) as client:
        spec = {"command": python_command(f"import time; time.sleep(3600)  # {marker}")}
        run = await client.new_run(project, "command+job", spec=spec)
        await run.run()
        await wait_for_state(run, asyncrun.State.RUNNING, 30)
        # A machine restart: the server, the agent and the job all die at once.
        await kill_server(server)
        assert _kill_agents(server)
        await wait_until_gone(marker, 10)
        await anyio.to_thread.run_sync(server.start)
        run = await client.get_run(project, run.id)  # a plain read, no wait()
        with anyio.fail_after(10):
            while run.status.state is not asyncrun.State.ERROR:
                assert run.status.state is asyncrun.State.RUNNING
                await anyio.sleep(0.1)
                await run.refresh()
    assert "lost" in (run.status.message or "")


async def test_stop_grace_then_sigkill(servers: Servers, project: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('term', flush=True))\n"
        "print('ready', flush=True)\n"
        "time.sleep(3600)\n"
        f"# {marker}"
    )
    server = servers.start("--stop-grace", "1")
    async with asyncrun.AsyncClient(server.url) as client:
        run = await client.new_run(project, "command+job", spec={"command": python_command(code)})
        await run.run()
        with anyio.fail_after(30):
            async with aclosing(run.logs(follow=True)) as stream:
                async for line in stream:
                    assert line.text == "ready"
                    break
        assert processes_with(marker)
        asked = anyio.current_time()
        await run.stop()
        await run.wait(timeout=20)
        elapsed = anyio.current_time() - asked
        assert run.status.state is asyncrun.State.STOPPED
        assert 0.9 <= elapsed < 10
        assert run.status.extra["exit_code"] == -signal.SIGKILL
        assert processes_with(marker) == []
        texts = [line.text async for line in run.logs()]
    assert texts == ["ready", "term"]  # SIGTERM was delivered, then SIGKILL ended it


async def test_max_log_lines_keeps_the_end(servers: Servers, project: str) -> None:
    server = servers.start("--max-log-lines", "100")
    async with asyncrun.AsyncClient(server.url) as client:
        run = await client.new_run(project, "python+job", spec=job_spec("count", n=1000))
        await run.run()
        await run.wait(timeout=60)
        assert run.status.state is COMPLETED
        lines = [line async for line in run.logs()]
        followed = [line async for line in run.logs(follow=True)]
    assert [line.offset for line in lines] == list(range(900, 1000))
    assert [line.text for line in lines] == [f"line {i}" for i in range(900, 1000)]
    assert followed == lines


def _exits_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


async def test_sigterm_is_prompt_after_a_client_dropped_its_held_watch(
    servers: Servers, project: str
) -> None:
    server = servers.start()
    async with asyncrun.AsyncClient(server.url) as client:
        run = await client.new_run(project, "command+job", spec={"command": ["sleep", "3600"]})
        await run.run()
        await wait_for_state(run, asyncrun.State.RUNNING, 30)
        with anyio.move_on_after(0.5):
            await run.wait()  # the server holds the poller's watch: the run does not change
    # Closing the client cancelled that request and closed its connection.
    assert server.proc is not None
    server.proc.terminate()
    exited = await anyio.to_thread.run_sync(_exits_within, server.proc, 4.0)
    assert exited, "the server was still serving a watch whose client had gone"
