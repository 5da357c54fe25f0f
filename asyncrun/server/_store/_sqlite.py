"""SQLite store: one database file in WAL mode, schema created and migrated by the code.

Calls are synchronous and short (sub-millisecond on this workload); they run on the event loop's
thread because a thread hop would cost more than the query. Writes use ``BEGIN IMMEDIATE`` so
concurrent writers queue on SQLite's lock instead of failing half-way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ... import _serde
from ..._core.errors import AlreadyExists, RevisionConflict
from ..._core.query import Cursor, ListQuery, to_microseconds
from ..._core.records import Run

# Each entry migrates the schema from its index to index + 1; append, never edit.
MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (
        """CREATE TABLE runs (
            project TEXT NOT NULL,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT,
            state TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            revision INTEGER NOT NULL,
            doc BLOB NOT NULL,
            PRIMARY KEY (project, id)
        )""",
        "CREATE INDEX runs_by_created ON runs (project, created_us DESC, id DESC)",
        """CREATE TABLE run_labels (
            project TEXT NOT NULL,
            id TEXT NOT NULL,
            label TEXT NOT NULL,
            PRIMARY KEY (project, label, id)
        )""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer asyncrun than this one."""


class SQLiteStore:
    """Run records in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL keeps the database consistent after a crash and loses at most the
        # last transactions on power loss; FULL would cost an fsync per commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} has schema version {version}, newer than this asyncrun "
                    f"({SCHEMA_VERSION}): upgrade asyncrun"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    @staticmethod
    def _row(run: Run) -> tuple[object, ...]:
        created = run.metadata.created
        assert created is not None, "the service sets metadata.created"
        return (
            run.kind,
            run.name,
            str(run.status.state),
            to_microseconds(created),
            run.metadata.revision,
            _serde.dumps(run),
            run.project,
            run.id,
        )

    def _set_labels(self, db: sqlite3.Connection, run: Run) -> None:
        db.execute("DELETE FROM run_labels WHERE project = ? AND id = ?", (run.project, run.id))
        db.executemany(
            "INSERT OR IGNORE INTO run_labels VALUES (?, ?, ?)",
            [(run.project, run.id, label) for label in run.metadata.labels],
        )

    def insert(self, run: Run) -> None:
        """Store a new run.

        Raises:
            AlreadyExists: if the project already has a run with this id.
        """
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO runs (kind, name, state, created_us, revision, doc, project, id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    self._row(run),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"run {run.id!r} already exists in project {run.project!r}; "
                    "use save(update=True) to change it",
                    detail={"project": run.project, "id": run.id},
                ) from None
            self._set_labels(db, run)

    def replace(self, run: Run, expected_revision: int) -> None:
        """Overwrite a run if it is still at ``expected_revision``.

        Raises:
            RevisionConflict: if another write happened since that revision.
        """
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET kind = ?, name = ?, state = ?, created_us = ?, revision = ?,"
                " doc = ? WHERE project = ? AND id = ? AND revision = ?",
                (*self._row(run), expected_revision),
            )
            if cursor.rowcount != 1:
                raise RevisionConflict(
                    f"run {run.id!r} changed since revision {expected_revision}: "
                    "refresh() it and apply your change again",
                    detail={"id": run.id, "expected_revision": expected_revision},
                )
            self._set_labels(db, run)

    def get(self, project: str, id: str) -> Run | None:
        """Read one run, or ``None``."""
        row = self._db.execute(
            "SELECT doc FROM runs WHERE project = ? AND id = ?", (project, id)
        ).fetchone()
        return None if row is None else _serde.run_from_json(row[0])

    def delete(self, project: str, id: str) -> bool:
        """Remove a run; ``False`` if it did not exist."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM runs WHERE project = ? AND id = ?", (project, id))
            db.execute("DELETE FROM run_labels WHERE project = ? AND id = ?", (project, id))
            return cursor.rowcount == 1

    def list(self, project: str, query: ListQuery) -> list[Run]:
        """Runs of a project matching ``query``, newest first, at most ``query.limit + 1``.

        One extra row is read so the caller can tell whether another page follows.
        """
        where = ["project = ?"]
        args: list[object] = [project]
        if query.states:
            where.append(f"state IN ({','.join('?' * len(query.states))})")
            args += [str(s) for s in query.states]
        if query.kind is not None:
            where.append("kind = ?")
            args.append(query.kind)
        if query.name is not None:
            where.append("name = ?")
            args.append(query.name)
        if query.ids:
            where.append(f"id IN ({','.join('?' * len(query.ids))})")
            args += query.ids
        if query.created_after is not None:
            where.append("created_us >= ?")
            args.append(to_microseconds(query.created_after))
        if query.created_before is not None:
            where.append("created_us < ?")
            args.append(to_microseconds(query.created_before))
        for label in query.labels:
            where.append(
                "EXISTS (SELECT 1 FROM run_labels l WHERE l.project = runs.project"
                " AND l.id = runs.id AND l.label = ?)"
            )
            args.append(label)
        if query.cursor is not None:
            where.append("(created_us < ? OR (created_us = ? AND id < ?))")
            args += [query.cursor.created_us, query.cursor.created_us, query.cursor.id]
        sql = (
            f"SELECT doc FROM runs WHERE {' AND '.join(where)}"
            " ORDER BY created_us DESC, id DESC LIMIT ?"
        )
        args.append(query.limit + 1)
        return [_serde.run_from_json(row[0]) for row in self._db.execute(sql, args)]


def cursor_after(run: Run) -> Cursor:
    """The cursor that continues a listing after ``run``."""
    created = run.metadata.created
    assert created is not None
    return Cursor(to_microseconds(created), run.id)
