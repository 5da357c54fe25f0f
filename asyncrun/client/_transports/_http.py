from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import anyio
import httpx

from ... import _config, _serde
from ..._core.errors import (
    AlreadyExists,
    AsyncRunError,
    CorruptRecord,
    NotFound,
    RevisionConflict,
    TransportError,
    error_from_body,
)
from ..._core.logs import MAX_OFFSET, LogPage, LogQuery
from ..._core.metrics import Batch, decode_value
from ..._core.polling import Backoff
from ..._core.protocol import API_PREFIX, etag, runs_path
from ..._core.query import Changes, HistoryQuery, ListQuery, WatchQuery
from ..._core.records import LogLine, Project, Run
from .._random import jitter
from ._base import AsyncTransport

log = logging.getLogger("asyncrun")
Retry: TypeAlias = Literal["idempotent", "unsent", "never"]
_BACKOFF: Final = Backoff(base=0.05, factor=2.0, cap=2.0, jitter=0.5)
_UNSENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before the request left: retrying them is always safe."""
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
MAX_CONNECTIONS: Final = 100
"""Connections one client opens at most for short requests (httpx's default)."""
MAX_STREAMS: Final = 1000
"""Connections one client opens at most for long-lived requests: log follows and watches.

They have a pool of their own, so however many logs are followed, short requests (reads,
creates, actions, metric batches) still find a connection.
"""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it, and so on."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _describe(exc: BaseException) -> str:
    """The first non-empty message along an error's causes (httpx's can be empty on Trio)."""
    for cause in _causes(exc):
        if str(cause):
            return str(cause) if cause is exc else f"{type(cause).__name__}: {cause}"
    return type(exc).__name__


def _tls_refused(exc: BaseException) -> bool:
    """Whether a TLS handshake failed along the error's causes (no retry will fix that)."""
    return any(isinstance(cause, ssl.SSLError) for cause in _causes(exc))


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
    """An ``asyncrun server`` over HTTP, with a timeout on every request.

    Two connection pools: one for short requests, one for the long-lived ones (log follows
    and the watch long-poll), each held for as long as its stream lasts; so streams never
    take the connections short requests need.

    Args:
        endpoint: The server's URL.
        token: The bearer token, or a function returning the current one.
        timeout: Seconds allowed for each request, waiting for a free connection included.
        transport: An httpx transport to send through (tests).
        max_connections: Connections open at once for short requests.
        max_streams: Connections open at once for log follows and watches.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        token: TokenSource = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = MAX_CONNECTIONS,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_streams = max_streams
        if token is None or isinstance(token, str):
            fixed = token
            source: Callable[[], str | None] = (lambda: fixed) if fixed else _config.token
        else:
            source = token
        auth = _Bearer(source)  # one for both pools: a rotated token is seen by both

        def pool(limit: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.endpoint,
                headers={"User-Agent": "asyncrun"},
                auth=auth,
                timeout=httpx.Timeout(timeout),
                transport=transport,
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=20),
            )

        self._http = pool(max_connections)
        self._streams = pool(max_streams)

    def _pool_full(self, what: str, stream: bool) -> TransportError:
        # httpx's PoolTimeout: the wait was for one of this client's own connections, which
        # says nothing of the server.
        if stream:
            limit = f"this client's limit of {self.max_streams} long-lived connections (log "
            limit += "follows and waits)"
            todo = "follow fewer logs at once with this client"
        else:
            limit = f"this client's limit of {self.max_connections} connections"
            todo = "make fewer calls at once, or pass max_connections= to the client"
        return TransportError(
            f"{what}: no connection of this client was free within {self.timeout:g} s: "
            f"{limit} were all busy; {todo}"
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        retry: Retry = "unsent",
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request; retry it while that is safe, within the client's timeout.

        ``retry="unsent"`` retries only a request that never left (no connection could be
        made); ``"idempotent"`` also one that may have reached the server, on connection
        errors, 408, 429 (after its ``Retry-After``) and 5xx, with backoff and jitter;
        ``"never"`` is for callers that run their own retry loop (watches, metric batches).
        ``stream`` sends it from the pool of long-lived requests. The response's
        ``extensions["asyncrun_attempts"]`` and an error's ``attempts`` say how many sends it
        took.
        """
        content = None if body is None else _serde.dumps(body)
        give_up = anyio.current_time() + self.timeout
        attempt = 1
        while True:
            try:
                response = await self._once(method, path, params, content, headers, timeout, stream)
            except TransportError as exc:
                unsent = isinstance(exc.__cause__, _UNSENT)
                delay = _BACKOFF.delay(attempt - 1, jitter(), exc.retry_after)
                allowed = retry == "idempotent" or (retry == "unsent" and unsent)
                allowed = allowed and not _tls_refused(exc)  # a bad certificate stays bad
                allowed = allowed and not isinstance(exc, CorruptRecord)  # so does a bad record
                if not allowed or anyio.current_time() + delay > give_up:
                    exc.attempts = attempt
                    raise
                log.info("retrying %s %s in %.2f s: %s", method, path, delay, exc)
                await anyio.sleep(delay)
                attempt += 1
            except AsyncRunError as exc:
                exc.attempts = attempt
                raise
            else:
                response.extensions["asyncrun_attempts"] = attempt
                return response

    async def _once(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None,
        content: bytes | None,
        headers: dict[str, str] | None,
        timeout: float | None,
        stream: bool,
    ) -> httpx.Response:
        try:
            response = await (self._streams if stream else self._http).request(
                method,
                path,
                params=None if params is None else tuple(params),
                content=content,
                headers={**_JSON_HEADERS, **(headers or {})},
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.PoolTimeout as exc:
            raise self._pool_full(f"{method} {self.endpoint}{path}", stream) from exc
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

    async def _ours(self, project: str, data: dict[str, Any]) -> Run | None:
        """The stored run if it is the one ``data`` describes (a retried write that landed)."""
        try:
            stored = await self.get_run(project, str(data["id"]))
        except NotFound:
            return None
        mine = _serde.from_dict(data)
        same = (
            stored.kind == mine.kind
            and stored.spec == mine.spec
            and stored.name == mine.name
            and stored.metadata.labels == mine.metadata.labels
            and stored.metadata.description == mine.metadata.description
        )
        return stored if same else None

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
        # Safe to retry: the client chose the id. A retry that finds the id taken checks
        # whether the run there is this one (the first attempt landed, its answer was lost).
        try:
            response = await self._send("POST", runs_path(project), body=data, retry="idempotent")
        except AlreadyExists as exc:
            if exc.attempts > 1 and (landed := await self._ours(project, data)) is not None:
                return landed
            raise
        return _serde.run_from_json(response.content)

    async def create_runs(
        self, project: str, items: list[dict[str, Any]]
    ) -> list[Run | AsyncRunError]:
        path = runs_path(project) + ":batchCreate"
        response = await self._send("POST", path, body={"runs": items}, retry="idempotent")
        retried = response.extensions["asyncrun_attempts"] > 1
        results: list[Run | AsyncRunError] = []
        for data, result in zip(items, _serde.loads(response.content)["results"], strict=True):
            if "run" in result:
                results.append(_serde.from_dict(result["run"]))
                continue
            error = error_from_body(result["error"]["status"], result["error"])
            if retried and isinstance(error, AlreadyExists):
                landed = await self._ours(project, data)
                results.append(error if landed is None else landed)
            else:
                results.append(error)
        return results

    async def projects(self) -> list[Project]:
        response = await self._send("GET", f"{API_PREFIX}/projects:list", retry="idempotent")
        return [
            Project(p["name"], p["runs"], datetime.fromisoformat(p["newest"]))
            for p in _serde.loads(response.content)["items"]
        ]

    async def get_run(self, project: str, id: str) -> Run:
        response = await self._send("GET", runs_path(project, id), retry="idempotent")
        return _serde.run_from_json(response.content)

    async def metric_history(
        self, project: str, id: str, key: str, offset: int, limit: int
    ) -> list[Any]:
        params = HistoryQuery(key, offset, limit).to_params()
        path = runs_path(project, id, "metrics")
        response = await self._send("GET", path, params=params, retry="idempotent")
        values = decode_value(_serde.loads(response.content)["values"])
        return values if isinstance(values, list) else [values]

    async def update_run(self, project: str, id: str, data: dict[str, Any], revision: int) -> Run:
        # Safe to retry with If-Match: a second attempt cannot apply twice. If it finds the
        # revision moved on, it checks whether the move was its own first attempt.
        headers = {"If-Match": etag(revision)}
        try:
            response = await self._send(
                "PUT", runs_path(project, id), body=data, headers=headers, retry="idempotent"
            )
        except RevisionConflict as exc:
            landed = await self._ours(project, data) if exc.attempts > 1 else None
            if landed is not None and landed.metadata.revision == revision + 1:
                return landed
            raise
        return _serde.run_from_json(response.content)

    async def delete_run(self, project: str, id: str) -> None:
        try:
            await self._send("DELETE", runs_path(project, id), retry="idempotent")
        except NotFound as exc:
            if exc.attempts == 1:  # after a retry: the first attempt deleted it
                raise

    async def list_runs(self, project: str, query: ListQuery) -> tuple[list[Run], str | None]:
        response = await self._send(
            "GET", runs_path(project), params=query.to_params(), retry="idempotent"
        )
        page = _serde.loads(response.content)
        return [_serde.from_dict(item) for item in page["items"]], page["next_cursor"]

    async def action(self, project: str, id: str, action: str) -> Run:
        # Not idempotent: sent again only if it never left.
        response = await self._send("POST", runs_path(project, id, action))
        return _serde.run_from_json(response.content)

    async def actions(self, project: str, action: str, ids: list[str]) -> list[Run | AsyncRunError]:
        path = f"{runs_path(project)}:batch{action.capitalize()}"
        response = await self._send("POST", path, body={"ids": ids})
        return [
            _serde.from_dict(r["run"])
            if "run" in r
            else error_from_body(r["error"]["status"], r["error"])
            for r in _serde.loads(response.content)["results"]
        ]

    async def watch(self, project: str, query: WatchQuery) -> Changes:
        # The server may hold the request for query.timeout: allow that on top of the usual.
        response = await self._send(
            "POST",
            runs_path(project) + ":watch",
            body=query.to_body(),
            retry="never",  # the watcher retries with its own backoff
            timeout=query.timeout + self.timeout,
            stream=True,  # held for up to query.timeout: not a short request's connection
        )
        data = _serde.loads(response.content)
        return Changes(
            data["seq"],
            [_serde.from_dict(run) for run in data["runs"]],
            data["missing"],
            deleted=data.get("deleted", []),  # a server older than the feed sends none
            more=bool(data.get("more")),
        )

    async def read_logs(
        self, project: str, id: str, offset: int, limit: int, tail: int | None = None
    ) -> LogPage:
        params = LogQuery.build(offset=offset, limit=limit, tail=tail).to_params()
        response = await self._send(
            "GET", runs_path(project, id, "logs"), params=params, retry="idempotent"
        )
        data = _serde.loads(response.content)
        lines = [_serde.log_line_from_dict(line) for line in data["lines"]]
        # A server older than end_offset: read on until an empty page.
        return LogPage(lines, data["next_offset"], data.get("end_offset", MAX_OFFSET))

    async def follow_logs(
        self, project: str, id: str, offset: int
    ) -> AsyncGenerator[list[LogLine], None]:
        path = runs_path(project, id, "logs")
        params = {"offset": str(offset), "follow": "true"}
        end: dict[str, Any] | None = None
        try:
            async with self._streams.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                # Read to the natural end even after the end marker (the server closes right
                # after it): leaving httpx's generators half-way makes Trio warn about them.
                rest = b""
                async for chunk in response.aiter_bytes():
                    # One batch per received chunk (the server sends one per store read).
                    *complete, rest = (rest + chunk).split(b"\n")
                    if end is not None or not complete:
                        continue
                    batch, end = _serde.log_lines_from_ndjson(complete)
                    if batch:
                        yield batch
        except httpx.PoolTimeout as exc:
            raise self._pool_full(f"the log stream of run {id!r}", True) from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"the log stream of run {id!r} broke: {_describe(exc)}") from exc
        if end is None:
            raise TransportError(f"the log stream of run {id!r} ended before the run did")
        error = end.get("error")
        if isinstance(error, dict):  # ended by the server, e.g. the token was revoked
            raise error_from_body(int(error.get("status") or 500), error)

    async def log_metrics(self, project: str, id: str, batch: Batch) -> tuple[bool, list[str]]:
        # The flusher retries batches itself (same number, same bytes): no retry here.
        response = await self._send(
            "PATCH", runs_path(project, id, "status"), body=batch.to_wire(), retry="never"
        )
        data = _serde.loads(response.content)
        return bool(data["applied"]), list(data["ignored"])

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
        finally:
            await self._streams.aclose()
