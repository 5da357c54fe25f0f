"""The Ray engine (asyncrun/server/_ray.py) against a real Ray head: no mock of Ray.

Run with ``nox -s ray``. Jobs are tiny ``python -c`` commands; each test uses ids of its own.
The last test stops the session's head, so it must stay last in this file.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from asyncrun._core.errors import ValidationError
from asyncrun._core.records import State
from asyncrun.server._ray import (
    LOST_MESSAGE,
    MAX_MESSAGE,
    JobInfo,
    RayError,
    RayJobs,
    RayUnavailable,
    to_outcome,
    trim,
    with_stop_grace,
)

T = TypeVar("T")
PY = "python"  # the head's workers run the interpreter Ray was installed with


class RayHead(Protocol):
    """The session's head (conftest.RayHead; not imported: conftest is no module to import)."""

    address: str
    dashboard_port: int
    startup: float

    def stop(self) -> None: ...
    def processes(self) -> list[object]: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def jobs(ray_head: RayHead) -> Iterator[RayJobs]:
    with RayJobs(ray_head.address) as client:
        yield client


def ended(jobs: RayJobs, submission_id: str, timeout: float = 60.0) -> JobInfo:
    """Poll the all-jobs list (as the agent will) until the job is terminal."""

    def check() -> JobInfo | None:
        info = jobs.statuses().get(submission_id)
        return info if info is not None and info.terminal else None

    return poll(check, f"job {submission_id} to end", timeout)


# -- pure mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ray_status", "state"),
    [
        ("PENDING", State.PENDING),
        ("RUNNING", State.RUNNING),
        ("SUCCEEDED", State.COMPLETED),
        ("FAILED", State.ERROR),
        ("STOPPED", State.STOPPED),
    ],
)
def test_statuses_map_onto_states(ray_status: str, state: State) -> None:
    outcome = to_outcome(ray_status, True)
    assert outcome is not None
    assert outcome.state is state


def test_missing_job_is_lost_only_while_open() -> None:
    lost = to_outcome(None, True)
    assert lost is not None
    assert lost.state is State.ERROR
    assert lost.message == LOST_MESSAGE
    assert "Ray job was lost" in LOST_MESSAGE
    assert to_outcome(None, False) is None
    assert to_outcome("SOMETHING_NEW", True) is None  # a later Ray's status: wait, don't guess


def test_failed_without_message_names_the_exit_code() -> None:
    outcome = to_outcome("FAILED", True, exit_code=7)
    assert outcome is not None
    assert outcome.message == "the Ray job exited with code 7"
    assert outcome.status == {"exit_code": 7}


def test_trim_keeps_start_and_end_within_the_bound() -> None:
    text = "START" + "x" * 10_000 + "END"
    cut = trim(text, 2000)
    assert len(cut) <= 2000
    assert cut.startswith("START")
    assert cut.endswith("END")
    assert "cut to 2000" in cut
    assert trim("short", 2000) == "short"


def test_stop_grace_is_whole_seconds_in_env_vars() -> None:
    env = with_stop_grace({"env_vars": {"A": "1"}, "pip": ["x"]}, 2.2)
    assert env == {"env_vars": {"A": "1", "RAY_JOB_STOP_WAIT_TIME_S": "3"}, "pip": ["x"]}
    assert with_stop_grace(None, 0)["env_vars"] == {"RAY_JOB_STOP_WAIT_TIME_S": "0"}
    with pytest.raises(ValidationError):
        with_stop_grace(None, -1)


def test_bad_ids_and_addresses_are_refused_before_any_request() -> None:
    client = RayJobs("127.0.0.1:1")
    for bad in ("", "a/b", "../x", "x" * 200, "-lead", "sp ace"):
        with pytest.raises(ValidationError):
            client.status(bad)
    with pytest.raises(ValidationError):
        RayJobs("ftp://host:21")


def test_unreachable_head_fails_fast_without_leaking_credentials() -> None:
    port = free_port()  # nothing listens there
    client = RayJobs(f"http://ray:s3cret-pw@127.0.0.1:{port}", timeout=2)
    assert "s3cret" not in client.address
    started = time.monotonic()
    with pytest.raises(RayUnavailable) as caught:
        client.statuses()
    assert time.monotonic() - started < 2
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(caught.value.__cause__)


