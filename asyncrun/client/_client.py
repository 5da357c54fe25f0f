from __future__ import annotations

import functools
import logging
import os
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread
import attrs
from anyio.abc import TaskGroup

from .. import _config, _serde
from .._core.errors import AsyncRunError, ValidationError
from .._core.metrics import MAX_BATCH_VALUES
from .._core.protocol import ACTIONS
from .._core.query import DEFAULT_LIMIT, Cursor, ListQuery
from .._core.records import Project, Run, new_run
from .._core.summary import summarize
from ._batch import Batcher
from ._metrics import MetricBuffer, MetricFlusher, unsent_message
from ._run import AsyncRun
from ._transports._base import AsyncTransport

if TYPE_CHECKING:
    from ._transports._http import TokenSource
from ._watch import Watcher

log = logging.getLogger("asyncrun")


async def _act_one(transport: AsyncTransport, action: str, project: str, id: str) -> Run:
    return await transport.action(project, id, action)


async def _act_many(
    transport: AsyncTransport, action: str, project: str, ids: list[str]
) -> list[Run | AsyncRunError]:
    return await transport.actions(project, action, ids)


def _check_input(fn: Any, **kwargs: Any) -> Any:
    # Validation at the call site: a bad argument is a ValidationError naming it, before any I/O.
    try:
        return fn(**kwargs)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(str(exc)) from None


