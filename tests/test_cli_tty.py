"""The ``asyncrun`` command in a terminal: live wait displays and what Ctrl-C says.

Each command runs under a pseudo-terminal (pexpect), as a user runs it, against the embedded
backend and a real server. Nothing waits on the clock: the jobs end when the test creates a
file, and every step waits for the output it expects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest
from test_cli import Cli, backend_env

ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"
"""Escape sequences rich puts between words (colours, cursor moves)."""


@pytest.fixture(params=["embedded", "http"])
def tty_cli(request: pytest.FixtureRequest) -> Cli:
    return Cli(request.param, backend_env(request, request.param))


def spawn(cli: Cli, *args: str) -> pexpect.spawn:
    """The command under a 100x30 terminal (colour on, as a terminal has it)."""
    env = {**cli.env, "TERM": "xterm-256color"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "asyncrun", "-p", cli.project, *args],
        env=env,
        dimensions=(30, 100),
        timeout=60,
        encoding="utf-8",
    )


def gated_job(cli: Cli, gate: Path) -> str:
    """A running job that ends (COMPLETED) once ``gate`` exists."""
    script = f"echo started; while [ ! -e {gate} ]; do sleep 0.05; done; echo done"
    return cli.ok("run", "command+job", "--", "sh", "-c", script).strip()


def ended(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return child.exitstatus


def test_wait_shows_a_live_state_line_then_the_outcome(tty_cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = gated_job(tty_cli, gate)
    child = spawn(tty_cli, "wait", run_id[:8])
    child.expect(f"waiting for run {run_id}  {ANSI}(READY|PENDING|RUNNING)")
    child.expect(f"{ANSI}0:0[0-9]")  # the time waited, counting
    gate.touch()
    child.expect(f"run {run_id}: {ANSI}COMPLETED")
    assert ended(child) == 0


def test_ctrl_c_in_wait_says_the_run_goes_on(tty_cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = gated_job(tty_cli, gate)
    child = spawn(tty_cli, "wait", run_id)
    child.expect(f"waiting for run {run_id}")
    child.sendintr()
    child.expect(
        f"stopped waiting: run {run_id} goes on; stop it with: "
        f"asyncrun -p {tty_cli.project} stop {run_id}"
    )
    assert ended(child) == 130
    assert tty_cli.record(run_id)["status"]["state"] in ("READY", "PENDING", "RUNNING")
    gate.touch()
    assert tty_cli.ok("wait", run_id) == f"run {run_id}: COMPLETED\n"


def test_ctrl_c_in_logs_follow_says_the_run_goes_on(tty_cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = gated_job(tty_cli, gate)
    child = spawn(tty_cli, "logs", "-f", run_id[:10])
    child.expect("started")
    child.sendintr()
    child.expect(
        f"stopped following its logs: run {run_id} goes on; stop it with: "
        f"asyncrun -p {tty_cli.project} stop {run_id}"
    )
    assert ended(child) == 130
    gate.touch()
    assert tty_cli.ok("wait", run_id) == f"run {run_id}: COMPLETED\n"


def test_run_wait_shows_the_live_line_and_asks_on_ctrl_c(tty_cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    child = spawn(tty_cli, "run", "command+job", "--wait", "--", "sh", "-c", script)
    child.expect(r"([0-9a-f]{32})\r\n")
    run_id = child.match.group(1)
    child.expect(f"waiting for run {run_id}  {ANSI}(READY|PENDING|RUNNING)")
    child.sendintr()
    child.expect(rf"Stop run {run_id}\? \[y/N\]")
    child.sendline("n")
    child.expect(f"run {run_id} keeps running; stop it with: asyncrun -p {tty_cli.project} stop")
    assert ended(child) == 130
    gate.touch()
    assert tty_cli.ok("wait", run_id) == f"run {run_id}: COMPLETED\n"


def test_stop_wait_shows_the_run_stopping(tty_cli: Cli, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # The job takes its time to stop: until the test opens the gate.
    script = (
        f"trap 'while [ ! -e {gate} ]; do sleep 0.05; done; exit 0' TERM; "
        "echo started; sleep 60 & wait"
    )
    run_id = tty_cli.ok("run", "command+job", "--", "sh", "-c", script).strip()
    child = spawn(tty_cli, "logs", "-f", run_id)
    child.expect("started")
    child.terminate(force=True)
    child = spawn(tty_cli, "stop", "--wait", run_id)
    child.expect(f"stopping run {run_id}  {ANSI}STOP")
    gate.touch()
    child.expect(f"run {run_id}: {ANSI}STOPPED")
    assert ended(child) == 0
