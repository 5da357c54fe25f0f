"""The HTTP API of DESIGN.md section 6 as a Starlette app over the service layer.

Handlers only translate between HTTP and :class:`~asyncrun.server._service.RunService`: parse
and bound the input, call the service, render the record. Every error leaves as JSON
``{code, message, detail}``; bad input is always a 4xx and never reaches the store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _serde
from .._core.errors import (
    AsyncRunError,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationError,
)
from .._core.protocol import API_PREFIX, etag, parse_if_match
from .._core.query import ListQuery
from .._core.records import Run, check_name
from ._openapi import openapi_document
from ._service import RunService

log = logging.getLogger("asyncrun.server")

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_JSON: Final = "application/json"


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_serde.dumps(data), status_code, headers, media_type=_JSON)


def _run_response(run: Run, status_code: int = 200) -> Response:
    return _json(_serde.to_dict(run), status_code, {"ETag": etag(run.metadata.revision)})


def _error(status_code: int, code: str, message: str, detail: Any = None) -> Response:
    return _json({"code": code, "message": message, "detail": detail}, status_code)


def _path_names(request: Request) -> tuple[str, str | None]:
    params = request.path_params
    try:
        project = check_name("project", params["project"])
        id_ = params.get("id")
        return project, None if id_ is None else check_name("id", id_)
    except ValueError as exc:
        raise ValidationError(str(exc), detail={"field": "path"}) from None


class Api:
    """Request handlers bound to one service and its limits."""

    def __init__(self, service: RunService, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

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

    async def create_run(self, request: Request) -> Response:
        project, _ = _path_names(request)
        run = await self.service.create(project, await self._body(request))
        return _run_response(run, 201)

    async def list_runs(self, request: Request) -> Response:
        project, _ = _path_names(request)
        params = request.query_params
        query = ListQuery.from_params({key: params.getlist(key) for key in params})
        page = await self.service.list(project, query)
        return _json(
            {"items": [_serde.to_dict(run) for run in page.runs], "next_cursor": page.next_cursor}
        )

    async def get_run(self, request: Request) -> Response:
        project, id_ = _path_names(request)
        assert id_ is not None
        return _run_response(await self.service.get(project, id_))

    async def update_run(self, request: Request) -> Response:
        project, id_ = _path_names(request)
        assert id_ is not None
        revision = parse_if_match(request.headers.get("if-match"))
        run = await self.service.update(project, id_, await self._body(request), revision)
        return _run_response(run)

    async def delete_run(self, request: Request) -> Response:
        project, id_ = _path_names(request)
        assert id_ is not None
        await self.service.delete(project, id_)
        return Response(status_code=204)

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})


async def _asyncrun_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AsyncRunError)
    return _error(exc.status_code, exc.code, exc.message, exc.detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, NotFound.code, f"no route {request.method} {request.url.path}")
    if exc.status_code == 405:
        return _error(405, "method_not_allowed", f"{request.method} is not allowed on this route")
    return _error(exc.status_code, "http_error", str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A 5xx is always a bug: log it with the traceback, answer without leaking internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, "internal_error", "the server failed on this request; see its log")


def create_app(service: RunService, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """Build the ASGI app serving ``service``.

    Args:
        service: The service layer to expose.
        max_body_bytes: Largest request body accepted; larger ones get a 413.

    Returns:
        A Starlette application; closing it (lifespan shutdown) closes the service.
    """
    api = Api(service, max_body_bytes)
    runs = f"{API_PREFIX}/projects/{{project}}/runs"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    routes = [
        Route(runs, api.create_run, methods=["POST"]),
        Route(runs, api.list_runs, methods=["GET"]),
        Route(f"{runs}/{{id}}", api.get_run, methods=["GET"]),
        Route(f"{runs}/{{id}}", api.update_run, methods=["PUT"]),
        Route(f"{runs}/{{id}}", api.delete_run, methods=["DELETE"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/healthz", api.health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            AsyncRunError: _asyncrun_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
