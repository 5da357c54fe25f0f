"""Typed errors shared by the client and the server.

Every error carries the stable ``code`` the server puts in its JSON error body, so the
client can map a response back to the same class without matching message text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AsyncRunError(Exception):
    """Base class of every error asyncrun raises on purpose.

    Attributes:
        code: Stable machine-readable error code (the ``code`` of the HTTP error body).
        message: Human-readable explanation, saying what to do where possible.
        detail: Optional structured detail (field names, ids, limits).
    """

    code: ClassVar[str] = "error"
    status_code: ClassVar[int] = 400

    retry_after: float | None = None
    """Seconds the server asked to wait before a retry (``Retry-After``), if it said."""

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may carry a more precise code

    def __str__(self) -> str:
        return self.message

    attempts: int = 1
    """How many times the request was sent before this error (retries included)."""


class ValidationError(AsyncRunError, ValueError):
    """A value, record or request was rejected as invalid."""

    code = "validation_error"
    status_code = 422


class MalformedRequest(ValidationError):
    """The request body could not be parsed at all (bad JSON, bad encoding)."""

    code = "malformed_request"
    status_code = 400


class PayloadTooLarge(ValidationError):
    """The request body is larger than the server accepts."""

    code = "payload_too_large"
    status_code = 413


class UnsupportedMediaType(ValidationError):
    """The request body is not JSON (send ``Content-Type: application/json``)."""

    code = "unsupported_media_type"
    status_code = 415


class NotFound(AsyncRunError, LookupError):
    """The run (or route) does not exist."""

    code = "not_found"
    status_code = 404


class Conflict(AsyncRunError):
    """The request conflicts with the stored state."""

    code = "conflict"
    status_code = 409


class AlreadyExists(Conflict):
    """A run with this id already exists in the project."""

    code = "already_exists"


class RevisionConflict(Conflict):
    """The run changed since it was read: refresh it and apply the change again."""

    code = "revision_conflict"
    status_code = 412


class InvalidTransition(Conflict):
    """The run's current state does not allow the requested action."""

    code = "invalid_transition"


class AuthError(AsyncRunError):
    """The request was not authenticated: no token, or one the server does not know."""

    code = "unauthorized"
    status_code = 401


class Forbidden(AuthError):
    """The token is valid but not for this project, or only for reading."""

    code = "forbidden"
    status_code = 403


class TransportError(AsyncRunError):
    """The backend could not be reached or answered something unusable."""

    code = "transport_error"
    status_code = 503


class RateLimited(TransportError):
    """The server asked the client to slow down (HTTP 429); retried after ``retry_after``."""

    code = "rate_limited"
    status_code = 429


class ServerError(TransportError):
    """The server failed to handle a request (a 5xx is always a server bug)."""

    code = "internal_error"
    status_code = 500


class ServerStopping(TransportError):
    """The server is shutting down: retry on it (or its replacement) in a moment."""

    code = "server_stopping"
    status_code = 503


class StoreUnavailable(TransportError):
    """The server cannot reach its database right now: nothing of the request was stored.

    It answers 503 with ``Retry-After``; the client's retries carry the request across a
    database restart.
    """

    code = "store_unavailable"
    status_code = 503
    retry_after = 1.0


class StorageFull(ServerError):
    """The backend's disk is full: nothing of the request was stored; free space and retry."""

    code = "storage_full"
    status_code = 507


class CorruptRecord(ServerError):
    """A stored record cannot be read back as a run: the store was changed outside asyncrun.

    Asking again cannot help, so the client does not retry it.
    """

    code = "corrupt_record"
    status_code = 500


class MetricsNotLoaded(AsyncRunError, LookupError):
    """A run from a list or a watch carries a summary of its metrics, not their values."""

    code = "metrics_not_loaded"
    status_code = 409


class WaitTimeout(AsyncRunError, TimeoutError):
    """A wait ended because its timeout passed before the run reached a terminal state."""

    code = "wait_timeout"
    status_code = 408


_BY_CODE: dict[str, type[AsyncRunError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        MalformedRequest,
        PayloadTooLarge,
        UnsupportedMediaType,
        NotFound,
        Conflict,
        AlreadyExists,
        RevisionConflict,
        InvalidTransition,
        AuthError,
        Forbidden,
        TransportError,
        RateLimited,
        ServerError,
        ServerStopping,
        StoreUnavailable,
        StorageFull,
        CorruptRecord,
        WaitTimeout,
    )
}
_BY_STATUS: dict[int, type[AsyncRunError]] = {
    400: MalformedRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: RevisionConflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    408: TransportError,
    429: RateLimited,
}


def error_from_body(status_code: int, body: Any) -> AsyncRunError:
    """Rebuild the typed error of an HTTP error response.

    Args:
        status_code: The HTTP status of the response.
        body: The decoded JSON body, ideally ``{"code", "message", "detail"}``.

    Returns:
        The matching :class:`AsyncRunError` subclass instance, keeping the server's code.
    """
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = str(body.get("message") or code)
        detail = body.get("detail")
    else:
        code, message, detail = "", f"the server answered HTTP {status_code}", body
    cls = _BY_STATUS.get(status_code) if status_code in (408, 429) else None
    cls = cls or _BY_CODE.get(code) or _BY_STATUS.get(status_code)
    if status_code >= 500:  # whatever the body claims, a 5xx is a server-side failure
        cls = cls if cls is not None and issubclass(cls, ServerError) else ServerError
    elif cls is None:
        cls = AsyncRunError
    return cls(message, detail=detail, code=code or None)
