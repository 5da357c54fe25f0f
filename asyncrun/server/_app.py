"""The HTTP API of DESIGN.md section 6 as a Starlette app over the service layer.

Handlers only translate between HTTP and :class:`~asyncrun.server._service.RunService`: parse
and bound the input, call the service, render the record. Every error leaves as JSON
``{code, message, detail}``; bad input is always a 4xx and never reaches the store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import _serde
from .._core.auth import ALL_PROJECTS, READ, RUN, WRITE, Grant, authorize, matches, token_id_of
from .._core.errors import (
    AsyncRunError,
    AuthError,
    Forbidden,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    ServerStopping,
    UnsupportedMediaType,
    ValidationError,
)
from .._core.joblog import LogBatch
from .._core.logs import LogQuery
from .._core.metrics import Batch, encode_value
from .._core.protocol import (
    ACTIONS,
    API_PREFIX,
    etag,
    parse_batch_action,
    parse_batch_create,
    parse_if_match,
)
from .._core.query import HistoryQuery, ListQuery, WatchQuery
from .._core.records import Run, check_name
from ._dashboard import Dashboard
from ._dhcore import routes as dhcore_routes
from ._openapi import openapi_document
from ._service import RunService

log = logging.getLogger("asyncrun.server")

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_JSON: Final = "application/json"
_NDJSON: Final = "application/x-ndjson"


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_serde.dumps(data), status_code, headers, media_type=_JSON)


def _run_response(run: Run, status_code: int = 200) -> Response:
    return _json(_serde.to_dict(run), status_code, {"ETag": etag(run.metadata.revision)})


def _error(status_code: int, code: str, message: str, detail: Any = None) -> Response:
    return _json({"code": code, "message": message, "detail": detail}, status_code)


def _error_body(exc: AsyncRunError) -> dict[str, Any]:
    # An error inside a 200 batch answer carries the status it would have had on its own.
    return {
        "status": exc.status_code,
        "code": exc.code,
        "message": exc.message,
        "detail": exc.detail,
    }


_READ_METHODS: Final = frozenset({"GET", "HEAD"})


class Api:
    """Request handlers bound to one service, its limits and its access rule."""

    def __init__(self, service: RunService, max_body_bytes: int, auth: bool) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.auth = auth

    async def _names(self, request: Request, need: str | None = None) -> tuple[str, str | None]:
        """The project and run id of the path, once the request may act on that project.

        ``need`` is the role the operation needs; by default ``read`` for GET, HEAD and
        watches, ``write`` for everything else.

        Authentication comes first (401), before the names are checked, so that nobody
        learns anything without a token; then the project's grant (403), the same answer
        whether the run exists or not.
        """
        grant = await self._grant(request) if self.auth else None
        raw_path = request.scope.get("raw_path", b"").lower()
        if b"%2f" in raw_path:
            # The router split the decoded path: an encoded '/' would address another run.
            raise ValidationError(
                "a project name or run id cannot contain '/' (%2F)", detail={"field": "path"}
            )
        try:
            parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), errors="strict")
        except UnicodeDecodeError:
            raise MalformedRequest(
                "the query string is not valid UTF-8 once percent-decoded",
                detail={"field": "query"},
            ) from None
        params = request.path_params
        try:
            project = check_name("project", params["project"])
            id_ = params.get("id")
            names = project, None if id_ is None else check_name("id", id_)
        except ValueError as exc:
            raise ValidationError(str(exc), detail={"field": "path"}) from None
        if self.auth:
            if need is None:
                # Watches are reads even when their ids come in a POST body.
                reading = request.method in _READ_METHODS or request.url.path.endswith(":watch")
                need = READ if reading else WRITE
            authorize(grant, project, need)
        return names

    def _recheck(self, request: Request, project: str) -> Callable[[], Awaitable[None]] | None:
        """What a held request (a log follow, a watch) calls to learn its token was revoked."""
        if not self.auth:
            return None

        async def check() -> None:
            grant = await self._grant(request)
            if grant is None:
                raise AuthError(
                    "the token of this request was revoked while it was open; "
                    "ask for a new token (`asyncrun server token create`)"
                )
            authorize(grant, project, READ)

        return check

    async def _grant(self, request: Request) -> Grant | None:
        token_id, token = token_id_of(request.headers.get("authorization"))
        found = await self.service.token(token_id)
        if found is None or not matches(token, found[1]):
            return None
        return found[0]

    async def _body(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _JSON:
            raise UnsupportedMediaType(
                f"send the body as JSON with Content-Type: {_JSON} (got {content_type or 'none'!r})"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body:
            raise MalformedRequest("the request needs a JSON body")
        return _serde.loads(body)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the body is larger than the server's limit of {self.max_body_bytes} bytes",
            detail={"limit": self.max_body_bytes},
        )

    async def _record(self, run: Run, status_code: int = 200) -> Response:
        # A read of one run carries its metrics when they are small; lists, watches, saves and
        # actions carry only their summaries, so their cost never follows a history.
        return _run_response(await self.service.with_metrics(run), status_code)

    async def create_run(self, request: Request) -> Response:
        project, _ = await self._names(request)
        run = await self.service.create(project, await self._body(request))
        return await self._record(run, 201)

    async def create_runs(self, request: Request) -> Response:
        project, _ = await self._names(request)
        items = parse_batch_create(await self._body(request))
        results = await self.service.create_many(project, items)
        return _json(
            {
                "results": [
                    {"run": _serde.to_dict(r)} if isinstance(r, Run) else {"error": _error_body(r)}
                    for r in results
                ]
            }
        )

    async def list_runs(self, request: Request) -> Response:
        project, _ = await self._names(request)
        params = request.query_params
        query = ListQuery.from_params({key: params.getlist(key) for key in params})
        page = await self.service.list_runs(project, query)
        return _json(
            {"items": [_serde.to_dict(run) for run in page.runs], "next_cursor": page.next_cursor}
        )

    async def get_run(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        return await self._record(await self.service.get(project, id_))

    async def metric_history(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        params = request.query_params
        query = HistoryQuery.from_params({key: params.getlist(key) for key in params})
        values = await self.service.metric_history(
            project, id_, query.key, query.offset, query.limit
        )
        return _json(
            {
                "key": query.key,
                "offset": query.offset,
                "values": encode_value(values),
                "next_offset": query.offset + len(values),
            }
        )

    async def update_run(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        revision = parse_if_match(request.headers.get("if-match"))
        run = await self.service.update(project, id_, await self._body(request), revision)
        return _run_response(run)

    async def delete_run(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        await self.service.delete(project, id_)
        return Response(status_code=204)

    async def patch_status(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        batch = Batch.from_wire(await self._body(request))
        result = await self.service.apply_metrics(project, id_, batch)
        return _json({"applied": result.applied, "ignored": result.ignored})

    async def action(self, request: Request) -> Response:
        name = request.path_params["action"]
        # Starting and resuming execute code on this machine: a power of its own.
        project, id_ = await self._names(request, RUN if name in ("run", "resume") else WRITE)
        assert id_ is not None
        act = {"run": self.service.run, "stop": self.service.stop, "resume": self.service.resume}
        if name not in act:
            raise NotFound(f"no action {name!r}; actions are run, stop and resume")
        return _run_response(await act[name](project, id_))

    async def batch_action(self, request: Request) -> Response:
        name = request.url.path.rsplit(":batch", 1)[1].lower()
        project, _ = await self._names(request, RUN if name in ("run", "resume") else WRITE)
        ids = parse_batch_action(await self._body(request))
        results = await self.service.act_many(project, name, ids)
        return _json(
            {
                "results": [
                    {"run": _serde.to_dict(r)} if isinstance(r, Run) else {"error": _error_body(r)}
                    for r in results
                ]
            }
        )

    async def watch(self, request: Request) -> Response:
        project, _ = await self._names(request)
        if request.method == "POST":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise ValidationError("the watch body must be a JSON object")
            query = WatchQuery.from_data(body)
        else:
            params = request.query_params
            query = WatchQuery.from_params({key: params.getlist(key) for key in params})
        changes = None
        async with anyio.create_task_group() as tasks:
            # A held watch ends when its client goes away, not at its timeout: a client drops
            # its poll whenever a new wait joins, and a shutdown waits for every open request.
            tasks.start_soon(_cancel_on_disconnect, request, tasks.cancel_scope)
            changes = await self.service.watch(
                project,
                query.ids,
                query.since,
                query.timeout,
                query.fresh,
                check=self._recheck(request, project),
                feed=query.feed,
            )
            tasks.cancel_scope.cancel()
        if changes is None:
            return Response(status_code=499)  # nobody is listening any more
        return _json(
            {
                "seq": changes.seq,
                "runs": [_serde.to_dict(run) for run in changes.runs],
                "missing": changes.missing,
                "deleted": changes.deleted,
                "more": changes.more,
            }
        )

    async def logs(self, request: Request) -> Response:
        project, id_ = await self._names(request)
        assert id_ is not None
        params = request.query_params
        query = LogQuery.from_params({key: params.getlist(key) for key in params})
        offset = query.offset
        if not query.follow:
            page = await self.service.read_logs(project, id_, offset, query.page_limit, query.tail)
            return _json(
                {
                    "lines": [_serde.log_line_to_dict(line) for line in page.lines],
                    "next_offset": page.next_offset,
                    "end_offset": page.end_offset,
                }
            )
        if query.tail is not None:  # start the stream at the tail
            offset = await self.service.tail_offset(project, id_, query.tail)
        await self.service.get(project, id_)  # a missing run is a 404, not an empty stream
        stream = self._stream(project, id_, offset, self._recheck(request, project))
        return StreamingResponse(stream, media_type=_NDJSON)

    async def append_logs(self, request: Request) -> Response:
        project, id_ = await self._names(request, WRITE)
        assert id_ is not None
        if self.auth:
            # A job's own output: only the token its launcher was given may add to it.
            token_id, _ = token_id_of(request.headers.get("authorization"))
            if await self.service.job_run(token_id) != f"{project}/{id_}":
                raise Forbidden(
                    f"only the token of run {id_!r}'s own job may append to its log",
                    detail={"token_id": token_id, "project": project, "id": id_},
                )
        batch = LogBatch.from_wire(await self._body(request))
        applied = await self.service.append_log_batch(project, id_, batch)
        return _json({"applied": applied})

    async def _stream(
        self, project: str, id_: str, offset: int, check: Callable[[], Awaitable[None]] | None
    ) -> AsyncIterator[bytes]:
        # One chunk per batch the store had ready; the last line is the end marker, so a client
        # can tell a finished stream from a broken connection.
        try:
            async for batch in self.service.follow_logs(project, id_, offset, check):
                yield (
                    b"".join(_serde.dumps(_serde.log_line_to_dict(line)) + b"\n" for line in batch)
                    or b"\n"
                )  # an empty batch is a heartbeat: a blank line
            end: dict[str, Any] = {"end": True}
        except ServerStopping:
            return  # no end marker: the client resumes from its offset on the next server
        except NotFound:
            end = {"end": True, "deleted": True}
        except AsyncRunError as exc:  # the token was revoked: the client raises this error
            end = {"end": True, "error": _error_body(exc)}
        yield _serde.dumps(end) + b"\n"

    async def list_projects(self, request: Request) -> Response:
        # Only the projects the token covers: a token learns nothing of the others.
        grant = None
        if self.auth:
            grant = await self._grant(request)
            if grant is None:
                raise AuthError("the token is not valid here (unknown, revoked or mistyped)")
        visible = (lambda _: True) if grant is None else grant.allows
        found = await self.service.projects(visible)
        return _json(
            {
                "items": [
                    {"name": p.name, "runs": p.runs, "newest": p.newest.isoformat()} for p in found
                ]
            }
        )

    async def whoami(self, request: Request) -> Response:
        # What the presented token may do, so that a client (the dashboard) shows only that.
        if not self.auth:
            return _json({"role": RUN, "projects": [ALL_PROJECTS], "token_id": None})
        grant = await self._grant(request)
        if grant is None:
            raise AuthError("the token is not valid here (unknown, revoked or mistyped)")
        return _json(
            {"role": grant.role, "projects": sorted(grant.projects), "token_id": grant.token_id}
        )

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})


async def _asyncrun_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AsyncRunError)
    response = _error(exc.status_code, exc.code, exc.message, exc.detail)
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="asyncrun"'
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, NotFound.code, f"no route {request.method} {request.url.path}")
    if exc.status_code == 405:
        response = _error(405, "method_not_allowed", f"{request.method} is not allowed here")
        response.headers.update(exc.headers or {})  # Allow: the methods that are
        return response
    return _error(exc.status_code, "http_error", str(exc.detail))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up mid-request: nothing to answer, nothing went wrong here.
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A 5xx is always a bug: log it with the traceback, answer without leaking internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, "internal_error", "the server failed on this request; see its log")


def _route(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed method."""

    async def dispatch(request: Request) -> Response:
        # Starlette routes HEAD wherever GET is allowed: answer it as GET (same checks, same
        # headers); the server sends no body for HEAD.
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


