"""No process outlives its job, and a dead agent is noticed by the server within seconds."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from _stores import SyncStore
from conftest import ServerProcess, agent_pids, gone, wait_for

import asyncrun

# The job starts a child that leaves its process group and its parent (setsid in a subshell
# that exits: a double fork) and prints its own pid; then the job lives on, or ends.
LEAVE_A_CHILD = "( setsid sh -c 'echo $$; exec sleep 300 >/dev/null 2>&1' & ); sleep 0.5; "


def _first_line(run: asyncrun.Run) -> int:
    return int(wait_for(lambda: [line.text for line in run.logs()], "the job's first line")[0])


@pytest.mark.parametrize("how", ["ends", "stopped"])
def test_a_setsid_child_ends_with_its_job(
    backend: dict[str, Any], project: str, anyio_backend: str, how: str
) -> None:
    tail = "true" if how == "ends" else "exec sleep 300"
    with asyncrun.Client(**backend, backend=anyio_backend) as client:
        spec = {"command": ["sh", "-c", LEAVE_A_CHILD + tail]}
        run = client.new_run(project, "command+job", spec=spec)
        run.run()
        child = _first_line(run)
        if how == "stopped":
            assert not gone(child)
            run.stop()
        run.wait(timeout=60)
    assert wait_for(lambda: gone(child), "the child to end", timeout=10)


def test_an_agent_killed_is_noticed_by_the_server_without_anyone_waiting(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3")
    server.start()
    try:
        with asyncrun.Client(server.url) as client:
            runs = []
            spec = {"command": ["sh", "-c", LEAVE_A_CHILD + "exec sleep 300"]}
            for _ in range(5):
                run = client.new_run("p", "command+job", spec=spec)
                run.run()
                runs.append(run)
            children = [_first_line(run) for run in runs]
            (agent,) = agent_pids(server.db)
            os.kill(agent, signal.SIGKILL)

            def all_lost() -> bool:
                states = {client.get_run("p", run.id).status.state for run in runs}
                return states == {asyncrun.State.ERROR}

            # Nobody waits: the server's own supervision notices within seconds.
            assert wait_for(all_lost, "the runs to end ERROR (lost)", timeout=30)
            assert "lost" in (client.get_run("p", runs[0].id).status.message or "")
        assert wait_for(lambda: all(map(gone, children)), "the children to end", timeout=10)
        store = SyncStore(server.db)
        try:
            assert [info for info in store.tokens() if info.run is not None] == []
        finally:
            store.close()
    finally:
        server.stop()
