"""Which other projects hold a run id, for the hint of a "no run" error (embedded only).

On the embedded backend the command line reads the database file itself, read-only (it is
this user's file); over HTTP a server answers only about the projects a request names.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote


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
