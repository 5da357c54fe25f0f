from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.records import Run as RunRecord
from ..client._record_view import RecordView
from ..client._run import AsyncRun

if TYPE_CHECKING:
    from ._client import Client


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

    def delete(self) -> None:
        """Delete the run from the backend."""
        self._client._call(self._async.delete)
