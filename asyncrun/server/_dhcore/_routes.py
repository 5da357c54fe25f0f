"""The DHCore routes: handlers that translate the DigitalHub SDK's requests for the service.

Every rule about runs stays in :class:`~asyncrun.server._service.RunService`; these handlers
check DHCore's shapes, keep projects, functions and tasks as documents, and answer as DHCore
does: JSON with ``Content-Type: application/json; charset=UTF-8``, errors as
``{"status", "message", "errorCode"}`` (the SDK recognises them by status and message text).
Authentication, roles and the checks of names in paths are asyncrun's own
(:meth:`~asyncrun.server._app.Api._names`); HTTP Basic is accepted with an asyncrun token as its
password, since the SDK sends ``DHCORE_USER``/``DHCORE_PASSWORD`` that way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ... import _serde
from ..._core.auth import READ, RUN, WRITE
from ..._core.errors import AlreadyExists, AsyncRunError, AuthError, NotFound
from ..._core.logs import MAX_OFFSET
from ..._core.records import LogLine, Run
from ..._core.summary import MAX_HISTORY_PAGE
from .._store._documents import Document
from . import _entities as dh

if TYPE_CHECKING:
    from .._app import Api

log = logging.getLogger("asyncrun.server")

API_LEVEL: Final = "15"
"""The DHCore API level these routes implement (the SDK accepts 15 to 20)."""
MEDIA_TYPE: Final = "application/json; charset=UTF-8"
MAX_METRIC_VALUES: Final = 1_000_000
"""Most metric values one ``GET .../metrics`` answers (the SDK reads a key whole, then
writes it back whole: an answer cut short would lose values, so a larger run is refused)."""
MAX_LOG_BYTES: Final = 4 * 1024 * 1024
"""Text of a run's log one ``GET .../logs`` carries at most (its newest lines)."""
LOG_WINDOW: Final = 256
"""Lines read at a time, from the end backwards, while collecting a log's newest lines."""
_READ_METHODS: Final = frozenset({"GET", "HEAD"})
_AUTH_HINT: Final = (
    " The DigitalHub SDK sends a token from DHCORE_ACCESS_TOKEN (Bearer), or DHCORE_USER and "
    "DHCORE_PASSWORD (Basic) with an asyncrun token as the password."
)

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(
        _serde.dumps(data), status_code, {"X-Api-Level": API_LEVEL}, media_type=MEDIA_TYPE
    )


def _error(status_code: int, message: str, code: str) -> Response:
    response = _json({"status": status_code, "message": message, "errorCode": code}, status_code)
    if status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="asyncrun", Basic realm="asyncrun"'
    return response


def _rendered(exc: AsyncRunError) -> Response:
    if isinstance(exc, dh.DHCoreError):
        return _error(exc.dh_status, exc.message, exc.code)
    if isinstance(exc, AlreadyExists):
        return _error(400, f"Duplicated entity. {exc.message}", exc.code)
    if isinstance(exc, NotFound):
        return _error(404, f"No such entity. {exc.message}", exc.code)
    if isinstance(exc, AuthError) and exc.status_code == 401:
        return _error(401, exc.message + _AUTH_HINT, exc.code)
    # DHCore answers every refusal of input or of a state change with a 400.
    status = 400 if exc.status_code in (409, 412, 422) else exc.status_code
    return _error(status, exc.message, exc.code)


def _endpoint(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except AsyncRunError as exc:
            return _rendered(exc)
        except ClientDisconnect:
            raise  # the app answers nobody
        except Exception:
            # A 5xx is always a bug: logged with its traceback, answered without internals.
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return _error(500, "the server failed on this request; see its log", "internal_error")

    return endpoint


def _route(path: str, **handlers: Handler) -> Route:
    """One route per path; a method it does not serve gets DHCore's 405, with ``Allow``."""
    allowed = ", ".join(sorted({*handlers, *(("HEAD",) if "GET" in handlers else ())}))

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        handler = handlers.get(method)
        if handler is None:
            response = _error(405, f"{request.method} is not allowed here", "method_not_allowed")
            response.headers["Allow"] = allowed
            return response
        return await _endpoint(handler)(request)

    return Route(path, dispatch, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])


