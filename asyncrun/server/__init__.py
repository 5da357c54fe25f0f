"""The reference backend: service layer, stores and the ASGI app.

Importing :mod:`asyncrun.server` needs only the core dependencies; the ASGI app in
:mod:`asyncrun.server._app` needs the ``server`` extra (Starlette and uvicorn).

The public face is how a backend is opened: :func:`open_service` puts the store, the executor
and the service together (the embedded client and the CLI use it), :func:`open_store` opens
the store alone, and :func:`default_db_path` is where the embedded backend's database is.
:class:`Store` is the interface the service is written against; its methods are async, and
:class:`Blocking` calls them from synchronous code.
"""

from typing import TYPE_CHECKING, Any

from ._factory import db_path, default_db_path, open_service, open_store
from ._store._protocol import Store
from ._store._sqlstore import Blocking

if TYPE_CHECKING:
    from ._service import RunService

__all__ = [
    "Blocking",
    "RunService",
    "Store",
    "db_path",
    "default_db_path",
    "open_service",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The service is imported on first use: the agent (``python -m asyncrun.server._agent``)
    # imports this package first and must not import itself through the executor.
    if name == "RunService":
        from ._service import RunService

        return RunService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