class AsyncClient:
    """The async client: creates, reads, lists and loads runs.

    Use it as an async context manager. With no ``endpoint`` (and no ``ASYNCRUN_ENDPOINT``) it
    runs the embedded backend: the server's service layer in this process on a SQLite file under
    ``ASYNCRUN_HOME``; nothing to start.

    Args:
        endpoint: URL of an ``asyncrun server``; defaults to ``ASYNCRUN_ENDPOINT``.
        token: Bearer token for the server, or a function returning the current one;
            defaults to ``ASYNCRUN_TOKEN_FILE``'s content or ``ASYNCRUN_TOKEN``. The source
            is asked again when the server answers 401, so rotated tokens are picked up.
            Tokens are never written to disk, logged or put in an error message.
        timeout: Seconds allowed for each HTTP request; defaults to ``ASYNCRUN_TIMEOUT`` or 30.
        home: Folder of the embedded backend's database; defaults to ``ASYNCRUN_HOME``.
        context: Folder ``export()`` writes to; defaults to ``ASYNCRUN_CONTEXT`` or the
            working directory.
        transport: A ready transport (advanced; overrides the other backend arguments).
        flush_interval: Seconds between two background flushes of buffered metrics.
        flush_at: Buffered metric operations that trigger a flush before the timer.
        metric_buffer_size: Bound of the metric buffer; past it ``log_metric`` blocks (from
            threads other than the event loop's) until the flusher has made room.
        exit_flush_timeout: Seconds the final flush at close may take; defaults to
            ``ASYNCRUN_EXIT_FLUSH_TIMEOUT`` or 10. What is not sent by then is reported.
        max_connections: Connections to the server open at once for short requests (100).
            Log follows and waits have a pool of their own (1,000 connections), so they
            never take these.

    Example:
        >>> async with asyncrun.AsyncClient() as client:  # doctest: +SKIP
        ...     run = await client.new_run(project="demo", kind="command+job",
        ...                                spec={"command": ["echo", "hi"]})
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: TokenSource = None,
        *,
        timeout: float | None = None,
        home: str | Path | None = None,
        context: str | Path | None = None,
        transport: AsyncTransport | None = None,
        flush_interval: float = 1.0,
        flush_at: int = 10_000,
        metric_buffer_size: int = 1_000_000,
        exit_flush_timeout: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.context = Path(context) if context is not None else _config.context()
        self.endpoint = endpoint or _config.endpoint()
        if transport is not None:
            self._transport = transport
        elif self.endpoint is not None:
            from ._transports._http import MAX_CONNECTIONS, HTTPTransport

            self._transport = HTTPTransport(
                self.endpoint,
                token=token,
                timeout=timeout if timeout is not None else _config.timeout(),
                max_connections=max_connections or MAX_CONNECTIONS,
            )
        else:
            from ..server import default_db_path
            from ._transports._embedded import EmbeddedTransport

            self._transport = EmbeddedTransport(default_db_path(home))
        self._closed = False
        self._tasks: TaskGroup | None = None
        self._watcher = Watcher(self._transport, self._spawn)
        transport, tasks = self._transport, (lambda: self._tasks)
        self._creates = Batcher(transport.create_run, transport.create_runs, "create", tasks)
        self._actions = {
            action: Batcher(
                functools.partial(_act_one, transport, action),
                functools.partial(_act_many, transport, action),
                action,
                tasks,
            )
            for action in ACTIONS
        }
        self._metrics = MetricBuffer(metric_buffer_size)
        self._flusher = MetricFlusher(
            self._transport,
            self._metrics,
            writer=uuid.uuid4().hex,
            flush_interval=flush_interval,
            flush_at=flush_at,
            max_batch_values=MAX_BATCH_VALUES // 10,
        )
        self._exit_flush_timeout = (
            exit_flush_timeout if exit_flush_timeout is not None else _config.exit_flush_timeout()
        )

    def _spawn(self, fn: Callable[[str], Coroutine[Any, Any, None]], arg: str) -> None:
        if self._tasks is None:
            raise RuntimeError(
                "this needs the client's background tasks: use `async with AsyncClient() as client`"
            )
        self._tasks.start_soon(fn, arg)

    async def __aenter__(self) -> Self:
        try:
            await self._transport.aopen()
        except BaseException:
            await self._transport.aclose()
            raise
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        self._metrics.loop_thread = threading.get_ident()
        tasks.start_soon(self._flusher.run_forever)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tasks is not None:
                tasks, self._tasks = self._tasks, None
                tasks.cancel_scope.cancel()  # background pollers have nothing left to serve
                # The body's own exception is not handed to the task group, which would wrap it
                # in an ExceptionGroup: it propagates as raised.
                await tasks.__aexit__(None, None, None)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Send buffered metrics, then close the connection pool or the embedded database.

        The final flush takes at most ``exit_flush_timeout``; what it could not send is
        reported through logging. Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        self._watcher.close(RuntimeError("the client was closed while this wait was pending"))
        try:
            await self._final_flush()
        finally:
            self._metrics.closed = True
            await self._transport.aclose()

    async def _final_flush(self) -> None:
        timeout = self._exit_flush_timeout
        with anyio.move_on_after(timeout, shield=True):
            await self._flusher.flush(anyio.current_time() + timeout)
        unsent = self._flusher.pending()
        if unsent:
            errors = self._flusher.all_errors()
            where = self.endpoint or "the embedded backend"
            log.error(unsent_message(unsent, where, timeout, errors))

    def build_run(
        self,
        project: str,
        kind: str,
        *,
        spec: dict[str, Any] | None = None,
        name: str | None = None,
        id: str | None = None,
        labels: Iterable[str] | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> AsyncRun:
        """Build a run record without saving it (call ``save()`` to create it).

        Args:
            project: Project name.
            kind: Kind such as ``python+job`` or ``command+job``.
            spec: Kind-specific specification, kept whole.
            name: Display name; defaults to the id.
            id: Run id; a fresh UUID when omitted. Choosing it makes a retried create safe.
            labels: Labels to filter by.
            description: Free text.
            user: The user the run belongs to.

        Raises:
            ValidationError: if an argument is invalid.
        """
        if spec is not None and not isinstance(spec, dict):
            raise ValidationError(f"spec must be a dict, got {type(spec).__name__}")
        _serde.check_data({"spec": spec})  # NaN, bytes, huge ints: refused here, not lost later
        record = _check_input(
            new_run,
            project=project,
            kind=kind,
            id=id or uuid.uuid4().hex,
            now=datetime.now(UTC),
            name=name,
            spec=spec,
            labels=list(labels or []),
            description=description,
            user=user,
        )
        return AsyncRun(self, record)

    async def new_run(
        self,
        project: str,
        kind: str,
        *,
        spec: dict[str, Any] | None = None,
        name: str | None = None,
        id: str | None = None,
        labels: Iterable[str] | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> AsyncRun:
        """Build a run and create it in the backend (arguments as :meth:`build_run`).

        Returns:
            The saved run, state ``CREATED``.
        """
        run = self.build_run(
            project,
            kind,
            spec=spec,
            name=name,
            id=id,
            labels=labels,
            description=description,
            user=user,
        )
        return await run.save()

    async def projects(self) -> list[Project]:
        """The projects that have runs, by name (on a server: those the token covers)."""
        return await self._transport.projects()

    async def get_run(self, project: str, id: str) -> AsyncRun:
        """Read a run from the backend.

        Raises:
            NotFound: if the project has no run with this id.
        """
        run = AsyncRun(self, await self._transport.get_run(project, id))
        await run._take(run.record)
        return run

    def list_runs(
        self,
        project: str,
        *,
        state: str | Iterable[str] | None = None,
        kind: str | None = None,
        name: str | None = None,
        label: str | Iterable[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        ids: Iterable[str] | None = None,
        page_size: int = DEFAULT_LIMIT,
    ) -> AsyncGenerator[AsyncRun, None]:
        """Iterate over a project's runs, newest first, fetching pages as it goes.

        Args:
            project: Project name.
            state: Keep runs in this state (or any of these states).
            kind: Keep runs of this kind.
            name: Keep runs with this name.
            label: Keep runs carrying this label (or all of these labels).
            created_after: Keep runs created at or after this time.
            created_before: Keep runs created before this time.
            ids: Keep only these ids (fetched in one request per page).
            page_size: Runs fetched per request (1-1000).

        Returns:
            An async iterator over the matching runs.

        Raises:
            ValidationError: at the call, if a filter is invalid.
        """
        query = ListQuery.build(
            state=state,
            kind=kind,
            name=name,
            label=label,
            created_after=created_after,
            created_before=created_before,
            ids=ids,
            limit=page_size,
        )
        return self._iter_runs(project, query)

    async def _iter_runs(self, project: str, query: ListQuery) -> AsyncGenerator[AsyncRun, None]:
        while True:
            records, token = await self._transport.list_runs(project, query)
            for record in records:
                yield AsyncRun(self, record)
            if token is None:
                return
            query = attrs.evolve(query, cursor=Cursor.decode(token))

    async def load_run(self, path: str | Path) -> AsyncRun:
        """Read a run from a YAML file written by ``export()``.

        The run is not written to the backend: call ``save()`` to create it there, or
        ``save(update=True)`` to update the stored run. A file over
        ``asyncrun._serde.MAX_RUN_FILE_BYTES`` (8 MiB) is refused before it is parsed; values
        load as JSON types only (timestamps as the strings they were written as; other YAML
        tags are refused), so the run saves unchanged.

        Raises:
            PayloadTooLarge: if the file is larger than 8 MiB.
            ValidationError: if the file is not a valid run record.
        """
        raw = await anyio.to_thread.run_sync(_read_run_file, Path(path))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
        record = _serde.from_yaml(text, str(path))
        # A file holds the metrics in full; their summary is derived, as the backend does.
        record.status.metric_summary = summarize(record.status.metrics)
        return AsyncRun(self, record)


def _read_run_file(path: Path) -> bytes:
    """The file's bytes, refused from its size before it is read when it is too big."""
    with path.open("rb") as handle:
        _serde.check_run_file_size(os.fstat(handle.fileno()).st_size, str(path))
        # At most one byte past the limit: a file that grows, or a pipe, is not read whole.
        raw = handle.read(_serde.MAX_RUN_FILE_BYTES + 1)
    _serde.check_run_file_size(len(raw), str(path), at_least=True)
    return raw
