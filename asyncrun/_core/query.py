"""List queries: filters, limits and opaque keyset cursors, parsed and rendered as pure code.

The same :class:`ListQuery` is rendered to query parameters by the HTTP transport and parsed back
by the server, so the two sides cannot disagree about a filter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import attrs

from .errors import ValidationError
from .metrics import check_key
from .records import Run, State, check_kind, check_label, check_name
from .summary import MAX_HISTORY_PAGE

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_IDS: Final = 1000
MAX_LABELS: Final = 16
_SINGLE: Final = ("kind", "name", "created_after", "created_before", "limit", "cursor")
_MULTI: Final = ("state", "label", "ids")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen
class Cursor:
    """Position after the last run of a page: runs are ordered newest first, then by id."""

    created_us: int
    id: str

    def encode(self) -> str:
        """Render as an opaque URL-safe token."""
        raw = f"{self.created_us}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token made by :meth:`encode`.

        Raises:
            ValidationError: if the token was not made by :meth:`encode`.
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            created, _, id_ = raw.partition(":")
            created_us = int(created)
            if not -(2**63) <= created_us < 2**63:  # a SQLite integer, like every cursor we make
                raise ValueError(created)
            return cls(created_us, check_name("id", id_))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValidationError(
                "cursor is not valid: pass the next_cursor of a previous page unchanged",
                detail={"field": "cursor"},
            ) from None


def to_microseconds(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch (sortable)."""
    # Integer arithmetic on the timedelta: float timestamps lose microseconds far from 1970.
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def cursor_after(run: Run) -> Cursor:
    """The cursor that continues a listing after ``run``."""
    created = run.metadata.created
    assert created is not None
    return Cursor(to_microseconds(created), run.id)


