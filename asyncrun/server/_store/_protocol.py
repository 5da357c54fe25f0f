"""What the server layer needs of a store: the one interface the service is written against.

The service (:class:`~asyncrun.server._service.RunService`), the ASGI app and its DHCore
routes, the agent and the token commands of the CLI call a store only through these methods.
:class:`~asyncrun.server._store._sqlstore.SQLStore` implements them once for SQLite and
PostgreSQL (the assertion at the end of ``_sqlstore`` makes mypy check it).

The methods are async: PostgreSQL's store awaits the network. SQLite's answers from a local
file in well under a millisecond, faster than a thread hop, so its calls finish without
suspending, on the event loop's thread (and synchronous code can make them: ``_sqlstore``).

Every multi-row change is atomic: it is written whole or not at all, and a reader never sees
half of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..._core import launch as _launch
from ..._core.auth import Grant
from ..._core.errors import AlreadyExists, AsyncRunError
from ..._core.metrics import Op
from ..._core.query import Changes, ListQuery
from ..._core.records import LogLine, Run, State
from ._documents import Document
from ._execution import Execution, Ident
from ._metrics import BatchResult
from ._tokens import TokenInfo


class Store(Protocol):
    """Run records, their metrics, logs and executions, documents and tokens."""

    @property
    def name(self) -> str:
        """The database's name in messages (a file's name; a URL without its password)."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections."""
        ...

    # -- change counter -------------------------------------------------------------------

    def change_ticket(self) -> int:
        """A ticket for :meth:`wait_change`: take it before reading what the wait is about."""
        ...

    async def wait_change(self, ticket: int, timeout: float) -> None:
        """Return once something may have changed since ``ticket`` was taken, or after ``timeout``.

        "Something" is a run written or deleted, or a log line added, by any process on the
        database. A store that cannot be told (SQLite) returns after a short poll interval:
        the caller reads again either way.
        """
        ...

    async def current_seq(self) -> int:
        """The sequence number of the newest change; it only grows."""
        ...

    async def changes(
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
        listed as missing, like watched ``ids``. ``since=None`` starts the feed now.
        """
        ...

    # -- runs -----------------------------------------------------------------------------

    async def insert(self, run: Run) -> None:
        """Store a new run.

        Raises:
            AlreadyExists: if the project already has a run with this id.
        """
        ...

    async def insert_many(self, runs: Sequence[Run]) -> list[AlreadyExists | None]:
        """Store new runs in one transaction; a taken id fails only its own run."""
        ...

    async def get(self, project: str, id: str) -> Run | None:
        """Read one run, or ``None``."""
        ...

    async def replace(self, run: Run, expected_revision: int) -> None:
        """Overwrite a run if it is still at ``expected_revision``.

        Raises:
            RevisionConflict: if another write happened since that revision.
        """
        ...

    async def modify(
        self,
        project: str,
        id: str,
        change: Callable[[Run], Run],
        *,
        execute: _launch.Launch | None = None,
        of: Ident | None = None,
    ) -> Run:
        """Read a run, apply ``change``, bump the revision and write it, in one transaction.

        With ``execute``, the same transaction reserves the run's next execution; with
        ``of``, the change is made only while that execution exists.

        Raises:
            NotFound: if there is no such run (or no such execution).
        """
        ...

    async def modify_many(
        self,
        project: str,
        changes: Sequence[tuple[str, Callable[[Run], Run]]],
        *,
        execute: _launch.Launch | None = None,
    ) -> list[Run | AsyncRunError]:
        """:meth:`modify` several runs in one transaction; a refused change fails only its run."""
        ...

    async def delete(self, project: str, id: str) -> bool:
        """Delete a run with its metrics, logs and executions; ``False`` if there was none."""
        ...

    async def projects(self) -> list[tuple[str, int, int]]:
        """Every project that has runs: ``(name, runs, newest created_us)``, by name."""
        ...

    async def list_runs(self, project: str, query: ListQuery) -> list[Run]:
        """Runs of a project matching ``query``, newest first, at most ``query.limit + 1``."""
        ...

    # -- metrics --------------------------------------------------------------------------

    async def metrics(self, project: str, id: str) -> dict[str, Any]:
        """A run's full metrics: each key's single value, or its whole list."""
        ...

    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any] | None:
        """Up to ``limit`` values of a metric key from ``offset`` on (``None``: no such key)."""
        ...

    async def apply_metric_batch(
        self, project: str, id: str, writer: str, seq: int, ops: list[Op]
    ) -> BatchResult:
        """Apply a writer's batch atomically and exactly once (by ``(writer, seq)``)."""
        ...

    async def apply_metric_ops(self, project: str, id: str, ops: list[Op]) -> list[str]:
        """Apply metric operations atomically, as they come (no writer, no sequence)."""
        ...

    # -- executions -----------------------------------------------------------------------

    async def latest_execution(self, project: str, id: str) -> Execution | None:
        """The newest execution of a run, if it was ever started."""
        ...

    async def open_executions(self, *, unstarted: bool = False) -> list[Execution]:
        """Executions that have not ended (only those not started yet, if ``unstarted``)."""
        ...

    async def set_execution_pid(
        self, ident: Ident, pid: int, pid_started: float, uid: int | None = None
    ) -> None:
        """Record the process that carries out an execution."""
        ...

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
        ...

    async def finish_execution(self, ident: Ident, change: Callable[[Run], Run]) -> Run:
        """Apply ``change`` to an execution's run and end the execution, in one transaction.

        Raises:
            NotFound: if the run (or the execution) is gone.
        """
        ...

    async def end_execution(self, ident: Ident) -> None:
        """Mark an execution as ended; the token its job was given stops working."""
        ...

    async def ids_in_state(self, state: State) -> set[tuple[str, str]]:
        """``(project, id)`` of every run in ``state``."""
        ...

    async def claim_executions(
        self, agent: str, host: str, pid: int, now_us: int, *, others_dead: bool = False
    ) -> list[Execution]:
        """An agent's heartbeat: claim executions without a live owner; return all it owns.

        ``others_dead``: the caller knows no other agent is alive, so it takes theirs now.
        """
        ...

    async def leave(self, agent: str) -> None:
        """An agent exits: what it owned goes to the next agent's claim at once."""
        ...

    # -- logs -----------------------------------------------------------------------------

    async def append_logs(
        self, lines: Mapping[Ident, Sequence[tuple[str, int, str]]], keep: int
    ) -> None:
        """Append log lines of executions; each run keeps its newest ``keep`` lines."""
        ...

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
        """Append a launcher's numbered batch exactly once (by ``(writer, seq)``).

        ``end`` (JSON) is kept for :meth:`job_end`. Returns ``False`` for a duplicate.

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of this writer is missing.
        """
        ...

    async def job_end(self, project: str, id: str, writer: str) -> bytes | None:
        """The end (JSON) a launcher reported in its last batch, if it arrived."""
        ...

    async def log_bounds(self, project: str, id: str) -> tuple[int, int]:
        """``(first, end)``: offsets of a run's oldest stored line and the one after its newest."""
        ...

    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, *, before: int | None = None
    ) -> list[LogLine]:
        """Up to ``limit`` lines of a run's log from ``offset`` (and before ``before``)."""
        ...

    # -- documents (DHCore projects, functions, tasks) ------------------------------------

    async def insert_document(self, doc: Document) -> bool:
        """Store a new document; ``False`` if one with its id exists."""
        ...

    async def document(self, project: str, type_: str, id: str) -> Document | None:
        """Read one document, or ``None``."""
        ...

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
        ...

    # -- tokens ---------------------------------------------------------------------------

    async def add_token(
        self, grant: Grant, digest: bytes, *, description: str | None = None, run: str | None = None
    ) -> None:
        """Store a token's grant and the digest of its secret (a job's, with ``run``)."""
        ...

    async def token(self, token_id: str) -> tuple[Grant, bytes] | None:
        """A token's grant and secret digest, or ``None``."""
        ...

    async def job_run(self, token_id: str) -> str | None:
        """``project/id`` of the run whose job the token was given to (``None``: not a job's)."""
        ...

    async def tokens(self) -> list[TokenInfo]:
        """Every stored token (without secrets)."""
        ...

    async def revoke_token(self, token_id: str) -> bool:
        """Delete a token; ``False`` if there was none."""
        ...
