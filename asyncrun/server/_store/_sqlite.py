"""SQLite store: one database file in WAL mode, schema created and migrated by the code.

Calls are synchronous and short (sub-millisecond on this workload); they run on the event loop's
thread because a thread hop would cost more than the query. Writes use ``BEGIN IMMEDIATE`` so
concurrent writers (the server, supervisors of running jobs, embedded clients) queue on SQLite's
lock instead of failing half-way. Every write bumps a global change sequence, which is what
``runs:watch`` waits on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from ... import _serde
from ..._core import launch as _launch
from ..._core import logs as _logs
from ..._core.auth import Grant
from ..._core.errors import AlreadyExists, AsyncRunError, NotFound, RevisionConflict, StorageFull
from ..._core.metrics import Mode, Op
from ..._core.query import Changes, ListQuery, to_microseconds
from ..._core.records import LogLine, Run, State
from .._procs import private_dir, private_file
from . import _documents, _feed, _metrics, _tokens
from ._documents import Document
from ._execution import Execution, Ident
from ._metrics import BatchResult
from ._protocol import Store

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
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer asyncrun than this one."""


_MATCH: Final = "project = ? AND id = ? AND execution = ? AND reserved_us = ?"
_MAX_INT: Final = 2**63 - 1
_PROBE: Final = 1000
"""Matches counted at most per filter when a listing picks the index to walk."""


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _require_run(db: sqlite3.Connection, project: str, id: str) -> None:
    """Raise NotFound unless the run exists (inside the caller's transaction)."""
    sql = "SELECT 1 FROM runs WHERE project = ? AND id = ?"
    if db.execute(sql, (project, id)).fetchone() is None:
        raise _not_found(project, id)


def _not_found(project: str, id: str) -> NotFound:
    return NotFound(f"no run {id!r} in project {project!r}", detail={"project": project, "id": id})


