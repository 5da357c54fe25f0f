"""The store the service uses: every operation of ``_runs`` and its tables, on a driver.

:class:`SQLStore` implements :class:`~._protocol.Store` once for every database: each method
hands one operation (a generator of statements, see ``_sql``) to its :class:`Driver`, as a
read or as a write (one transaction). The SQLite driver runs operations on the caller's
thread without suspending (a local file answers faster than a thread hop), so synchronous
code (the agent, the CLI) calls the same store through :func:`blocking`; PostgreSQL's driver
awaits psycopg's async connections.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

from ..._core import launch as _launch
from ..._core.auth import Grant
from ..._core.errors import AlreadyExists, AsyncRunError
from ..._core.metrics import Op
from ..._core.query import Changes, ListQuery
from ..._core.records import LogLine, Run, State
from . import _agents, _documents, _execution, _feed, _logs, _metrics, _runs, _tokens
from ._documents import Document
from ._execution import Execution, Ident
from ._metrics import BatchResult
from ._protocol import Store
from ._sql import Op as Operation
from ._tokens import TokenInfo

T = TypeVar("T")
P = ParamSpec("P")


class Driver(Protocol):
    """Runs operations on one database."""

    name: str
    """What the database is called in messages (a file's name; a URL without password)."""
    inline: bool
    """Whether its operations finish without suspending (callable from synchronous code)."""

    async def read(self, op: Operation[T]) -> T:
        """Run a reading operation."""
        ...

    def change_ticket(self) -> int:
        """See :meth:`Store.change_ticket`."""
        ...

    async def wait_change(self, ticket: int, timeout: float) -> None:
        """See :meth:`Store.wait_change`."""
        ...

    async def write(self, op: Operation[T]) -> T:
        """Run an operation in one write transaction (writers queue; all or nothing)."""
        ...

    async def aclose(self) -> None:
        """Release the database's connections."""
        ...


def finish(call: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (an inline driver's), run here and now.

    Raises:
        RuntimeError: if it suspends: it needs an event loop.
    """
    try:
        call.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    call.close()
    raise RuntimeError("this store call waits on I/O: call it from an event loop")


class Blocking:
    """Calls a store's async methods from synchronous code (the agent, the CLI).

    An inline store (SQLite) is called right here; another runs on an event loop of its own
    in a background thread (anyio's blocking portal), started on first use.
    """

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._portal: Any = None
        self._portal_cm: Any = None

    def __call__(
        self, method: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``method(*args, **kwargs)`` of the store, awaited."""
        if self.store.driver.inline:
            return finish(method(*args, **kwargs))
        if self._portal is None:
            from anyio.from_thread import start_blocking_portal

            self._portal_cm = start_blocking_portal()
            self._portal = self._portal_cm.__enter__()

        async def call() -> T:
            return await method(*args, **kwargs)

        return self._portal.call(call)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the store (and stop the portal's thread)."""
        self(self.store.aclose)
        if self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)
            self._portal = self._portal_cm = None


class SQLStore:
    """Run records, their metrics, logs and executions, documents and tokens, in SQL."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    @property
    def name(self) -> str:
        """The database's name in messages (never a password)."""
        return self.driver.name

    async def aclose(self) -> None:
        """Release the store's connections."""
        await self.driver.aclose()

    def _read(self, op: Operation[T]) -> Awaitable[T]:
        return self.driver.read(op)

    def _write(self, op: Operation[T]) -> Awaitable[T]:
        return self.driver.write(op)

    # -- change counter -----------------------------------------------------------------

    def change_ticket(self) -> int:
        """A ticket for :meth:`wait_change`: take it before reading what the wait is about."""
        return self.driver.change_ticket()

    async def wait_change(self, ticket: int, timeout: float) -> None:
        """Return once something may have changed since ``ticket``, or after ``timeout``."""
        await self.driver.wait_change(ticket, timeout)

    async def current_seq(self) -> int:
        """The sequence number of the newest change; it only grows."""
        return await self._read(_runs.current_seq())

    async def changes(
        self,
        project: str,
        ids: Sequence[str],
        since: int | None,
        fresh: Sequence[str] = (),
        *,
        feed: bool = False,
    ) -> Changes:
        """What changed after ``since``: among ``ids``, or (``feed``) anywhere in the project."""
        return await self._read(_runs.changes(project, ids, since, fresh, feed))

    # -- runs -----------------------------------------------------------------------------

    async def insert(self, run: Run) -> None:
        """Store a new run.

        Raises:
            AlreadyExists: if the project already has a run with this id.
        """
        (error,) = await self.insert_many([run])
        if error is not None:
            raise error

    async def insert_many(self, runs: Sequence[Run]) -> list[AlreadyExists | None]:
        """Store new runs in one transaction; a taken id fails only its own run."""
        return await self._write(_runs.insert_many(runs))

    async def get(self, project: str, id: str) -> Run | None:
        """Read one run, or ``None``."""
        return await self._read(_runs.get(project, id))

    async def replace(self, run: Run, expected_revision: int) -> None:
        """Overwrite a run if it is still at ``expected_revision``."""
        await self._write(_runs.replace(run, expected_revision))

    async def modify(
        self,
        project: str,
        id: str,
        change: Callable[[Run], Run],
        *,
        execute: _launch.Launch | None = None,
        of: Ident | None = None,
    ) -> Run:
        """Read a run, apply ``change``, bump the revision and write it, in one transaction."""
        return await self._write(_runs.modify(project, id, change, execute, of))

    async def modify_many(
        self,
        project: str,
        changes: Sequence[tuple[str, Callable[[Run], Run]]],
        *,
        execute: _launch.Launch | None = None,
    ) -> list[Run | AsyncRunError]:
        """:meth:`modify` several runs in one transaction; a refused change fails only its run."""
        return await self._write(_runs.modify_many(project, changes, execute))

    async def delete(self, project: str, id: str) -> bool:
        """Delete a run with its metrics, logs and executions; ``False`` if there was none."""
        return await self._write(_runs.delete(project, id))

    async def projects(self) -> list[tuple[str, int, int]]:
        """Every project that has runs: ``(name, runs, newest created_us)``, by name."""
        return await self._read(_runs.projects())

    async def list_runs(self, project: str, query: ListQuery) -> list[Run]:
        """Runs of a project matching ``query``, newest first, at most ``query.limit + 1``."""
        return await self._read(_runs.list_runs(project, query))

    # -- metrics --------------------------------------------------------------------------

    async def metrics(self, project: str, id: str) -> dict[str, Any]:
        """A run's full metrics: each key's single value, or its whole list."""
        return await self._read(_metrics.read(project, id))

    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any] | None:
        """Up to ``limit`` values of a metric key from ``offset`` on (``None``: no such key)."""
        return await self._read(_metrics.history(project, id, key, offset, limit))

    async def apply_metric_batch(
        self, project: str, id: str, writer: str, seq: int, ops: list[Op]
    ) -> BatchResult:
        """Apply a writer's batch atomically and exactly once (by ``(writer, seq)``).

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of this writer is missing.
        """

        def op() -> Operation[BatchResult]:
            yield from _runs.require_run(project, id)
            return (yield from _metrics.apply_batch(project, id, writer, seq, ops))

        return await self._write(op())

    async def apply_metric_ops(self, project: str, id: str, ops: list[Op]) -> list[str]:
        """Apply metric operations atomically, as they come (no writer, no sequence).

        Raises:
            NotFound: if there is no such run.
        """

        def op() -> Operation[list[str]]:
            yield from _runs.require_run(project, id)
            return (yield from _metrics.apply_ops(project, id, ops))

        return await self._write(op())

    # -- executions -----------------------------------------------------------------------

    async def latest_execution(self, project: str, id: str) -> Execution | None:
        """The newest execution of a run, if it was ever started."""
        return await self._read(_execution.latest_execution(project, id))

    async def open_executions(self, *, unstarted: bool = False) -> list[Execution]:
        """Executions that have not ended (only those not started yet, if ``unstarted``)."""
        return await self._read(_execution.open_executions(unstarted))

    async def set_execution_pid(
        self, ident: Ident, pid: int, pid_started: float, uid: int | None = None
    ) -> None:
        """Record the process that carries out an execution."""
        await self._write(_execution.set_execution_pid(ident, pid, pid_started, uid))

    async def start_execution(
        self,
        ident: Ident,
        pid: int,
        pid_started: float,
        uid: int | None,
        change: Callable[[Run], Run],
    ) -> Run:
        """Record an execution's process and apply ``change`` to its run, in one transaction.

        Raises:
            NotFound: if the run (or the execution) is gone.
        """

        def op() -> Operation[Run]:
            yield from _execution.set_execution_pid(ident, pid, pid_started, uid)
            return (yield from _runs.modify(ident[0], ident[1], change, None, ident))

        return await self._write(op())

    async def finish_execution(self, ident: Ident, change: Callable[[Run], Run]) -> Run:
        """Apply ``change`` to an execution's run and end the execution, in one transaction.

        Raises:
            NotFound: if the run (or the execution) is gone.
        """

        def op() -> Operation[Run]:
            run = yield from _runs.modify(ident[0], ident[1], change, None, ident)
            yield from _execution.end_execution(ident)
            return run

        return await self._write(op())

    async def end_execution(self, ident: Ident) -> None:
        """Mark an execution as ended; the token its job was given stops working."""
        await self._write(_execution.end_execution(ident))

    async def ids_in_state(self, state: State) -> set[tuple[str, str]]:
        """``(project, id)`` of every run in ``state``."""
        return await self._read(_runs.ids_in_state(state))

    async def claim_executions(
        self, agent: str, host: str, pid: int, now_us: int, *, others_dead: bool = False
    ) -> list[Execution]:
        """An agent's heartbeat: claim executions without a live owner; return all it owns."""
        return await self._write(_agents.claim(agent, host, pid, now_us, others_dead=others_dead))

    async def leave(self, agent: str) -> None:
        """An agent exits: what it owned goes to the next agent's claim at once."""
        await self._write(_agents.leave(agent))

    # -- logs -----------------------------------------------------------------------------

    async def append_logs(
        self, lines: Mapping[Ident, Sequence[tuple[str, int, str]]], keep: int
    ) -> None:
        """Append log lines of executions; each run keeps its newest ``keep`` lines."""
        await self._write(_logs.append_logs(lines, keep))

    async def append_log_batch(
        self,
        project: str,
        id: str,
        writer: str,
        seq: int,
        lines: Sequence[tuple[str, int, str]],
        *,
        end: bytes | None = None,
        keep: int,
    ) -> bool:
        """Append a launcher's numbered batch exactly once; ``False`` for a duplicate.

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of this writer is missing.
        """
        return await self._write(_logs.append_log_batch(project, id, writer, seq, lines, end, keep))

    async def job_end(self, project: str, id: str, writer: str) -> bytes | None:
        """The end (JSON) a launcher reported in its last batch, if it arrived."""
        return await self._read(_logs.job_end(project, id, writer))

    async def log_bounds(self, project: str, id: str) -> tuple[int, int]:
        """``(first, end)``: offsets of a run's oldest stored line and the one after its newest."""
        return await self._read(_logs.log_bounds(project, id))

    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, *, before: int | None = None
    ) -> list[LogLine]:
        """Up to ``limit`` lines of a run's log from ``offset`` (and before ``before``)."""
        return await self._read(_logs.read_logs(project, id, offset, limit, before))

    # -- documents ------------------------------------------------------------------------

    async def insert_document(self, doc: Document) -> bool:
        """Store a new document; ``False`` if one with its id exists."""
        return await self._write(_documents.insert(doc))

    async def document(self, project: str, type_: str, id: str) -> Document | None:
        """Read one document, or ``None``."""
        return await self._read(_documents.get(project, type_, id))

    async def documents(
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
        """One page of a project's documents of a type, and how many match in all."""
        return await self._read(
            _documents.search(
                project, type_, kind=kind, ref=ref, name=name, offset=offset, limit=limit
            )
        )

    # -- tokens ---------------------------------------------------------------------------

    async def add_token(
        self, grant: Grant, digest: bytes, *, description: str | None = None, run: str | None = None
    ) -> None:
        """Store a token's grant and the digest of its secret (a job's, with ``run``)."""
        now_us = time.time_ns() // 1000
        await self._write(
            _tokens.add(grant, digest, description=description, run=run, now_us=now_us)
        )

    async def token(self, token_id: str) -> tuple[Grant, bytes] | None:
        """A token's grant and secret digest, or ``None``."""
        return await self._read(_tokens.lookup(token_id))

    async def job_run(self, token_id: str) -> str | None:
        """``project/id`` of the run whose job the token was given to (``None``: not a job's)."""
        return await self._read(_tokens.job_run(token_id))

    async def tokens(self) -> list[TokenInfo]:
        """Every stored token (without secrets)."""
        return await self._read(_tokens.listing())

    async def revoke_token(self, token_id: str) -> bool:
        """Delete a token; ``False`` if there was none."""
        return await self._write(_tokens.revoke(token_id))

    async def revoke_job_tokens(self, run: str | None = None) -> None:
        """Delete the tokens given to jobs: of one run (``project/id``), or all of them."""
        await self._write(_tokens.revoke_jobs(run))

    async def feed(self, project: str, since: int, limit: int) -> tuple[list[Any], bool]:
        """The raw changes feed of a project (``_feed.read``), for tests and tools."""
        return await self._read(_feed.read(project, since, limit))


_: type[Store] = SQLStore  # mypy checks that the store implements the Protocol
