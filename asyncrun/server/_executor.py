"""The service's side of execution: how jobs are launched, the agent kept alive, jobs killed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from .._core import launch as _launch
from .._core.auth import WRITE
from ._agent import DB_ENV, lock_path
from ._procs import DEFAULT_UIDS, kill_execution, private_file
from ._store._execution import Execution

# ``sh`` starts the agent in the background and exits at once: the agent is re-parented to
# init, so nobody has to reap it and it outlives the server or client that started it. Its
# log is created private (umask), like every file of the database.
_SPAWN = 'umask 077; exec </dev/null; "$@" >/dev/null 2>>"$ASYNCRUN_AGENT_LOG" &'
_AGENT_START_WAIT = 20.0
"""Seconds a spawn waits for the new agent to take the lock (so one burst spawns one)."""


def current_umask() -> int:
    """This process's umask, read without changing it (Linux), else the usual 022."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


class LocalExecutor:
    """Runs jobs as local processes through the database's agent (see ``_agent``).

    Args:
        db_path: The SQLite database the agent serves, or ``None`` with ``url``.
        stop_grace: Seconds between SIGTERM and SIGKILL when a run is stopped.
        keep_log_lines: Lines of log kept per run (the newest).
        endpoint: URL jobs use to reach the server; ``None`` for the embedded backend, whose
            jobs open the same database and start where the caller of ``run()`` is.
        idle_exit: Seconds an agent with nothing to do stays alive.
        jobs_dir: A server's jobs folder: each run works in a folder of its own inside.
        job_env: Names of the server's environment variables passed to every job.
        job_token_role: Role of the token each job gets (``write``, or ``run`` to let jobs
            start runs).
        isolate: Run each execution as an unprivileged user of its own (needs root).
        job_uids: The uid range isolated jobs use.
        url: A PostgreSQL database's URL: the agent is this replica's (see ``_agent``).
        lock: The agent's lock file (default: next to ``db_path``; with ``url``, required).
    """

    def __init__(
        self,
        db_path: Path | None,
        *,
        url: str | None = None,
        lock: Path | None = None,
        stop_grace: float = 10.0,
        keep_log_lines: int = 100_000,
        endpoint: str | None = None,
        idle_exit: float = 30.0,
        jobs_dir: Path | None = None,
        job_env: Sequence[str] = (),
        job_token_role: str = WRITE,
        isolate: bool = False,
        job_uids: tuple[int, int] = DEFAULT_UIDS,
    ) -> None:
        self.db_path = None if db_path is None else Path(db_path)
        self.url = url
        if lock is None:
            assert self.db_path is not None, "an agent of a PostgreSQL database needs its lock"
            lock = lock_path(self.db_path)
        self.lock = lock
        self.stop_grace = stop_grace
        self.keep_log_lines = keep_log_lines
        self.endpoint = endpoint
        self.idle_exit = idle_exit
        self.jobs_dir = jobs_dir
        self.job_env = tuple(job_env)
        self.job_token_role = job_token_role
        self.isolate = isolate
        self.job_uids = job_uids
        self._starting = anyio.Lock()
        private_file(self.lock, create=False)

    def launch(self) -> _launch.Launch:
        """How an execution asked for now is launched (see :mod:`asyncrun._core.launch`)."""
        if self.endpoint is None:
            # Embedded: this process called run(); its folder, interpreter and base variables.
            return _launch.capture(
                os.environ, sys.executable, cwd=os.getcwd(), umask=current_umask()
            )
        return _launch.capture(
            os.environ,
            sys.executable,
            passthrough=self.job_env,
            umask=0o077 if self.isolate else current_umask(),
            jobs_dir=str(self.jobs_dir) if self.jobs_dir else None,
            endpoint=self.endpoint,
            token_role=self.job_token_role,
            isolate=self.isolate,
        )

    def _lock(self) -> int:
        # Created private; one left 0644 by an older asyncrun was tightened at __init__.
        return os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o600)

    def agent_alive(self) -> bool:
        """Whether an agent holds this database's lock."""
        fd = self._lock()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    async def ensure_agent(self) -> None:
        """Start the agent unless one is alive (two racing starts are fine: one exits).

        Raises:
            OSError: if the process cannot be started.
        """
        async with self._starting:  # one start at a time: a cold burst of run() spawns one agent
            if self.agent_alive():
                return
            await self._spawn()
            # Until the new agent holds the lock, every other caller would spawn another.
            with anyio.move_on_after(_AGENT_START_WAIT):
                while not self.agent_alive():  # noqa: ASYNC110 (another process: no event)
                    await anyio.sleep(0.01)

    async def _spawn(self) -> None:
        argv = [
            sys.executable, "-m", "asyncrun.server._agent", "--lock", str(self.lock),
            "--grace", str(self.stop_grace), "--keep-lines", str(self.keep_log_lines),
            "--idle-exit", str(self.idle_exit),
            "--job-uids", f"{self.job_uids[0]}-{self.job_uids[1]}",
        ]  # fmt: skip
        env = {**os.environ, "ASYNCRUN_AGENT_LOG": str(self.lock.with_name("agent.log"))}
        if self.url is not None:
            env[DB_ENV] = self.url  # its environment is its user's only; argv is anybody's
        else:
            assert self.db_path is not None
            argv += ["--db", str(self.db_path)]
        await anyio.run_process(["/bin/sh", "-c", _SPAWN, "sh", *argv], env=env)

    @staticmethod
    def kill(execution: Execution) -> None:
        """SIGKILL an execution's job and every process it left, if it still runs."""
        if execution.pid is None or execution.ended_us is not None:
            return
        kill_execution(execution.pid, execution.pid_started, execution.uid, execution.key)


