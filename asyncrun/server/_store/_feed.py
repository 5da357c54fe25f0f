"""A project's changes feed: every run written, and every run deleted, after a sequence number.

Every write of a run stamps it with the next value of the global change sequence (``runs.seq``,
indexed per project); a deletion leaves a tombstone with its own sequence number. A watcher
that follows the feed from the ``seq`` of its previous answer learns of every change exactly
once, in order, at a cost that follows the number of changes, never the number of runs it
waits on. PostgreSQL's LISTEN/NOTIFY can wake the same loop instead of a poll of the counter.
"""

from __future__ import annotations

from typing import Final

from ._sql import Op as Operation
from ._sql import q

MIGRATION: Final = (
    """CREATE TABLE run_deletions (
        project TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time_us INTEGER NOT NULL,
        PRIMARY KEY (project, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX run_deletions_by_time ON run_deletions (time_us)",
)
KEEP_DELETIONS_US: Final = 24 * 3600 * 1_000_000
"""Tombstones older than this are dropped: a watcher is never away that long (it polls at
least once a minute); one that is must re-read its runs (``fresh``)."""
FEED_LIMIT: Final = 1000
"""Most changes in one answer; a watcher with more to catch up on asks again at once."""


def record_deletion(project: str, id: str, seq: int, now_us: int) -> Operation[None]:
    """Leave a tombstone for a deleted run (inside the deleting transaction); drop old ones."""
    yield q(
        "INSERT INTO run_deletions (project, id, seq, time_us) VALUES (?, ?, ?, ?)",
        project,
        id,
        seq,
        now_us,
    )
    yield q("DELETE FROM run_deletions WHERE time_us < ?", now_us - KEEP_DELETIONS_US)


def read(
    project: str, since: int, limit: int = FEED_LIMIT
) -> Operation[tuple[list[tuple[int, str, bytes | None]], bool]]:
    """The first ``limit`` changes of a project after ``since``, in order.

    Returns:
        ``(seq, id, doc)`` per change (``doc`` is ``None`` for a deletion), and whether more
        changes follow the last one.
    """
    written = yield q(
        "SELECT seq, id, doc FROM runs WHERE project = ? AND seq > ? ORDER BY seq LIMIT ?",
        project,
        since,
        limit + 1,
    )
    deleted = yield q(
        "SELECT seq, id, NULL FROM run_deletions WHERE project = ? AND seq > ? ORDER BY seq"
        " LIMIT ?",
        project,
        since,
        limit + 1,
    )
    changes = sorted([(int(s), str(i), None if d is None else bytes(d)) for s, i, d in
                      [*written, *deleted]])  # fmt: skip
    return changes[:limit], len(changes) > limit
