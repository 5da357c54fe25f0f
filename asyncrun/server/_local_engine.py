"""The local agent's engine: jobs as child processes of this machine (an ``Executor``).

What is particular to local jobs lives here: each job is a process group of its own (so a
stop reaches all of it), dies with the agent (``PR_SET_PDEATHSIG``), may run as a user of its
own (``--isolate-jobs``), and leaves nothing behind (its group, its user's processes, or the
orphans carrying its marker are killed with it). The agent (``_agent``) reconciles the store
with this engine as the Ray agent does with Ray's; unlike Ray, this engine keeps stdout and
stderr apart, so the agent reads the job's pipes itself (:meth:`LocalProcesses.pipes`) instead
of going through the launcher.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Collection
from typing import IO

import attrs

from . import _procs
from ._engine import Capabilities, Executor, JobRequest, Observation


@attrs.define
class _Job:
    proc: subprocess.Popen[bytes]
    key: str
    user: int | None
    grace: float
    kill_at: float | None = None


class LocalProcesses:
    """Jobs as processes of this machine, each in its own process group.

    A handle is the execution's key, which is also the marker in the job's environment that
    finds what it left behind.
    """

    capabilities = Capabilities(separate_streams=True, survives_restart=False, per_job_grace=True)

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}

    def handle(self, key: str) -> str:
        """The handle of execution ``key``'s job: the key itself."""
        return key

    def start(self, request: JobRequest) -> str:
        """Start the job unless it runs already; its handle.

        Raises:
            OSError: if the process cannot be started (a missing program, a bad folder).
        """
        handle = self.handle(request.key)
        if handle in self._jobs:
            return handle
        user = request.user
        proc = subprocess.Popen(
            request.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=request.cwd,
            env=dict(request.env),
            start_new_session=True,  # its own process group: a stop signals all of it
            preexec_fn=_procs.die_with_parent,
            umask=-1 if request.umask is None else request.umask,
            user=user,
            group=user,
            extra_groups=None if user is None else [],
        )
        self._jobs[handle] = _Job(proc, request.key, user, request.grace)
        return handle

    def pid(self, handle: str) -> int:
        """The process id of a job's leader."""
        return self._jobs[handle].proc.pid

    def pipes(self, handle: str) -> dict[str, IO[bytes]]:
        """A job's stdout and stderr, for the agent to read (``separate_streams``)."""
        proc = self._jobs[handle].proc
        assert proc.stdout is not None
        assert proc.stderr is not None
        return {"stdout": proc.stdout, "stderr": proc.stderr}

    def leaders(self) -> set[int]:
        """Process ids of every job's leader (what is not an orphan)."""
        return {job.proc.pid for job in self._jobs.values()}

    def stop(self, handle: str) -> None:
        """SIGTERM the job's group now, SIGKILL it after its grace (see :meth:`poll`)."""
        job = self._jobs.get(handle)
        if job is None or job.kill_at is not None:
            return
        job.kill_at = time.monotonic() + job.grace
        _procs.killpg(job.proc.pid, signal.SIGTERM)

    def kill(self, handle: str) -> None:
        """SIGKILL every process of the job: its group, and what left the group."""
        job = self._jobs.get(handle)
        if job is None:
            return
        _procs.killpg(job.proc.pid, signal.SIGKILL)
        if job.user is not None:
            _procs.kill_user(job.user)
            return
        leaders = self.leaders()
        _procs.kill_all(p for p, marker in _procs.orphans(leaders) if marker == job.key)

    def poll(self, handles: Collection[str]) -> dict[str, Observation]:
        """Each job's state (``RUNNING`` or ``EXITED`` with its code); overdue stops killed."""
        now = time.monotonic()
        seen: dict[str, Observation] = {}
        for handle in handles:
            job = self._jobs.get(handle)
            if job is None:
                seen[handle] = Observation(handle, None, None)
                continue
            code = job.proc.poll()
            if code is None and job.kill_at is not None and now >= job.kill_at:
                _procs.killpg(job.proc.pid, signal.SIGKILL)
            status = "RUNNING" if code is None else "EXITED"
            seen[handle] = Observation(handle, status, None, code)
        return seen

    def wait(self, handle: str) -> int:
        """The exit code of a job that exited (reaped here)."""
        return self._jobs[handle].proc.wait()

    def discard(self, handle: str) -> None:
        """Drop a job that never counted (its start could not be recorded): killed, reaped."""
        job = self._jobs.pop(handle, None)
        if job is not None:
            _procs.killpg(job.proc.pid, signal.SIGKILL)
            job.proc.communicate()  # reaps it and closes its pipes

    def forget(self, handle: str) -> None:
        """Drop a finished job (and close what is left open of its pipes)."""
        job = self._jobs.pop(handle, None)
        if job is not None:
            for pipe in (job.proc.stdout, job.proc.stderr):
                if pipe is not None:
                    pipe.close()

    def close(self) -> None:
        """Kill every job left (the agent is going away: they would die with it anyway)."""
        for handle in list(self._jobs):
            self.kill(handle)


_: type[Executor] = LocalProcesses  # mypy checks that it is an Executor
