from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..._core.errors import AsyncRunError, TransportError
from ..._core.logs import LogPage
from ..._core.metrics import Batch
from ..._core.query import Changes, ListQuery, WatchQuery
from ..._core.records import LogLine, Project, Run
from ...server import db_path as _db_path
from ...server import open_service
from ._base import AsyncTransport

T = TypeVar("T")


def _store_errors_as_transport_errors(cls: type[T]) -> type[T]:
    """A locked or failing database file is, to the client, an unreachable backend."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except sqlite3.Error as exc:
                raise TransportError(f"the embedded database failed: {exc}") from exc

        return wrapper

    for name in ("create_run", "create_runs", "get_run", "update_run", "delete_run",
                 "list_runs", "action", "watch", "read_logs", "log_metrics"):  # fmt: skip
        setattr(cls, name, wrap(getattr(cls, name)))
    return cls


@_store_errors_as_transport_errors
class EmbeddedTransport(AsyncTransport):
    """The service layer in this process, on a SQLite file: nothing to start.

    Jobs run under detached supervisors that write to the same file, so they outlive the
    client that started them.
    """

    def __init__(self, db_path: Path | None = None, *, stop_grace: float = 10.0) -> None:
        self.db_path = _db_path(db_path)  # None: the default database, under ASYNCRUN_HOME
        self._service = open_service(self.db_path, stop_grace=stop_grace)

    async def aopen(self) -> None:
        await self._service.reap_lost()

    async def create_run(self, project: str, data: dict[str, Any]) -> Run:
        return await self._service.with_metrics(await self._service.create(project, data))

    async def create_runs(
        self, project: str, items: list[dict[str, Any]]
    ) -> list[Run | AsyncRunError]:
        return await self._service.create_many(project, items)

    async def get_run(self, project: str, id: str) -> Run:
        return await self._service.with_metrics(await self._service.get(project, id))

    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any]:
        return await self._service.metric_history(project, id, key, offset, limit)

    async def update_run(self, project: str, id: str, data: dict[str, Any], revision: int) -> Run:
        return await self._service.with_metrics(
            await self._service.update(project, id, data, revision)
        )

    async def delete_run(self, project: str, id: str) -> None:
        await self._service.delete(project, id)

    async def projects(self) -> list[Project]:
        return await self._service.projects()

    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]:
        page = await self._service.list_runs(project, query)
        return page.runs, page.next_cursor

    async def action(self, project: str, id: str, action: str) -> Run:
        act = {"run": self._service.run, "stop": self._service.stop, "resume": self._service.resume}
        return await act[action](project, id)

    async def actions(self, project: str, action: str, ids: list[str]) -> list[Run | AsyncRunError]:
        return await self._service.act_many(project, action, ids)

    async def watch(self, project: str, query: WatchQuery) -> Changes:
        return await self._service.watch(
            project, query.ids, query.since, query.timeout, query.fresh, feed=query.feed
        )

    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, tail: int | None = None
    ) -> LogPage:
        return await self._service.read_logs(project, id, offset, limit, tail)

    def follow_logs(
        self, project: str, id: str, offset: int
    ) -> AsyncGenerator[list[LogLine], None]:
        return self._service.follow_logs(project, id, offset)

    async def log_metrics(self, project: str, id: str, batch: Batch) -> tuple[bool, list[str]]:
        result = await self._service.apply_metrics(project, id, batch)
        return result.applied, result.ignored

    async def aclose(self) -> None:
        await self._service.aclose()
