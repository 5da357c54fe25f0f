from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._core.query import ListQuery
from ..._core.records import Run
from ...server._service import RunService
from ...server._store._sqlite import SQLiteStore
from ._base import AsyncTransport


class EmbeddedTransport(AsyncTransport):
    """The service layer in this process, on a SQLite file: nothing to start."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._service = RunService(SQLiteStore(db_path))

    async def create_run(self, project: str, data: dict[str, Any]) -> Run:
        return await self._service.create(project, data)

    async def get_run(self, project: str, id: str) -> Run:
        return await self._service.get(project, id)

    async def update_run(self, project: str, id: str, data: dict[str, Any], revision: int) -> Run:
        return await self._service.update(project, id, data, revision)

    async def delete_run(self, project: str, id: str) -> None:
        await self._service.delete(project, id)

    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]:
        page = await self._service.list(project, query)
        return page.runs, page.next_cursor

    async def aclose(self) -> None:
        self._service.close()
