from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .. import _serde
from .._core.errors import NotFound, TransportError, ValidationError, WaitTimeout
from .._core.logs import check_read
from .._core.metrics import MetricType, Number, check_key, check_value, ops_of_log_metrics
from .._core.polling import Backoff
from .._core.records import LogLine, Run, check_names
from .._core.summary import MAX_HISTORY_PAGE, metrics_loaded
from ._random import jitter
from ._record_view import RecordView
from ._watch import mark_deleted

_KNOWN_KEYS: set[str] = set()
"""Metric keys already validated: the hot path checks a key once, not on every call."""


def _remember(key: str) -> None:
    if len(_KNOWN_KEYS) < 100_000:
        _KNOWN_KEYS.add(key)


LOG_PAGE = 5000
RESUME_WITHIN = 30.0
"""Seconds a broken log stream keeps being resumed before the iterator raises."""


async def _flatten(batches: AsyncGenerator[list[LogLine], None]) -> AsyncGenerator[LogLine, None]:
    async with aclosing(batches):
        async for batch in batches:
            for line in batch:
                yield line


if TYPE_CHECKING:
    from ._client import AsyncClient


def _write_atomically(path: Path, text: str) -> None:
    # Write beside the target, then rename: a crash never leaves half a file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class AsyncRun(RecordView):
    """A run bound to an :class:`AsyncClient`: the record plus the methods of the specification.

    Methods that talk to the backend are coroutines and return the run itself, refreshed.
    """

    __slots__ = ("_buffer", "_client", "_key", "_record")

    def __init__(self, client: AsyncClient, record: Run) -> None:
        self._client = client
        self._record = record
        self._key = (record.project, record.id)
        self._buffer = client._metrics

    def log_metric(
        self,
        key: str,
        value: MetricType,
        overwrite: bool = False,
        single_value: bool = False,
    ) -> None:
        """Log a metric into the run's status: buffered, no I/O, safe from any thread.

        A metric is a number or a list of numbers; by default values are appended to a list.

        Args:
            key: The metric's name (1-250 characters, no control characters).
            value: An int, a float, or a list of them (numpy scalars and 1-d arrays too).
            overwrite: Replace what the key holds instead of appending.
            single_value: Store a single number rather than a list (kept if the key already
                has a value, unless ``overwrite``).

        Raises:
            TypeError: if the key or value has the wrong type (nothing is buffered).
            ValueError: if the key is empty, too long or has control characters.

        Example:
            >>> run.log_metric("loss", 0.002)  # doctest: +SKIP
            >>> run.log_metric("accuracy", [0.8, 0.9], overwrite=True)  # doctest: +SKIP
        """
        if key.__class__ is not str or key not in _KNOWN_KEYS:
            _remember(check_key(key))
        if value.__class__ is not float:  # ints are range-checked, the rest normalised
            value = check_value(key, value)
            if single_value and value.__class__ is list:
                raise TypeError(f"metric {key!r}: single_value=True needs a single number")
        # Mode numbers of asyncrun._core.metrics.Mode, inlined: this is the hot path.
        mode = (4 if overwrite else 3) if single_value else (2 if overwrite else 1)
        items = self._buffer.items
        items.append((self._key, key, mode, value))
        if len(items) > self._buffer.capacity:
            self._buffer.full()

    def log_metrics(self, metrics: Mapping[str, MetricType], overwrite: bool = False) -> None:
        """Log several metrics at once: buffered, no I/O, safe from any thread.

        A list is logged as a list, a number as a single value; both are appended to what the
        key already holds, unless ``overwrite``.

        Raises:
            TypeError: if any key or value has the wrong type (nothing is buffered).
            ValueError: if any key is invalid.
        """
        self._buffer.add_many(self._key, ops_of_log_metrics(metrics, overwrite))

    async def flush(self, timeout: float = 60.0) -> None:
        """Send every buffered metric now (of every run of the client).

        Args:
            timeout: Seconds to keep retrying retryable failures.

        Raises:
            AsyncRunError: the first error met delivering this run's metrics, e.g. a batch the
                server rejected, or a ``TransportError`` if some are still unsent (they stay
                buffered and are retried).
        """
        flusher = self._client._flusher
        await flusher.flush(anyio.current_time() + timeout)
        errors = flusher.errors_of(self._key)
        if errors:
            raise errors[0]  # a refusal first; else why some values still wait

    @property
    def record(self) -> Run:
        """The underlying attrs record (as last read from, or written to, the backend)."""
        return self._record

    async def save(self, update: bool = False) -> AsyncRun:
        """Save the run into the backend.

        Args:
            update: ``False`` creates the run (an error if its id exists); ``True`` updates it,
                failing with :class:`~asyncrun.RevisionConflict` if it changed since it was read.

        Returns:
            The run, as the backend stored it.
        """
        transport = self._client._transport
        data = _serde.to_dict(self._record)
        _serde.check_data(data)  # before JSON would turn NaN into null on the way
        if update:
            # Metrics are the server's (they change through log_metric only): not sent again.
            data["status"].pop("metrics", None)
            data["status"].pop("metric_summary", None)
            revision = self._record.metadata.revision
            self._keep(await transport.update_run(self.project, self.id, data, revision))
        else:
            self._record = await self._client._creates.submit(self.project, data)
        return self

    async def refresh(self) -> AsyncRun:
        """Read the run again from the backend, its metrics in full.

        Returns:
            The run, refreshed.
        """
        await self._take(await self._client._transport.get_run(self.project, self.id))
        return self

    def _keep(self, record: Run) -> None:
        # Saves and actions answer with summaries only: the metrics stay as of the last read
        # (``run.metrics`` asks for a refresh() once a key is missing from them).
        if not record.status.metrics:
            record.status.metrics = self._record.status.metrics
        self._record = record

    async def _take(self, record: Run) -> None:
        # A single run's answer carries its metrics inline when they are small; larger
        # histories come in pages, so that no answer of the backend grows without bound.
        summary = record.status.metric_summary
        for key in summary.keys() - record.status.metrics.keys():
            values: list[Number] = []
            async for page in self._history_pages(key, 0):
                values += page
            single = summary[key].single and len(values) == 1
            record.status.metrics[key] = values[0] if single else values
        if summary:  # keys in the order of a full answer
            record.status.metrics = dict(sorted(record.status.metrics.items()))
        self._record = record

    async def _history_pages(self, key: str, offset: int) -> AsyncGenerator[list[Number], None]:
        transport = self._client._transport
        while True:
            page = await transport.metric_history(
                self.project, self.id, key, offset, MAX_HISTORY_PAGE
            )
            if not page:
                return
            yield page
            offset += len(page)

    def metric_history(self, key: str, offset: int = 0) -> AsyncGenerator[Number, None]:
        """Every value of one metric key, read from the backend in pages as you iterate.

        Memory stays bounded however long the history: use it for keys with millions of
        values, or on runs from ``list_runs()`` (which carry only ``metric_summary``).

        Args:
            key: The metric's name.
            offset: The first value to read (0 is the oldest).

        Returns:
            An async generator of numbers (a single-valued key yields its one value).

        Raises:
            NotFound: (while iterating) if the run or the key does not exist.
        """

        async def values() -> AsyncGenerator[Number, None]:
            async with aclosing(self._history_pages(key, offset)) as pages:
                async for page in pages:
                    for value in page:
                        yield value

        return values()

    async def export(self) -> str:
        """Write the run as YAML to ``runs-<id>.yaml`` in the client's context folder.

        Returns:
            The path of the file written.

        Raises:
            ValidationError: if the record's kind, id or project is not a valid name (it was
                changed after it was read): its id becomes the file's name.
        """
        try:
            check_names(self._record)
        except ValueError as exc:
            raise ValidationError(f"cannot export run {self.id!r}: {exc}") from None
        status = self._record.status
        if not metrics_loaded(status.metrics, status.metric_summary):
            await self.refresh()  # from a listing: a file holds every value
        path = self._client.context / f"runs-{self.id}.yaml"
        await anyio.to_thread.run_sync(_write_atomically, path, _serde.to_yaml(self._record))
        return str(path)

    async def run(self) -> AsyncRun:
        """Start the run (CREATED -> BUILT -> READY; the backend then takes it to RUNNING).

        Returns:
            The run, refreshed.

        Raises:
            InvalidTransition: if the run was already started.
        """
        self._keep(await self._client._actions["run"].submit(self.project, self.id))
        return self

    async def stop(self) -> AsyncRun:
        """Stop the run: SIGTERM to its process, SIGKILL after the grace period; ends STOPPED.

        Returns:
            The run, refreshed (STOP until the process has ended; ``wait()`` for STOPPED).

        Raises:
            InvalidTransition: if the run is not READY, PENDING or RUNNING.
        """
        self._keep(await self._client._actions["stop"].submit(self.project, self.id))
        return self

    async def resume(self) -> AsyncRun:
        """Start a STOPPED run again: a new execution, whose logs follow the old ones.

        Returns:
            The run, refreshed.

        Raises:
            InvalidTransition: if the run is not STOPPED.
        """
        self._keep(await self._client._actions["resume"].submit(self.project, self.id))
        return self

    async def wait(self, log_info: bool = True, timeout: float | None = None) -> AsyncRun:
        """Wait until the run is COMPLETED, ERROR, STOPPED or DELETED.

        Every wait of a client shares one poller, and the server answers it as soon as the run
        changes. Cancel it like any task.

        Args:
            log_info: Log each state change through the ``asyncrun`` logger (INFO).
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The run, refreshed (state DELETED if it was deleted meanwhile).

        Raises:
            WaitTimeout: if ``timeout`` passed first.
        """
        try:
            with anyio.fail_after(timeout):
                run, deleted = await self._client._watcher.wait(
                    self.project, self.id, log_info=log_info
                )
        except TimeoutError:
            raise WaitTimeout(
                f"run {self.id!r} did not finish within {timeout} s "
                f"(last seen {self._record.status.state}); wait again or stop() it",
                detail={"id": self.id, "timeout": timeout},
            ) from None
        if deleted:
            self._record = mark_deleted(self._record, datetime.now(UTC))
        else:
            assert run is not None
            self._record = run
            if run.status.metric_summary:
                # The watch carries summaries only: the values are read once, at the end.
                with contextlib.suppress(NotFound):  # deleted meanwhile: keep what was seen
                    await self.refresh()
        return self

    def logs(
        self,
        follow: bool = False,
        offset: int = 0,
        *,
        tail: int | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[LogLine, None]:
        """The run's log lines, in order.

        Without ``follow``, the lines written so far: reading stops at the end the first page
        saw, however fast the job writes.

        Args:
            follow: Keep streaming new lines as they are written, until the run is terminal
                and its last line was delivered. A broken connection is resumed from the last
                offset, with no gap and no duplicate.
            offset: First line to deliver (a ``LogLine.offset``).
            tail: Start with the last ``tail`` lines instead (then follow, with ``follow``);
                its cost does not grow with the log's length. Not together with ``offset``.
            limit: Deliver at most this many lines in all.

        Returns:
            An async generator of :class:`~asyncrun.LogLine`. To stop reading early under
            Trio, wrap it in ``contextlib.aclosing`` (Trio's rule for async generators).

        Raises:
            ValidationError: (at once) if ``offset``, ``tail`` or ``limit`` is not a
                non-negative integer, or both ``offset`` and ``tail`` are given.
            TransportError: (while iterating) if a broken stream cannot be resumed.
        """
        check_read(offset, tail, limit)
        return _flatten(self._log_batches(follow, offset, tail, limit))

    async def log_end(self) -> int:
        """The offset the run's next log line will get: how many lines it has written so far.

        One cheap request, whatever the log's length. ``logs(offset=run.log_end(),
        follow=True)`` streams only what is written from now on.
        """
        page = await self._client._transport.read_logs(self.project, self.id, 0, 1, tail=0)
        return page.end_offset

    async def _log_batches(
        self, follow: bool, offset: int, tail: int | None = None, limit: int | None = None
    ) -> AsyncGenerator[list[LogLine], None]:
        transport = self._client._transport
        left = limit  # lines still wanted; None: all

        def keep(lines: list[LogLine]) -> list[LogLine]:
            nonlocal left
            if left is not None:
                lines = lines[:left]
                left -= len(lines)
            return lines

        if left == 0:
            return
        if tail is not None or not follow:
            # Pages (the first at the tail, if asked) up to the end the first page saw; a
            # follow goes on from there.
            end: int | None = None
            while left is None or left > 0:
                size = LOG_PAGE if left is None else min(LOG_PAGE, left)
                page = await transport.read_logs(self.project, self.id, offset, size, tail)
                tail = None
                end = page.end_offset if end is None else end
                lines = keep([line for line in page.lines if line.offset < end])
                if lines:
                    yield lines
                offset = max(offset, page.next_offset)
                if not page.lines or offset >= end:
                    break
            if not follow or left == 0:
                return
        attempt = 0
        broken_since: float | None = None
        while True:
            try:
                stream = transport.follow_logs(self.project, self.id, offset)
                async with aclosing(stream):
                    async for batch in stream:
                        fresh = keep([line for line in batch if line.offset >= offset])
                        if fresh:
                            yield fresh
                            offset = fresh[-1].offset + 1
                        attempt, broken_since = 0, None
                        if left == 0:
                            return
                return
            except TransportError as exc:
                now = anyio.current_time()
                broken_since = now if broken_since is None else broken_since
                if now - broken_since > RESUME_WITHIN:
                    raise TransportError(
                        f"the log stream of run {self.id!r} broke at offset {offset} and could "
                        f"not be resumed within {RESUME_WITHIN:g} s: {exc}"
                    ) from exc
                await anyio.sleep(Backoff().delay(attempt, jitter()))
                attempt += 1

    async def delete(self) -> None:
        """Delete the run from the backend (a missing run raises :class:`~asyncrun.NotFound`)."""
        await self._client._transport.delete_run(self.project, self.id)