class SQLiteStore:
    """Run records, their logs and executions in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Tokens bypass nothing if the file can be read: the database and its WAL and SHM
        # (SQLite gives them the database's mode) are its owner's only.
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            private_file(self.path.with_name(self.path.name + suffix), create=False)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL keeps the database consistent after a crash and loses at most the
        # last transactions on power loss; FULL would cost an fsync per commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (disk full): never keep the write lock.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
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
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} has schema version {version}, newer than this asyncrun "
                    f"({SCHEMA_VERSION}): upgrade asyncrun"
                )
            for steps in MIGRATIONS[version:]:
                for step in steps:
                    if isinstance(step, str):
                        db.execute(step)
                    else:
                        step(db)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    @staticmethod
    def _next_seq(db: sqlite3.Connection) -> int:
        row = db.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value"
        ).fetchone()
        return int(row[0])

    def current_seq(self) -> int:
        """The newest change sequence number."""
        return int(self._db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0])

    def _row(self, db: sqlite3.Connection, run: Run) -> tuple[object, ...]:
        created = run.metadata.created
        assert created is not None, "the service sets metadata.created"
        return (
            run.kind,
            run.name,
            str(run.status.state),
            to_microseconds(created),
            run.metadata.revision,
            # Metrics live in their own append-only tables, never in the document.
            _serde.dumps(
                attrs.evolve(run, status=attrs.evolve(run.status, metrics={}, metric_summary={}))
            ),
            self._next_seq(db),
            run.project,
            run.id,
        )

    def _set_labels(self, db: sqlite3.Connection, run: Run) -> None:
        created = run.metadata.created
        assert created is not None, "the service sets metadata.created"
        created_us = to_microseconds(created)
        db.execute("DELETE FROM run_labels WHERE project = ? AND id = ?", (run.project, run.id))
        db.executemany(
            "INSERT OR IGNORE INTO run_labels (project, id, label, created_us) VALUES (?, ?, ?, ?)",
            [(run.project, run.id, label, created_us) for label in run.metadata.labels],
        )

    def insert(self, run: Run) -> None:
        """Store a new run.

        Raises:
            AlreadyExists: if the project already has a run with this id.
        """
        (error,) = self.insert_many([run])
        if error is not None:
            raise error

    def insert_many(self, runs: Sequence[Run]) -> list[AlreadyExists | None]:
        """Store new runs in one transaction; a taken id fails only its own run.

        Returns:
            For each run, ``None`` if it was stored, else the error saying why not.
        """
        with self._write() as db:
            return [self._insert(db, run) for run in runs]

    def _insert(self, db: sqlite3.Connection, run: Run) -> AlreadyExists | None:
        try:
            db.execute(
                "INSERT INTO runs (kind, name, state, created_us, revision, doc, seq,"
                " project, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._row(db, run),
            )
        except sqlite3.IntegrityError:
            # Nothing of this run was written yet: the transaction goes on for the others.
            return AlreadyExists(
                f"run {run.id!r} already exists in project {run.project!r}; "
                "use save(update=True) to change it",
                detail={"project": run.project, "id": run.id},
            )
        self._set_labels(db, run)
        if run.status.metrics:  # an imported run brings its metrics along
            ops = [Op(key, Mode.SET, value) for key, value in run.status.metrics.items()]
            _metrics.apply_ops(db, run.project, run.id, ops)
        return None

    def _load(self, doc: bytes) -> Run:
        (run,) = self._load_page([doc])
        return run

    def _load_page(self, docs: list[bytes]) -> list[Run]:
        # Records come with each metric key's summary, never its values: reading a run costs
        # the same whatever its history (metrics() reads the values when they are asked for).
        runs = [_serde.run_from_stored(doc) for doc in docs]
        if runs:
            found = _metrics.summaries(self._db, runs[0].project, [run.id for run in runs])
            for run in runs:
                run.status.metric_summary = found.get(run.id, {})
        return runs

    def metrics(self, project: str, id: str) -> dict[str, Any]:
        """A run's full metrics: each key's single value, or its whole list."""
        return _metrics.read(self._db, project, id)

    def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any] | None:
        """Up to ``limit`` values of a metric key from ``offset`` on (``None``: no such key)."""
        return _metrics.history(self._db, project, id, key, offset, limit)

    def apply_metric_batch(
        self, project: str, id: str, writer: str, seq: int, ops: list[Op]
    ) -> BatchResult:
        """Apply a writer's batch of metric operations atomically and exactly once.

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of this writer is missing.
        """
        with self._write() as db:
            _require_run(db, project, id)
            return _metrics.apply_batch(db, project, id, writer, seq, ops)

    def apply_metric_ops(self, project: str, id: str, ops: list[Op]) -> list[str]:
        """Apply metric operations atomically, as they come (no writer, no sequence).

        For operations whose repetition changes nothing (a ``SET`` of a key's whole value).

        Returns:
            The keys of the operations that were ignored.

        Raises:
            NotFound: if there is no such run.
        """
        with self._write() as db:
            _require_run(db, project, id)
            return _metrics.apply_ops(db, project, id, ops)

    def _update(self, db: sqlite3.Connection, run: Run, expected_revision: int) -> bool:
        cursor = db.execute(
            "UPDATE runs SET kind = ?, name = ?, state = ?, created_us = ?, revision = ?,"
            " doc = ?, seq = ? WHERE project = ? AND id = ? AND revision = ?",
            (*self._row(db, run), expected_revision),
        )
        if cursor.rowcount != 1:
            return False
        self._set_labels(db, run)
        return True

    def replace(self, run: Run, expected_revision: int) -> None:
        """Overwrite a run if it is still at ``expected_revision``.

        Raises:
            RevisionConflict: if another write happened since that revision.
        """
        with self._write() as db:
            if not self._update(db, run, expected_revision):
                raise RevisionConflict(
                    f"run {run.id!r} changed since revision {expected_revision}: "
                    "refresh() it and apply your change again",
                    detail={"id": run.id, "expected_revision": expected_revision},
                )

    def modify(
        self,
        project: str,
        id: str,
        change: Callable[[Run], Run],
        *,
        execute: _launch.Launch | None = None,
        of: Ident | None = None,
    ) -> Run:
        """Read a run, apply ``change`` and write the result, all in one transaction.

        ``change`` is a pure function; if it raises, nothing is written. The revision is
        bumped here, so concurrent writers (server, supervisors) serialise on SQLite's lock.
        With ``execute``, the same transaction reserves the run's next execution, launched
        so: a crash can never leave a READY run that no agent will start. With ``of``, the
        change is made only while that execution exists: a job of a run that was deleted
        (and perhaps re-created with the same id) never writes to another run.

        Raises:
            NotFound: if there is no such run.
        """
        with self._write() as db:
            return self._modify(db, project, id, change, execute, of)

    def modify_many(
        self,
        project: str,
        changes: Sequence[tuple[str, Callable[[Run], Run]]],
        *,
        execute: _launch.Launch | None = None,
    ) -> list[Run | AsyncRunError]:
        """:meth:`modify` several runs in one transaction; a refused change fails only its run.

        Returns:
            For each ``(id, change)``, the changed run, or the error (``NotFound``, or what
            ``change`` raised) that left it unchanged.
        """
        results: list[Run | AsyncRunError] = []
        with self._write() as db:
            for id, change in changes:
                try:
                    results.append(self._modify(db, project, id, change, execute, None))
                except AsyncRunError as exc:  # nothing of this run was written yet
                    results.append(exc)
        return results

    def _modify(
        self,
        db: sqlite3.Connection,
        project: str,
        id: str,
        change: Callable[[Run], Run],
        execute: _launch.Launch | None,
        of: Ident | None,
    ) -> Run:
        row = db.execute(
            "SELECT doc FROM runs WHERE project = ? AND id = ?", (project, id)
        ).fetchone()
        if row is None or (of is not None and not self._execution_exists(db, of)):
            raise _not_found(project, id)
        current = self._load(row[0])
        revision = current.metadata.revision
        new = change(current)
        new = attrs.evolve(new, metadata=attrs.evolve(new.metadata, revision=revision + 1))
        updated = self._update(db, new, revision)
        assert updated, "the row is locked by this transaction"
        if execute is not None:
            self._new_execution(db, project, id, execute)
        return new

    def get(self, project: str, id: str) -> Run | None:
        """Read one run, or ``None``."""
        row = self._db.execute(
            "SELECT doc FROM runs WHERE project = ? AND id = ?", (project, id)
        ).fetchone()
        return None if row is None else self._load(row[0])

    def delete(self, project: str, id: str) -> bool:
        """Remove a run with its logs and executions; ``False`` if it did not exist."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM runs WHERE project = ? AND id = ?", (project, id))
            for table in ("run_labels", "logs", "executions"):
                db.execute(f"DELETE FROM {table} WHERE project = ? AND id = ?", (project, id))
            _tokens.revoke_jobs(db, f"{project}/{id}")  # its job's token dies with the run
            _metrics.delete(db, project, id)
            if cursor.rowcount == 1:  # a deletion is a change watchers must see
                _feed.record_deletion(db, project, id, self._next_seq(db), time.time_ns() // 1000)
            return cursor.rowcount == 1

    def projects(self) -> list[tuple[str, int, int]]:
        """Every project that has runs: ``(name, runs, newest created_us)``, by name."""
        rows = self._db.execute(
            "SELECT project, COUNT(*), MAX(created_us) FROM runs GROUP BY project ORDER BY project"
        ).fetchall()
        return [(str(name), int(count), int(newest)) for name, count, newest in rows]

    def list_runs(self, project: str, query: ListQuery) -> list[Run]:
        """Runs of a project matching ``query``, newest first, at most ``query.limit + 1``.

        One extra row is read so the caller can tell whether another page follows.
        """
        sql, args = _listing(project, query, self._driver(project, query))
        return self._load_page([row[0] for row in self._db.execute(sql, args).fetchall()])

    def _driver(self, project: str, query: ListQuery) -> str | None:
        """The filter whose index a listing walks: a label, ``state``, ``kind``, ``name``, ``ids``.

        Ids (at most MAX_IDS) are found by key. Among the others, the one matching the fewest
        runs, counted up to ``_PROBE`` on its index (a bounded cost): ``label=[common, rare]``
        walks the rare label's runs, not every run carrying the common one. ``None`` (no such
        filter) walks the project in created order (``runs_by_created``).
        """
        if query.ids:
            return "ids"  # at most MAX_IDS runs, found by key
        probes: dict[str, tuple[str, list[str]]] = {}
        for label in dict.fromkeys(query.labels):
            probes[f"label:{label}"] = ("run_labels WHERE project = ? AND label = ?", [label])
        for column, values in (
            ("state", [str(state) for state in query.states]),
            ("kind", [] if query.kind is None else [query.kind]),
            ("name", [] if query.name is None else [query.name]),
        ):
            if values:
                marks = ",".join("?" * len(values))
                probes[column] = (f"runs WHERE project = ? AND {column} IN ({marks})", values)
        if len(probes) < 2:
            return next(iter(probes), None)
        counts = {
            driver: self._db.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {table_where} LIMIT ?)",
                [project, *values, _PROBE],
            ).fetchone()[0]
            for driver, (table_where, values) in probes.items()
        }
        return min(counts, key=counts.__getitem__)

    def changes(
        self,
        project: str,
        ids: Sequence[str],
        since: int | None,
        fresh: Sequence[str] = (),
        *,
        feed: bool = False,
    ) -> Changes:
        """What changed after ``since``: among ``ids``, or (``feed``) anywhere in the project.

        ``fresh`` runs are reported whatever their sequence; those that do not exist are
        listed as missing, like watched ``ids``. Following the feed costs what changed, not
        what is watched: the watcher picks its own runs out of it. ``since=None`` starts the
        feed now (only ``fresh`` runs are reported).
        """
        seq = self.current_seq()  # first: a change made while reading is seen next time
        if not feed:
            return self._changes_among(project, [*ids, *fresh], since or 0, set(fresh), seq)
        docs: dict[str, bytes] = {}  # the newest record of each run written
        deleted: list[str] = []
        more = False
        if since is not None:
            changes, more = _feed.read(self._db, project, since)
            for _, id_, doc in changes:
                if doc is None:
                    docs.pop(id_, None)
                    deleted.append(id_)
                else:
                    docs[id_] = doc
            if more:
                seq = changes[-1][0]  # the next answer goes on from the last change in this one
        runs = self._load_page(list(docs.values()))
        missing: list[str] = []
        wanted = [id_ for id_ in dict.fromkeys(fresh) if id_ not in docs]
        if wanted:
            among = self._changes_among(project, wanted, 0, set(wanted), seq)
            runs += among.runs
            missing = among.missing
        # A run deleted then created again is in both lists: its old waits end, new ones go on.
        return Changes(seq, runs, missing, deleted=list(dict.fromkeys(deleted)), more=more)

    def _changes_among(
        self, project: str, wanted: list[str], since: int, always: set[str], seq: int
    ) -> Changes:
        # Only ids and sequence numbers are read for every watched run; documents only for
        # those that changed.
        rows: list[tuple[str, int]] = []
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows += self._db.execute(
                f"SELECT id, seq FROM runs WHERE project = ? AND id IN ({marks})", (project, *part)
            ).fetchall()
        found = {row[0] for row in rows}
        changed = [id_ for id_, s in rows if s > since or id_ in always]
        runs = []
        for start in range(0, len(changed), 500):
            part = changed[start : start + 500]
            sql = f"SELECT doc FROM runs WHERE project = ? AND id IN ({','.join('?' * len(part))})"
            runs += self._load_page([doc for (doc,) in self._db.execute(sql, (project, *part))])
        return Changes(seq, runs, [id_ for id_ in dict.fromkeys(wanted) if id_ not in found])

    # -- executions -----------------------------------------------------------------------

    _EXECUTION = (
        "SELECT project, id, execution, reserved_us, pid, pid_started, ended_us, launch, uid"
        " FROM executions"
    )

    def latest_execution(self, project: str, id: str) -> Execution | None:
        """The newest execution of a run, if it was ever started."""
        row = self._db.execute(
            f"{self._EXECUTION} WHERE project = ? AND id = ? ORDER BY execution DESC LIMIT 1",
            (project, id),
        ).fetchone()
        return None if row is None else Execution.from_row(row)

    def open_executions(self, *, unstarted: bool = False) -> list[Execution]:
        """Executions that have not ended (only those not started yet, if ``unstarted``)."""
        where = "WHERE ended_us IS NULL" + (" AND pid IS NULL" if unstarted else "")
        rows = self._db.execute(f"{self._EXECUTION} {where}").fetchall()
        return [Execution.from_row(row) for row in rows]

    @staticmethod
    def _new_execution(
        db: sqlite3.Connection, project: str, id: str, launch: _launch.Launch
    ) -> int:
        """Reserve the next execution number of a run (the agent will start it)."""
        row = db.execute(
            "SELECT coalesce(max(execution), 0) + 1 FROM executions WHERE project = ? AND id = ?",
            (project, id),
        ).fetchone()
        number = int(row[0])
        db.execute(
            "INSERT INTO executions (project, id, execution, reserved_us, launch)"
            " VALUES (?, ?, ?, ?, ?)",
            (project, id, number, time.time_ns() // 1000, _serde.dumps(_launch.to_data(launch))),
        )
        return number

    @staticmethod
    def _execution_exists(db: sqlite3.Connection, ident: Ident) -> bool:
        return db.execute(f"SELECT 1 FROM executions WHERE {_MATCH}", ident).fetchone() is not None

    def set_execution_pid(
        self, ident: Ident, pid: int, pid_started: float, uid: int | None = None
    ) -> None:
        """Record the job process of an execution (and the user it runs as, if isolated)."""
        with self._write() as db:
            db.execute(
                f"UPDATE executions SET pid = ?, pid_started = ?, uid = ? WHERE {_MATCH}",
                (pid, pid_started, uid, *ident),
            )

    def end_execution(self, ident: Ident) -> None:
        """Mark an execution as ended; the token its job was given stops working."""
        with self._write() as db:
            now_us = time.time_ns() // 1000
            sql = f"UPDATE executions SET ended_us = ? WHERE {_MATCH}"
            ended = db.execute(sql, (now_us, *ident))
            if ended.rowcount:  # else the run was deleted: its tokens went with it
                _tokens.revoke_jobs(db, f"{ident[0]}/{ident[1]}")

    def ids_in_state(self, state: State) -> set[tuple[str, str]]:
        """``(project, id)`` of every run in ``state``."""
        rows = self._db.execute("SELECT project, id FROM runs WHERE state = ?", (str(state),))
        return {(project, id_) for project, id_ in rows}

    # -- logs -----------------------------------------------------------------------------

    def append_logs(self, lines: Mapping[Ident, Sequence[tuple[str, int, str]]], keep: int) -> None:
        """Append ``(stream, time_us, text)`` lines of executions to their runs' logs at once.

        Only the newest ``keep`` lines of each run are kept. Lines of executions that no
        longer exist (their run was deleted) are dropped. A run's stored offsets stay
        contiguous: lines are numbered on from the newest, and only the oldest are dropped.
        """
        with self._write() as db:
            for ident, batch in lines.items():
                project, id = ident[0], ident[1]
                if not self._execution_exists(db, ident):
                    continue  # deleted: its lines must not reach a new run with the same id
                row = db.execute(
                    "SELECT coalesce(max(line_no), -1) + 1 FROM logs WHERE project = ? AND id = ?",
                    (project, id),
                ).fetchone()
                start = int(row[0])
                db.executemany(
                    "INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (project, id, start + i, stream, time_us, text)
                        for i, (stream, time_us, text) in enumerate(batch)
                    ],
                )
                end = start + len(batch)
                if end > keep:
                    db.execute(
                        "DELETE FROM logs WHERE project = ? AND id = ? AND line_no < ?",
                        (project, id, end - keep),
                    )

    def log_bounds(self, project: str, id: str) -> tuple[int, int]:
        """``(first, end)``: the offset of a run's oldest stored line and the one after its newest.

        ``(0, 0)`` if it wrote none. Two seeks on the primary key, whatever the log's length;
        offsets in between are contiguous (see :meth:`append_logs`).
        """
        first, last = self._db.execute(
            "SELECT (SELECT min(line_no) FROM logs WHERE project = ?1 AND id = ?2),"
            " (SELECT max(line_no) FROM logs WHERE project = ?1 AND id = ?2)",
            (project, id),
        ).fetchone()
        return (0, 0) if last is None else (int(first), int(last) + 1)

    def read_logs(
        self, project: str, id: str, offset: int, limit: int, *, before: int | None = None
    ) -> list[LogLine]:
        """Up to ``limit`` lines of a run's log from ``offset`` on (and before ``before``).

        The page stops before the line that would take it past ``logs.PAGE_BUDGET`` bytes of
        JSON (but always holds its first line): rows are read one by one, so a log of long
        lines is never loaded whole.
        """
        cursor = self._db.execute(
            "SELECT line_no, stream, time_us, text FROM logs"
            " WHERE project = ? AND id = ? AND line_no >= ? AND line_no < ?"
            " ORDER BY line_no LIMIT ?",
            (project, id, offset, _MAX_INT if before is None else before, limit),
        )
        try:
            rows = _logs.take_page(cursor, orjson.dumps)  # the text as the JSON of the page
        finally:
            cursor.close()
        return [LogLine(no, stream, _from_us(time_us), text) for no, stream, time_us, text in rows]

    # -- documents (see _documents.py) --------------------------------------------------

    def insert_document(self, doc: Document) -> bool:
        """Store a new document; ``False`` (nothing written) if its id is taken."""
        with self._write() as db:
            return _documents.insert(db, doc)

    def document(self, project: str, type_: str, id: str) -> Document | None:
        """One document, or ``None``."""
        return _documents.get(self._db, project, type_, id)

    def documents(
        self,
        project: str,
        type_: str,
        *,
        kind: str | None = None,
        ref: str | None = None,
        name: str | None = None,
        offset: int = 0,
        limit: int = 25,
    ) -> tuple[list[Document], int]:
        """One page of a project's documents of a type matching the filters, and their count."""
        return _documents.search(
            self._db, project, type_, kind=kind, ref=ref, name=name, offset=offset, limit=limit
        )

    # -- tokens (see _tokens.py) ----------------------------------------------------------

    def add_token(
        self, grant: Grant, digest: bytes, *, description: str | None = None, run: str | None = None
    ) -> None:
        """Store a token's digest and grant."""
        with self._write() as db:
            _tokens.add(
                db, grant, digest, description=description, run=run, now_us=time.time_ns() // 1000
            )

    def token(self, token_id: str) -> tuple[Grant, bytes] | None:
        """A token's grant and digest, or ``None`` if it does not exist (or was revoked)."""
        return _tokens.lookup(self._db, token_id)

    def tokens(self) -> list[_tokens.TokenInfo]:
        """Every stored token, without secrets."""
        return _tokens.listing(self._db)

    def revoke_token(self, token_id: str) -> bool:
        """Delete a token; ``False`` if it did not exist."""
        with self._write() as db:
            return _tokens.revoke(db, token_id)

    def revoke_job_tokens(self, run: str | None = None) -> None:
        """Delete the tokens given to jobs: of one run (``project/id``), or all of them."""
        with self._write() as db:
            _tokens.revoke_jobs(db, run)


