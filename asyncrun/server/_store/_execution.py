"""An execution of a run as every store keeps it: one start and the job that carries it out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ... import _serde
from ..._core import launch as _launch


@attrs.frozen
class Execution:
    """One start of a run and the job process that carries it out.

    ``pid`` is ``None`` until the agent has started the job; ``ended_us`` is set once the
    agent has recorded how it ended. ``uid`` is the user an isolated job runs as; ``owner``
    the agent that executes it (see ``_agents``).
    """

    project: str
    id: str
    number: int
    reserved_us: int
    pid: int | None
    pid_started: float | None
    ended_us: int | None
    launch: _launch.Launch | None = None
    uid: int | None = None
    owner: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Execution:
        project, id_, number, reserved_us, pid, pid_started, ended_us, launch, uid, owner = row
        loaded = None if launch is None else _launch.from_data(_serde.loads(bytes(launch)))
        return cls(
            project, id_, number, reserved_us, pid, pid_started, ended_us, loaded, uid, owner
        )

    @property
    def key(self) -> str:
        """``project/id/number``: names this execution, e.g. in its processes' environment."""
        return f"{self.project}/{self.id}/{self.number}"

    @property
    def ident(self) -> Ident:
        """What tells this execution from any other, also of a run deleted and re-created."""
        return (self.project, self.id, self.number, self.reserved_us)


Ident = tuple[str, str, int, int]
"""``(project, id, number, reserved_us)`` of an execution."""
