"""Shapes of the HTTP API (DESIGN.md section 6) shared by the HTTP transport and the server."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from .errors import ValidationError
from .records import check_name

API_PREFIX: Final = "/api/v1"
ERROR_CONTENT_TYPE: Final = "application/json"
MAX_REVISION: Final = 2**63 - 1
"""Revisions are SQLite integers: anything larger cannot be a revision this API made."""
MAX_BATCH_CREATE: Final = 1000
"""Most runs one ``runs:batchCreate`` request may carry."""


def runs_path(project: str, id: str | None = None, action: str | None = None) -> str:
    """The path of a project's run collection, one run, or one run's sub-resource."""
    path = f"{API_PREFIX}/projects/{quote(project, safe='')}/runs"
    if id is not None:
        path += f"/{quote(id, safe='')}"
    if action is not None:
        path += f"/{action}"
    return path


def etag(revision: int) -> str:
    """The ETag of a run at ``revision``."""
    return f'"{revision}"'


def parse_if_match(header: str | None) -> int | None:
    """The revision an ``If-Match`` header asks for, or ``None`` when absent or ``*``.

    Raises:
        ValidationError: if the header is not an ETag this API made.
    """
    if header is None or header.strip() == "*":
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    try:
        revision = int(value.strip('"'))
        if not 0 <= revision <= MAX_REVISION:
            raise ValueError(revision)
        return revision
    except ValueError:
        raise ValidationError(
            f"If-Match must be the ETag of a run (like '\"3\"'), got {header!r}",
            detail={"header": "If-Match"},
        ) from None


def parse_batch_create(body: object) -> list[object]:
    """The run records of a ``runs:batchCreate`` body ``{"runs": [record, ...]}``.

    Each record is validated on its own later: one bad record fails only itself.

    Raises:
        ValidationError: if the body is not an object with a list of 1 to
            :data:`MAX_BATCH_CREATE` records.
    """
    runs = body.get("runs") if isinstance(body, dict) else None
    if not isinstance(runs, list) or not 1 <= len(runs) <= MAX_BATCH_CREATE:
        raise ValidationError(
            f'send {{"runs": [record, ...]}} with 1 to {MAX_BATCH_CREATE} run records',
            detail={"field": "runs"},
        )
    return runs


ACTIONS: Final = ("run", "stop", "resume")
"""What can be done to a run (``POST .../runs/{id}/{action}``, ``runs:batch{Action}``)."""


def parse_batch_action(body: object) -> list[str]:
    """The run ids of a ``runs:batchRun`` / ``batchStop`` / ``batchResume`` body ``{"ids": [...]}``.

    Raises:
        ValidationError: if the body is not an object with a list of 1 to
            :data:`MAX_BATCH_CREATE` distinct, valid run ids.
    """
    ids = body.get("ids") if isinstance(body, dict) else None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_BATCH_CREATE
        or not all(isinstance(id_, str) for id_ in ids)
    ):
        raise ValidationError(
            f'send {{"ids": [run id, ...]}} with 1 to {MAX_BATCH_CREATE} run ids',
            detail={"field": "ids"},
        )
    for id_ in ids:
        try:
            check_name("id", id_)
        except ValueError as exc:
            raise ValidationError(str(exc), detail={"field": "ids"}) from None
    if len(set(ids)) != len(ids):
        raise ValidationError("each run id may appear once in a batch", detail={"field": "ids"})
    return list(ids)
