"""Access tokens in the store: only their SHA-256 is kept, never the token."""

from __future__ import annotations

from typing import Final

import attrs
import orjson

from ..._core.auth import Grant
from ._sql import Op as Operation
from ._sql import q

MIGRATION: Final = (
    """CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL,
        role TEXT NOT NULL,
        projects TEXT NOT NULL,
        description TEXT,
        run TEXT,
        created_us INTEGER NOT NULL
    )""",
)
"""Schema of the tokens table; ``run`` is ``project/id`` for the token a job was given."""

ROLES_MIGRATION: Final = (
    # Before the run role existed, a write token could also start runs: it keeps doing so.
    "ALTER TABLE tokens ADD COLUMN upgraded INTEGER NOT NULL DEFAULT 0",
    "UPDATE tokens SET role = 'run', upgraded = 1 WHERE role = 'write' AND run IS NULL",
)


@attrs.frozen
class TokenInfo:
    """A stored token as ``token list`` shows it (no secret)."""

    grant: Grant
    description: str | None
    run: str | None
    created_us: int
    upgraded: bool = False
    """A write token from before the run role, given it so that it keeps working."""


def add(
    grant: Grant, digest: bytes, *, description: str | None, run: str | None, now_us: int
) -> Operation[None]:
    """Store a token's digest and what it allows."""
    yield q(
        "INSERT INTO tokens (id, hash, role, projects, description, run, created_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        grant.token_id, digest, grant.role, orjson.dumps(sorted(grant.projects)).decode(),
        description, run, now_us,
    )  # fmt: skip


def lookup(token_id: str) -> Operation[tuple[Grant, bytes] | None]:
    """The grant and stored digest of a token id, if it exists."""
    row = (yield q("SELECT role, projects, hash FROM tokens WHERE id = ?", token_id)).one()
    if row is None:
        return None
    role, projects, digest = row
    return Grant(token_id, role, frozenset(orjson.loads(projects))), bytes(digest)


def job_run(token_id: str) -> Operation[str | None]:
    """``project/id`` of the run whose job a token was given to (``None``: not a job's)."""
    row = (yield q("SELECT run FROM tokens WHERE id = ?", token_id)).one()
    return None if row is None or row[0] is None else str(row[0])


def listing() -> Operation[list[TokenInfo]]:
    """Every token, oldest first."""
    rows = yield q(
        "SELECT id, role, projects, description, run, created_us, upgraded FROM tokens"
        " ORDER BY created_us"
    )
    return [
        TokenInfo(
            Grant(id_, role, frozenset(orjson.loads(projects))),
            description,
            run,
            created,
            bool(upgraded),
        )
        for id_, role, projects, description, run, created, upgraded in rows
    ]


def revoke(token_id: str) -> Operation[bool]:
    """Delete a token; ``False`` if there was none with this id."""
    return (yield q("DELETE FROM tokens WHERE id = ?", token_id)).rowcount == 1


def revoke_jobs(run: str | None = None) -> Operation[None]:
    """Delete the tokens given to jobs: of one run (``project/id``), or all."""
    if run is None:
        yield q("DELETE FROM tokens WHERE run IS NOT NULL")
    else:
        yield q("DELETE FROM tokens WHERE run = ?", run)
