"""A job's environment is built, never inherited; its folder and interpreter are its caller's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JOBS_DIR, ServerProcess, wait_for

import asyncrun

CALLER = """
import json, sys
import asyncrun
with asyncrun.Client() as client:
    shell = client.new_run("env", "command+job", spec={
        "command": ["sh", "-c", 'echo "secret=$SECRET given=$GIVEN"; pwd'],
        "env": {"GIVEN": "by-spec"},
    })
    shell.run()
    shell.wait(timeout=60)
    spec = {"handler": "_jobs:interpreter", "cwd": sys.argv[1]}
    python = client.new_run("env", "python+job", spec=spec)
    python.run()
    python.wait(timeout=60)
    print(json.dumps({
        "lines": [line.text for line in shell.logs()],
        "python": python.result(),
        "launch": shell.status.extra.get("launch"),
    }))
"""


def _interpreters() -> list[str]:
    # Two names of this venv's interpreter: the job must use its caller's, not the agent's.
    folder = Path(sys.executable).parent
    names = [folder / name for name in ("python3", f"python3.{sys.version_info.minor}")]
    return [str(path) for path in names if path.exists()]


def test_embedded_callers_never_share_their_environment_folder_or_interpreter(
    tmp_path: Path,
) -> None:
    interpreters = _interpreters()
    if len(interpreters) < 2:
        pytest.skip("this venv has a single interpreter name: cannot tell callers apart")
    home = tmp_path / "home"
    results = []
    callers = zip(["first", "second", "third"], [*interpreters, interpreters[0]], strict=True)
    for secret, python in callers:
        folder = tmp_path / secret
        folder.mkdir()
        env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCRUN_")}
        done = subprocess.run(
            [python, "-c", CALLER, JOBS_DIR],
            cwd=folder,
            env={**env, "ASYNCRUN_HOME": str(home), "SECRET": secret},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        results.append((secret, python, folder, json.loads(done.stdout.splitlines()[-1])))
    for _secret, python, folder, got in results:
        # Nobody's SECRET reaches any job: it is not in the documented base.
        assert got["lines"] == ["secret= given=by-spec", str(folder)]
        assert got["python"] == python
        assert got["launch"]["cwd"] == str(folder)
        assert got["launch"]["python"] == python
        assert "SECRET" not in got["launch"]["env"]
        assert "PATH" in got["launch"]["env"]


def test_a_server_passes_only_the_base_and_what_the_operator_names(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", "--job-env", "PASSME")
    os.environ["SERVER_SECRET"] = "from-the-server"
    os.environ["PASSME"] = "value-of-passme"
    try:
        server.start()
    finally:
        del os.environ["SERVER_SECRET"], os.environ["PASSME"]
    try:
        with asyncrun.Client(server.url) as client:
            run = client.new_run(
                "p",
                "command+job",
                spec={"command": ["sh", "-c", 'echo "$SERVER_SECRET|$PASSME"; pwd']},
            )
            run.run()
            run.wait(timeout=60)
            lines = wait_for(lambda: [line.text for line in run.logs()], "the job's output")
        assert lines == ["|value-of-passme", str(tmp_path / "jobs" / "p" / run.id)]
        launch = run.status.extra["launch"]
        assert launch["env_passed"] == ["PASSME"]
        assert "value-of-passme" not in json.dumps(launch)  # the value is never shown
        assert "SERVER_SECRET" not in json.dumps(launch)
    finally:
        server.stop()


@pytest.mark.anyio
async def test_launch_is_the_servers_to_say(client: asyncrun.AsyncClient, project: str) -> None:
    run = await client.new_run(project, "command+job", spec={"command": ["true"]})
    await run.run()
    await run.wait(timeout=60)
    shown = run.status.extra["launch"]
    run.status.extra["launch"] = {"cwd": "/elsewhere"}
    await run.save(update=True)
    assert (await run.refresh()).status.extra["launch"] == shown
