"""Run records as store operations (see ``_sql``: generators of statements).

Each function here is one operation of :class:`~._sqlstore.SQLStore`; those that write run in
one transaction that the driver opens (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a lock on the
change counter), so writers queue and every multi-row change is whole or absent. Every write
of a run bumps the global change sequence, which is what ``runs:watch`` follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from ... import _serde
from ..._core import launch as _launch
from ..._core.errors import AlreadyExists, AsyncRunError, NotFound, RevisionConflict
from ..._core.metrics import Mode, Op
from ..._core.query import Changes, ListQuery, to_microseconds
from ..._core.records import Run, State
from . import _execution, _feed, _metrics, _tokens
from ._execution import Ident
from ._sql import Op as Operation
from ._sql import many, marks, q

_PROBE: Final = 1000
"""Matches counted at most per filter when a listing picks the index to walk."""
_IN: Final = 500
"""Ids per ``IN (...)``: well below SQLite's variable limit."""


def _not_found(project: str, id: str) -> NotFound:
    return NotFound(f"no run {id!r} in project {project!r}", detail={"project": project, "id": id})


def require_run(project: str, id: str) -> Operation[None]:
    """Raise NotFound unless the run exists (inside the caller's transaction)."""
    found = yield q("SELECT 1 FROM runs WHERE project = ? AND id = ?", project, id)
    if found.one() is None:
        raise _not_found(project, id)


def next_seq() -> Operation[int]:
    """Take the next change sequence number (inside a write)."""
    row = yield q("UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value")
    return int(row.value())


def current_seq() -> Operation[int]:
    """The sequence number of the newest change."""
    row = yield q("SELECT value FROM counters WHERE name = 'seq'")
    return int(row.value())


def _row(run: Run) -> Operation[tuple[object, ...]]:
    created = run.metadata.created
    assert created is not None, "the service sets metadata.created"
    seq = yield from next_seq()
    return (
        run.kind,
        run.name,
        str(run.status.state),
        to_microseconds(created),
        run.metadata.revision,
        # Metrics live in their own append-only tables, never in the document.
        _serde.dumps(
            attrs.evolve(run, status=attrs.evolve(run.status, metrics={}, metric_summary={}))
        ),
        seq,
        run.project,
        run.id,
    )


def _set_labels(run: Run) -> Operation[None]:
    created = run.metadata.created
    assert created is not None, "the service sets metadata.created"
    created_us = to_microseconds(created)
    yield q("DELETE FROM run_labels WHERE project = ? AND id = ?", run.project, run.id)
    if run.metadata.labels:
        yield many(
            "INSERT INTO run_labels (project, id, label, created_us) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(run.project, run.id, label, created_us) for label in run.metadata.labels],
        )


def insert_many(runs: Sequence[Run]) -> Operation[list[AlreadyExists | None]]:
    """Store new runs (one transaction); a taken id fails only its own run.

    Returns:
        For each run, ``None`` if it was stored, else the error saying why not.
    """
    errors = []
    for run in runs:
        errors.append((yield from _insert(run)))
    return errors


def _insert(run: Run) -> Operation[AlreadyExists | None]:
    row = yield from _row(run)
    inserted = yield q(
        "INSERT INTO runs (kind, name, state, created_us, revision, doc, seq, project, id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        *row,
    )
    if inserted.rowcount != 1:
        # Nothing of this run was written: the transaction goes on for the others.
        return AlreadyExists(
            f"run {run.id!r} already exists in project {run.project!r}; "
            "use save(update=True) to change it",
            detail={"project": run.project, "id": run.id},
        )
    yield from _set_labels(run)
    if run.status.metrics:  # an imported run brings its metrics along
        ops = [Op(key, Mode.SET, value) for key, value in run.status.metrics.items()]
        yield from _metrics.apply_ops(run.project, run.id, ops)
    return None


