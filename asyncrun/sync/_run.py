from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from .._core.logs import check_read
from .._core.metrics import MetricType, Number
from .._core.records import LogLine
from .._core.records import Run as RunRecord
from ..client._record_view import RecordView
from ..client._run import AsyncRun

if TYPE_CHECKING:
    from ._client import Client

T = TypeVar("T")


class Run(RecordView):
    """A run bound to a sync :class:`~asyncrun.Client`; the blocking twin of ``AsyncRun``."""

    __slots__ = ("_async", "_client")

    def __init__(self, client: Client, run: AsyncRun) -> None:
        self._client = client
        self._async = run

    @property
    def record(self) -> RunRecord:
        """The underlying attrs record (as last read from, or written to, the backend)."""
        return self._async.record

    def save(self, update: bool = False) -> Run:
        """Save the run into the backend; see ``AsyncRun.save``."""
        self._client._call(self._async.save, update)
        return self

    def refresh(self) -> Run:
        """Read the run again from the backend."""
        self._client._call(self._async.refresh)
        return self

    def export(self) -> str:
        """Write the run as YAML in the context folder and return the file's path."""
        return self._client._call(self._async.export)

    def log_metric(
        self,
        key: str,
        value: MetricType,
        overwrite: bool = False,
        single_value: bool = False,
    ) -> None:
        """Log a metric; see ``AsyncRun.log_metric``. Buffered: no I/O, no thread hop."""
        self._async.log_metric(key, value, overwrite, single_value)

    def log_metrics(self, metrics: Mapping[str, MetricType], overwrite: bool = False) -> None:
        """Log several metrics; see ``AsyncRun.log_metrics``. Buffered: no I/O."""
        self._async.log_metrics(metrics, overwrite)

    def flush(self, timeout: float = 60.0) -> None:
        """Send every buffered metric now; see ``AsyncRun.flush``."""
        self._client._call(self._async.flush, timeout)

    def run(self) -> Run:
        """Start the run; see ``AsyncRun.run``."""
        self._client._call(self._async.run)
        return self

    def stop(self) -> Run:
        """Stop the run; see ``AsyncRun.stop``."""
        self._client._call(self._async.stop)
        return self

    def resume(self) -> Run:
        """Start a STOPPED run again; see ``AsyncRun.resume``."""
        self._client._call(self._async.resume)
        return self

    def wait(self, log_info: bool = True, timeout: float | None = None) -> Run:
        """Block until the run is terminal; see ``AsyncRun.wait``.

        Raises:
            WaitTimeout: if ``timeout`` passed first.
        """
        self._client._call(self._async.wait, log_info, timeout)
        return self

    def logs(
        self,
        follow: bool = False,
        offset: int = 0,
        *,
        tail: int | None = None,
        limit: int | None = None,
    ) -> Iterator[LogLine]:
        """The run's log lines as a plain iterator; see ``AsyncRun.logs``.

        Raises:
            ValidationError: (at once) if the arguments are wrong; see ``AsyncRun.logs``.
        """
        check_read(offset, tail, limit)
        return self._flatten(self._async._log_batches(follow, offset, tail, limit))

    def log_end(self) -> int:
        """The offset the run's next log line will get; see ``AsyncRun.log_end``."""
        return self._client._call(self._async.log_end)

    def metric_history(self, key: str, offset: int = 0) -> Iterator[Number]:
        """Every value of one metric key, read in pages; see ``AsyncRun.metric_history``."""
        return self._flatten(self._async._history_pages(key, offset))

    def _flatten(self, batches: AsyncGenerator[list[T], None]) -> Iterator[T]:
        try:
            while True:
                try:
                    batch = self._client._call(batches.__anext__)  # one hop per batch, not item
                except StopAsyncIteration:
                    return
                yield from batch
        finally:
            self._client._call(batches.aclose)

    def delete(self) -> None:
        """Delete the run from the backend."""
        self._client._call(self._async.delete)
