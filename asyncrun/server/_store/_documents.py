"""Documents: records other APIs need besides runs (the DHCore API's projects, functions, tasks).

Each document is a JSON body kept whole, found by ``(project, type, id)``; a few columns copied
out of it (name, kind, ``ref``) serve the lookups its API makes, each through an index that
also gives the listing order (newest first). Plain functions on a connection, called inside
the store's transactions, like the other tables' modules.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import orjson

from ._sql import Op as Operation
from ._sql import q

MIGRATION: Final = (
    """CREATE TABLE documents (
        project TEXT NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        name TEXT,
        kind TEXT NOT NULL,
        ref TEXT,
        created_us INTEGER NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (project, type, id)
    ) WITHOUT ROWID""",
    "CREATE INDEX documents_by_ref ON documents (project, type, ref, kind, created_us DESC, id)",
    "CREATE INDEX documents_by_name ON documents (project, type, name, created_us DESC, id)",
)
"""Schema of the documents table; ``ref`` is what a document points to (a task's function)."""


@attrs.frozen
class Document:
    """One stored document.

    Attributes:
        project: The project it belongs to (a project document: its own name).
        type: What it is (``project``, ``function``, ``task``...).
        id: Its id, unique per project and type.
        name: Its name, if it has one (several versions may share it).
        kind: Its kind.
        ref: What it points to, for lookups (a task: its function), if anything.
        created_us: When it was stored, in microseconds since the epoch.
        body: The document itself.
    """

    project: str
    type: str
    id: str
    name: str | None
    kind: str
    ref: str | None
    created_us: int
    body: dict[str, Any]


_COLUMNS: Final = "project, type, id, name, kind, ref, created_us, doc"


def _from_row(row: tuple[Any, ...]) -> Document:
    project, type_, id_, name, kind, ref, created_us, doc = row
    return Document(project, type_, id_, name, kind, ref, created_us, orjson.loads(doc))


def insert(doc: Document) -> Operation[bool]:
    """Store a new document; ``False`` (nothing written) if its id is taken."""
    inserted = yield q(
        f"INSERT INTO documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        doc.project, doc.type, doc.id, doc.name, doc.kind, doc.ref, doc.created_us,
        orjson.dumps(doc.body),
    )  # fmt: skip
    return inserted.rowcount == 1


def get(project: str, type_: str, id_: str) -> Operation[Document | None]:
    """One document, or ``None``."""
    row = (
        yield q(
            f"SELECT {_COLUMNS} FROM documents WHERE project = ? AND type = ? AND id = ?",
            project,
            type_,
            id_,
        )
    ).one()
    return None if row is None else _from_row(row)


def _where(
    project: str, type_: str, kind: str | None, ref: str | None, name: str | None
) -> tuple[str, list[object]]:
    clauses: list[str] = ["project = ?", "type = ?"]
    args: list[object] = [project, type_]
    for column, value in (("ref", ref), ("kind", kind), ("name", name)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(clauses), args


def search(
    project: str,
    type_: str,
    *,
    kind: str | None = None,
    ref: str | None = None,
    name: str | None = None,
    offset: int = 0,
    limit: int = 25,
) -> Operation[tuple[list[Document], int]]:
    """One page of the documents matching every given filter, newest first, and their count."""
    where, args = _where(project, type_, kind, ref, name)
    total = (yield q(f"SELECT count(*) FROM documents WHERE {where}", *args)).value()
    rows = yield q(
        f"SELECT {_COLUMNS} FROM documents WHERE {where}"
        " ORDER BY created_us DESC, id LIMIT ? OFFSET ?",
        *args,
        limit,
        offset,
    )
    return [_from_row(row) for row in rows], int(total)