def _bearer(authorization: str | None) -> str | None:
    """``Authorization: Basic user:token`` as ``Bearer token`` (anything else unchanged)."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "Basic (undecodable)"  # refused as no token
    return f"Bearer {decoded.partition(':')[2]}"


class DHCore:
    """The DHCore API's handlers, bound to asyncrun's :class:`~asyncrun.server._app.Api`."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.service = api.service
        self.store = api.service.store

    # -- access ---------------------------------------------------------------------------

    def _as_asyncrun(self, request: Request, project: str | None = None) -> Request:
        """``request`` as asyncrun's checks read it: a bearer token, the project named."""
        scope = dict(request.scope)
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        bearer = _bearer(request.headers.get("authorization"))
        if bearer is not None:
            headers.append((b"authorization", bearer.encode("latin-1")))
        scope["headers"] = headers
        if project is not None:
            scope["path_params"] = {**request.path_params, "project": project}
        return Request(scope)

    async def _names(self, request: Request, need: str, project: str | None = None) -> str:
        """The project of the request, once its token may act on it with role ``need``."""
        name, _ = await self.api._names(self._as_asyncrun(request, project), need)
        return name

    async def _authenticated(self, request: Request) -> None:
        """Refuse (401) a request without a valid token, before its body is read."""
        if self.api.auth and await self.api._grant(self._as_asyncrun(request)) is None:
            raise AuthError("the token is not valid here (unknown, revoked or mistyped)")

    async def _project(self, project: str) -> Document:
        doc = await self.store.document(project, "project", project)
        if doc is None:
            raise dh.no_such("project", f"Create project {project!r} first.")
        return doc

    async def _document(self, project: str, type_: str, id_: str) -> Document:
        await self._project(project)
        doc = await self.store.document(project, type_, id_)
        if doc is None:
            raise dh.no_such(type_)
        return doc

    async def _run(self, project: str, id_: str) -> Run:
        await self._project(project)
        try:
            run = await self.service.get(project, id_)
        except NotFound:
            raise dh.no_such("run") from None
        if not dh.is_dhcore(run):
            raise dh.no_such("run", "It is an asyncrun run: read it at /api/v1/projects/.")
        return run

    def _id(self, request: Request) -> str:
        id_ = request.path_params["id"]
        assert isinstance(id_, str)  # checked by _names
        return id_

    # -- projects -------------------------------------------------------------------------

    async def get_project(self, request: Request) -> Response:
        project = await self._names(request, READ)
        dh.project_name(project)
        return _json((await self._project(project)).body)

    async def create_project(self, request: Request) -> Response:
        await self._authenticated(request)
        data = await self.api._body(request)
        name = dh.project_name(data.get("name") if isinstance(data, dict) else None)
        await self._names(request, WRITE, project=name)
        doc = dh.new_project(data, datetime.now(UTC))
        if not await self.store.insert_document(doc):
            raise dh.duplicated("project", name)
        return _json(doc.body)

    # -- functions and tasks --------------------------------------------------------------

    async def create_function(self, request: Request) -> Response:
        project = await self._names(request, WRITE)
        await self._project(project)
        doc = dh.new_function(project, await self.api._body(request), datetime.now(UTC))
        if not await self.store.insert_document(doc):
            raise dh.duplicated("function", doc.id)
        return _json(doc.body)

    async def get_function(self, request: Request) -> Response:
        project = await self._names(request, READ)
        return _json((await self._document(project, "function", self._id(request))).body)

    async def create_task(self, request: Request) -> Response:
        project = await self._names(request, WRITE)
        await self._project(project)
        doc, function_id = dh.new_task(project, await self.api._body(request), datetime.now(UTC))
        await self._document(project, "function", function_id)
        if not await self.store.insert_document(doc):
            raise dh.duplicated("task", doc.id)
        return _json(doc.body)

    async def get_task(self, request: Request) -> Response:
        project = await self._names(request, READ)
        return _json((await self._document(project, "task", self._id(request))).body)

    async def search_tasks(self, request: Request) -> Response:
        project = await self._names(request, READ)
        await self._project(project)
        params = request.query_params
        query = dh.page_params({k: params.getlist(k) for k in params}, ("kind", "function"))
        size = query["size"]
        docs, total = await self.store.documents(
            project,
            "task",
            kind=query.get("kind"),
            ref=query.get("function"),
            offset=query["page"] * size,
            limit=size,
        )
        return _json(dh.page([doc.body for doc in docs], query["page"], size, total))

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, request: Request) -> Response:
        project = await self._names(request, WRITE)
        await self._project(project)
        body = dh.run_body(await self.api._body(request), project)
        spec = body.get("spec") or {}
        task_kind, task_id = dh.task_ref(spec.get("task"), project)
        if task_kind != dh.TASK_KIND:
            raise dh.bad(f"asyncrun server runs {dh.TASK_KIND} tasks only, not {task_kind!r}")
        task = await self._document(project, "task", task_id)
        _, _, function_id = dh.function_ref(spec.get("function"), project)
        function = await self._document(project, "function", function_id)
        if task.ref != spec["function"]:
            raise dh.bad(f"task {task_id!r} runs {task.ref!r}, not {spec['function']!r}")
        local = bool(spec.get("local_execution", False))
        server_spec = None
        if not local:
            # Executing the function's code on this machine is a power of its own.
            await self._names(request, RUN)
            handler, source = dh.source_module(function.body)
            server_spec = {"handler": handler, "modules": {dh.MODULE: source}}
        record = dh.new_run(project, body, server_spec)
        try:
            run = await self.service.create(project, record)
        except AlreadyExists:
            raise dh.duplicated("run", record["id"]) from None
        if not local:  # DHCore builds and starts a run it executes as it is created
            run = await self.service.run(project, run.id)
        return _json(dh.run_view(run))

    async def get_run(self, request: Request) -> Response:
        project = await self._names(request, READ)
        return _json(dh.run_view(await self._run(project, self._id(request))))

    async def update_run(self, request: Request) -> Response:
        project = await self._names(request, WRITE)
        id_ = self._id(request)
        current = await self._run(project, id_)
        body = dh.run_body(await self.api._body(request), project, id_)
        dh.updated_run(current, body)  # refuse what cannot change before anything is written
        if dh.is_local(current):
            state, message = dh.reported_state(body)
            if state is not None:
                await self.service.advance(project, id_, state, message)
        # No revision comes with the SDK's PUT: apply it to the run as it is now. A write of
        # the server's in between (a state change) is a conflict: read again and reapply.
        for attempt in range(20):
            current = await self._run(project, id_)
            record = dh.updated_run(current, body)
            try:
                run = await self.service.update(project, id_, record, current.metadata.revision)
                break
            except AsyncRunError as exc:
                if exc.status_code != 412 or attempt == 19:
                    raise
                await anyio.sleep(0.01 * (attempt + 1))
        return _json(dh.run_view(run))

    async def action(self, request: Request) -> Response:
        name = request.path_params["action"]
        project = await self._names(request, RUN if name == "resume" else WRITE)
        id_ = self._id(request)
        run = await self._run(project, id_)
        if name not in ("stop", "resume"):
            raise dh.bad(f"no action {name!r}; asyncrun server supports stop and resume")
        if dh.is_local(run):
            raise dh.bad(
                f"run {id_!r} executes in the SDK (local_execution): the server cannot {name} it"
            )
        act = self.service.stop if name == "stop" else self.service.resume
        return _json(dh.run_view(await act(project, id_)))

    async def logs(self, request: Request) -> Response:
        project = await self._names(request, READ)
        id_ = self._id(request)
        run = await self._run(project, id_)
        lines, first, end = await self._log_tail(project, id_)
        return _json([dh.log_view(run, lines, end, first)] if lines else [])

    async def _log_tail(self, project: str, id_: str) -> tuple[list[LogLine], int, int]:
        """The newest lines of a run's log up to :data:`MAX_LOG_BYTES`, read backwards."""
        end = await self.service.tail_offset(project, id_, 0)
        first = await self.service.tail_offset(project, id_, MAX_OFFSET)
        lines: list[LogLine] = []
        size = 0
        high = end
        while high > first and size < MAX_LOG_BYTES:
            low = max(first, high - LOG_WINDOW)
            window: list[LogLine] = []
            offset = low
            while offset < high:
                page = await self.service.read_logs(project, id_, offset, high - offset)
                if not page.lines:
                    break
                window += [line for line in page.lines if line.offset < high]
                offset = page.next_offset
            lines = window + lines
            size += sum(len(line.text.encode()) + 1 for line in window)
            high = low
        while size > MAX_LOG_BYTES and len(lines) > 1:
            size -= len(lines.pop(0).text.encode()) + 1
        return lines, first, end

    async def metrics(self, request: Request) -> Response:
        project = await self._names(request, READ)
        id_ = self._id(request)
        run = await self._run(project, id_)
        summaries = run.status.metric_summary
        total = sum(summary.count for summary in summaries.values())
        if total > MAX_METRIC_VALUES:
            raise dh.DHCoreError(
                400,
                f"run {id_!r} holds {total} metric values, more than the {MAX_METRIC_VALUES} "
                "one answer carries through the DHCore API; read them in pages with asyncrun "
                f"(GET /api/v1/projects/{project}/runs/{id_}/metrics?key=...)",
                "too_many_values",
            )
        metrics: dict[str, Any] = {}
        for key, summary in summaries.items():
            values: list[Any] = []
            while len(values) < summary.count:
                page = await self.service.metric_history(
                    project, id_, key, len(values), MAX_HISTORY_PAGE
                )
                if not page:
                    break
                values += page
            metrics[key] = values[0] if summary.single and values else values
        return _json(metrics)

    async def put_metric(self, request: Request) -> Response:
        project = await self._names(request, WRITE)
        id_ = self._id(request)
        await self._run(project, id_)
        value = await self.api._body(request)
        await self.service.put_metric(project, id_, request.path_params["name"], value)
        return Response(status_code=200, headers={"X-Api-Level": API_LEVEL})

    async def unknown(self, request: Request) -> Response:
        return _error(
            404,
            f"No such route: {request.method} {request.url.path} is not part of the DHCore "
            "API asyncrun server implements (see docs/guides/digitalhub.md)",
            NotFound.code,
        )


