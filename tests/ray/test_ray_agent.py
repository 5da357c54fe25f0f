"""``asyncrun server --executor ray`` against a real Ray head: the whole lifecycle, and faults.

Run with ``nox -s ray``. This file sorts before test_ray_engine.py, whose last test stops the
session's head. Jobs here are launched by the launcher (asyncrun._launcher) on the head, which
runs them with this interpreter (the session's venv): the head is on this machine.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import RayHead

import asyncrun
from asyncrun._core.records import State
from asyncrun.server._ray import RayJobs

PROJECT = "rayp"


def _top_conftest() -> Any:
    # tests/conftest.py: its name is taken here by tests/ray/conftest.py.
    spec = importlib.util.spec_from_file_location(
        "asyncrun_tests_conftest", Path(__file__).parents[1] / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_top = _top_conftest()
JOBS_DIR: str = _top.JOBS_DIR
ServerProcess = _top.ServerProcess
create_token = _top.create_token
wait_for = _top.wait_for
processes_with = _top.processes_with


def cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


class Head:
    """What these tests use of conftest.RayHead (not importable: two conftest modules)."""

    address: str

    def stop(self) -> None: ...


def start_server(db: Path, head_address: str, *extra: str) -> Any:
    server = ServerProcess(
        db,
        "--executor", "ray", "--ray-address", head_address, "--stop-grace", "3", *extra,
        auth=True,
    )  # fmt: skip
    server.start()
    return server


@pytest.fixture(scope="module")
def ray_server(
    ray_head: Head, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    db = tmp_path_factory.mktemp("ray-server") / "runs.sqlite3"
    token = create_token(db, PROJECT, role="run")
    server = start_server(db, ray_head.address)
    yield server, token
    server.stop()


@pytest.fixture
def client(ray_server: tuple[Any, str]) -> Iterator[asyncrun.Client]:
    server, token = ray_server
    with asyncrun.Client(server.url, token) as c:
        yield c


def command(script: str) -> dict[str, Any]:
    return {"command": [sys.executable, "-c", script]}


def test_a_command_job_runs_on_ray_with_tagged_logs(client: asyncrun.Client) -> None:
    script = "import sys\nfor i in range(3): print(f'out {i}')\nprint('err', file=sys.stderr)"
    run = client.new_run(PROJECT, "command+job", spec=command(script))
    run.run()
    followed = [(line.stream, line.text) for line in run.logs(follow=True)]
    assert [text for stream, text in followed if stream == "stdout"] == [
        "out 0",
        "out 1",
        "out 2",
    ]
    assert ("stderr", "err") in followed
    done = run.wait(timeout=120)
    assert done.status.state is State.COMPLETED, done.status.message
    assert done.status.extra["exit_code"] == 0
    assert done.status.extra["launch"]["ray_job"].startswith("asyncrun-rayp-")
    lines = list(run.logs())
    assert [line.offset for line in lines] == list(range(4))  # each line once, contiguous


def test_errors_end_the_run_with_the_local_message_and_exit_code(
    client: asyncrun.Client,
) -> None:
    failing = client.new_run(PROJECT, "command+job", spec=command("import sys; sys.exit(3)"))
    failing.run()
    done = failing.wait(timeout=120)
    assert done.status.state is State.ERROR
    assert done.status.message == "the process exited with code 3"
    assert done.status.extra["exit_code"] == 3
    spec = {"handler": "_jobs:fail", "parameters": {"message": "boom"}, "cwd": JOBS_DIR}
    raising = client.new_run(PROJECT, "python+job", spec=spec)
    raising.run()
    done = raising.wait(timeout=120)
    assert done.status.state is State.ERROR
    assert done.status.message == "ValueError: boom"
    assert "about to fail" in [line.text for line in raising.logs()]


def test_a_python_job_reports_its_result_and_metrics(client: asyncrun.Client) -> None:
    spec = {"handler": "_jobs:metrics", "parameters": {"n": 5}, "cwd": JOBS_DIR}
    run = client.new_run(PROJECT, "python+job", spec=spec)
    run.run()
    done = run.wait(timeout=120)
    assert done.status.state is State.COMPLETED, done.status.message
    assert run.result() == 5
    assert done.status.metrics["step"] == [0, 1, 2, 3, 4]
    counted = client.new_run(
        PROJECT,
        "python+job",
        spec={"handler": "_jobs:count", "parameters": {"n": 3}, "cwd": JOBS_DIR},
    )
    counted.run()
    counted.wait(timeout=120)
    assert counted.result() == {"n": 3}
    assert [line.text for line in counted.logs()] == ["line 0", "line 1", "line 2"]


def test_stop_with_grace_then_resume_then_wait(
    client: asyncrun.Client, ray_head: Head, ray_server: tuple[Any, str]
) -> None:
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('started', flush=True)\ntime.sleep(600)"
    )
    run = client.new_run(PROJECT, "command+job", spec=command(script))
    run.run()
    wait_for(lambda: "started" in [line.text for line in run.logs()], "the job to start", 120)
    assert run.refresh().status.state is State.RUNNING
    run.stop()
    done = run.wait(timeout=60)
    assert done.status.state is State.STOPPED
    texts = [line.text for line in run.logs()]
    assert texts == ["started", "got SIGTERM"]  # the job saw SIGTERM and wrote on
    first_job = done.status.extra["launch"]["ray_job"]
    # Resume: a new execution, a new Ray job; its lines follow the old ones.
    run.resume()
    wait_for(lambda: [line.text for line in run.logs()].count("started") == 2, "resume", 120)
    again = run.refresh()
    assert again.status.state is State.RUNNING
    assert again.status.extra["launch"]["ray_job"] != first_job
    run.stop()
    assert run.wait(timeout=60).status.state is State.STOPPED
    assert [line.offset for line in run.logs()] == list(range(4))
    # Recorded jobs are deleted from the head: its job list stays small.
    with RayJobs(ray_head.address) as jobs:
        wait_for(lambda: first_job not in jobs.statuses(), "the Ray job's deletion", 30)


def test_the_launcher_loses_nothing_while_the_server_restarts(
    client: asyncrun.Client, ray_server: tuple[Any, str]
) -> None:
    server, _ = ray_server
    spec = {"handler": "_jobs:count", "parameters": {"n": 50, "delay": 0.1}, "cwd": JOBS_DIR}
    run = client.new_run(PROJECT, "python+job", spec=spec)
    run.run()
    wait_for(lambda: list(run.logs()), "the first lines", 120)
    server.stop()  # the job goes on while nobody listens; its launcher retries
    time.sleep(3)
    server.start()  # the same port and database
    done = run.wait(timeout=120)
    assert done.status.state is State.COMPLETED, done.status.message
    assert [line.text for line in run.logs()] == [f"line {i}" for i in range(50)]  # once each
    assert run.result() == {"n": 50}


def test_a_new_ray_agent_adopts_the_jobs_ray_runs(
    client: asyncrun.Client, ray_server: tuple[Any, str]
) -> None:
    server, _ = ray_server
    spec = {"handler": "_jobs:count", "parameters": {"n": 30, "delay": 0.1}, "cwd": JOBS_DIR}
    run = client.new_run(PROJECT, "python+job", spec=spec)
    run.run()
    wait_for(lambda: run.refresh().status.state is State.RUNNING, "RUNNING", 120)
    lock = str(Path(server.db).with_name("jobs") / "ray-agent.lock")
    (agent,) = [pid for pid in processes_with("asyncrun.server._ray_agent") if lock in cmdline(pid)]
    os.kill(agent, signal.SIGKILL)  # the server starts another, which finds the job on Ray
    done = run.wait(timeout=120)
    assert done.status.state is State.COMPLETED, done.status.message
    assert run.result() == {"n": 30}
    assert [line.text for line in run.logs()] == [f"line {i}" for i in range(30)]


def test_the_code_of_jobs_travels_to_the_head_as_their_working_dir(
    ray_head: Head, tmp_path: Path
) -> None:
    # A folder of the server's machine, not importable where the launcher starts: Ray
    # unpacks it as each job's working folder, so the handler's module is found there.
    code = tmp_path / "code"
    code.mkdir()
    (code / "shipped_code.py").write_text(
        "import os\n\ndef main():\n    return {'cwd': os.path.basename(os.getcwd()),"
        " 'data': open('data.txt').read()}\n"
    )
    (code / "data.txt").write_text("from the server's folder")
    db = tmp_path / "runs.sqlite3"
    token = create_token(db, PROJECT, role="run")
    server = start_server(db, ray_head.address, "--ray-working-dir", str(code))
    try:
        with asyncrun.Client(server.url, token) as c:
            run = c.new_run(PROJECT, "python+job", spec={"handler": "shipped_code:main"})
            run.run()
            done = run.wait(timeout=120)
            assert done.status.state is State.COMPLETED, done.status.message
            result = run.result()
            assert result["data"] == "from the server's folder"
            assert result["cwd"] != "code"  # Ray's unpacked copy, not the folder itself
    finally:
        server.stop()


def test_the_ray_executor_on_postgresql(ray_head: Head, postgres: Any, tmp_path: Path) -> None:
    url = postgres.create_database()
    server = ServerProcess(
        url, "--executor", "ray", "--ray-address", ray_head.address,
        "--jobs-dir", str(tmp_path / "jobs"), log=tmp_path / "server.log",
    )  # fmt: skip
    server.start()
    try:
        with asyncrun.Client(server.url) as c:
            run = c.new_run(PROJECT, "command+job", spec=command("print('on postgres')"))
            run.run()
            done = run.wait(timeout=120)
            assert done.status.state is State.COMPLETED, done.status.message
            assert [line.text for line in run.logs()] == ["on postgres"]
    finally:
        server.stop()


def test_a_job_ray_holds_pending_is_stopped_on_our_side(ray_head: Head, tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite3"
    token = create_token(db, PROJECT, role="run")
    # More CPUs than the head has: Ray holds every job PENDING, and ignores a stop meanwhile.
    server = start_server(db, ray_head.address, "--ray-entrypoint-cpus", "64")
    try:
        with asyncrun.Client(server.url, token) as c:
            run = c.new_run(PROJECT, "command+job", spec=command("print('never')"))
            run.run()
            wait_for(lambda: run.refresh().status.state is State.PENDING, "PENDING", 60)
            run.stop()
            done = run.wait(timeout=30)
            assert done.status.state is State.STOPPED
            assert done.status.message == "stopped"
            assert list(run.logs()) == []
    finally:
        server.stop()


def test_runs_end_lost_when_the_ray_head_goes_away(tmp_path: Path) -> None:
    head = RayHead()  # a head of its own: this test stops it
    server = None
    try:
        db = tmp_path / "runs.sqlite3"
        token = create_token(db, PROJECT, role="run")
        server = start_server(db, head.address, "--ray-lost-after", "3")
        with asyncrun.Client(server.url, token) as c:
            run = c.new_run(PROJECT, "command+job", spec=command("import time; time.sleep(600)"))
            run.run()
            wait_for(lambda: run.refresh().status.state is State.RUNNING, "RUNNING", 120)
            head.stop()
            done = run.wait(timeout=60)  # never hangs
            assert done.status.state is State.ERROR
            assert "lost" in (done.status.message or "")
    finally:
        if server is not None:
            server.stop()
        head.stop()
