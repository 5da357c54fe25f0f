"""The sync facade: :class:`Client` and :class:`Run`, thin wrappers over the async client."""

from ._client import Client
from ._run import Run

__all__ = ["Client", "Run"]
