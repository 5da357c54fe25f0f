"""Terminal output: consoles that colour only a TTY, tables, and the formats of values.

Colour and styles are rich's decision: on when the stream is a terminal, off when it is not,
colour off when ``NO_COLOR`` is set (``FORCE_COLOR`` forces it on). Off a terminal the width
is unbounded, so a table row stays one line for ``grep`` and ``awk``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import State

UNBOUNDED_WIDTH = 10_000
"""Console width off a terminal: no wrapping, no truncation."""

STATE_STYLES: Mapping[State, str] = {
    State.CREATED: "dim",
    State.BUILT: "blue",
    State.READY: "blue",
    State.PENDING: "cyan",
    State.RUNNING: "yellow",
    State.COMPLETED: "green",
    State.ERROR: "bold red",
    State.STOP: "magenta",
    State.STOPPED: "magenta",
    State.DELETING: "dim",
    State.DELETED: "dim",
}

STATE_ORDER: tuple[State, ...] = (
    State.CREATED,
    State.BUILT,
    State.READY,
    State.PENDING,
    State.RUNNING,
    State.STOP,
    State.COMPLETED,
    State.ERROR,
    State.STOPPED,
    State.DELETING,
    State.DELETED,
)
"""States in the order a run goes through them, the terminal ones last."""


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that colours a terminal only, never wraps a pipe."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=UNBOUNDED_WIDTH)
    return console


class Consoles:
    """The two consoles of an invocation, made on first use."""

    def __init__(self) -> None:
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        """The console on stdout: results."""
        if self._out is None:
            self._out = make_console()
        return self._out

    @property
    def err(self) -> Console:
        """The console on stderr: progress, notes, final states."""
        if self._err is None:
            self._err = make_console(stderr=True)
        return self._err


def one_line(message: str) -> str:
    """A message on one line: its lines joined with spaces, blank ones dropped."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def state_text(state: State | str) -> Text:
    """A state name, coloured on a terminal."""
    try:
        style = STATE_STYLES[State(state)]
    except ValueError:
        style = ""
    return Text(str(state), style=style)


def table(*columns: str, footer: bool = False) -> Table:
    """A plain table: a header row, a rule under it, no borders (rows stay greppable)."""
    result = Table(
        box=box.SIMPLE if footer else box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        show_footer=footer,
        header_style="bold",
    )
    for name in columns:
        result.add_column(name, overflow="fold")
    return result


def local_time(moment: datetime | None) -> str:
    """A time in the local zone, to the second (``-`` if unknown)."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def number(value: float) -> str:
    """A metric value for a table: an int in full, a float to 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def finite(values: Iterable[float]) -> list[float]:
    """The finite values (NaN and infinities dropped)."""
    return [v for v in values if not (isinstance(v, float) and not math.isfinite(v))]


def write_json(data: Any) -> None:
    """Print data as indented JSON on stdout (NaN and infinities as the strings asyncrun uses)."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
