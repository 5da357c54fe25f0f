"""Which projects exist, as far as the command line can tell.

The API (v1) has no projects endpoint: a server only answers about the projects a request
names. On the embedded backend the command reads the database file itself, read-only (it is
this user's file): the projects and their run counts, and which projects hold an id. Over
HTTP none of this is known, and the commands say so.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class ProjectInfo:
    """A project of the embedded database."""

    name: str
    runs: int
    newest: datetime | None


def embedded_db() -> Path:
    """The embedded backend's database file (it may not exist yet)."""
    from ..server import default_db_path

    return default_db_path()


def _connect(db: Path) -> sqlite3.Connection | None:
    if not db.is_file():
        return None
    try:
        return sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None


def embedded_projects(db: Path) -> list[ProjectInfo] | None:
    """The projects of the database ``db`` by name, or ``None`` if it cannot be read."""
    connection = _connect(db)
    if connection is None:
        return None
    try:
        with closing(connection):
            rows = connection.execute(
                "SELECT project, COUNT(*), MAX(created_us) FROM runs GROUP BY project"
                " ORDER BY project"
            ).fetchall()
    except sqlite3.Error:
        return None
    return [
        ProjectInfo(
            str(name),
            int(count),
            None if newest is None else datetime.fromtimestamp(newest / 1e6, UTC),
        )
        for name, count, newest in rows
    ]


def projects_holding(db: Path, prefix: str, *, exclude: str) -> list[str]:
    """Projects of ``db`` other than ``exclude`` with a run whose id starts with ``prefix``."""
    connection = _connect(db)
    if connection is None:
        return []
    try:
        with closing(connection):
            rows = connection.execute(
                "SELECT DISTINCT project FROM runs WHERE substr(id, 1, ?) = ? AND project != ?"
                " ORDER BY project LIMIT 5",
                (len(prefix), prefix, exclude),
            ).fetchall()
    except sqlite3.Error:
        return []
    return [str(row[0]) for row in rows]
