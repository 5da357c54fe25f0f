"""The ``Executor`` boundary: what a reconciler needs of an engine that runs jobs.

A reconciler (the Ray agent, ``_ray_agent``) owns the loop between the store and an engine:
it claims executions in the store, asks the engine to start, stop or forget their jobs, polls
all of them in one call per tick, and records what it observes on the runs. The engine part
is small and holds no state of asyncrun's: everything here is keyed by the execution's
**handle**, an id derived from the execution alone, so starting twice (after a reconciler
restart, a lost answer) starts one job.

Implementations: :class:`~asyncrun.server._local_engine.LocalProcesses` (processes of this
machine, driven by the local agent ``_agent``) and
:class:`~asyncrun.server._ray_executor.RayExecutor` (Ray's Jobs API, driven by ``_ray_agent``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

import attrs

from ..kinds import Outcome


@attrs.frozen
class Capabilities:
    """What an engine can do, so a reconciler knows what it must do itself.

    Attributes:
        separate_streams: Whether the engine keeps stdout and stderr apart (Ray does not: its
            jobs run under the launcher, which tags each line itself).
        survives_restart: Whether jobs go on, and stay reachable by handle, when the
            reconciler restarts (a new reconciler adopts them instead of losing them).
        per_job_grace: Whether each job can have its own grace between SIGTERM and SIGKILL.
    """

    separate_streams: bool
    survives_restart: bool
    per_job_grace: bool


@attrs.frozen
class JobRequest:
    """One job to start: the process of one execution.

    Attributes:
        key: The execution's identity (``project/id/number/reserved_us``); the handle is
            derived from it, so a request started twice is one job.
        argv: The entrypoint's command.
        env: The job's whole environment (built, never inherited: see ``_core.launch``).
        grace: Seconds between SIGTERM and SIGKILL when it is stopped.
        cwd: Its working folder on the engine's machine (``None``: the engine's default).
        labels: Short strings the engine shows with the job (for its operators).
        files: A folder of this machine the job gets as its working folder, for engines that
            run jobs elsewhere (Ray uploads it as the job's ``working_dir``).
        user: The uid it runs as (an isolated local job; ``None``: the engine's own).
        umask: Its umask (local jobs; ``None``: the engine's own).
    """

    key: str
    argv: list[str]
    env: Mapping[str, str]
    grace: float
    cwd: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    files: str | None = None
    user: int | None = None
    umask: int | None = None


@attrs.frozen
class Observation:
    """What the engine says of one job at one poll.

    Attributes:
        handle: The job's handle.
        status: The engine's own word for its state (``None``: the engine does not know it).
        outcome: That status as asyncrun's (see each engine's mapping); ``None`` when there is
            nothing to record (a status this engine does not know).
        exit_code: The entrypoint's exit code, once it exited by itself.
    """

    handle: str
    status: str | None
    outcome: Outcome | None
    exit_code: int | None = None

    @property
    def pending(self) -> bool:
        """Whether the job waits for resources (a stop then may not reach it)."""
        return self.status == "PENDING"


class Executor(Protocol):
    """An engine that runs jobs, as a reconciler drives it (synchronous, bounded calls)."""

    @property
    def capabilities(self) -> Capabilities:
        """What this engine can do."""
        ...

    def handle(self, key: str) -> str:
        """The handle of the job of execution ``key`` (deterministic)."""
        ...

    def start(self, request: JobRequest) -> str:
        """Start the job of ``request`` unless it was started already; its handle.

        Raises:
            TransportError: if the engine cannot be reached now (try again later).
            AsyncRunError: if the engine refuses the job (the run ends in ERROR).
        """
        ...

    def stop(self, handle: str) -> None:
        """Stop a job with its grace (SIGTERM, then SIGKILL); repeat-safe."""
        ...

    def kill(self, handle: str) -> None:
        """End a job as soon as the engine can; repeat-safe."""
        ...

    def poll(self, handles: Collection[str]) -> dict[str, Observation]:
        """What the engine says of every job in ``handles``, in one call.

        Raises:
            TransportError: if the engine cannot be reached now.
        """
        ...

    def forget(self, handle: str) -> None:
        """Drop what the engine keeps of a finished job (its record, its logs)."""
        ...

    def close(self) -> None:
        """Release the engine's connections."""
        ...