def create_app(
    service: RunService, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, auth: bool = True
) -> Starlette:
    """Build the ASGI app serving ``service``.

    Args:
        service: The service layer to expose.
        max_body_bytes: Largest request body accepted; larger ones get a 413.
        auth: Require a bearer token on every ``/api`` request (the tokens are in the store).

    Returns:
        A Starlette application; closing it (lifespan shutdown) closes the service.
    """
    api = Api(service, max_body_bytes, auth)
    runs = f"{API_PREFIX}/projects/{{project}}/runs"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.reap_lost()  # runs lost while no server ran end as ERROR, not RUNNING
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(service.supervise)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await service.aclose()

    routes = [
        # runs:watch first: "{project}/runs:watch" must not be read as a run id.
        Route(f"{runs}:watch", api.watch, methods=["GET", "POST"]),
        Route(f"{runs}:batchCreate", api.create_runs, methods=["POST"]),
        *(
            Route(f"{runs}:batch{action.capitalize()}", api.batch_action, methods=["POST"])
            for action in ACTIONS
        ),
        _route(runs, GET=api.list_runs, POST=api.create_run),
        _route(f"{runs}/{{id}}", GET=api.get_run, PUT=api.update_run, DELETE=api.delete_run),
        Route(f"{runs}/{{id}}/logs", api.logs, methods=["GET"]),
        # Before the actions: "logs:append" is no action.
        Route(f"{runs}/{{id}}/logs:append", api.append_logs, methods=["POST"]),
        Route(f"{runs}/{{id}}/status", api.patch_status, methods=["PATCH"]),
        _route(f"{runs}/{{id}}/metrics", GET=api.metric_history),
        Route(f"{runs}/{{id}}/{{action}}", api.action, methods=["POST"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/healthz", api.health, methods=["GET"]),
        # /api/v1/projects itself is DHCore's (the SDK's project documents): a custom method.
        Route(f"{API_PREFIX}/projects:list", api.list_projects, methods=["GET"]),
        *dhcore_routes(api),  # /api/v1/projects[/{name}] and /api/v1/-/{project}/...
        Route(f"{API_PREFIX}/whoami", api.whoami, methods=["GET"]),
        *Dashboard().routes(),  # the web dashboard: GET / and its files under /ui/
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            AsyncRunError: _asyncrun_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
    )
