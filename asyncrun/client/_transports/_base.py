from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from typing import Any

from ..._core.errors import AsyncRunError
from ..._core.logs import LogPage
from ..._core.metrics import Batch
from ..._core.query import Changes, ListQuery, WatchQuery
from ..._core.records import LogLine, Project, Run


class AsyncTransport(abc.ABC):
    """The operations a backend offers, at the level of records (not HTTP).

    Both transports hand the service the same plain data, so validation happens in one place:
    the service layer.
    """

    async def aopen(self) -> None:  # noqa: B027  (optional hook)
        """Prepare the backend (called when the client is entered)."""

    @abc.abstractmethod
    async def create_run(self, project: str, data: dict[str, Any]) -> Run: ...

    @abc.abstractmethod
    async def create_runs(
        self, project: str, items: list[dict[str, Any]]
    ) -> list[Run | AsyncRunError]:
        """Create several runs at once: for each, the stored run or the error refusing it."""

    @abc.abstractmethod
    async def get_run(self, project: str, id: str) -> Run:
        """One run; its metrics inline if small, else only their summary (page the rest)."""

    @abc.abstractmethod
    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any]:
        """Up to ``limit`` values of a metric key's list from ``offset`` on."""

    @abc.abstractmethod
    async def update_run(
        self, project: str, id: str, data: dict[str, Any], revision: int
    ) -> Run: ...

    @abc.abstractmethod
    async def delete_run(self, project: str, id: str) -> None: ...

    @abc.abstractmethod
    async def projects(self) -> list[Project]:
        """The projects that have runs (those the token covers), by name."""

    @abc.abstractmethod
    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]: ...

    @abc.abstractmethod
    async def action(self, project: str, id: str, action: str) -> Run:
        """Run ``run``, ``stop`` or ``resume`` on a run and return it."""

    @abc.abstractmethod
    async def actions(self, project: str, action: str, ids: list[str]) -> list[Run | AsyncRunError]:
        """Run ``run``, ``stop`` or ``resume`` on several runs: for each, the run or the error."""

    @abc.abstractmethod
    async def watch(self, project: str, query: WatchQuery) -> Changes:
        """Long-poll for changes among watched runs."""

    @abc.abstractmethod
    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, tail: int | None = None
    ) -> LogPage:
        """A page of up to ``limit`` log lines from ``offset``, or ``tail`` lines before the end."""

    @abc.abstractmethod
    def follow_logs(
        self, project: str, id: str, offset: int
    ) -> AsyncGenerator[list[LogLine], None]:
        """Batches of log lines from ``offset`` on as they are written.

        Ends normally only once the run is terminal and every line was delivered; a broken
        stream raises :class:`~asyncrun.TransportError` (the caller resumes from its offset).
        """

    @abc.abstractmethod
    async def log_metrics(self, project: str, id: str, batch: Batch) -> tuple[bool, list[str]]:
        """Send a metric batch; returns whether it was applied now and the ignored keys."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...