def test_silent_head_times_out() -> None:
    # Connections complete in the backlog but nothing ever answers: a hung head.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = RayJobs(f"127.0.0.1:{port}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(RayUnavailable, match="did not answer"):
            client.statuses()
        assert time.monotonic() - started < 3


# -- against the head -------------------------------------------------------------------------


def test_head_answers(jobs: RayJobs, ray_head: RayHead) -> None:
    assert jobs.version().startswith("2.")
    assert ray_head.startup < 60
    # Credentials in the address travel as basic authentication (this head needs none).
    with_user = ray_head.address.replace("http://", "http://ray:pw@")
    with RayJobs(with_user) as client:
        assert client.address == ray_head.address
        assert client.version() == jobs.version()


def test_job_succeeds_with_exit_code_logs_and_metadata(jobs: RayJobs) -> None:
    sid = new_id("ok")
    created = jobs.submit(
        sid,
        f"{PY} -c \"print('hello from ray')\"",
        metadata={"run": "r1"},
        entrypoint_num_cpus=0.5,
    )
    assert created is True
    info = ended(jobs, sid)
    assert info.status == "SUCCEEDED"
    assert info.exit_code == 0
    assert info.metadata == {"run": "r1"}
    assert info.start_time is not None
    assert info.end_time is not None
    assert info.end_time >= info.start_time
    outcome = info.outcome()
    assert outcome is not None
    assert outcome.state is State.COMPLETED
    assert outcome.status == {"exit_code": 0}
    assert jobs.status(sid) == info
    logs = jobs.logs(sid)
    assert logs is not None
    assert "hello from ray" in logs
    assert jobs.stop(sid) is False  # already ended: nothing to stop


def test_failing_job_has_exit_code_and_a_trimmed_message(jobs: RayJobs) -> None:
    sid = new_id("fail")
    script = "import sys; print('x' * 9000, file=sys.stderr); print('LAST-LINE'); sys.exit(3)"
    jobs.submit(sid, f'{PY} -c "{script}"')
    info = ended(jobs, sid)
    assert info.status == "FAILED"
    assert info.exit_code == 3
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"
    assert info.message is not None
    assert len(info.message) <= MAX_MESSAGE
    assert "exit code 3" in info.message  # its start says what failed
    assert "LAST-LINE" in info.message  # its end keeps the last output
    assert "characters, cut to" in info.message
    outcome = info.outcome()
    assert outcome is not None
    assert outcome.state is State.ERROR
    assert outcome.status == {"exit_code": 3}


def test_repeat_submit_of_an_id_is_fine(jobs: RayJobs) -> None:
    sid = new_id("again")
    assert jobs.submit(sid, f"{PY} -c 'print(1)'") is True
    assert jobs.submit(sid, f"{PY} -c 'print(1)'") is False
    assert jobs.submit(sid, f"{PY} -c 'print(2)'") is False  # the id is the identity
    info = ended(jobs, sid)
    assert info.status == "SUCCEEDED"
    assert list(jobs.statuses()).count(sid) == 1
    assert "1" in (jobs.logs(sid) or "")


def test_unknown_id_is_none_and_lost_when_open(jobs: RayJobs) -> None:
    sid = new_id("never")
    assert jobs.status(sid) is None
    assert sid not in jobs.statuses()
    assert jobs.stop(sid) is False
    assert jobs.delete(sid) is False
    assert jobs.logs(sid) is None
    lost = to_outcome(None, True)
    assert lost is not None
    assert lost.state is State.ERROR


