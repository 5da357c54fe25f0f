"""The service layer: every rule about run records, shared by the HTTP app and the embedded backend.

Handlers and transports only translate; validation, revisions and state rules live here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from .. import _serde
from .._core.errors import NotFound, ValidationError
from .._core.query import ListQuery
from .._core.records import Run, Transition
from ._store._sqlite import SQLiteStore, cursor_after


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@attrs.frozen
class Page:
    """One page of a listing and the cursor of the next page (``None`` on the last)."""

    runs: list[Run]
    next_cursor: str | None


class RunService:
    """Create, read, update, delete and list runs.

    Args:
        store: Where records are kept.
        clock: Returns the current time; tests pass a fixed clock.
    """

    def __init__(self, store: SQLiteStore, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    async def create(self, project: str, data: Any) -> Run:
        """Validate and store a new run; the server stamps times and revision 1.

        Raises:
            ValidationError: if the record is invalid or names another project.
            AlreadyExists: if the id is taken.
        """
        run = _serde.from_dict(data)
        if run.project != project:
            raise ValidationError(
                f"the run names project {run.project!r} but was sent to project {project!r}",
                detail={"field": "project"},
            )
        now = self.clock()
        metadata = attrs.evolve(
            run.metadata, created=run.metadata.created or now, updated=now, revision=1
        )
        status = run.status
        if not status.transitions:
            status = attrs.evolve(status, transitions=[Transition(status.state, now)])
        run = attrs.evolve(run, metadata=metadata, status=status)
        self.store.insert(run)
        return run

    async def get(self, project: str, id: str) -> Run:
        """Read one run.

        Raises:
            NotFound: if there is no such run.
        """
        run = self.store.get(project, id)
        if run is None:
            raise NotFound(
                f"no run {id!r} in project {project!r}", detail={"project": project, "id": id}
            )
        return run

    async def update(self, project: str, id: str, data: Any, revision: int | None = None) -> Run:
        """Replace the user-owned parts of a run if it is still at the expected revision.

        The user owns ``name``, ``metadata`` (but its times and revision), ``spec``, ``user`` and
        status keys a kind adds; the server owns ``status.state``, ``transitions`` and
        ``metrics``, which only change through actions and the status endpoint, so a save from a
        stale copy can never roll a state back.

        Args:
            project: The run's project.
            id: The run's id.
            data: The full record as the client holds it.
            revision: The revision the client last read (``If-Match``); defaults to the
                record's ``metadata.revision``.

        Raises:
            ValidationError: if the record is invalid or tries to change kind, project or id.
            NotFound: if the run does not exist.
            RevisionConflict: if the run changed since ``revision``.
        """
        incoming = _serde.from_dict(data)
        if (incoming.project, incoming.id) != (project, id):
            raise ValidationError(
                "project and id of a run cannot change: create a new run instead",
                detail={"field": "id"},
            )
        current = await self.get(project, id)
        if incoming.kind != current.kind:
            raise ValidationError(
                f"the kind of a run cannot change (it is {current.kind!r})",
                detail={"field": "kind"},
            )
        expected = incoming.metadata.revision if revision is None else revision
        metadata = attrs.evolve(
            incoming.metadata,
            created=current.metadata.created,
            updated=self.clock(),
            revision=current.metadata.revision + 1,
        )
        status = attrs.evolve(
            incoming.status,
            state=current.status.state,
            message=current.status.message,
            transitions=current.status.transitions,
            metrics=current.status.metrics,
        )
        run = attrs.evolve(incoming, metadata=metadata, status=status)
        self.store.replace(run, expected)
        return run

    async def delete(self, project: str, id: str) -> None:
        """Delete a run.

        Raises:
            NotFound: if there is no such run.
        """
        if not self.store.delete(project, id):
            raise NotFound(
                f"no run {id!r} in project {project!r}", detail={"project": project, "id": id}
            )

    async def list(self, project: str, query: ListQuery) -> Page:
        """One page of a project's runs matching ``query``, newest first."""
        runs = self.store.list(project, query)
        if len(runs) > query.limit:
            runs = runs[: query.limit]
            return Page(runs, cursor_after(runs[-1]).encode())
        return Page(runs, None)
