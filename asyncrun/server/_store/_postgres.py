"""PostgreSQL: the store of several server replicas, through psycopg 3's async connections.

Why psycopg 3 rather than asyncpg: the two are on par on this workload (asyncpg is faster at
``executemany``, psycopg at ``COPY``), but psycopg speaks the same DB-API shape as ``sqlite3``
(``%s`` placeholders, ``rowcount``, ``executemany`` in pipeline mode), has a maintained pool,
and ``LISTEN``/``NOTIFY`` as an async iterator. Neither runs under Trio; the server runs on
asyncio (uvicorn), and the agent calls the store through an asyncio portal
(:class:`~._sqlstore.Blocking`), so that is no limit. Install it with the ``postgres`` extra.

Writes queue on a row lock of the change counter, taken first in every write transaction:
PostgreSQL's counterpart of SQLite's ``BEGIN IMMEDIATE``. Every replica's writes are then
serialised, so a revision check and the change sequence mean across replicas what they mean
in one process, and a watcher never sees sequence numbers commit out of order.

Every commit that moves the counter or adds log lines notifies ``asyncrun_changes`` (triggers
in the schema): a wait on any replica wakes at once when any other changes a run (see
:meth:`PostgresDriver.wait_change`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, TypeVar

from ..._core.dburl import redacted
from ..._core.errors import StoreUnavailable
from ._sql import Op as Operation
from ._sql import Result, Statement, run_async, to_postgres
from ._sqlite import SCHEMA_VERSION, stored_version
from ._sqlstore import SQLStore

T = TypeVar("T")

CHANNEL: Final = "asyncrun_changes"
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for a connection (at start, and for one from the pool) before a 503."""
POLL: Final = 0.05
"""Seconds between two looks while the notification connection is down."""
_MIGRATE_LOCK: Final = 0x6173796E6372756E  # "asyncrun": the advisory lock of migrations
_BEGIN_WRITE: Final = b"BEGIN; SELECT value FROM counters WHERE name = 'seq' FOR UPDATE"
"""Every write transaction's start: the counter's row lock queues the writers of every
replica, as SQLite's BEGIN IMMEDIATE does those of one file."""

