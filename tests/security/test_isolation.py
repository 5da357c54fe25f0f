"""A hostile job on a real server under root with ``--isolate-jobs`` reaches nothing of others.

Each attempt of issue 11 is made by ``_hostile.py`` from inside a job of project ``alpha``
while a job of project ``beta`` runs: read the database, mint a token in it, find other jobs'
tokens in ``/proc``, write into ``beta``, start a run with its own token, read the server's and
another job's environment, signal the agent and the other job, leave a ``setsid`` child.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, agent_pids, create_token, gone, wait_for

import asyncrun

SYSTEM_PYTHON = "/usr/bin/python3"
HOSTILE = (Path(__file__).parent / "_hostile.py").read_text()

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="--isolate-jobs needs root: run the suite as root (CI does)"
    ),
    pytest.mark.skipif(
        not os.access(SYSTEM_PYTHON, os.X_OK),
        reason=f"the hostile job needs an interpreter every user can run ({SYSTEM_PYTHON})",
    ),
]


@pytest.fixture(scope="module")
def isolated() -> Iterator[ServerProcess]:
    # Not under pytest's tmp folder (0700): isolated users must reach their jobs' folders.
    folder = Path(tempfile.mkdtemp(prefix="asyncrun-isolated-"))
    server = ServerProcess(folder / "runs.sqlite3", "--isolate-jobs", auth=True)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_a_hostile_job_reaches_nothing_that_is_not_its_own(isolated: ServerProcess) -> None:
    alpha = create_token(isolated.db, "alpha", role="run")
    beta = create_token(isolated.db, "beta", role="run")
    with asyncrun.Client(isolated.url, token=beta) as client:
        victim = client.new_run(
            "beta", "command+job", spec={"command": ["sh", "-c", "echo $$; exec sleep 300"]}
        )
        victim.run()
        lines = wait_for(lambda: [line.text for line in victim.logs()], "the victim's pid")
        victim_pid = int(lines[0])
    (agent,) = agent_pids(isolated.db)
    assert isolated.proc is not None
    targets = {
        "TARGET_DB": str(isolated.db),
        "OTHER_PROJECT": "beta",
        "OTHER_JOB_PID": str(victim_pid),
        "AGENT_PID": str(agent),
        "SERVER_PID": str(isolated.proc.pid),
    }
    with asyncrun.Client(isolated.url, token=alpha) as client:
        hostile = client.new_run(
            "alpha", "command+job", spec={"command": [SYSTEM_PYTHON, "-c", HOSTILE], "env": targets}
        )
        hostile.run()
        hostile.wait(timeout=120)
        output = [line.text for line in hostile.logs()]
    assert hostile.status.state is asyncrun.State.COMPLETED, (hostile.status.message, output)
    (line,) = [line for line in output if line.startswith("HOSTILE ")]
    got = json.loads(line.removeprefix("HOSTILE "))

    for attempt in ("read_db", "mint_token", "read_server_environ", "read_other_job_environ"):
        assert not got[attempt]["ok"], (attempt, got[attempt])
        error = got[attempt]["error"]
        assert "Permission" in error or "unable to open database" in error, (attempt, error)
    assert got["other_tokens"] == {"ok": True, "value": []}
    assert got["write_other_project"] == {"ok": True, "value": [403]}
    assert got["start_a_run"] == {"ok": True, "value": [201, 403]}  # a job token cannot start
    for attempt in ("kill_agent", "kill_other_job"):
        assert got[attempt]["ok"] is False
        assert "PermissionError" in got[attempt]["error"], got[attempt]
    assert got["leave_a_child"]["ok"], got["leave_a_child"]
    assert wait_for(lambda: gone(got["leave_a_child"]["value"]), "the setsid child to end")

    assert agent_pids(isolated.db) == [agent]
    with asyncrun.Client(isolated.url, token=beta) as client:
        again = client.get_run("beta", victim.id)
        assert again.status.state is asyncrun.State.RUNNING
        assert again.status.extra["launch"]["user"].startswith("uid ")
        assert [r.id for r in client.list_runs("beta")] == [victim.id]  # nothing planted
        again.stop()
        again.wait(timeout=30)
    assert wait_for(lambda: gone(victim_pid), "the victim to end")


def _reachable_by_others(path: str) -> bool:
    here = Path("/")
    for part in Path(path).parts[1:]:
        if not here.stat().st_mode & stat.S_IXOTH:
            return False
        here = here / part
    return True


def test_an_interpreter_isolated_users_cannot_reach_is_a_clear_error(
    isolated: ServerProcess,
) -> None:
    token = create_token(isolated.db, "gamma", role="run")
    python = os.path.realpath(sys.executable)
    spec = {"handler": "json:dumps", "parameters": {"obj": 1}}
    with asyncrun.Client(isolated.url, token=token) as client:
        run = client.new_run("gamma", "python+job", spec=spec)
        run.run()
        run.wait(timeout=60)
    if _reachable_by_others(python) and _reachable_by_others(asyncrun.__file__):
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
    else:
        assert run.status.state is asyncrun.State.ERROR
        message = run.status.message or ""
        assert "isolated job (uid" in message
        assert "cannot reach" in message
        assert "not under /root" in message


def test_isolated_jobs_folders_are_theirs_and_the_database_stays_private(
    isolated: ServerProcess,
) -> None:
    token = create_token(isolated.db, "delta", role="run")
    script = "import os; print(os.getuid(), os.getcwd(), os.environ['HOME'], oct(os.umask(0)))"
    with asyncrun.Client(isolated.url, token=token) as client:
        spec = {"command": [SYSTEM_PYTHON, "-c", script]}
        run = client.new_run("delta", "command+job", spec=spec)
        run.run()
        run.wait(timeout=60)
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
        uid, cwd, home, umask = next(iter(run.logs())).text.split()
    assert 61184 <= int(uid) <= 65519
    assert cwd == home == str(isolated.db.parent / "jobs" / "delta" / run.id)
    assert umask == "0o77"
    for path in (isolated.db, isolated.db.with_name("agent.log")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(isolated.db.parent.stat().st_mode) == 0o711


def test_isolate_jobs_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from asyncrun._cli import cli as app

    # Not being root is the fault: CI is root, so the check is shown a non-root uid.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    done = CliRunner().invoke(app, ["server", "--isolate-jobs", "--db", str(tmp_path / "x.db")])
    assert done.exit_code == 2
    assert "--isolate-jobs runs each job as a user of its own, which needs root" in done.output