def _listing(project: str, query: ListQuery, driver: str | None) -> tuple[str, list[object]]:
    """The SELECT of a listing, walking the index of ``driver``, and its arguments.

    Each filter has an index in listing order (see MIGRATIONS), so the walk reads no further
    than the page. A label drives through ``run_labels_by_created``, joined to runs by key;
    ``state``, ``kind`` or ``name`` through its ``runs_by_*_created`` index; ids through the
    primary key (then sorted). Other filters are checked on the rows the walk meets. The
    created range and the cursor are ranges of the driving index.
    """
    args: list[object] = []
    labels = list(dict.fromkeys(query.labels))
    if driver is not None and driver.startswith("label:"):
        label = driver.removeprefix("label:")
        labels.remove(label)
        # The label's index gives the order: CROSS JOIN keeps it the outer loop.
        head = "SELECT runs.doc FROM run_labels l CROSS JOIN runs"
        where = ["l.project = ?", "l.label = ?", "runs.project = l.project", "runs.id = l.id"]
        args += [project, label]
        keys = "l."  # the range, the cursor and the order on the label's own columns
    else:
        index = {None: "", "ids": " INDEXED BY sqlite_autoindex_runs_1"}.get(
            driver, f" INDEXED BY runs_by_{driver}_created"
        )
        head = f"SELECT runs.doc FROM runs{index}"
        where = ["runs.project = ?"]
        args.append(project)
        keys = "runs."
    if query.states:
        where.append(f"runs.state IN ({','.join('?' * len(query.states))})")
        args += [str(s) for s in query.states]
    if query.kind is not None:
        where.append("runs.kind = ?")
        args.append(query.kind)
    if query.name is not None:
        where.append("runs.name = ?")
        args.append(query.name)
    if query.ids:
        where.append(f"runs.id IN ({','.join('?' * len(query.ids))})")
        args += query.ids
    if query.created_after is not None:
        where.append(f"{keys}created_us >= ?")
        args.append(to_microseconds(query.created_after))
    if query.created_before is not None:
        where.append(f"{keys}created_us < ?")
        args.append(to_microseconds(query.created_before))
    for label in labels:
        where.append(
            "EXISTS (SELECT 1 FROM run_labels o WHERE o.project = runs.project"
            " AND o.label = ? AND o.id = runs.id)"
        )
        args.append(label)
    if query.cursor is not None:
        # A row value: a range of the index, so a deep page starts where the last one ended.
        where.append(f"({keys}created_us, {keys}id) < (?, ?)")
        args += [query.cursor.created_us, query.cursor.id]
    args.append(query.limit + 1)
    order = f"{keys}created_us DESC, {keys}id DESC"
    return f"{head} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?", args


_: type[Store] = SQLiteStore  # mypy checks that the SQLite store is a Store
