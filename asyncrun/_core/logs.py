"""Reading a run's log: pages bounded by lines and by bytes, tails, and their query parameters.

Pure code shared by the store (which stops reading once a page is full), the service, the HTTP
app and transport (which render and parse the same :class:`LogQuery`) and the client.

**Bytes.** A page of lines, and every batch of a followed stream, holds at most
:data:`MAX_PAGE_BYTES` of JSON. The cost of a line is its text as a JSON string (escapes
included) plus :data:`LINE_ENVELOPE_BYTES` for its other fields; a page stops before the line
that would cross :data:`PAGE_BUDGET`. A page always carries its first line, so paging never
stalls, but no stored line comes near the limit: the agent cuts lines at
:data:`MAX_LINE_BYTES` of UTF-8 (at a character boundary), which is at most 384 KiB once
undecodable bytes are replaced and control characters escaped.

**Offsets.** A run's stored lines have contiguous offsets: each batch is appended after the
last line, and only the oldest lines are ever dropped (``--max-log-lines``). So the end of the
log (the offset its next line will get) and the start of its last ``N`` lines are found from
the first and last offsets alone, whatever the log's length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from .errors import ValidationError
from .records import LogLine

MAX_LINE_BYTES: Final = 64 * 1024
"""A longer line is stored cut into pieces of at most this many bytes of UTF-8."""
MAX_PAGE_BYTES: Final = 1024 * 1024
"""Bytes of JSON one log page (or one streamed batch) holds at most."""
PAGE_ENVELOPE_BYTES: Final = 128
"""What a page's JSON holds besides its lines: ``{"lines":[...],"next_offset":..}``."""
PAGE_BUDGET: Final = MAX_PAGE_BYTES - PAGE_ENVELOPE_BYTES
"""Bytes the lines of one page may cost together."""
LINE_ENVELOPE_BYTES: Final = 100
"""A line's JSON besides its text: offset (up to 19 digits), stream, time, keys, separator."""
DEFAULT_LIMIT: Final = 1000
"""Lines of a page when the request names no limit (and no tail)."""
MAX_LIMIT: Final = 10_000
"""Most lines one page may hold (its bytes are bounded too)."""
MAX_OFFSET: Final = 2**62
_PARAMS: Final = ("offset", "limit", "tail", "follow")


Row = tuple[int, str, int, str]
"""A stored line: ``(offset, stream, time_us, text)``."""


def take_page(rows: Iterable[Row], encode: Callable[[str], bytes]) -> list[Row]:
    """The rows of one page: in order, up to the one that would take it past the budget.

    A row costs its text as ``encode`` renders it (a JSON string: escapes included) plus
    :data:`LINE_ENVELOPE_BYTES`. The first row is always taken, so paging never stalls. Rows
    are consumed one by one: pass a cursor and the rest is never read.
    """
    page: list[Row] = []
    used = 0
    for row in rows:
        used += len(encode(row[3])) + LINE_ENVELOPE_BYTES
        if used > PAGE_BUDGET and page:
            break
        page.append(row)
    return page


def tail_start(first: int, end: int, tail: int) -> int:
    """Offset of the first of the last ``tail`` lines of a log holding ``first`` to ``end - 1``."""
    return max(first, end - tail)


@attrs.frozen
class LogPage:
    """One page of a run's log.

    Attributes:
        lines: The lines, in order.
        next_offset: Where the next page starts (the offset after the last line).
        end_offset: The offset the run's next line will get, when the page was read: the
            number of lines it has ever written (a resumed run continues after them).
    """

    lines: list[LogLine]
    next_offset: int
    end_offset: int


@attrs.frozen
class LogQuery:
    """What to read of a run's log: from ``offset`` or its last ``tail`` lines; or follow it.

    Attributes:
        offset: First line to read.
        limit: Most lines in the page (``None``: the default, or :data:`MAX_LIMIT` with a tail).
        tail: Start this many lines before the end instead of at ``offset`` (0: no line, only
            the end offset).
        follow: Stream lines as they are written, until the run is terminal.
    """

    offset: int = 0
    limit: int | None = None
    tail: int | None = None
    follow: bool = False

    @property
    def page_limit(self) -> int:
        """Lines of the page: what was asked, else the default (all of a tail, up to the max)."""
        if self.limit is not None:
            return self.limit
        return DEFAULT_LIMIT if self.tail is None else MAX_LIMIT

    def to_params(self) -> list[tuple[str, str]]:
        """Render as the query parameters of ``GET .../logs``."""
        params = [("offset", str(self.offset))] if self.offset else []
        for field in ("limit", "tail"):
            value = getattr(self, field)
            if value is not None:
                params.append((field, str(value)))
        if self.follow:
            params.append(("follow", "true"))
        return params

    @classmethod
    def build(
        cls,
        *,
        offset: int = 0,
        limit: int | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> LogQuery:
        """Validate the parameters of one request.

        Raises:
            ValidationError: naming the parameter that is wrong and what it accepts.
        """
        _check_read(offset, tail, limit, low_limit=1, high=MAX_LIMIT, high_tail=MAX_OFFSET)
        return cls(offset, limit, tail, follow)

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> LogQuery:
        """Parse query parameters (each key mapped to all its values).

        Raises:
            ValidationError: on an unknown or repeated parameter or a value of the wrong form.
        """
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise _bad(unknown[0], f"unknown query parameter {unknown[0]!r}")
        single: dict[str, str] = {}
        for key, values in params.items():
            if len(values) > 1:
                raise _bad(key, f"{key} may be given once")
            single[key] = values[0]
        numbers: dict[str, int | None] = {}
        for field, low, high in (
            ("offset", 0, MAX_OFFSET),
            ("limit", 1, MAX_LIMIT),
            ("tail", 0, MAX_OFFSET),
        ):
            raw = single.get(field)
            try:
                numbers[field] = None if raw is None else int(raw)
            except ValueError:
                raise _bad(field, f"{field} must be an integer from {low} to {high}") from None
        follow = single.get("follow", "false").lower()
        if follow not in ("true", "1", "yes", "false", "0", "no"):
            raise _bad("follow", "follow must be true or false")
        return cls.build(
            offset=numbers["offset"] or 0,
            limit=numbers["limit"],
            tail=numbers["tail"],
            follow=follow in ("true", "1", "yes"),
        )


def check_read(offset: int, tail: int | None, limit: int | None) -> None:
    """Validate what a caller asks of ``logs()``: ``limit`` there bounds the lines in all.

    Raises:
        ValidationError: naming the argument that is wrong and what it accepts.
    """
    _check_read(offset, tail, limit, low_limit=0, high=None, high_tail=None)


def _check_read(
    offset: int,
    tail: int | None,
    limit: int | None,
    *,
    low_limit: int,
    high: int | None,
    high_tail: int | None,
) -> None:
    _check_int("offset", offset, 0, MAX_OFFSET)
    if limit is not None:
        _check_int("limit", limit, low_limit, high)
    if tail is not None:
        _check_int("tail", tail, 0, high_tail)
        if offset:
            raise _bad("tail", "pass offset or tail, not both")


def _check_int(field: str, value: object, low: int, high: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        upper = f" to {high}" if high is not None else " or more"
        raise _bad(field, f"{field} must be an integer from {low}{upper}")


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, detail={"field": field})
