"""Executions: one start of a run and the job that carries it out, and their store operations."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ... import _serde
from ..._core import launch as _launch
from . import _tokens
from ._sql import Op as Operation
from ._sql import q


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


MATCH: Final = "project = ? AND id = ? AND execution = ? AND reserved_us = ?"
"""The WHERE clause of one execution (its :data:`Ident`)."""


EXECUTION_COLUMNS: Final = (
    "project, id, execution, reserved_us, pid, pid_started, ended_us, launch, uid, owner"
)
_EXECUTION: Final = f"SELECT {EXECUTION_COLUMNS} FROM executions"


def latest_execution(project: str, id: str) -> Operation[Execution | None]:
    """The newest execution of a run, if it was ever started."""
    row = (
        yield q(
            f"{_EXECUTION} WHERE project = ? AND id = ? ORDER BY execution DESC LIMIT 1",
            project,
            id,
        )
    ).one()
    return None if row is None else Execution.from_row(row)


def open_executions(unstarted: bool) -> Operation[list[Execution]]:
    """Executions that have not ended (only those not started yet, if ``unstarted``)."""
    where = "WHERE ended_us IS NULL" + (" AND pid IS NULL" if unstarted else "")
    rows = yield q(f"{_EXECUTION} {where}")
    return [Execution.from_row(row) for row in rows]


def reserve(project: str, id: str, launch: _launch.Launch) -> Operation[int]:
    """Reserve the next execution number of a run (the agent will start it)."""
    number = (
        yield q(
            "SELECT coalesce(max(execution), 0) + 1 FROM executions WHERE project = ? AND id = ?",
            project,
            id,
        )
    ).value()
    yield q(
        "INSERT INTO executions (project, id, execution, reserved_us, launch)"
        " VALUES (?, ?, ?, ?, ?)",
        project,
        id,
        number,
        time.time_ns() // 1000,
        _serde.dumps(_launch.to_data(launch)),
    )
    return int(number)


def exists(ident: Ident) -> Operation[bool]:
    return (yield q(f"SELECT 1 FROM executions WHERE {MATCH}", *ident)).one() is not None


def set_execution_pid(
    ident: Ident, pid: int, pid_started: float, uid: int | None
) -> Operation[None]:
    """Record the job process of an execution (and the user it runs as, if isolated)."""
    yield q(
        f"UPDATE executions SET pid = ?, pid_started = ?, uid = ? WHERE {MATCH}",
        pid,
        pid_started,
        uid,
        *ident,
    )


def end_execution(ident: Ident) -> Operation[None]:
    """Mark an execution as ended; the token its job was given stops working."""
    now_us = time.time_ns() // 1000
    ended = yield q(f"UPDATE executions SET ended_us = ? WHERE {MATCH}", now_us, *ident)
    if ended.rowcount:  # else the run was deleted: its tokens went with it
        yield from _tokens.revoke_jobs(f"{ident[0]}/{ident[1]}")
