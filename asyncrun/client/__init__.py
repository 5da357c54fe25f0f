"""The async implementation: :class:`AsyncClient`, :class:`AsyncRun` and their transports."""

from ._client import AsyncClient
from ._run import AsyncRun

__all__ = ["AsyncClient", "AsyncRun"]
