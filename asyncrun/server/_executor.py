"""The service's side of execution: make sure the database's agent runs, and kill jobs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
from pathlib import Path

import anyio
import psutil

from ._agent import lock_path
from ._store._sqlite import Execution

# ``sh`` starts the agent in the background and exits at once: the agent is re-parented to
# init, so nobody has to reap it and it outlives the server or client that started it.
_SPAWN = 'exec </dev/null; "$@" >/dev/null 2>>"$ASYNCRUN_AGENT_LOG" &'


class LocalExecutor:
    """Runs jobs as local processes through the database's agent (see ``_agent``).

    Args:
        db_path: The SQLite database the agent serves.
        stop_grace: Seconds between SIGTERM and SIGKILL when a run is stopped.
        keep_log_lines: Lines of log kept per run (the newest).
        endpoint: URL jobs use to reach the server (``None`` for the embedded backend, whose
            jobs open the same database).
        idle_exit: Seconds an agent with nothing to do stays alive.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        stop_grace: float = 10.0,
        keep_log_lines: int = 100_000,
        endpoint: str | None = None,
        idle_exit: float = 30.0,
    ) -> None:
        self.db_path = Path(db_path)
        self.stop_grace = stop_grace
        self.keep_log_lines = keep_log_lines
        self.endpoint = endpoint
        self.idle_exit = idle_exit
        self._starting = anyio.Lock()

    def agent_alive(self) -> bool:
        """Whether an agent holds this database's lock."""
        with lock_path(self.db_path).open("ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    async def ensure_agent(self) -> None:
        """Start the agent unless one is alive (two racing starts are fine: one exits).

        Raises:
            OSError: if the process cannot be started.
        """
        async with self._starting:  # one start at a time: a cold burst of run() spawns one agent
            if self.agent_alive():
                return
            await self._spawn()

    async def _spawn(self) -> None:
        argv = [
            sys.executable, "-m", "asyncrun.server._agent", "--db", str(self.db_path),
            "--grace", str(self.stop_grace), "--keep-lines", str(self.keep_log_lines),
            "--idle-exit", str(self.idle_exit),
        ]  # fmt: skip
        if self.endpoint:
            argv += ["--endpoint", self.endpoint]
        env = {**os.environ, "ASYNCRUN_AGENT_LOG": str(self.db_path.with_name("agent.log"))}
        await anyio.run_process(["/bin/sh", "-c", _SPAWN, "sh", *argv], env=env)

    @staticmethod
    def kill(execution: Execution) -> None:
        """SIGKILL an execution's job and its process group, if it still runs."""
        if execution.pid is None or execution.ended_us is not None:
            return
        try:
            same = abs(psutil.Process(execution.pid).create_time() - (execution.pid_started or 0))
        except psutil.Error:
            return
        if same < 0.05:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(execution.pid, signal.SIGKILL)
