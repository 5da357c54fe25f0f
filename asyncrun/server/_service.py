"""The service layer: every rule about run records, shared by the HTTP app and the embedded backend.

Handlers and transports only translate; validation, revisions, state rules, execution, logs and
watches live here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import attrs

from .. import _serde, kinds
from .._core.auth import Grant
from .._core.errors import (
    AsyncRunError,
    InvalidTransition,
    NotFound,
    ServerStopping,
    ValidationError,
)
from .._core.joblog import LogBatch
from .._core.launch import STATUS_KEY
from .._core.logs import LogPage, tail_start
from .._core.metrics import Batch, Mode, Op, Value, check_key, check_value
from .._core.protocol import MAX_REVISION
from .._core.query import Changes, ListQuery, cursor_after
from .._core.records import LogLine, Project, Run, State, Transition, did_you_mean
from .._core.states import TERMINAL, check_action, forward_path, path_to, transition
from .._core.summary import MAX_INLINE_VALUES, inline_count, metrics_loaded, summarize
from ._executor import LocalExecutor
from ._store._metrics import BatchResult
from ._store._protocol import Store

log = logging.getLogger("asyncrun.server")

HOLD_CHECK: Final = 0.1
"""Longest a held watch or log follow waits for a change before it looks again (is the server
stopping, was its token revoked?). SQLite's store wakes it every poll interval anyway."""
REAP_EVERY: Final = 1.0
"""Seconds between two checks, during a watch, that an agent serves unfinished runs."""
LOG_PAGE: Final = 5000
SUPERVISE_EVERY: Final = 1.0
"""Seconds between two checks, on a server, that an agent serves unfinished runs."""
KEEP_LOG_LINES: Final = 100_000
"""Log lines kept per run when no executor says otherwise."""
HEARTBEAT: Final = 5.0
"""Seconds of silence after which a log follow sends an empty batch."""


def _one(results: list[Run | AsyncRunError]) -> Run:
    (result,) = results
    if isinstance(result, AsyncRunError):
        raise result
    return result


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@attrs.frozen
class Page:
    """One page of a listing and the cursor of the next page (``None`` on the last)."""

    runs: list[Run]
    next_cursor: str | None


class _Unchanged(Exception):
    """Raised inside a store change to write nothing."""


def _kind(name: str) -> kinds.Kind | None:
    try:
        return kinds.get(name)
    except kinds.KindLoadError as exc:
        raise ValidationError(str(exc), detail={"field": "kind"}) from None


def _validate_spec(kind_name: str, spec: dict[str, Any]) -> None:
    kind = _kind(kind_name)
    if kind is None:
        return
    try:
        kind.validate(spec)
    except ValueError as exc:
        raise ValidationError(
            f"invalid spec for {kind_name}: {exc}", detail={"field": "spec"}
        ) from None