def load_page(docs: list[bytes]) -> Operation[list[Run]]:
    """Records from their stored documents, each with its metric keys' summaries.

    Never the values: reading a run costs the same whatever its history (``metrics()``
    reads the values when they are asked for).
    """
    runs = [_serde.run_from_stored(bytes(doc)) for doc in docs]
    if runs:
        found = yield from _metrics.summaries(runs[0].project, [run.id for run in runs])
        for run in runs:
            run.status.metric_summary = found.get(run.id, {})
    return runs


def _update(run: Run, expected_revision: int, *, labels: bool = True) -> Operation[bool]:
    row = yield from _row(run)
    updated = yield q(
        "UPDATE runs SET kind = ?, name = ?, state = ?, created_us = ?, revision = ?,"
        " doc = ?, seq = ? WHERE project = ? AND id = ? AND revision = ?",
        *row,
        expected_revision,
    )
    if updated.rowcount != 1:
        return False
    if labels:
        yield from _set_labels(run)
    return True


def replace(run: Run, expected_revision: int) -> Operation[None]:
    """Overwrite a run if it is still at ``expected_revision``.

    Raises:
        RevisionConflict: if another write happened since that revision.
    """
    if not (yield from _update(run, expected_revision)):
        raise RevisionConflict(
            f"run {run.id!r} changed since revision {expected_revision}: "
            "refresh() it and apply your change again",
            detail={"id": run.id, "expected_revision": expected_revision},
        )


def modify(
    project: str,
    id: str,
    change: Callable[[Run], Run],
    execute: _launch.Launch | None,
    of: Ident | None,
) -> Operation[Run]:
    """Read a run, apply ``change``, bump the revision and write it (in the caller's write).

    ``change`` is a pure function; if it raises, nothing is written. With ``execute``, the
    same transaction reserves the run's next execution, launched so: a crash can never leave
    a READY run that no agent will start. With ``of``, the change is made only while that
    execution exists: a job of a run that was deleted (and perhaps re-created with the same
    id) never writes to another run.

    Raises:
        NotFound: if there is no such run (or no such execution).
    """
    row = (yield q("SELECT doc FROM runs WHERE project = ? AND id = ?", project, id)).one()
    if row is None or (of is not None and not (yield from _execution.exists(of))):
        raise _not_found(project, id)
    (current,) = yield from load_page([row[0]])
    revision = current.metadata.revision
    new = change(current)
    new = attrs.evolve(new, metadata=attrs.evolve(new.metadata, revision=revision + 1))
    # Most changes (a state, a message) keep the labels: their rows stay as they are.
    relabel = new.metadata.labels != current.metadata.labels
    updated = yield from _update(new, revision, labels=relabel)
    assert updated, "the row is locked by this transaction"
    if execute is not None:
        yield from _execution.reserve(project, id, execute)
    return new


def modify_many(
    project: str,
    changes: Sequence[tuple[str, Callable[[Run], Run]]],
    execute: _launch.Launch | None,
) -> Operation[list[Run | AsyncRunError]]:
    """:func:`modify` several runs; a refused change fails only its run.

    Returns:
        For each ``(id, change)``, the changed run, or the error (``NotFound``, or what
        ``change`` raised) that left it unchanged.
    """
    results: list[Run | AsyncRunError] = []
    for id, change in changes:
        try:
            results.append((yield from modify(project, id, change, execute, None)))
        except AsyncRunError as exc:  # raised before anything of this run was written
            results.append(exc)
    return results


def get(project: str, id: str) -> Operation[Run | None]:
    """One run, or ``None``."""
    row = (yield q("SELECT doc FROM runs WHERE project = ? AND id = ?", project, id)).one()
    if row is None:
        return None
    (run,) = yield from load_page([row[0]])
    return run