_C: Final = 'TEXT COLLATE "C"'  # byte order, as SQLite sorts: listings page the same way
SCHEMA: Final = (
    f"""CREATE TABLE runs (
        project {_C} NOT NULL, id {_C} NOT NULL, kind {_C} NOT NULL, name {_C},
        state {_C} NOT NULL, created_us BIGINT NOT NULL, revision BIGINT NOT NULL,
        doc BYTEA NOT NULL, seq BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (project, id))""",
    "CREATE INDEX runs_by_created ON runs (project, created_us DESC, id DESC)",
    "CREATE INDEX runs_by_seq ON runs (project, seq)",
    "CREATE INDEX runs_by_state ON runs (state)",
    "CREATE INDEX runs_by_state_created ON runs (project, state, created_us DESC, id DESC)",
    "CREATE INDEX runs_by_kind_created ON runs (project, kind, created_us DESC, id DESC)",
    "CREATE INDEX runs_by_name_created ON runs (project, name, created_us DESC, id DESC)",
    f"""CREATE TABLE run_labels (
        project {_C} NOT NULL, id {_C} NOT NULL, label {_C} NOT NULL,
        created_us BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (project, label, id))""",
    "CREATE INDEX run_labels_by_run ON run_labels (project, id)",
    "CREATE INDEX run_labels_by_created ON run_labels (project, label, created_us DESC, id DESC)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO counters VALUES ('seq', 0)",
    f"""CREATE TABLE logs (
        project {_C} NOT NULL, id {_C} NOT NULL, line_no BIGINT NOT NULL,
        stream TEXT NOT NULL, time_us BIGINT NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY (project, id, line_no))""",
    f"""CREATE TABLE executions (
        project {_C} NOT NULL, id {_C} NOT NULL, execution BIGINT NOT NULL,
        reserved_us BIGINT NOT NULL, pid BIGINT, pid_started DOUBLE PRECISION,
        ended_us BIGINT, launch BYTEA, uid BIGINT, PRIMARY KEY (project, id, execution))""",
    "CREATE INDEX executions_open ON executions (ended_us) WHERE ended_us IS NULL",
    f"""CREATE TABLE metric_keys (
        project {_C} NOT NULL, id {_C} NOT NULL, key {_C} NOT NULL, shape TEXT NOT NULL,
        single BYTEA, generation BIGINT NOT NULL, next_chunk BIGINT NOT NULL, summary BYTEA,
        PRIMARY KEY (project, id, key))""",
    f"""CREATE TABLE metric_chunks (
        project {_C} NOT NULL, id {_C} NOT NULL, key {_C} NOT NULL,
        generation BIGINT NOT NULL, chunk BIGINT NOT NULL, vals BYTEA NOT NULL,
        start BIGINT, n BIGINT, PRIMARY KEY (project, id, key, generation, chunk))""",
    "CREATE INDEX metric_chunks_by_start ON metric_chunks (project, id, key, generation, start)",
    f"""CREATE TABLE metric_writers (
        project {_C} NOT NULL, id {_C} NOT NULL, writer {_C} NOT NULL,
        last_seq BIGINT NOT NULL, PRIMARY KEY (project, id, writer))""",
    """CREATE TABLE tokens (
        id TEXT PRIMARY KEY, hash BYTEA NOT NULL, role TEXT NOT NULL, projects TEXT NOT NULL,
        description TEXT, run TEXT, created_us BIGINT NOT NULL,
        upgraded INTEGER NOT NULL DEFAULT 0)""",
    f"""CREATE TABLE run_deletions (
        project {_C} NOT NULL, id {_C} NOT NULL, seq BIGINT NOT NULL,
        time_us BIGINT NOT NULL, PRIMARY KEY (project, seq))""",
    "CREATE INDEX run_deletions_by_time ON run_deletions (time_us)",
    f"""CREATE TABLE documents (
        project {_C} NOT NULL, type {_C} NOT NULL, id {_C} NOT NULL, name {_C},
        kind {_C} NOT NULL, ref {_C}, created_us BIGINT NOT NULL, doc BYTEA NOT NULL,
        PRIMARY KEY (project, type, id))""",
    "CREATE INDEX documents_by_ref ON documents (project, type, ref, kind, created_us DESC, id)",
    "CREATE INDEX documents_by_name ON documents (project, type, name, created_us DESC, id)",
    # One notification per transaction (PostgreSQL folds identical ones): waits on every
    # replica wake when a run is written or deleted, or a log line added.
    f"""CREATE FUNCTION asyncrun_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$""",
    """CREATE TRIGGER counters_notify AFTER UPDATE ON counters
        FOR EACH STATEMENT EXECUTE FUNCTION asyncrun_notify()""",
    """CREATE TRIGGER logs_notify AFTER INSERT ON logs
        FOR EACH STATEMENT EXECUTE FUNCTION asyncrun_notify()""",
)
"""The schema at SQLite's version 9 (the version PostgreSQL support started at), in one step.

Later versions append their steps for both databases; the version table is shared.
"""
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    9: (
        f"ALTER TABLE executions ADD COLUMN owner {_C}",
        f"""CREATE TABLE agents (id {_C} PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
            heartbeat_us BIGINT NOT NULL)""",
    ),
    10: (
        f"""CREATE TABLE log_writers (
            project {_C} NOT NULL, id {_C} NOT NULL, writer {_C} NOT NULL,
            last_seq BIGINT NOT NULL, end_doc BYTEA, PRIMARY KEY (project, id, writer))""",
    ),
}
"""Steps from version N to N + 1 (N >= 9) in PostgreSQL's form (SQLite's: ``_sqlite``)."""
BASE_VERSION: Final = 9


def _unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    # psycopg's messages name host and port, never the password; the URL is shown redacted.
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnavailable(
        f"the database {redacted(url)} cannot be reached ({reason}); retry in a moment",
        detail={"database": redacted(url)},
    )