def routes(api: Api) -> list[Route]:
    """The DHCore API's routes, served by ``api``'s service and checks.

    ``/api/v1/projects[/{name}]`` and ``/api/v1/-/{project}/...``: paths of their own, beside
    asyncrun's ``/api/v1/projects/{project}/runs...``.
    """
    dhcore = DHCore(api)
    context = "/api/v1/-/{project}"
    runs = f"{context}/runs"
    return [
        _route("/api/v1/projects", POST=dhcore.create_project),
        _route("/api/v1/projects/{project}", GET=dhcore.get_project),
        _route(f"{context}/functions", POST=dhcore.create_function),
        _route(f"{context}/functions/{{id}}", GET=dhcore.get_function),
        _route(f"{context}/tasks", GET=dhcore.search_tasks, POST=dhcore.create_task),
        _route(f"{context}/tasks/{{id}}", GET=dhcore.get_task),
        _route(runs, POST=dhcore.create_run),
        _route(f"{runs}/{{id}}", GET=dhcore.get_run, PUT=dhcore.update_run),
        _route(f"{runs}/{{id}}/logs", GET=dhcore.logs),
        _route(f"{runs}/{{id}}/metrics", GET=dhcore.metrics),
        _route(f"{runs}/{{id}}/metrics/{{name:path}}", PUT=dhcore.put_metric),
        _route(f"{runs}/{{id}}/{{action}}", POST=dhcore.action),
        _route(
            "/api/v1/-/{rest:path}",
            **dict.fromkeys(("GET", "POST", "PUT", "DELETE", "PATCH"), dhcore.unknown),
        ),
    ]