def test_stop_honours_the_per_job_grace(jobs: RayJobs) -> None:
    grace = 4
    stubborn, plain = new_id("trap"), new_id("plain")
    trap = (
        "import signal, time; "
        "signal.signal(signal.SIGTERM, lambda *a: print('got TERM', flush=True)); "
        "print('ready', flush=True); time.sleep(600)"
    )
    jobs.submit(stubborn, f'{PY} -c "{trap}"', runtime_env=with_stop_grace(None, grace))
    jobs.submit(plain, f"{PY} -c 'import time; time.sleep(600)'")
    poll(lambda: "ready" in (jobs.logs(stubborn) or ""), "the trapping job to be ready")
    poll(lambda: (s := jobs.status(plain)) and s.status == "RUNNING", "the plain job to run")

    started = time.monotonic()
    assert jobs.stop(stubborn) is True
    assert jobs.stop(plain) is True
    assert jobs.stop(stubborn) is True  # repeat-safe while it winds down
    info_plain = ended(jobs, plain, timeout=30)
    plain_took = time.monotonic() - started
    info = ended(jobs, stubborn, timeout=30)
    took = time.monotonic() - started

    assert info_plain.status == "STOPPED"
    assert plain_took < grace  # SIGTERM ended it at once
    assert info.status == "STOPPED"
    assert info.exit_code is None
    assert grace - 0.5 <= took < grace + 10  # SIGKILL came after the grace, not before
    assert "got TERM" in (jobs.logs(stubborn) or "")
    outcome = info.outcome()
    assert outcome is not None
    assert outcome.state is State.STOPPED


def test_stop_leaves_a_job_waiting_for_resources_pending(jobs: RayJobs) -> None:
    # Ray's behaviour the executor must work around (see the module's docstring).
    sid = new_id("starved")
    jobs.submit(sid, "true", entrypoint_num_cpus=3)  # the head has 2 CPUs
    info = poll(lambda: jobs.status(sid), "the job to be known")
    assert info.status == "PENDING"
    assert jobs.stop(sid) is True
    time.sleep(2)
    still = jobs.status(sid)
    assert still is not None
    assert still.status == "PENDING"
    outcome = still.outcome()
    assert outcome is not None
    assert outcome.state is State.PENDING


def test_delete_refuses_a_running_job_then_forgets_an_ended_one(jobs: RayJobs) -> None:
    sid = new_id("del")
    jobs.submit(
        sid, f"{PY} -c 'import time; time.sleep(600)'", runtime_env=with_stop_grace(None, 0)
    )
    with pytest.raises(RayError, match="not terminal"):
        jobs.delete(sid)
    jobs.stop(sid)
    ended(jobs, sid, timeout=30)
    assert jobs.delete(sid) is True
    assert jobs.status(sid) is None
    assert sid not in jobs.statuses()
    assert jobs.delete(sid) is False


def test_working_dir_delivers_a_local_folder(jobs: RayJobs, tmp_path: Path) -> None:
    folder = tmp_path / "code"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "answer.py").write_text("VALUE = 'delivered-42'\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"\0" * 10)
    uri = jobs.upload_dir(folder)
    assert uri.startswith("gcs://_ray_pkg_")
    assert uri.endswith(".zip")
    assert jobs.upload_dir(folder) == uri  # same content, same package: not sent again

    sid = new_id("wd")
    script = "import os, pkg.answer as a; print(a.VALUE, os.path.exists('__pycache__'))"
    jobs.submit(sid, f'{PY} -c "{script}"', runtime_env={"working_dir": uri})
    info = ended(jobs, sid)
    assert info.status == "SUCCEEDED", info.message
    assert "delivered-42 False" in (jobs.logs(sid) or "")


def test_answers_over_the_bound_are_refused(ray_head: RayHead, jobs: RayJobs) -> None:
    assert jobs.statuses()  # the earlier tests left jobs there
    with RayJobs(ray_head.address, max_body=64) as small, pytest.raises(RayError, match="over 64"):
        small.statuses()


def test_zz_stopped_head_is_unavailable_quickly(ray_head: RayHead) -> None:
    # Last: it stops the session's head.
    client = RayJobs(ray_head.address, timeout=5)
    assert client.statuses() is not None
    ray_head.stop()
    assert not ray_head.processes()
    started = time.monotonic()
    for call in (client.statuses, lambda: client.submit("late", "true"), client.version):
        with pytest.raises(RayUnavailable, match=f"127.0.0.1:{ray_head.dashboard_port}"):
            call()
    assert time.monotonic() - started < 5
    assert sys.modules.get("ray") is None  # asyncrun speaks HTTP only
