from __future__ import annotations

import functools
from typing import Any

from .. import kinds
from .._core.errors import MetricsNotLoaded
from .._core.records import Metadata, Run, Status
from .._core.summary import MetricSummary, metrics_loaded


class RecordView:
    """Read access to a run record's fields, shared by :class:`AsyncRun` and the sync ``Run``.

    Subclasses provide ``record``; everything here is a plain attribute read (no I/O).
    """

    __slots__ = ()

    @property
    def record(self) -> Run:
        """The underlying attrs record (as last read from, or written to, the backend)."""
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """The run's kind, e.g. ``python+job``."""
        return self.record.kind

    @property
    def id(self) -> str:
        """The run's id."""
        return self.record.id

    @property
    def key(self) -> str:
        """The run's store key, ``store://<project>/run/<kind>/<id>``."""
        return self.record.key

    @property
    def project(self) -> str:
        """The project the run belongs to."""
        return self.record.project

    @property
    def name(self) -> str | None:
        """The run's display name."""
        return self.record.name

    @property
    def metadata(self) -> Metadata:
        """Descriptive metadata (labels, times, revision)."""
        return self.record.metadata

    @property
    def spec(self) -> dict[str, Any]:
        """The kind-specific specification (edit it, then ``save(update=True)``)."""
        return self.record.spec

    @property
    def status(self) -> Status:
        """State, transitions, metrics and kind outputs, as of the last read."""
        return self.record.status

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics as of the last read (``status.metrics``).

        Each key holds a number or a list of numbers. ``get_run()``, ``refresh()`` and the end
        of ``wait()`` read them in full; saves and actions keep what was last read. Buffered
        ``log_metric`` calls show after ``flush()`` and ``refresh()``.

        Raises:
            MetricsNotLoaded: if the record holds only a summary of some key: a run from
                ``list_runs()``, or one that gained keys since its last read. ``refresh()``
                loads the values; ``metric_summary`` needs no read.
        """
        status = self.record.status
        if not metrics_loaded(status.metrics, status.metric_summary):
            raise MetricsNotLoaded(
                f"run {self.record.id!r} holds a summary of its metrics (run.metric_summary), "
                "not all their values (it came from a listing, or gained keys since it was "
                "read): refresh() it to load them, or read one key with metric_history(key)",
                detail={"id": self.record.id},
            )
        return status.metrics

    @property
    def metric_summary(self) -> dict[str, MetricSummary]:
        """Each metric key at a glance: count, last value, min and max (no history needed)."""
        return self.record.status.metric_summary

    @property
    def user(self) -> str | None:
        """The user the run belongs to."""
        return self.record.user

    def __getattr__(self, name: str) -> Any:
        # Kind-specific methods (``result()`` of python+job, ...) live with the kind.
        if not name.startswith("_"):
            try:
                kind = kinds.get(self.record.kind)
            except kinds.KindLoadError as exc:
                raise AttributeError(f"{name!r}: {exc}") from None
            if kind is not None and name in kind.methods:
                return functools.partial(kind.methods[name], self.record)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordView):
            return NotImplemented
        return self.record == other.record

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by value, not hashable

    def __repr__(self) -> str:
        record = self.record
        return (
            f"<{type(self).__name__} {record.project}/{record.id} kind={record.kind} "
            f"state={record.status.state}>"
        )
