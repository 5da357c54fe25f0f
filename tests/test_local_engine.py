"""The local agent's engine on the Executor boundary (issue 16 item 1), with real processes."""

from __future__ import annotations

import os
import sys
import time

from conftest import wait_for

from asyncrun.server._engine import JobRequest
from asyncrun.server._local_engine import LocalProcesses

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"  # noqa: E501


def request(code: str, key: str = "p/r/1/1", grace: float = 0.5) -> JobRequest:
    env = {"PATH": os.environ["PATH"], "ASYNCRUN_EXECUTION": key}
    return JobRequest(key, [sys.executable, "-c", code], env, grace)


def test_a_job_started_twice_is_one_job_and_its_exit_code_is_observed() -> None:
    engine = LocalProcesses()
    handle = engine.start(request("import sys; print('hi'); sys.exit(3)"))
    assert engine.start(request("raise SystemExit(0)")) == handle
    assert engine.pipes(handle)["stdout"].read() == b"hi\n"
    seen = wait_for(
        lambda: (o := engine.poll([handle])[handle]).status == "EXITED" and o, "the exit"
    )
    assert seen.exit_code == 3
    assert engine.wait(handle) == 3
    engine.forget(handle)
    assert engine.poll([handle])[handle].status is None  # forgotten: unknown


def test_stop_sends_sigterm_then_sigkill_after_the_grace() -> None:
    engine = LocalProcesses()
    handle = engine.start(request(STUBBORN, grace=0.5))
    assert engine.pipes(handle)["stdout"].readline() == b"up\n"
    stopped_at = time.monotonic()
    engine.stop(handle)
    engine.stop(handle)  # repeat-safe: the grace is counted from the first
    seen = wait_for(
        lambda: (o := engine.poll([handle])[handle]).status == "EXITED" and o, "the kill"
    )
    assert seen.exit_code == -9  # it ignored SIGTERM: SIGKILL once the grace was over
    assert time.monotonic() - stopped_at >= 0.5
    engine.wait(handle)
    engine.forget(handle)
    assert engine.capabilities.separate_streams
    assert engine.capabilities.per_job_grace


# What a job leaves behind (orphans carrying its marker, an isolated user's processes) is
# ended by kill() in the agent, which is their subreaper: tests/security/test_processes.py.