@attrs.frozen
class ListQuery:
    """Filters and paging of a run listing.

    Attributes:
        states: Keep runs in any of these states.
        kind: Keep runs of this kind.
        name: Keep runs with exactly this name.
        labels: Keep runs carrying every one of these labels.
        created_after: Keep runs created at or after this time.
        created_before: Keep runs created before this time.
        ids: Keep only these run ids (many ids in one request).
        limit: Page size, 1..1000.
        cursor: Where the previous page ended.
    """

    states: tuple[State, ...] = ()
    kind: str | None = None
    name: str | None = None
    labels: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    ids: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def to_params(self) -> list[tuple[str, str]]:
        """Render as query parameters (repeated keys for lists)."""
        params: list[tuple[str, str]] = [("state", str(s)) for s in self.states]
        params += [("label", label) for label in self.labels]
        if self.ids:
            params.append(("ids", ",".join(self.ids)))
        for field in ("kind", "name"):
            value = getattr(self, field)
            if value is not None:
                params.append((field, value))
        for field in ("created_after", "created_before"):
            moment = getattr(self, field)
            if moment is not None:
                params.append((field, moment.isoformat()))
        params.append(("limit", str(self.limit)))
        if self.cursor is not None:
            params.append(("cursor", self.cursor.encode()))
        return params

    @classmethod
    def build(
        cls,
        *,
        state: str | Iterable[str] | None = None,
        kind: str | None = None,
        name: str | None = None,
        label: str | Iterable[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        ids: Iterable[str] | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: Cursor | None = None,
    ) -> ListQuery:
        """Validate user-facing filter arguments into a query.

        Raises:
            ValidationError: naming the filter that is wrong and what it accepts.
        """
        try:
            states = tuple(State(s) for s in _as_tuple(state))
        except ValueError:
            raise _bad("state", f"state must be one of {', '.join(State)}") from None
        if kind is not None:
            _check("kind", check_kind, kind)
        labels = _as_tuple(label)
        if len(labels) > MAX_LABELS:
            raise _bad("label", f"filter by at most {MAX_LABELS} labels at once")
        for one in labels:
            _check("label", check_label, one)
        id_tuple = _as_tuple(ids)
        if len(id_tuple) > MAX_IDS:
            raise _bad("ids", f"at most {MAX_IDS} ids per request")
        for one in id_tuple:
            _check("ids", lambda v: check_name("id", v), one)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
        for field, moment in (("created_after", created_after), ("created_before", created_before)):
            if moment is not None and (
                not isinstance(moment, datetime) or moment.utcoffset() is None
            ):
                raise _bad(field, f"{field} must be a timezone-aware datetime")
        return cls(
            states, kind, name, labels, created_after, created_before, id_tuple, limit, cursor
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> ListQuery:
        """Parse query parameters (each key mapped to all its values).

        Raises:
            ValidationError: on an unknown parameter or a value of the wrong form.
        """
        unknown = sorted(set(params) - set(_SINGLE) - set(_MULTI))
        if unknown:
            raise _bad(unknown[0], f"unknown query parameter {unknown[0]!r}")
        single: dict[str, str] = {}
        for key in _SINGLE:
            values = params.get(key, ())
            if len(values) > 1:
                raise _bad(key, f"{key} may be given once")
            if values:
                single[key] = values[0]
        ids = [one for value in params.get("ids", ()) for one in value.split(",") if one]
        try:
            limit = int(single.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}") from None
        times: dict[str, datetime | None] = {}
        for field in ("created_after", "created_before"):
            raw = single.get(field)
            try:
                times[field] = None if raw is None else datetime.fromisoformat(raw)
            except ValueError:
                raise _bad(field, f"{field} must be an ISO 8601 timestamp with offset") from None
        cursor = single.get("cursor")
        return cls.build(
            state=params.get("state", ()),
            kind=single.get("kind"),
            name=single.get("name"),
            label=params.get("label", ()),
            created_after=times["created_after"],
            created_before=times["created_before"],
            ids=ids,
            limit=limit,
            cursor=None if cursor is None else Cursor.decode(cursor),
        )


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, detail={"field": field})


def _check(field: str, check: object, value: object) -> None:
    try:
        check(value)  # type: ignore[operator]
    except ValueError as exc:
        raise _bad(field, str(exc)) from None


@attrs.frozen
class Changes:
    """The answer to a watch: what changed since a sequence number.

    Attributes:
        seq: The newest change sequence; pass it as ``since`` next time.
        runs: Runs written after ``since`` (watched ones, or any of the project when following
            its feed), and every ``fresh`` one; records carry metric summaries, not values.
        missing: Watched or fresh ids that do not exist.
        deleted: Runs of the project deleted after ``since`` (feed only), also those created
            again since (they are in ``runs`` too).
        more: More changes follow ``seq`` (feed only): ask again at once.
    """

    seq: int
    runs: list[Run]
    missing: list[str]
    deleted: list[str] = attrs.Factory(list)
    more: bool = False


MAX_WATCH_IDS: Final = 10_000
MAX_WATCH_SECONDS: Final = 60.0


@attrs.frozen
class WatchQuery:
    """A long-poll for changes among some runs of a project, or in its whole changes feed.

    Attributes:
        ids: Runs watched for a while (reported when written after ``since``); empty when
            following the feed.
        fresh: Runs just added to the watch (reported at once, whatever their sequence).
        since: The ``seq`` of the previous answer (``None``: from now, feed only).
        timeout: Seconds the server may hold the request when nothing changed.
        feed: Follow the project's changes feed: every run written or deleted after
            ``since``, whatever the watcher waits on, so the request names no ids but the
            fresh ones and its cost does not grow with the number of waits.
    """

    ids: tuple[str, ...] = ()
    fresh: tuple[str, ...] = ()
    since: int | None = 0
    timeout: float = 20.0
    feed: bool = False

    def to_body(self) -> dict[str, object]:
        """Render as the JSON body of ``POST .../runs:watch``."""
        body: dict[str, object] = {"fresh": list(self.fresh), "timeout": self.timeout}
        if self.since is not None:
            body["since"] = self.since
        if self.feed:
            body["feed"] = True
        else:
            body["ids"] = list(self.ids)
        return body

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> WatchQuery:
        """Parse a JSON body (or query parameters already split into lists).

        Raises:
            ValidationError: naming the field that is wrong.
        """
        unknown = sorted(set(data) - {"ids", "fresh", "since", "timeout", "feed"})
        if unknown:
            raise _bad(unknown[0], f"unknown field {unknown[0]!r}")
        feed = data.get("feed", False)
        if not isinstance(feed, bool):
            raise _bad("feed", "feed must be true or false")
        lists: dict[str, tuple[str, ...]] = {}
        for field in ("ids", "fresh"):
            value = data.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _bad(field, f"{field} must be a list of run ids")
            for one in value:
                _check(field, lambda v: check_name("id", v), one)
            lists[field] = tuple(value)
        if feed and lists["ids"]:
            raise _bad("ids", "a feed watch names no ids: only the fresh ones")
        if not feed and not lists["ids"] and not lists["fresh"]:
            raise _bad("ids", "watch at least one run id, or follow the feed (feed: true)")
        if len(lists["ids"]) + len(lists["fresh"]) > MAX_WATCH_IDS:
            raise _bad("ids", f"at most {MAX_WATCH_IDS} ids per watch")
        # Left out, a feed starts now; a list of ids is reported from the start.
        raw_since = data.get("since", None if feed else 0)
        since = raw_since if isinstance(raw_since, int) and not isinstance(raw_since, bool) else -1
        if "since" in data and since < 0:
            raise _bad("since", "since must be the non-negative seq of the previous answer")
        timeout = data.get("timeout", 20.0)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 <= timeout <= MAX_WATCH_SECONDS
        ):
            raise _bad("timeout", f"timeout must be 0 to {MAX_WATCH_SECONDS:g} seconds")
        start = None if "since" not in data and feed else since
        return cls(lists["ids"], lists["fresh"], start, float(timeout), feed)

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> WatchQuery:
        """Parse the query parameters of ``GET .../runs:watch?ids=a,b&since=3&timeout=20``.

        Raises:
            ValidationError: naming the parameter that is wrong.
        """
        data: dict[str, object] = {}
        for key, values in params.items():
            if key in ("ids", "fresh"):
                data[key] = [one for value in values for one in value.split(",") if one]
            elif key in ("since", "timeout"):
                try:
                    data[key] = (int if key == "since" else float)(values[-1])
                except ValueError:
                    raise _bad(key, f"{key} must be a number") from None
            elif key == "feed":
                data[key] = values[-1].lower() in ("true", "1", "yes")
            else:
                data[key] = values
        return cls.from_data(data)


