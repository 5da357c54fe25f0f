"""Metric storage: append-only chunks, so a flush costs O(batch), never O(history).

Each key has one row in ``metric_keys`` (its shape, its single value, its generation) and its
list values in ``metric_chunks``: one packed row per key per batch. Overwriting a key starts a
new generation (older chunks are deleted); appending adds a chunk. What an operation does is
decided by :func:`asyncrun._core.metrics.step`, the same function the client's model uses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
import orjson

from ..._core.errors import Conflict
from ..._core.metrics import (
    Number,
    Op,
    Shape,
    decode_number,
    decode_value,
    encode_number,
    encode_value,
    step,
)
from ..._core.summary import MetricSummary
from ._sql import Op as Operation
from ._sql import many, marks, q

MIGRATION: Final = (
    """CREATE TABLE metric_keys (
        project TEXT NOT NULL,
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        shape TEXT NOT NULL,
        single BLOB,
        generation INTEGER NOT NULL,
        next_chunk INTEGER NOT NULL,
        PRIMARY KEY (project, id, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE metric_chunks (
        project TEXT NOT NULL,
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        generation INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        vals BLOB NOT NULL,
        PRIMARY KEY (project, id, key, generation, chunk)
    ) WITHOUT ROWID""",
    """CREATE TABLE metric_writers (
        project TEXT NOT NULL,
        id TEXT NOT NULL,
        writer TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (project, id, writer)
    ) WITHOUT ROWID""",
)


def _backfill_summaries(db: sqlite3.Connection) -> None:
    """Give keys stored before summaries existed their summary, and chunks their position."""
    keys = db.execute(
        "SELECT project, id, key, shape, single, generation FROM metric_keys"
    ).fetchall()
    for project, id, key, shape, single, generation in keys:
        if shape == Shape.SINGLE.value:
            summary = MetricSummary.of(_unpack(single), single=True)
        else:
            summary = MetricSummary.of([])
            chunks = db.execute(
                "SELECT chunk, vals FROM metric_chunks WHERE project = ? AND id = ? AND key = ?"
                " AND generation = ? ORDER BY chunk",
                (project, id, key, generation),
            ).fetchall()
            for chunk, vals in chunks:
                values = _unpack(vals)
                db.execute(
                    "UPDATE metric_chunks SET start = ?, n = ? WHERE project = ? AND id = ?"
                    " AND key = ? AND generation = ? AND chunk = ?",
                    (summary.count, len(values), project, id, key, generation, chunk),
                )
                summary = summary.extend(values)
        db.execute(
            "UPDATE metric_keys SET summary = ? WHERE project = ? AND id = ? AND key = ?",
            (_pack_summary(summary), project, id, key),
        )


SUMMARY_MIGRATION: Final = (
    # Each key's summary, kept up to date as batches arrive: lists and watches read these,
    # never the values.
    "ALTER TABLE metric_keys ADD COLUMN summary BLOB",
    # Where each chunk starts in its key's list: a page of history is found by index.
    "ALTER TABLE metric_chunks ADD COLUMN start INTEGER",
    "ALTER TABLE metric_chunks ADD COLUMN n INTEGER",
    "CREATE INDEX metric_chunks_by_start ON metric_chunks (project, id, key, generation, start)",
    _backfill_summaries,
)
_IN_CHUNK: Final = 500  # keys per "IN (...)": well below SQLite's variable limit
CHUNK_VALUES: Final = 8192
"""Most values one chunk row holds: a page of history unpacks little more than it returns."""


class SequenceGap(Conflict):
    """A batch skipped a sequence number: an earlier batch of this writer was never applied."""

    code = "sequence_gap"


@attrs.frozen
class BatchResult:
    """How a batch was received: applied now, or a duplicate of an applied one."""

    applied: bool
    ignored: list[str]


@attrs.define
class _Key:
    shape: Shape
    single: Number | None
    generation: int
    next_chunk: int
    summary: MetricSummary
    reset: bool = False
    pending: list[Number] = attrs.Factory(list)


_EMPTY: Final = MetricSummary.of([])


def _pack(values: Sequence[Number]) -> bytes:
    return orjson.dumps(encode_value(list(values)))


def _unpack(blob: bytes) -> Any:
    return decode_value(orjson.loads(blob))


def _pack_summary(summary: MetricSummary) -> bytes:
    numbers = [summary.last, summary.min, summary.max]
    return orjson.dumps(
        [summary.count, *(None if v is None else encode_number(v) for v in numbers)]
    )


def _unpack_summary(blob: bytes, shape: str) -> MetricSummary:
    count, *numbers = orjson.loads(blob)
    last, low, high = (None if v is None else decode_number(v) for v in numbers)
    return MetricSummary(count, last, low, high, single=shape == Shape.SINGLE.value)


def _load_keys(project: str, id: str, keys: Sequence[str]) -> Operation[dict[str, _Key]]:
    found: dict[str, _Key] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        part = keys[start : start + _IN_CHUNK]
        rows = yield q(
            "SELECT key, shape, single, generation, next_chunk, summary FROM metric_keys"
            f" WHERE project = ? AND id = ? AND key IN ({marks(part)})",
            project,
            id,
            *part,
        )
        for key, shape, single, generation, next_chunk, summary in rows:
            value = None if single is None else _unpack(single)[0]  # packed as [v]
            found[key] = _Key(
                Shape(shape), value, generation, next_chunk, _unpack_summary(summary, shape)
            )
    return found


def apply_ops(project: str, id: str, ops: Iterable[Op]) -> Operation[list[str]]:
    """Apply operations inside the caller's transaction; returns keys of ignored operations."""
    ops = list(ops)
    keys = yield from _load_keys(project, id, list(dict.fromkeys(op.key for op in ops)))
    ignored: list[str] = []
    for op in ops:
        state = keys.get(op.key)
        effect = step(state.shape if state else None, state.single if state else None, op)
        if effect.ignored:
            ignored.append(op.key)
            continue
        if state is None:
            state = keys[op.key] = _Key(Shape.LIST, None, 0, 0, _EMPTY, reset=True)
        assert effect.shape is not None
        if effect.reset is not None or effect.shape is Shape.SINGLE:
            state.generation += 1
            state.next_chunk = 0
            state.reset = True
            state.pending = list(effect.reset or [])
            state.shape = effect.shape
            state.single = effect.single if effect.shape is Shape.SINGLE else None
        else:
            state.pending.extend(effect.extend)
    for key, state in keys.items():
        if state.reset:
            yield q(
                "DELETE FROM metric_chunks WHERE project = ? AND id = ? AND key = ?"
                " AND generation < ?",
                project,
                id,
                key,
                state.generation,
            )
            state.summary = _EMPTY
        chunks = []
        for start in range(0, len(state.pending), CHUNK_VALUES):
            part = state.pending[start : start + CHUNK_VALUES]
            chunks.append(
                (project, id, key, state.generation, state.next_chunk, _pack(part),
                 state.summary.count, len(part))
            )  # fmt: skip
            state.next_chunk += 1
            state.summary = state.summary.extend(part)
        if chunks:
            yield many(
                "INSERT INTO metric_chunks (project, id, key, generation, chunk, vals, start, n)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                chunks,
            )
        if state.shape is Shape.SINGLE:
            assert state.single is not None
            state.summary = MetricSummary.of([state.single], single=True)
        if state.reset or state.pending:
            single = None if state.single is None else _pack([state.single])
            yield q(
                "INSERT INTO metric_keys"
                " (project, id, key, shape, single, generation, next_chunk, summary)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project, id, key) DO UPDATE SET"
                " shape = excluded.shape, single = excluded.single,"
                " generation = excluded.generation, next_chunk = excluded.next_chunk,"
                " summary = excluded.summary",
                project,
                id,
                key,
                state.shape.value,
                single,
                state.generation,
                state.next_chunk,
                _pack_summary(state.summary),
            )
    return ignored


def apply_batch(
    project: str, id: str, writer: str, seq: int, ops: Sequence[Op]
) -> Operation[BatchResult]:
    """Apply one writer's batch exactly once, in order, inside the caller's transaction.

    Raises:
        SequenceGap: if ``seq`` is not the writer's next sequence number.
    """
    row = (
        yield q(
            "SELECT last_seq FROM metric_writers WHERE project = ? AND id = ? AND writer = ?",
            project,
            id,
            writer,
        )
    ).one()
    last = 0 if row is None else int(row[0])
    if seq <= last:
        return BatchResult(False, [])  # a retry of a batch already applied
    if seq != last + 1:
        raise SequenceGap(
            f"batch {seq} of writer {writer!r} arrived before batch {last + 1}",
            detail={"expected": last + 1, "got": seq},
        )
    ignored = yield from apply_ops(project, id, ops)
    yield q(
        "INSERT INTO metric_writers (project, id, writer, last_seq) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (project, id, writer) DO UPDATE SET last_seq = excluded.last_seq",
        project,
        id,
        writer,
        seq,
    )
    return BatchResult(True, ignored)


def read(project: str, id: str) -> Operation[dict[str, Any]]:
    """The merged metrics of a run: each key's single value, or its whole list."""
    found: dict[str, Any] = {}
    keys = yield q(
        "SELECT key, shape, single FROM metric_keys WHERE project = ? AND id = ? ORDER BY key",
        project,
        id,
    )
    for key, shape, single in keys:
        found[key] = _unpack(single)[0] if shape == Shape.SINGLE.value else []
    if found:
        chunks = yield q(
            "SELECT c.key, c.vals FROM metric_chunks c JOIN metric_keys k"
            " ON k.project = c.project AND k.id = c.id AND k.key = c.key"
            " AND k.generation = c.generation"
            " WHERE c.project = ? AND c.id = ? ORDER BY c.key, c.chunk",
            project,
            id,
        )
        for key, vals in chunks:
            found[key].extend(_unpack(vals))
    return found


def summaries(project: str, ids: list[str]) -> Operation[dict[str, dict[str, MetricSummary]]]:
    """Each key's summary for several runs of a project: one query, no values read."""
    found: dict[str, dict[str, MetricSummary]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        rows = yield q(
            "SELECT id, key, shape, summary FROM metric_keys"
            f" WHERE project = ? AND id IN ({marks(part)}) ORDER BY id, key",
            project,
            *part,
        )
        for id, key, shape, summary in rows:
            found.setdefault(id, {})[key] = _unpack_summary(summary, shape)
    return found


def history(
    project: str, id: str, key: str, offset: int, limit: int
) -> Operation[list[Number] | None]:
    """Up to ``limit`` values of a key's list from ``offset`` on (``None``: no such key).

    The chunks holding the page are found by index: a page costs what it holds, wherever it
    is in a history of millions. A single-valued key is a list of one here.
    """
    row = (
        yield q(
            "SELECT shape, single, generation FROM metric_keys"
            " WHERE project = ? AND id = ? AND key = ?",
            project,
            id,
            key,
        )
    ).one()
    if row is None:
        return None
    shape, single, generation = row
    if shape == Shape.SINGLE.value:
        return list(_unpack(single)[offset : offset + limit])
    where = "project = ? AND id = ? AND key = ? AND generation = ?"
    first = (
        yield q(
            f"SELECT max(start) FROM metric_chunks WHERE {where} AND start <= ?",
            project,
            id,
            key,
            generation,
            offset,
        )
    ).value()
    values: list[Number] = []
    chunks = yield q(
        f"SELECT start, vals FROM metric_chunks WHERE {where} AND start >= ? AND start < ?"
        " ORDER BY start",
        project,
        id,
        key,
        generation,
        first or 0,
        offset + limit,
    )
    for start, vals in chunks:
        chunk = _unpack(vals)
        values += chunk[max(0, offset - start) : offset + limit - start]
    return values


def delete(project: str, id: str) -> Operation[None]:
    """Remove every metric row of a run."""
    for table in ("metric_keys", "metric_chunks", "metric_writers"):
        yield q(f"DELETE FROM {table} WHERE project = ? AND id = ?", project, id)
