"""Which agent executes which execution: claims in the database, not a file lock.

Every agent (one per machine and database for SQLite, one per replica for PostgreSQL) has a
row in ``agents`` that it refreshes every second (its heartbeat). An execution belongs to the
agent named in its ``owner``: only that agent starts, watches and ends its job. An agent
claims the executions nobody owns, and those of agents whose heartbeat stopped (a replica that
died): their jobs died with their agent (``PR_SET_PDEATHSIG``), so the new owner ends their
runs ERROR (lost) and starts the executions that had not started yet. An agent that finds an
execution of its own claimed by another was taken for dead: it ends that job.
"""

from __future__ import annotations

from typing import Final

from ._execution import EXECUTION_COLUMNS, Execution
from ._sql import Op as Operation
from ._sql import q

HEARTBEAT_US: Final = 1_000_000
"""How often an agent refreshes its row and claims what is left without an owner."""
STALE_US: Final = 10_000_000
"""An agent whose row is older than this is dead: another takes its executions over."""

MIGRATION: Final = (
    "ALTER TABLE executions ADD COLUMN owner TEXT",
    """CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        heartbeat_us INTEGER NOT NULL
    )""",
)


def claim(
    agent: str, host: str, pid: int, now_us: int, *, others_dead: bool = False
) -> Operation[list[Execution]]:
    """Beat, claim what has no live owner, and return every open execution ``agent`` owns.

    ``others_dead``: the caller knows no other agent is alive (SQLite's agent holds the
    database's lock), so their executions are taken at once, without waiting for staleness.
    """
    yield q(
        "INSERT INTO agents (id, host, pid, heartbeat_us) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET heartbeat_us = excluded.heartbeat_us",
        agent,
        host,
        pid,
        now_us,
    )
    if others_dead:
        yield q("DELETE FROM agents WHERE id <> ?", agent)
    else:
        yield q("DELETE FROM agents WHERE heartbeat_us < ?", now_us - STALE_US)
    yield q(
        "UPDATE executions SET owner = ? WHERE ended_us IS NULL"
        " AND (owner IS NULL OR owner NOT IN (SELECT id FROM agents))",
        agent,
    )
    rows = yield q(
        f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE ended_us IS NULL AND owner = ?", agent
    )
    return [Execution.from_row(row) for row in rows]


def leave(agent: str) -> Operation[None]:
    """An agent that exits says so: what it still owned is claimed at once by the next."""
    yield q("DELETE FROM agents WHERE id = ?", agent)