@attrs.frozen
class HistoryQuery:
    """One page of a metric key's history: ``GET .../metrics?key=K&offset=O&limit=N``."""

    key: str
    offset: int = 0
    limit: int = MAX_HISTORY_PAGE

    def to_params(self) -> list[tuple[str, str]]:
        """Render as query parameters."""
        return [("key", self.key), ("offset", str(self.offset)), ("limit", str(self.limit))]

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> HistoryQuery:
        """Parse query parameters (each key mapped to all its values).

        Raises:
            ValidationError: on an unknown, missing or repeated parameter or a bad value.
        """
        unknown = sorted(set(params) - {"key", "offset", "limit"})
        if unknown:
            raise _bad(unknown[0], f"unknown query parameter {unknown[0]!r}")
        for field, values in params.items():
            if len(values) > 1:
                raise _bad(field, f"{field} may be given once")
        if "key" not in params:
            raise _bad("key", "key is required: the metric key whose values to read")
        key = params["key"][0]
        try:
            check_key(key)
        except (TypeError, ValueError) as exc:
            raise _bad("key", str(exc)) from None
        numbers = {}
        for field, default, low, high in (
            ("offset", 0, 0, 2**62),
            ("limit", MAX_HISTORY_PAGE, 1, MAX_HISTORY_PAGE),
        ):
            raw = params.get(field, [str(default)])[0]
            try:
                numbers[field] = int(raw)
            except ValueError:
                numbers[field] = low - 1
            if not low <= numbers[field] <= high:
                raise _bad(field, f"{field} must be an integer from {low} to {high}")
        return cls(key, numbers["offset"], numbers["limit"])
