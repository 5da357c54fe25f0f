"""A DHCore-compatible API, so the DigitalHub SDK runs unmodified against ``asyncrun server``.

See ``docs/guides/digitalhub.md``: the routes the SDK's flow uses, mapped onto the service
(a ``python+job:run`` is an asyncrun run), with projects, functions and tasks kept as documents.
"""

from ._routes import routes

__all__ = ["routes"]
