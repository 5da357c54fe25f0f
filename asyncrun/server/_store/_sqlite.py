"""SQLite: one database file in WAL mode, its schema created and migrated by the code.

Statements are short (sub-millisecond on this workload) and run on the caller's thread: on the
event loop's thread in the service, because a thread hop would cost more than the query. What
the store does is written once in ``_runs`` and its table modules; this is the driver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio

from ..._core.errors import StorageFull
from .._procs import private_dir, private_file
from . import _agents, _documents, _feed, _logs, _metrics, _tokens
from ._sql import Op as Operation
from ._sql import Result, Statement, run_sync
from ._sqlstore import SQLStore

T = TypeVar("T")
POLL: Final = 0.01
"""Seconds between two looks at the database while something waits for a change."""

Step = str | Callable[[sqlite3.Connection], None]
"""A migration step: a statement, or a function for what SQL alone cannot do (a backfill)."""

# Each entry migrates the schema from its index to index + 1; append, never edit.
MIGRATIONS: Final[Sequence[Sequence[Step]]] = (
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
    (
        "ALTER TABLE runs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX runs_by_seq ON runs (project, seq)",
        "CREATE INDEX runs_by_state ON runs (state)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters VALUES ('seq', 0)",
        """CREATE TABLE logs (
            project TEXT NOT NULL,
            id TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            stream TEXT NOT NULL,
            time_us INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (project, id, line_no)
        ) WITHOUT ROWID""",
        """CREATE TABLE executions (
            project TEXT NOT NULL,
            id TEXT NOT NULL,
            execution INTEGER NOT NULL,
            reserved_us INTEGER NOT NULL,
            pid INTEGER,
            pid_started REAL,
            ended_us INTEGER,
            PRIMARY KEY (project, id, execution)
        )""",
        "CREATE INDEX executions_open ON executions (ended_us) WHERE ended_us IS NULL",
    ),
    _metrics.MIGRATION,
    _tokens.MIGRATION,
    (
        *_tokens.ROLES_MIGRATION,
        # How each execution is launched, and the user an isolated one runs as.
        "ALTER TABLE executions ADD COLUMN launch BLOB",
        "ALTER TABLE executions ADD COLUMN uid INTEGER",
        # Label rows are replaced on every write of a run: find them by run, not by scan.
        "CREATE INDEX run_labels_by_run ON run_labels (project, id)",
    ),
    _metrics.SUMMARY_MIGRATION,
    (
        # Every filter of a listing has an index that also gives its order (newest first), so
        # a filter reads what it returns, not the whole project. A label's rows carry their
        # run's creation time: a label filter walks its own index in listing order.
        "CREATE INDEX runs_by_state_created ON runs (project, state, created_us DESC, id DESC)",
        "CREATE INDEX runs_by_kind_created ON runs (project, kind, created_us DESC, id DESC)",
        "CREATE INDEX runs_by_name_created ON runs (project, name, created_us DESC, id DESC)",
        "ALTER TABLE run_labels ADD COLUMN created_us INTEGER NOT NULL DEFAULT 0",
        """UPDATE run_labels SET created_us = coalesce((SELECT r.created_us FROM runs r
            WHERE r.project = run_labels.project AND r.id = run_labels.id), 0)""",
        """CREATE INDEX run_labels_by_created
            ON run_labels (project, label, created_us DESC, id DESC)""",
    ),
    _feed.MIGRATION,
    _documents.MIGRATION,
    _agents.MIGRATION,
    _logs.LOG_WRITERS_MIGRATION,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer asyncrun than this one."""


def stored_version(db: Any, name: str) -> int:
    """The schema version a database holds (0 if new), in the caller's transaction.

    ``db`` is a DB-API connection (sqlite3's, or psycopg's synchronous one).

    Raises:
        SchemaTooNew: if a newer asyncrun wrote it (``name`` says which database).
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = 0 if row is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{name} has schema version {version}, newer than this asyncrun "
            f"({SCHEMA_VERSION}): upgrade asyncrun"
        )
    return version


class SQLiteDriver:
    """Runs store operations on one SQLite file, on the caller's thread (see ``_sqlstore``).

    Writes use ``BEGIN IMMEDIATE``, so concurrent writers (the server, the agent, embedded
    clients) queue on SQLite's lock instead of failing half-way.
    """

    inline = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        # Tokens bypass nothing if the file can be read: the database and its WAL and SHM
        # (SQLite gives them the database's mode) are its owner's only.
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            private_file(self.path.with_name(self.path.name + suffix), create=False)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL keeps the database consistent after a crash and loses at most the
        # last transactions on power loss; FULL would cost an fsync per commit.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    async def aclose(self) -> None:
        """Close the connection."""
        self.db.close()

    def _execute(self, statement: Statement) -> Result:
        if statement.many:
            cursor = self.db.executemany(statement.sql, statement.args)
        else:
            cursor = self.db.execute(statement.sql, statement.args)
        return Result(cursor.fetchall(), cursor.rowcount)

    def change_ticket(self) -> int:
        """Nothing tells this process of another's commit: every wait is a short poll."""
        return 0

    async def wait_change(self, ticket: int, timeout: float) -> None:
        """Sleep one poll interval (at most ``timeout``): the caller reads again."""
        await anyio.sleep(max(0.0, min(timeout, POLL)))

    async def read(self, op: Operation[T]) -> T:
        """Run a reading operation (each statement sees the last committed state)."""
        return run_sync(op, self._execute)

    async def write(self, op: Operation[T]) -> T:
        """Run an operation in one ``BEGIN IMMEDIATE`` transaction."""
        with self._write():
            return run_sync(op, self._execute)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (disk full): never keep the write lock.
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise StorageFull(
                    f"the disk holding {self.path.name} is full: nothing was stored; "
                    "free some space and retry",
                    detail={"database": str(self.path.name)},
                ) from exc
            raise

    def _migrate(self) -> None:
        with self._write() as db:
            version = stored_version(db, str(self.path))
            for steps in MIGRATIONS[version:]:
                for step in steps:
                    if isinstance(step, str):
                        db.execute(step)
                    else:
                        step(db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        return int(self.db.execute("SELECT version FROM schema_version").fetchone()[0])


def open_sqlite(path: str | Path) -> SQLStore:
    """The store in the SQLite file at ``path``, created and migrated if needed."""
    return SQLStore(SQLiteDriver(path))