class RunService:
    """Create, read, update, delete, list, run, stop, resume, watch and read logs of runs.

    Args:
        store: Where records are kept.
        executor: Starts jobs; ``None`` refuses ``run()``.
        clock: Returns the current time; tests pass a fixed clock.
        session_token: ``(grant, secret digest)`` of the only token accepted, instead of
            the stored ones (``asyncrun ui``'s: it lives in this process only).
    """

    def __init__(
        self,
        store: Store,
        executor: LocalExecutor | None = None,
        clock: Callable[[], datetime] = utc_now,
        *,
        session_token: tuple[Grant, bytes] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.stopping = False
        self.session_token = session_token

    async def token(self, token_id: str) -> tuple[Grant, bytes] | None:
        """The grant and secret digest of a token the service accepts, or ``None``."""
        if self.session_token is not None:
            only = self.session_token
            return only if token_id == only[0].token_id else None
        return await self.store.token(token_id)

    def stop_streams(self) -> None:
        """End every open log follow and held watch soon: the server is shutting down.

        Safe to call from a signal handler (it only sets a flag the streams look at on every
        poll). A follow then ends without its end marker, so its client resumes it from the
        last offset on the next server; a held watch answers at once.
        """
        self.stopping = True

    async def aclose(self) -> None:
        """Release the store."""
        await self.store.aclose()

    # -- records --------------------------------------------------------------------------

    async def create(self, project: str, data: Any) -> Run:
        """Validate and store a new run; the server stamps times and revision 1.

        Raises:
            ValidationError: if the record is invalid or names another project.
            AlreadyExists: if the id is taken.
        """
        run = self._new(project, data, self.clock())
        await self.store.insert(run)
        return run

    async def create_many(self, project: str, items: Sequence[Any]) -> list[Run | AsyncRunError]:
        """Create several runs in one transaction, each validated on its own.

        Returns:
            For each item in order, the stored run or the error that refused it.
        """
        now = self.clock()
        results: list[Run | AsyncRunError] = []
        for data in items:
            try:
                results.append(self._new(project, data, now))
            except AsyncRunError as exc:
                results.append(exc)
        errors = iter(await self.store.insert_many([r for r in results if isinstance(r, Run)]))
        return [(next(errors) or r) if isinstance(r, Run) else r for r in results]

    @staticmethod
    def _new(project: str, data: Any, now: datetime) -> Run:
        run = _serde.from_dict(data)
        if run.project != project:
            raise ValidationError(
                f"the run names project {run.project!r} but was sent to project {project!r}",
                detail={"field": "project"},
            )
        _validate_spec(run.kind, run.spec)
        metadata = attrs.evolve(
            run.metadata, created=run.metadata.created or now, updated=now, revision=1
        )
        # Every run starts CREATED, whatever the body says: the state machine is the server's.
        # Metrics and kind outputs are kept, so an exported run can be imported with them.
        status = attrs.evolve(
            run.status,
            state=State.CREATED,
            message=None,
            transitions=[Transition(State.CREATED, now)],
            metric_summary=summarize(run.status.metrics),
        )
        return attrs.evolve(run, metadata=metadata, status=status)

    async def get(self, project: str, id: str) -> Run:
        """Read one run, with a summary of each metric key but not its values.

        Raises:
            NotFound: if there is no such run.
        """
        run = await self.store.get(project, id)
        if run is None:
            raise NotFound(
                f"no run {id!r} in project {project!r}", detail={"project": project, "id": id}
            )
        return run

    async def with_metrics(self, run: Run) -> Run:
        """``run`` with its full metrics, if they are at most ``MAX_INLINE_VALUES`` values.

        Above that the record keeps only its summaries: each key's history is then read in
        pages (:meth:`metric_history`), so no answer grows with a history without bound.
        """
        summary = run.status.metric_summary
        if metrics_loaded(run.status.metrics, summary) or inline_count(summary) > MAX_INLINE_VALUES:
            return run  # a created run holds what it was sent
        metrics = await self.store.metrics(run.project, run.id)
        return attrs.evolve(run, status=attrs.evolve(run.status, metrics=metrics))

    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any]:
        """Up to ``limit`` values of a metric key's list from ``offset`` on.

        A single-valued key reads as a list of one.

        Raises:
            NotFound: if there is no such run, or it has no such key.
        """
        values = await self.store.metric_history(project, id, key, offset, limit)
        if values is None:
            await self.get(project, id)  # no run: say so
            raise NotFound(
                f"run {id!r} has no metric {key!r}", detail={"project": project, "key": key}
            )
        return values

    async def update(self, project: str, id: str, data: Any, revision: int | None = None) -> Run:
        """Replace the user-owned parts of a run if it is still at the expected revision.

        The user owns ``name``, ``metadata`` (but its times and revision), ``spec``, ``user`` and
        status keys a kind adds; the server owns ``status.state``, ``transitions`` and
        ``metrics``, which only change through actions and the status endpoint, so a save from a
        stale copy can never roll a state back.

        Args:
            project: The run's project.
            id: The run's id.
            data: The full record as the client holds it.
            revision: The revision the client last read (``If-Match``); defaults to the
                record's ``metadata.revision``.

        Raises:
            ValidationError: if the record is invalid or tries to change kind, project or id.
            NotFound: if the run does not exist.
            RevisionConflict: if the run changed since ``revision``.
        """
        incoming = _serde.from_dict(data)
        if (incoming.project, incoming.id) != (project, id):
            raise ValidationError(
                "project and id of a run cannot change: create a new run instead",
                detail={"field": "id"},
            )
        current = await self.get(project, id)
        if incoming.kind != current.kind:
            raise ValidationError(
                f"the kind of a run cannot change (it is {current.kind!r})",
                detail={"field": "kind"},
            )
        _validate_spec(incoming.kind, incoming.spec)
        expected = incoming.metadata.revision if revision is None else revision
        if not 0 <= expected <= MAX_REVISION:
            raise ValidationError(
                f"metadata.revision must be 0 to {MAX_REVISION}", detail={"field": "revision"}
            )
        metadata = attrs.evolve(
            incoming.metadata,
            created=current.metadata.created,
            updated=self.clock(),
            revision=current.metadata.revision + 1,
        )
        extra = dict(incoming.status.extra)
        extra.pop(STATUS_KEY, None)  # how it was launched is the server's to say
        if STATUS_KEY in current.status.extra:
            extra[STATUS_KEY] = current.status.extra[STATUS_KEY]
        status = attrs.evolve(
            incoming.status,
            state=current.status.state,
            message=current.status.message,
            transitions=current.status.transitions,
            metrics={},
            metric_summary=current.status.metric_summary,
            extra=extra,
        )
        run = attrs.evolve(incoming, metadata=metadata, status=status)
        await self.store.replace(run, expected)
        return run

    async def delete(self, project: str, id: str) -> None:
        """Delete a run; a running job is stopped first (without waiting for it).

        Raises:
            NotFound: if there is no such run.
        """
        execution = await self.store.latest_execution(project, id)
        deleted = await self.store.delete(project, id)
        # Killed once deleted, not before: its agent, seeing the job end, must find no run to
        # write an ERROR to (a wait on it ends DELETED).
        if execution is not None and self.executor is not None:
            self.executor.kill(execution)
        if not deleted:
            raise NotFound(
                f"no run {id!r} in project {project!r}", detail={"project": project, "id": id}
            )

    async def projects(self, visible: Callable[[str], bool] = lambda _: True) -> list[Project]:
        """The projects that have runs, by name, among those ``visible`` accepts."""
        return [
            Project(name, runs, datetime.fromtimestamp(newest / 1e6, UTC))
            for name, runs, newest in await self.store.projects()
            if visible(name)
        ]

    async def list_runs(self, project: str, query: ListQuery) -> Page:
        """One page of a project's runs matching ``query``, newest first."""
        runs = await self.store.list_runs(project, query)
        if len(runs) > query.limit:
            runs = runs[: query.limit]
            return Page(runs, cursor_after(runs[-1]).encode())
        return Page(runs, None)

    # -- actions --------------------------------------------------------------------------

    def _move(self, run: Run, *states: State, message: str | None = None) -> Run:
        now = self.clock()
        status = run.status
        for state in states:
            status = transition(status, state, now, message)
        return attrs.evolve(run, status=status, metadata=attrs.evolve(run.metadata, updated=now))

    async def run(self, project: str, id: str) -> Run:
        """Start a run: CREATED -> BUILT -> READY, then its supervisor takes it to RUNNING.

        Raises:
            NotFound: if there is no such run.
            InvalidTransition: if the run was already started.
            ValidationError: if its kind cannot be executed or its spec is invalid.
        """
        return _one(await self.act_many(project, "run", [id]))

    async def resume(self, project: str, id: str) -> Run:
        """Start a STOPPED run again: a new execution whose logs follow the old ones.

        Raises:
            NotFound: if there is no such run.
            InvalidTransition: if the run is not STOPPED.
        """
        return _one(await self.act_many(project, "resume", [id]))

    async def stop(self, project: str, id: str) -> Run:
        """Ask a run to stop: STOP now, STOPPED once the agent has ended its process.

        Raises:
            NotFound: if there is no such run.
            InvalidTransition: if the run is not READY, PENDING or RUNNING.
        """
        return _one(await self.act_many(project, "stop", [id]))

    async def act_many(
        self, project: str, action: str, ids: Sequence[str]
    ) -> list[Run | AsyncRunError]:
        """``run``, ``stop`` or ``resume`` several runs of a project in one transaction.

        Each run is checked on its own; a refused one fails alone. The agent is started (or
        checked) once for the whole batch, so 10,000 ``run()`` calls cost a few transactions
        and agent checks, not 10,000.

        Returns:
            For each id, the run as changed, or the error that left it unchanged.
        """
        target = State.STOP if action == "stop" else State.READY
        results: list[Run | AsyncRunError | None] = [None] * len(ids)
        changes: list[tuple[str, Callable[[Run], Run]]] = []
        todo: list[int] = []
        for i, id in enumerate(ids):
            if action != "stop":
                try:
                    run = await self.get(project, id)
                    if action == "run":
                        self._check_executable(run)
                    elif self.executor is None:
                        raise ValidationError("this backend cannot execute runs")
                except AsyncRunError as exc:
                    results[i] = exc
                    continue
            todo.append(i)
            changes.append((id, self._change(action, target)))
        # How it starts is decided now, by whoever asked (see asyncrun._core.launch).
        launch = None if action == "stop" or self.executor is None else self.executor.launch()
        changed = await self.store.modify_many(project, changes, execute=launch)
        for i, result in zip(todo, changed, strict=True):
            results[i] = result
        if action == "stop":
            await self.reap_lost()
        elif any(isinstance(r, Run) for r in results):
            await self._start_agent(project, results)
        return [r for r in results if r is not None]

    def _check_executable(self, run: Run) -> None:
        kind = _kind(run.kind)
        if kind is not None and kinds.origin(run.kind) == "process":
            raise ValidationError(
                f"kind {run.kind!r} is registered only in this process, so the agent that"
                f" executes runs cannot load it; publish it as an entry point in group"
                f" {kinds.GROUP!r} (see the guide to kinds)",
                detail={"field": "kind"},
            )
        if kind is None or self.executor is None:
            executable = [name for name in kinds.names() if kinds.origin(name) != "process"]
            raise ValidationError(
                f"runs of kind {run.kind!r} cannot be executed by this backend"
                f"{did_you_mean(run.kind, executable)}; "
                f"executable kinds: {', '.join(executable) if self.executor else 'none'}",
                detail={"field": "kind"},
            )
        _validate_spec(run.kind, run.spec)

    def _change(self, action: str, target: State) -> Callable[[Run], Run]:
        def change(run: Run) -> Run:
            check_action(action, run.status.state)
            return self._move(run, *path_to(run.status.state, target))

        return change

    async def _start_agent(self, project: str, results: list[Run | AsyncRunError | None]) -> None:
        assert self.executor is not None  # the agent picks the executions up from the store
        try:
            await self.executor.ensure_agent()
        except OSError as exc:
            message = f"cannot start the agent that runs jobs: {exc}"

            def fail(run: Run) -> Run:
                return self._move(run, State.ERROR, message=message)

            started = [(r.id, fail) for r in results if isinstance(r, Run)]
            changed = iter(await self.store.modify_many(project, started))
            for i, result in enumerate(results):
                if isinstance(result, Run):
                    results[i] = next(changed)

    async def advance(self, project: str, id: str, state: State, message: str | None = None) -> Run:
        """Record the state a run its client executes has reached (never a step back).

        For runs the server does not execute (a client that runs the code itself reports
        its progress): the run moves forward to ``state`` along the happy path; a report that
        is late, repeated or not reachable from the current state changes nothing.

        Raises:
            NotFound: if there is no such run.
            InvalidTransition: if the server executes this run (its state is the server's).
        """
        if await self.store.latest_execution(project, id) is not None:
            raise InvalidTransition(
                f"run {id!r} is executed by this server: only the server changes its state",
                detail={"project": project, "id": id},
            )

        def change(run: Run) -> Run:
            states = forward_path(run.status.state, state)
            if states is None:
                raise _Unchanged
            return self._move(run, *states, message=message)

        try:
            return await self.store.modify(project, id, change)
        except _Unchanged:
            return await self.get(project, id)

    async def reap_lost(self) -> None:
        """Make sure an agent serves unfinished executions.

        A new agent starts pending executions and marks runs whose job died with a previous
        agent as ERROR (or STOPPED when they were being stopped): no run stays RUNNING forever.
        """
        if self.executor is not None and await self.store.open_executions():
            await self.executor.ensure_agent()

    async def supervise(self, every: float = SUPERVISE_EVERY) -> None:
        """Check every ``every`` seconds, until cancelled, that an agent serves open runs.

        A server runs this in the background: an agent that died is noticed within seconds,
        not only when somebody waits; the new agent ends its runs ERROR (lost), ends what is
        left of their processes and revokes their tokens.
        """
        while True:
            await anyio.sleep(every)
            try:
                await self.reap_lost()
            except (OSError, AsyncRunError) as exc:  # e.g. a full disk: try again next time
                log.warning("cannot check the agent: %s", exc)

    # -- metrics ------------------------------------------------------------------------

    async def apply_metrics(self, project: str, id: str, batch: Batch) -> BatchResult:
        """Apply a batch of metric operations exactly once (a retried batch is not re-applied).

        Metric writes do not change the run's revision: they never make a ``save(update=True)``
        of the user's fields conflict.

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of the same writer is missing.
        """
        return await self.store.apply_metric_batch(project, id, batch.writer, batch.seq, batch.ops)

    async def put_metric(self, project: str, id: str, key: str, value: object) -> None:
        """Make one metric key hold exactly ``value`` (a number, or a list of numbers).

        The effect of a ``SET`` operation (see :mod:`asyncrun._core.metrics`) for clients that
        send a key's whole value; when the key's list is a prefix of the new list, only the
        new values are written. Like every metric write, it leaves the revision alone.

        Raises:
            ValidationError: if the key or the value is not a metric's.
            NotFound: if there is no such run.
        """
        try:
            check_key(key)
            checked: Value = check_value(key, value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(str(exc), detail={"field": "value"}) from None
        run = await self.get(project, id)
        op = Op(key, Mode.SET, checked)
        summary = run.status.metric_summary.get(key)
        if isinstance(checked, list) and summary is not None and not summary.single:
            count = summary.count
            if 0 < count <= len(checked):
                held = await self.store.metric_history(project, id, key, 0, count)
                prefix = checked[:count]
                if held == prefix and list(map(type, held)) == list(map(type, prefix)):
                    op = Op(key, Mode.APPEND, checked[count:])
        await self.store.apply_metric_ops(project, id, [op])

    # -- a launcher's logs (remote executors) ----------------------------------------------

    async def append_log_batch(self, project: str, id: str, batch: LogBatch) -> bool:
        """Append a job launcher's numbered batch of lines exactly once (see ``_core.joblog``).

        Returns:
            ``True`` if applied now, ``False`` for a retry of a batch already applied.

        Raises:
            NotFound: if there is no such run.
            SequenceGap: if an earlier batch of the same writer is missing.
        """
        keep = self.executor.keep_log_lines if self.executor is not None else KEEP_LOG_LINES
        end = None if batch.end is None else _serde.dumps(batch.end.to_wire())
        return await self.store.append_log_batch(
            project, id, batch.writer, batch.seq, batch.lines, end=end, keep=keep
        )

    async def job_run(self, token_id: str) -> str | None:
        """``project/id`` of the run whose job a token was given to (``None``: not a job's)."""
        if self.session_token is not None:
            return None
        return await self.store.job_run(token_id)

    # -- watch and logs -------------------------------------------------------------------

    async def watch(
        self,
        project: str,
        ids: Sequence[str],
        since: int | None,
        timeout: float,
        fresh: Sequence[str] = (),
        check: Callable[[], Awaitable[None]] | None = None,
        *,
        feed: bool = False,
    ) -> Changes:
        """Wait up to ``timeout`` seconds until a watched run changes after ``since``.

        ``fresh`` ids (just added by the watcher) are reported at once whatever their sequence.
        Returns early with whatever changed; returns empty changes at the timeout, or at once
        when the server begins to shut down.

        Args:
            project: The runs' project.
            ids: The watched run ids.
            since: The change sequence the watcher has seen (``None``: from now, feed only).
            timeout: Seconds to hold the watch when nothing changes.
            fresh: Ids reported whatever their sequence.
            check: Called while the watch is held; what it raises ends the watch (the HTTP
                app passes one that refuses a revoked token).
            feed: Report every change of the project (see ``Store.changes``).
        """
        deadline = anyio.current_time() + timeout
        next_reap = anyio.current_time() + REAP_EVERY
        while True:
            ticket = self.store.change_ticket()  # before the read: no change falls in between
            changes = await self.store.changes(project, ids, since, fresh, feed=feed)
            if (
                changes.runs
                or changes.missing
                or changes.deleted
                or anyio.current_time() >= deadline
            ):
                return changes
            since = changes.seq
            while anyio.current_time() < deadline:
                if self.stopping:
                    return changes
                if check is not None:
                    await check()
                await self.store.wait_change(
                    ticket, min(HOLD_CHECK, deadline - anyio.current_time())
                )
                ticket = self.store.change_ticket()
                if await self.store.current_seq() != since:
                    break
                if anyio.current_time() >= next_reap:
                    next_reap = anyio.current_time() + REAP_EVERY
                    await self.reap_lost()
            fresh = ()

    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, tail: int | None = None
    ) -> LogPage:
        """A page of up to ``limit`` log lines from ``offset``, or ``tail`` lines before the end.

        It carries the end offset as it was when read, and stops there. The page is bounded
        by bytes too (see :mod:`asyncrun._core.logs`); its cost does not grow with the log's
        length.

        Raises:
            NotFound: if there is no such run.
        """
        await self.get(project, id)
        first, end = await self.store.log_bounds(project, id)
        start = offset if tail is None else tail_start(first, end, tail)
        lines = await self.store.read_logs(project, id, start, limit, before=end)
        return LogPage(lines, lines[-1].offset + 1 if lines else start, end)

    async def tail_offset(self, project: str, id: str, tail: int) -> int:
        """The offset of the first of a run's last ``tail`` log lines.

        Raises:
            NotFound: if there is no such run.
        """
        await self.get(project, id)
        return tail_start(*await self.store.log_bounds(project, id), tail)

    async def follow_logs(
        self, project: str, id: str, offset: int, check: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncGenerator[list[LogLine], None]:
        """Every log line from ``offset`` on as it is written, in batches.

        Ends once the run is terminal and its last line has been delivered (its supervisor
        writes the lines before the state).

        Args:
            project: The run's project.
            id: The run's id.
            offset: The first line to deliver.
            check: Called before every batch and every wait; what it raises ends the
                follow (the HTTP app passes one that refuses a revoked token).

        Raises:
            NotFound: if there is no such run (or it is deleted while followed).
            ServerStopping: once :meth:`stop_streams` was called.
        """
        await self.get(project, id)
        last_sent = anyio.current_time()
        while True:
            if self.stopping:
                raise ServerStopping("the server is shutting down; resume from the last offset")
            if check is not None:
                await check()
            ticket = self.store.change_ticket()  # before the reads: no line falls in between
            run = await self.get(project, id)  # the state first, then the lines: no line is missed
            lines = await self.store.read_logs(project, id, offset, LOG_PAGE)
            if lines:
                yield lines
                last_sent = anyio.current_time()
                offset = lines[-1].offset + 1
                continue
            if run.status.state in TERMINAL:
                return
            if anyio.current_time() - last_sent >= HEARTBEAT:
                yield []  # a quiet job's stream proves it is alive: clients keep read timeouts
                last_sent = anyio.current_time()
            await self.store.wait_change(ticket, HOLD_CHECK)
