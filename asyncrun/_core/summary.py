"""Metric summaries: what a key holds, in constant size, so lists and watches stay small.

A run's full metrics can hold millions of values. Records in lists and watches carry, for each
key, a :class:`MetricSummary` (how many values, the last one, the smallest and the largest)
instead of the values; a single run's record carries its full metrics inline when they are at
most :data:`MAX_INLINE_VALUES` values, and its histories are read in pages of at most
:data:`MAX_HISTORY_PAGE` values otherwise. Pure code: the store keeps summaries up to date with
:meth:`MetricSummary.extend` as batches arrive, and the client checks with
:func:`metrics_loaded` whether a record holds every value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import attrs

Number: TypeAlias = int | float

MAX_INLINE_VALUES: Final = 100_000
"""A single run's record carries its full metrics only up to this many values in all."""
MAX_HISTORY_PAGE: Final = 100_000
"""Most values one page of a key's history holds (about 2 MB of JSON)."""


def _bounds(values: Sequence[Number]) -> tuple[Number | None, Number | None]:
    # NaN is left out (as numpy's nanmin does): it has no order, and min() would depend on
    # where it sits. One C-level sum tells whether the fast path is safe.
    with contextlib.suppress(OverflowError):
        if math.isfinite(sum(values)):
            return min(values), max(values)
    ordered = [v for v in values if v == v]
    return (min(ordered), max(ordered)) if ordered else (None, None)


def _lower(a: Number | None, b: Number | None) -> Number | None:
    return b if a is None else a if b is None else min(a, b)


def _higher(a: Number | None, b: Number | None) -> Number | None:
    return b if a is None else a if b is None else max(a, b)


@attrs.frozen
class MetricSummary:
    """One metric key at a glance.

    Attributes:
        count: How many values the key holds (1 for a single number).
        last: The newest value (``None`` for an empty list).
        min: The smallest value, NaN left out (``None`` if there is none).
        max: The largest value, NaN left out (``None`` if there is none).
        single: The key holds a single number rather than a list.
    """

    count: int
    last: Number | None
    min: Number | None
    max: Number | None
    single: bool = False

    @classmethod
    def of(cls, values: Sequence[Number], *, single: bool = False) -> MetricSummary:
        """The summary of a list of values (or of one single value, with ``single``)."""
        low, high = _bounds(values) if values else (None, None)
        return cls(len(values), values[-1] if values else None, low, high, single)

    def extend(self, values: Sequence[Number]) -> MetricSummary:
        """The summary once ``values`` are appended to the key's list."""
        if not values:
            return self
        low, high = _bounds(values)
        return MetricSummary(
            self.count + len(values),
            values[-1],
            _lower(self.min, low),
            _higher(self.max, high),
        )


def summary_of(value: Number | list[Number]) -> MetricSummary:
    """The summary of a key's value in a full metrics dict."""
    if isinstance(value, list):
        return MetricSummary.of(value)
    return MetricSummary.of([value], single=True)


def summarize(metrics: Mapping[str, Number | list[Number]]) -> dict[str, MetricSummary]:
    """The summary of every key of a full metrics dict, keys in order (as the store reads)."""
    return {key: summary_of(metrics[key]) for key in sorted(metrics)}


def metrics_loaded(metrics: Mapping[str, Any], summaries: Mapping[str, MetricSummary]) -> bool:
    """Whether ``metrics`` holds every key the summaries describe (the record is complete)."""
    return summaries.keys() <= metrics.keys()


def inline_count(summaries: Mapping[str, MetricSummary]) -> int:
    """How many values a record with these summaries carries when its metrics are inline."""
    return sum(summary.count for summary in summaries.values())
