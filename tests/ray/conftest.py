"""A real Ray head on loopback for the Ray engine's tests (``nox -s ray``).

The head is started with ``ray start --head`` from the Ray installed beside the interpreter
running the tests (the ``ray`` session's venv pins it). These tests are run on purpose, so a
missing Ray fails them with what to do instead of skipping them.

The head is ended by its processes, not with ``ray stop``: that command ends every Ray process
of the machine, whoever started it. ``ray start`` runs in a new session, every process of the
head inherits it, and each job's entrypoint (which Ray starts in a session of its own) is a
descendant of one of them: those are all ended, and only those.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        # An ephemeral port: never in Ray's worker range (10002-19999 by default).
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RayHead:
    """One head started with ``ray start --head``; :meth:`stop` ends every process of it."""

    def __init__(self) -> None:
        if not RAY.exists():
            pytest.fail("the Ray engine's tests need Ray: run them with `nox -s ray`", False)
        # Short: Ray puts Unix sockets under it, and their paths must stay under 108 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="arr-", dir="/tmp"))
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        argv = [
            str(RAY), "start", "--head", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1",
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(self.dashboard_port),
            "--port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--num-cpus", "2",
            "--temp-dir", str(self.temp_dir),
        ]  # fmt: skip
        started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.sid = self.proc.pid
        try:
            out, _ = self.proc.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"`ray start` did not return within {START_TIMEOUT} s", False)
        if self.proc.returncode != 0:
            self.stop()
            pytest.fail(f"`ray start` failed:\n{out.decode(errors='replace')[-3000:]}", False)
        self._wait_ready(started + START_TIMEOUT)
        self.startup = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.address}/api/jobs/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"Ray's dashboard did not answer on {self.address} in time", False)

    def processes(self) -> list[psutil.Process]:
        """The head's processes (those of its session) and all their descendants."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) != self.sid:
                    continue
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return list(found.values())

    def stop(self) -> None:
        """End the head (SIGTERM, then SIGKILL after 3 s: gcs_server waits for more); idempotent."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=3)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    head = RayHead()
    try:
        yield head
    finally:
        head.stop()
