"""Sans-IO SQL: store operations are generators that yield statements and receive their rows.

Every rule of the store (what a write changes, how metrics are chunked, what a listing walks)
is written once, as a generator that yields a :class:`Statement` and gets back its
:class:`Result`. A driver runs it: SQLite's synchronously on the caller's thread (the agent,
the CLI, and the service through :class:`~._aio.AsyncStore`), PostgreSQL's with psycopg's async
connections in the server and its sync ones in the agent. No operation knows which database
it talks to: statements are written in the SQL both understand (``?`` placeholders, ``ON
CONFLICT``, row values, window functions); :func:`to_postgres` rewrites what differs in form.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any, Final, TypeVar

import attrs

T = TypeVar("T")
Row = tuple[Any, ...]


@attrs.frozen
class Statement:
    """One SQL statement and its arguments (``many``: one list of arguments per row)."""

    sql: str
    args: Sequence[Any] = ()
    many: bool = False


@attrs.frozen
class Result:
    """What a statement returned: its rows (all of them) and how many rows it changed."""

    rows: list[Row]
    rowcount: int

    def one(self) -> Row | None:
        """The first row, or ``None``."""
        return self.rows[0] if self.rows else None

    def value(self) -> Any:
        """The first column of the first row (the statement must return one)."""
        return self.rows[0][0]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


Op = Generator[Statement, Result, T]
"""A store operation: yields statements, receives their results, returns its value."""


def q(sql: str, *args: Any) -> Statement:
    """A statement with positional arguments (a shorthand for operations)."""
    return Statement(sql, args)


def many(sql: str, rows: Sequence[Sequence[Any]]) -> Statement:
    """A statement run once per row of ``rows`` (``executemany``)."""
    return Statement(sql, rows, many=True)


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?``: one placeholder per value, for ``IN (...)``."""
    return ",".join("?" * len(values))


_INDEXED_BY: Final = re.compile(r" INDEXED BY \w+")


@functools.lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """A statement in PostgreSQL's form: ``%s`` placeholders, no SQLite index hints.

    SQLite's ``INDEXED BY`` pins a listing to the index that gives its order; PostgreSQL's
    planner picks that index itself from the ``ORDER BY ... LIMIT``. Statements hold no ``%``
    and no ``?`` inside string literals (asserted), so the rewrite is purely textual.
    """
    assert "%" not in sql, sql
    assert "'?'" not in sql, sql
    return _INDEXED_BY.sub("", sql).replace("?", "%s")


def run_sync(op: Op[T], execute: Callable[[Statement], Result]) -> T:
    """Drive ``op`` to its end, each statement run by ``execute`` (a synchronous driver).

    A statement that fails ends the operation with its error (the driver's transaction is
    rolled back around it): no operation handles database errors itself.
    """
    try:
        statement = next(op)
        while True:
            statement = op.send(execute(statement))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()


async def run_async(op: Op[T], execute: Callable[[Statement], Awaitable[Result]]) -> T:
    """Drive ``op`` to its end, each statement run by ``await execute(statement)``."""
    try:
        statement = next(op)
        while True:
            statement = op.send(await execute(statement))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()