def migrate(url: str) -> int:
    """Create or migrate the schema (once, under an advisory lock); the version it is at.

    Two replicas starting at once both call this: the second waits on the lock, then finds
    the schema current. Synchronous: it runs at start, before the event loop.

    Raises:
        StoreUnavailable: if the database cannot be reached.
        SchemaTooNew: if a newer asyncrun wrote the database.
    """
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)) as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            version = stored_version(db, redacted(url))
            if version < BASE_VERSION:
                for statement in SCHEMA:
                    db.execute(statement.encode())  # bytes: a "%" is not a placeholder here
                version = BASE_VERSION
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    db.execute(statement.encode())
                version += 1
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (%s)", (version,))
            return version
    except psycopg.OperationalError as exc:
        raise _unavailable(url, exc) from None


class PostgresDriver:
    """Runs store operations on a PostgreSQL database (asyncio only: psycopg's async API).

    The connection pool opens on first use, in the event loop that uses it. A statement that
    cannot reach the database raises :class:`StoreUnavailable` (a 503 with ``Retry-After``);
    its transaction was rolled back, so a retry is safe.
    """

    inline = False

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        self.name = redacted(url)
        self.max_connections = max_connections
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._generation = 0
        self._changed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._listening = False

    async def _connections(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    from psycopg_pool import AsyncConnectionPool

                    pool = AsyncConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.max_connections,
                        kwargs={"autocommit": True},
                        timeout=CONNECT_TIMEOUT,
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            pool = await self._connections()
            async with pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise _unavailable(self.url, exc) from None

    @staticmethod
    async def _execute(conn: Any, statement: Statement) -> Result:
        sql = to_postgres(statement.sql)
        async with conn.cursor() as cursor:
            if statement.many:
                await cursor.executemany(sql, statement.args)
                return Result([], cursor.rowcount)
            await cursor.execute(sql, statement.args)
            rows = await cursor.fetchall() if cursor.description is not None else []
            return Result(rows, cursor.rowcount)

    async def read(self, op: Operation[T]) -> T:
        """Run a reading operation (each statement sees the last committed state)."""
        async with self._connection() as conn:
            return await run_async(op, lambda statement: self._execute(conn, statement))

    async def write(self, op: Operation[T]) -> T:
        """Run an operation in one transaction, queued behind every replica's other writes."""
        async with self._connection() as conn:
            # BEGIN and the lock in one round trip (psycopg's transaction() sends BEGIN alone).
            await conn.execute(_BEGIN_WRITE)
            try:
                result = await run_async(op, lambda statement: self._execute(conn, statement))
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection rolled back already
                    await conn.execute(b"ROLLBACK")
                raise
            await conn.execute(b"COMMIT")
            return result

    # -- waiting for changes ------------------------------------------------------------

    def change_ticket(self) -> int:
        """The number of notifications seen so far (see :meth:`wait_change`)."""
        return self._generation

    async def wait_change(self, ticket: int, timeout: float) -> None:
        """Return once a notification arrived after ``ticket``, or after ``timeout``.

        One connection per replica listens (started on first use); while it is down, a wait
        is a short poll, so no change is missed for long.
        """
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        if self._generation != ticket:
            return
        if not self._listening:
            await asyncio.sleep(max(0.0, min(timeout, POLL)))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))

    def _notify_waiters(self) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen(self) -> None:
        import psycopg

        delay = POLL
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    self._notify_waiters()  # whatever happened while nobody listened
                    delay = POLL
                    async for _ in conn.notifies():
                        self._notify_waiters()
            except (psycopg.OperationalError, psycopg.InterfaceError):
                pass
            finally:
                self._listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def aclose(self) -> None:
        """Stop listening and close the pool."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def open_postgres(url: str) -> SQLStore:
    """The store in the PostgreSQL database at ``url``, its schema created or migrated.

    Raises:
        StoreUnavailable: if the database cannot be reached (the message elides the password).
    """
    migrate(url)
    return SQLStore(PostgresDriver(url))
