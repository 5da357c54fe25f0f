from __future__ import annotations

import abc
from typing import Any

from ..._core.query import ListQuery
from ..._core.records import Run


class AsyncTransport(abc.ABC):
    """The operations a backend offers, at the level of records (not HTTP).

    Both transports hand the service the same plain data, so validation happens in one place:
    the service layer.
    """

    @abc.abstractmethod
    async def create_run(self, project: str, data: dict[str, Any]) -> Run: ...

    @abc.abstractmethod
    async def get_run(self, project: str, id: str) -> Run: ...

    @abc.abstractmethod
    async def update_run(
        self, project: str, id: str, data: dict[str, Any], revision: int
    ) -> Run: ...

    @abc.abstractmethod
    async def delete_run(self, project: str, id: str) -> None: ...

    @abc.abstractmethod
    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...