def delete(project: str, id: str) -> Operation[bool]:
    """Remove a run with its logs and executions; ``False`` if it did not exist."""
    deleted = yield q("DELETE FROM runs WHERE project = ? AND id = ?", project, id)
    for table in ("run_labels", "logs", "executions", "log_writers"):
        yield q(f"DELETE FROM {table} WHERE project = ? AND id = ?", project, id)
    yield from _tokens.revoke_jobs(f"{project}/{id}")  # its job's token dies with the run
    yield from _metrics.delete(project, id)
    if deleted.rowcount == 1:  # a deletion is a change watchers must see
        seq = yield from next_seq()
        yield from _feed.record_deletion(project, id, seq, time.time_ns() // 1000)
    return deleted.rowcount == 1


def projects() -> Operation[list[tuple[str, int, int]]]:
    """Every project that has runs: ``(name, runs, newest created_us)``, by name."""
    rows = yield q(
        "SELECT project, COUNT(*), MAX(created_us) FROM runs GROUP BY project ORDER BY project"
    )
    return [(str(name), int(count), int(newest)) for name, count, newest in rows]


def list_runs(project: str, query: ListQuery) -> Operation[list[Run]]:
    """Runs of a project matching ``query``, newest first, at most ``query.limit + 1``.

    One extra row is read so the caller can tell whether another page follows.
    """
    driver = yield from _driver(project, query)
    sql, args = listing(project, query, driver)
    rows = yield q(sql, *args)
    return (yield from load_page([row[0] for row in rows]))


def _driver(project: str, query: ListQuery) -> Operation[str | None]:
    """The filter whose index a listing walks: a label, ``state``, ``kind``, ``name``, ``ids``.

    Ids (at most MAX_IDS) are found by key. Among the others, the one matching the fewest
    runs, counted up to ``_PROBE`` on its index (a bounded cost): ``label=[common, rare]``
    walks the rare label's runs, not every run carrying the common one. ``None`` (no such
    filter) walks the project in created order (``runs_by_created``).
    """
    if query.ids:
        return "ids"  # at most MAX_IDS runs, found by key
    probes: dict[str, tuple[str, list[str]]] = {}
    for label in dict.fromkeys(query.labels):
        probes[f"label:{label}"] = ("run_labels WHERE project = ? AND label = ?", [label])
    for column, values in (
        ("state", [str(state) for state in query.states]),
        ("kind", [] if query.kind is None else [query.kind]),
        ("name", [] if query.name is None else [query.name]),
    ):
        if values:
            probes[column] = (f"runs WHERE project = ? AND {column} IN ({marks(values)})", values)
    if len(probes) < 2:
        return next(iter(probes), None)
    counts: dict[str, int] = {}
    for driver, (table_where, values) in probes.items():
        counted = yield q(
            f"SELECT count(*) FROM (SELECT 1 FROM {table_where} LIMIT ?) AS probe",
            project,
            *values,
            _PROBE,
        )
        counts[driver] = int(counted.value())
    return min(counts, key=counts.__getitem__)


def changes(
    project: str, ids: Sequence[str], since: int | None, fresh: Sequence[str], feed: bool
) -> Operation[Changes]:
    """What changed after ``since``: among ``ids``, or (``feed``) anywhere in the project.

    ``fresh`` runs are reported whatever their sequence; those that do not exist are
    listed as missing, like watched ``ids``. Following the feed costs what changed, not
    what is watched: the watcher picks its own runs out of it. ``since=None`` starts the
    feed now (only ``fresh`` runs are reported).
    """
    seq = yield from current_seq()  # first: a change made while reading is seen next time
    if not feed:
        return (yield from _changes_among(project, [*ids, *fresh], since or 0, set(fresh), seq))
    docs: dict[str, bytes] = {}  # the newest record of each run written
    deleted: list[str] = []
    more = False
    if since is not None:
        found, more = yield from _feed.read(project, since)
        for _, id_, doc in found:
            if doc is None:
                docs.pop(id_, None)
                deleted.append(id_)
            else:
                docs[id_] = doc
        if more:
            seq = found[-1][0]  # the next answer goes on from the last change in this one
    runs = yield from load_page(list(docs.values()))
    missing: list[str] = []
    wanted = [id_ for id_ in dict.fromkeys(fresh) if id_ not in docs]
    if wanted:
        among = yield from _changes_among(project, wanted, 0, set(wanted), seq)
        runs += among.runs
        missing = among.missing
    # A run deleted then created again is in both lists: its old waits end, new ones go on.
    return Changes(seq, runs, missing, deleted=list(dict.fromkeys(deleted)), more=more)


def _changes_among(
    project: str, wanted: list[str], since: int, always: set[str], seq: int
) -> Operation[Changes]:
    # Only ids and sequence numbers are read for every watched run; documents only for
    # those that changed.
    rows: list[tuple[str, int]] = []
    for start in range(0, len(wanted), _IN):
        part = wanted[start : start + _IN]
        found = yield q(
            f"SELECT id, seq FROM runs WHERE project = ? AND id IN ({marks(part)})", project, *part
        )
        rows += [(str(id_), int(s)) for id_, s in found]
    present = {id_ for id_, _ in rows}
    changed = [id_ for id_, s in rows if s > since or id_ in always]
    runs = []
    for start in range(0, len(changed), _IN):
        part = changed[start : start + _IN]
        sql = f"SELECT doc FROM runs WHERE project = ? AND id IN ({marks(part)})"
        docs = yield q(sql, project, *part)
        runs += yield from load_page([doc for (doc,) in docs])
    return Changes(seq, runs, [id_ for id_ in dict.fromkeys(wanted) if id_ not in present])


def ids_in_state(state: State) -> Operation[set[tuple[str, str]]]:
    """``(project, id)`` of every run in ``state``."""
    rows = yield q("SELECT project, id FROM runs WHERE state = ?", str(state))
    return {(str(project), str(id_)) for project, id_ in rows}


def listing(project: str, query: ListQuery, driver: str | None) -> tuple[str, list[object]]:
    """The SELECT of a listing, walking the index of ``driver``, and its arguments.

    Each filter has an index in listing order (see the schema), so the walk reads no further
    than the page. A label drives through ``run_labels_by_created``, joined to runs by key;
    ``state``, ``kind`` or ``name`` through its ``runs_by_*_created`` index; ids through the
    primary key (then sorted). Other filters are checked on the rows the walk meets. The
    created range and the cursor are ranges of the driving index. (The ``INDEXED BY`` hints
    are SQLite's; PostgreSQL's planner finds the same indexes from the order and limit.)
    """
    args: list[object] = []
    labels = list(dict.fromkeys(query.labels))
    if driver is not None and driver.startswith("label:"):
        label = driver.removeprefix("label:")
        labels.remove(label)
        # The label's index gives the order: CROSS JOIN keeps it the outer loop.
        head = "SELECT runs.doc FROM run_labels l CROSS JOIN runs"
        where = ["l.project = ?", "l.label = ?", "runs.project = l.project", "runs.id = l.id"]
        args += [project, label]
        keys = "l."  # the range, the cursor and the order on the label's own columns
    else:
        index = {None: "", "ids": " INDEXED BY sqlite_autoindex_runs_1"}.get(
            driver, f" INDEXED BY runs_by_{driver}_created"
        )
        head = f"SELECT runs.doc FROM runs{index}"
        where = ["runs.project = ?"]
        args.append(project)
        keys = "runs."
    if query.states:
        where.append(f"runs.state IN ({marks(query.states)})")
        args += [str(s) for s in query.states]
    if query.kind is not None:
        where.append("runs.kind = ?")
        args.append(query.kind)
    if query.name is not None:
        where.append("runs.name = ?")
        args.append(query.name)
    if query.ids:
        where.append(f"runs.id IN ({marks(query.ids)})")
        args += query.ids
    if query.created_after is not None:
        where.append(f"{keys}created_us >= ?")
        args.append(to_microseconds(query.created_after))
    if query.created_before is not None:
        where.append(f"{keys}created_us < ?")
        args.append(to_microseconds(query.created_before))
    for label in labels:
        where.append(
            "EXISTS (SELECT 1 FROM run_labels o WHERE o.project = runs.project"
            " AND o.label = ? AND o.id = runs.id)"
        )
        args.append(label)
    if query.cursor is not None:
        # A row value: a range of the index, so a deep page starts where the last one ended.
        where.append(f"({keys}created_us, {keys}id) < (?, ?)")
        args += [query.cursor.created_us, query.cursor.id]
    args.append(query.limit + 1)
    order = f"{keys}created_us DESC, {keys}id DESC"
    return f"{head} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?", args
