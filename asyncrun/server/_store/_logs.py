"""Run logs as store operations: lines numbered per run, appended in batches, read in pages.

A run's offsets are contiguous from its oldest kept line to its newest; a resumed run goes
on numbering after its previous executions' lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import orjson

from ..._core import logs as _logs
from ..._core.errors import NotFound
from ..._core.records import LogLine
from . import _execution
from ._execution import Ident
from ._metrics import SequenceGap
from ._sql import Op as Operation
from ._sql import many, q

_MAX_INT: Final = 2**63 - 1

LOG_WRITERS_MIGRATION: Final = (
    # Launchers' numbered log batches (remote executors): each applied once, in order; the
    # last one carries how the job ended (``end_doc``, JSON), which its reconciler records.
    """CREATE TABLE log_writers (
        project TEXT NOT NULL,
        id TEXT NOT NULL,
        writer TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        end_doc BLOB,
        PRIMARY KEY (project, id, writer)
    ) WITHOUT ROWID""",
)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def append_logs(
    lines: Mapping[Ident, Sequence[tuple[str, int, str]]], keep: int
) -> Operation[None]:
    """Append ``(stream, time_us, text)`` lines of executions to their runs' logs.

    Only the newest ``keep`` lines of each run are kept. Lines of executions that no longer
    exist (their run was deleted) are dropped. A run's stored offsets stay contiguous: lines
    are numbered on from the newest, and only the oldest are dropped.
    """
    for ident, batch in lines.items():
        project, id = ident[0], ident[1]
        if not (yield from _execution.exists(ident)):
            continue  # deleted: its lines must not reach a new run with the same id
        yield from _append(project, id, batch, keep)


def _append(
    project: str, id: str, batch: Sequence[tuple[str, int, str]], keep: int
) -> Operation[None]:
    """Number ``batch`` on from the run's newest line; keep only its newest ``keep`` lines."""
    start = (
        yield q(
            "SELECT coalesce(max(line_no), -1) + 1 FROM logs WHERE project = ? AND id = ?",
            project,
            id,
        )
    ).value()
    start = int(start)
    yield many(
        "INSERT INTO logs (project, id, line_no, stream, time_us, text) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (project, id, start + i, stream, time_us, text)
            for i, (stream, time_us, text) in enumerate(batch)
        ],
    )
    end = start + len(batch)
    if end > keep:
        yield q(
            "DELETE FROM logs WHERE project = ? AND id = ? AND line_no < ?",
            project,
            id,
            end - keep,
        )


def append_log_batch(
    project: str,
    id: str,
    writer: str,
    seq: int,
    lines: Sequence[tuple[str, int, str]],
    end: bytes | None,
    keep: int,
) -> Operation[bool]:
    """Append a launcher's numbered batch of lines exactly once (in the caller's write).

    A batch at or below the writer's last number is a retry of one applied: ignored
    (``False``). Its lines get the offsets after the run's newest line, like the agent's;
    only the newest ``keep`` lines are kept. ``end`` (JSON), if given, is kept with the writer
    for the run's reconciler (:func:`job_end`).

    Raises:
        NotFound: if there is no such run.
        SequenceGap: if ``seq`` is not the writer's next number.
    """
    found = yield q("SELECT 1 FROM runs WHERE project = ? AND id = ?", project, id)
    if found.one() is None:
        raise NotFound(
            f"no run {id!r} in project {project!r}", detail={"project": project, "id": id}
        )
    row = (
        yield q(
            "SELECT last_seq FROM log_writers WHERE project = ? AND id = ? AND writer = ?",
            project,
            id,
            writer,
        )
    ).one()
    last = 0 if row is None else int(row[0])
    if seq <= last:
        return False  # a retry of a batch already applied
    if seq != last + 1:
        raise SequenceGap(
            f"log batch {seq} of writer {writer!r} arrived before batch {last + 1}",
            detail={"expected": last + 1, "got": seq},
        )
    if lines:
        yield from _append(project, id, lines, keep)
    yield q(
        "INSERT INTO log_writers (project, id, writer, last_seq, end_doc) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (project, id, writer) DO UPDATE SET last_seq = excluded.last_seq,"
        " end_doc = coalesce(excluded.end_doc, log_writers.end_doc)",
        project,
        id,
        writer,
        seq,
        end,
    )
    return True


def job_end(project: str, id: str, writer: str) -> Operation[bytes | None]:
    """The end a launcher reported (JSON), if its last batch arrived."""
    row = (
        yield q(
            "SELECT end_doc FROM log_writers WHERE project = ? AND id = ? AND writer = ?",
            project,
            id,
            writer,
        )
    ).one()
    return None if row is None or row[0] is None else bytes(row[0])


def log_bounds(project: str, id: str) -> Operation[tuple[int, int]]:
    """``(first, end)``: the offset of a run's oldest stored line and the one after its newest.

    ``(0, 0)`` if it wrote none. Two seeks on the primary key, whatever the log's length;
    offsets in between are contiguous (see :func:`append_logs`).
    """
    row = yield q(
        "SELECT (SELECT min(line_no) FROM logs WHERE project = ? AND id = ?),"
        " (SELECT max(line_no) FROM logs WHERE project = ? AND id = ?)",
        project,
        id,
        project,
        id,
    )
    first, last = row.rows[0]
    return (0, 0) if last is None else (int(first), int(last) + 1)


def read_logs(
    project: str, id: str, offset: int, limit: int, before: int | None
) -> Operation[list[LogLine]]:
    """Up to ``limit`` lines of a run's log from ``offset`` on (and before ``before``).

    The page stops before the line that would take it past ``logs.PAGE_BUDGET`` bytes of
    JSON (but always holds its first line). The database sends only the lines that start
    within the budget counted in characters (a lower bound of their JSON's bytes): a log of
    long lines is never loaded whole; the exact cut is made here.
    """
    envelope = _logs.LINE_ENVELOPE_BYTES
    rows = yield q(
        "SELECT line_no, stream, time_us, text FROM ("
        " SELECT line_no, stream, time_us, text,"
        f" sum(length(text) + {envelope}) OVER (ORDER BY line_no ROWS UNBOUNDED PRECEDING)"
        " - length(text) AS used FROM ("
        "  SELECT line_no, stream, time_us, text FROM logs"
        "  WHERE project = ? AND id = ? AND line_no >= ? AND line_no < ?"
        "  ORDER BY line_no LIMIT ?) AS lines"
        ") AS page WHERE used <= ? ORDER BY line_no",
        project,
        id,
        offset,
        _MAX_INT if before is None else before,
        limit,
        _logs.PAGE_BUDGET,
    )
    page = _logs.take_page(rows, orjson.dumps)  # the text as the JSON of the page
    return [LogLine(no, stream, _from_us(time_us), text) for no, stream, time_us, text in page]
