"""asyncrun: an async-first SDK for run records, with the backend it talks to.

The public names below are the whole contract; everything in modules starting with ``_`` may
change without notice.
"""

from ._core.errors import (
    AlreadyExists,
    AsyncRunError,
    AuthError,
    Conflict,
    CorruptRecord,
    Forbidden,
    InvalidTransition,
    MalformedRequest,
    MetricsNotLoaded,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RevisionConflict,
    ServerError,
    ServerStopping,
    StorageFull,
    StoreUnavailable,
    TransportError,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
)
from ._core.records import LogLine, Metadata, Project, State, Status, Transition
from ._core.records import Run as RunRecord
from ._core.summary import MetricSummary
from ._job import current_run
from .client import AsyncClient, AsyncRun
from .sync import Client, Run

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncRun",
    "AsyncRunError",
    "AuthError",
    "Client",
    "Conflict",
    "CorruptRecord",
    "Forbidden",
    "InvalidTransition",
    "LogLine",
    "MalformedRequest",
    "Metadata",
    "MetricSummary",
    "MetricsNotLoaded",
    "NotFound",
    "PayloadTooLarge",
    "Project",
    "RateLimited",
    "RevisionConflict",
    "Run",
    "RunRecord",
    "ServerError",
    "ServerStopping",
    "State",
    "Status",
    "StorageFull",
    "StoreUnavailable",
    "Transition",
    "TransportError",
    "UnsupportedMediaType",
    "ValidationError",
    "WaitTimeout",
    "__version__",
    "current_run",
]