class RayAgentExecutor(LocalExecutor):
    """Runs jobs on a Ray cluster through this server's Ray agent (see ``_ray_agent``).

    The service treats it as the local executor: it decides launches the same way and keeps
    the agent alive through the same lock protocol; only the agent it starts differs.

    Args:
        db_path: The SQLite database, or ``None`` with ``url``.
        ray_address: The Ray head's dashboard address (``http://HOST:8265``).
        lock: The Ray agent's lock file (``ray-agent.lock`` in the jobs folder).
        python: The interpreter the cluster runs the launcher with.
        lost_after: Seconds the head may be unreachable before open runs end as lost.
        entrypoint_cpus: CPUs Ray reserves for each job's entrypoint (``None``: Ray's 0).
        working_dir: A folder every job gets as its working folder (uploaded to the head).
        **options: What :class:`LocalExecutor` takes (``endpoint`` is required).
    """

    def __init__(
        self,
        db_path: Path | None,
        *,
        ray_address: str,
        lock: Path,
        python: str | None = None,
        lost_after: float = 60.0,
        entrypoint_cpus: float | None = None,
        working_dir: Path | None = None,
        **options: Any,
    ) -> None:
        super().__init__(db_path, lock=lock, **options)
        self.ray_address = ray_address
        self.python = python or sys.executable
        self.lost_after = lost_after
        self.entrypoint_cpus = entrypoint_cpus
        self.working_dir = None if working_dir is None else Path(working_dir).resolve()

    async def _spawn(self) -> None:
        argv = [
            sys.executable, "-m", "asyncrun.server._ray_agent", "--lock", str(self.lock),
            "--ray-address", self.ray_address, "--python", self.python,
            "--endpoint", self.endpoint or "", "--grace", str(self.stop_grace),
            "--idle-exit", str(self.idle_exit), "--lost-after", str(self.lost_after),
        ]  # fmt: skip
        if self.entrypoint_cpus is not None:
            argv += ["--entrypoint-cpus", str(self.entrypoint_cpus)]
        if self.working_dir is not None:
            argv += ["--working-dir", str(self.working_dir)]
        env = {**os.environ, "ASYNCRUN_AGENT_LOG": str(self.lock.with_name("ray-agent.log"))}
        if self.url is not None:
            env[DB_ENV] = self.url
        else:
            assert self.db_path is not None
            argv += ["--db", str(self.db_path)]
        await anyio.run_process(["/bin/sh", "-c", _SPAWN, "sh", *argv], env=env)

    @staticmethod
    def kill(execution: Execution) -> None:
        """Nothing here: the Ray agent stops the job of a deleted run at its next claim."""
