from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeAlias

import httpx

from ... import _config, _serde
from ..._core.errors import AsyncRunError, TransportError, error_from_body
from ..._core.metrics import Batch
from ..._core.protocol import etag, runs_path
from ..._core.query import Changes, ListQuery, WatchQuery
from ..._core.records import LogLine, Run
from ._base import AsyncTransport

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def _describe(exc: BaseException) -> str:
    """The first non-empty message along an error's causes (httpx's can be empty on Trio)."""
    seen: BaseException | None = exc
    while seen is not None:
        if str(seen):
            return str(seen) if seen is exc else f"{type(seen).__name__}: {seen}"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


TokenSource: TypeAlias = "str | Callable[[], str | None] | None"
"""A token, or a function returning the current one (called again after a 401)."""


class _Bearer(httpx.Auth):
    """Sends the bearer token; after a 401 asks the source again and retries once if it changed.

    So a long wait survives a token rotation: revoke the old token, put the new one where the
    source reads it (``ASYNCRUN_TOKEN_FILE``), and the next request uses it.
    """

    def __init__(self, source: Callable[[], str | None]) -> None:
        self._source = source
        self._token = source()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self._source()
            if fresh and fresh != token:
                self._token = fresh
                request.headers["Authorization"] = f"Bearer {fresh}"
                yield request


class HTTPTransport(AsyncTransport):
    """An ``asyncrun server`` over HTTP: one connection pool, a timeout on every request."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: TokenSource = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        if token is None or isinstance(token, str):
            fixed = token
            source: Callable[[], str | None] = (lambda: fixed) if fixed else _config.token
        else:
            source = token
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            headers={"User-Agent": "asyncrun"},
            auth=_Bearer(source),
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        content = None if body is None else _serde.dumps(body)
        try:
            response = await self._http.request(
                method,
                path,
                params=None if params is None else tuple(params),
                content=content,
                headers={**_JSON_HEADERS, **(headers or {})},
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"{method} {self.endpoint}{path} timed out ({type(exc).__name__}); "
                "is the server overloaded? raise ASYNCRUN_TIMEOUT or timeout="
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach the asyncrun server at {self.endpoint}: {_describe(exc)}"
            ) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> AsyncRunError:
        try:
            body: Any = _serde.loads(response.content)
        except AsyncRunError:
            body = response.text[:200]
        error = error_from_body(response.status_code, body)
        retry_after = response.headers.get("retry-after", "")
        if retry_after.replace(".", "", 1).isdigit():
            error.retry_after = float(retry_after)  # seconds; HTTP dates are not used here
        return error

    async def create_run(self, project: str, data: dict[str, Any]) -> Run:
        response = await self._send("POST", runs_path(project), body=data)
        return _serde.run_from_json(response.content)

    async def create_runs(
        self, project: str, items: list[dict[str, Any]]
    ) -> list[Run | AsyncRunError]:
        response = await self._send(
            "POST", runs_path(project) + ":batchCreate", body={"runs": items}
        )
        return [
            _serde.from_dict(result["run"])
            if "run" in result
            else error_from_body(result["error"]["status"], result["error"])
            for result in _serde.loads(response.content)["results"]
        ]

    async def get_run(self, project: str, id: str) -> Run:
        response = await self._send("GET", runs_path(project, id))
        return _serde.run_from_json(response.content)

    async def update_run(self, project: str, id: str, data: dict[str, Any], revision: int) -> Run:
        response = await self._send(
            "PUT", runs_path(project, id), body=data, headers={"If-Match": etag(revision)}
        )
        return _serde.run_from_json(response.content)

    async def delete_run(self, project: str, id: str) -> None:
        await self._send("DELETE", runs_path(project, id))

    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]:
        response = await self._send("GET", runs_path(project), params=query.to_params())
        page = _serde.loads(response.content)
        return [_serde.from_dict(item) for item in page["items"]], page["next_cursor"]

    async def action(self, project: str, id: str, action: str) -> Run:
        response = await self._send("POST", runs_path(project, id, action))
        return _serde.run_from_json(response.content)

    async def watch(self, project: str, query: WatchQuery) -> Changes:
        # The server may hold the request for query.timeout: allow that on top of the usual.
        response = await self._send(
            "POST",
            runs_path(project) + ":watch",
            body=query.to_body(),
            timeout=query.timeout + self.timeout,
        )
        data = _serde.loads(response.content)
        return Changes(
            data["seq"], [_serde.from_dict(run) for run in data["runs"]], data["missing"]
        )

    async def read_logs(self, project: str, id: str, offset: int, limit: int) -> list[LogLine]:
        params = [("offset", str(offset)), ("limit", str(limit))]
        response = await self._send("GET", runs_path(project, id, "logs"), params=params)
        data = _serde.loads(response.content)
        return [_serde.log_line_from_dict(line) for line in data["lines"]]

    async def follow_logs(
        self, project: str, id: str, offset: int
    ) -> AsyncGenerator[list[LogLine], None]:
        path = runs_path(project, id, "logs")
        params = {"offset": str(offset), "follow": "true"}
        ended = False
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                # Read to the natural end even after the end marker (the server closes right
                # after it): leaving httpx's generators half-way makes Trio warn about them.
                rest = b""
                async for chunk in response.aiter_bytes():
                    # One batch per received chunk (the server sends one per store read).
                    *complete, rest = (rest + chunk).split(b"\n")
                    if ended or not complete:
                        continue
                    batch, ended = _serde.log_lines_from_ndjson(complete)
                    if batch:
                        yield batch
        except httpx.HTTPError as exc:
            raise TransportError(
                f"the log stream of run {id!r} broke: {_describe(exc)}"
            ) from exc
        if not ended:
            raise TransportError(f"the log stream of run {id!r} ended before the run did")

    async def log_metrics(self, project: str, id: str, batch: Batch) -> tuple[bool, list[str]]:
        response = await self._send("PATCH", runs_path(project, id, "status"), body=batch.to_wire())
        data = _serde.loads(response.content)
        return bool(data["applied"]), list(data["ignored"])

    async def aclose(self) -> None:
        await self._http.aclose()
