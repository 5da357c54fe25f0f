"""What the commands show of a run, as pure functions of its record: durations, executions,
what ran, metric summaries, and text cut to a width. No I/O: the commands print them."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from .. import State, Transition

ELLIPSIS = "…"


def _oldest_first(transitions: Iterable[Transition]) -> list[Transition]:
    return sorted(transitions, key=lambda t: t.time)


def execution_starts(transitions: Iterable[Transition]) -> list[datetime]:
    """When each execution of the run began (each move into RUNNING), oldest first."""
    return [t.time for t in _oldest_first(transitions) if t.state is State.RUNNING]


def run_duration(transitions: Iterable[Transition], now: datetime) -> timedelta | None:
    """Time spent RUNNING, over every execution (``now`` ends one still running).

    Returns:
        ``None`` if the run never ran.
    """
    total: timedelta | None = None
    started: datetime | None = None
    for change in _oldest_first(transitions):
        if started is not None:
            total = (total or timedelta()) + (change.time - started)
            started = None
        if change.state is State.RUNNING:
            started = change.time
    if started is not None:
        total = (total or timedelta()) + max(now - started, timedelta())
    return total


def format_duration(value: timedelta | None) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h07m``, ``3d04h``; ``-`` for ``None``."""
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_age(moment: datetime | None, now: datetime) -> str:
    """How long ago, kubectl style: ``45s``, ``12m``, ``5h``, ``3d``; ``-`` if unknown."""
    if moment is None:
        return "-"
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def what_ran(kind: str, spec: Mapping[str, Any]) -> str:
    """What a run executes, in one line: the command of a command+job, the handler of a
    python+job (with its parameters), else the kind."""
    command = spec.get("command")
    if isinstance(command, list) and command:
        return shlex.join(str(word) for word in command)
    handler = spec.get("handler")
    if isinstance(handler, str):
        parameters = spec.get("parameters")
        if isinstance(parameters, Mapping) and parameters:
            shown = " ".join(f"{key}={value}" for key, value in parameters.items())
            return f"{handler} {shown}"
        return handler
    return kind


def truncate(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis if longer."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""
