"""The Ray engine behind the :class:`~asyncrun.server._engine.Executor` boundary.

Each job is a Ray job submitted through the Jobs REST API (``_ray``) under a submission id
derived from its execution, so a start repeated after a lost answer or a reconciler restart
finds the job already there. Its entrypoint is the launcher (``python -m asyncrun._launcher``),
which reports lines and the end to the server itself: nothing is read from Ray's logs.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Collection
from pathlib import Path
from typing import Final

from ._engine import Capabilities, JobRequest, Observation
from ._ray import RayJobs, with_stop_grace

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_MAX_ID: Final = 128


def submission_id(key: str) -> str:
    """The Ray submission id of execution ``key``: readable, safe, at most 128 characters.

    ``key`` is ``project/id/number/reserved_us``: a run deleted and created again with the
    same id gets other submission ids (``reserved_us`` differs).
    """
    readable = "asyncrun-" + _UNSAFE.sub("_", key.replace("/", "-"))
    if len(readable) <= _MAX_ID:
        return readable
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{readable[: _MAX_ID - len(digest) - 1]}-{digest}"


class RayExecutor:
    """Jobs on a Ray cluster, through its head's Jobs API.

    Args:
        jobs: The head's client.
        entrypoint_num_cpus: CPUs Ray reserves for each entrypoint (``None``: Ray's default, 0).
    """

    capabilities: Final = Capabilities(
        separate_streams=False, survives_restart=True, per_job_grace=True
    )

    def __init__(self, jobs: RayJobs, *, entrypoint_num_cpus: float | None = None) -> None:
        self.jobs = jobs
        self.entrypoint_num_cpus = entrypoint_num_cpus

    def handle(self, key: str) -> str:
        """The submission id of execution ``key``."""
        return submission_id(key)

    def start(self, request: JobRequest) -> str:
        """Submit the job (repeat-safe: an id Ray has is not submitted again)."""
        handle = self.handle(request.key)
        runtime_env = with_stop_grace({"env_vars": dict(request.env)}, request.grace)
        if request.files is not None:
            # Content-addressed: a folder the head has already is not sent again.
            runtime_env["working_dir"] = self.jobs.upload_dir(Path(request.files))
        entrypoint = shlex.join(request.argv)
        if request.cwd:
            entrypoint = f"cd {shlex.quote(request.cwd)} && exec {entrypoint}"
        self.jobs.submit(
            handle,
            entrypoint,
            runtime_env=runtime_env,
            metadata=dict(request.labels),
            entrypoint_num_cpus=self.entrypoint_num_cpus,
        )
        return handle

    def stop(self, handle: str) -> None:
        """Ask Ray to stop the job (its grace was set at submission)."""
        self.jobs.stop(handle)

    def kill(self, handle: str) -> None:
        """Ray's stop: Ray cannot kill sooner than the grace the job was submitted with."""
        self.jobs.stop(handle)

    def poll(self, handles: Collection[str]) -> dict[str, Observation]:
        """Every handle's status from one listing of the head's jobs."""
        known = self.jobs.statuses() if handles else {}
        found = {}
        for handle in handles:
            info = known.get(handle)
            if info is None:
                found[handle] = Observation(handle, None, None)
            else:
                found[handle] = Observation(handle, info.status, info.outcome(), info.exit_code)
        return found

    def forget(self, handle: str) -> None:
        """Delete the finished job's record from the head."""
        self.jobs.delete(handle)

    def close(self) -> None:
        """Close the head's client."""
        self.jobs.close()
