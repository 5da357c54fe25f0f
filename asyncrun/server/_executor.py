"""The local process executor: starts one detached supervisor process per execution."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import anyio
import psutil

from ._store._sqlite import Execution

# ``sh`` starts the supervisor in the background and prints its pid, then exits at once: the
# supervisor is re-parented to init, so nobody has to reap it and it outlives its starter.
_SPAWN = 'exec </dev/null; "$@" >/dev/null 2>>"$ASYNCRUN_SUPERVISOR_LOG" & echo $!'


class LocalExecutor:
    """Runs jobs as local processes, each under its own supervisor.

    Args:
        db_path: The SQLite database the supervisors write to.
        stop_grace: Seconds between SIGTERM and SIGKILL when a run is stopped.
        keep_log_lines: Lines of log kept per run (the newest).
        endpoint: URL jobs use to reach the server (``None`` for the embedded backend, whose
            jobs open the same database).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        stop_grace: float = 10.0,
        keep_log_lines: int = 100_000,
        endpoint: str | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.stop_grace = stop_grace
        self.keep_log_lines = keep_log_lines
        self.endpoint = endpoint
        self.log_dir = self.db_path.parent / "supervisors"

    async def start(self, project: str, id: str, execution: int) -> int:
        """Start the supervisor of an execution; returns its pid.

        Raises:
            OSError: if the process cannot be started.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "asyncrun.server._supervisor",
            "--db", str(self.db_path), "--project", project, "--id", id,
            "--execution", str(execution), "--grace", str(self.stop_grace),
            "--keep-lines", str(self.keep_log_lines),
        ]  # fmt: skip
        if self.endpoint:
            argv += ["--endpoint", self.endpoint]
        env = {
            **os.environ,
            "ASYNCRUN_SUPERVISOR_LOG": str(self.log_dir / f"{project}.{id}.{execution}.log"),
        }
        result = await anyio.run_process(["/bin/sh", "-c", _SPAWN, "sh", *argv], env=env)
        return int(result.stdout.decode().strip())

    @staticmethod
    def is_alive(execution: Execution) -> bool:
        """Whether the execution's supervisor still runs (pid reuse is told apart)."""
        if execution.pid is None or execution.pid_started is None:
            return False
        try:
            process = psutil.Process(execution.pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            return alive and abs(process.create_time() - execution.pid_started) < 0.05
        except psutil.Error:
            return False

    def signal_stop(self, execution: Execution) -> bool:
        """Ask the supervisor to stop its job; ``False`` if it is already gone."""
        if not self.is_alive(execution):
            return False
        assert execution.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(execution.pid, signal.SIGTERM)
            return True
        return False
