"""``asyncrun wait ID...``: wait for many runs, with a live count of runs per state.

Each run is waited for with ``Run.wait()`` of the sync client, from a pool of threads: every
wait of the client shares one long-poll per project, so the server sees one request per
change however many runs are waited for. On a terminal, a live display (on stderr) shows how
many runs are in each state; it reads the states of the unfinished runs with one list request
per second (per 1,000 runs), for display only. At the end a table of counts per state goes to
stdout, followed by the runs that did not complete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .. import AsyncRunError, Client, Run, State, WaitTimeout
from .._core.query import MAX_IDS
from .._core.states import TERMINAL
from ._output import STATE_ORDER, STATE_STYLES, one_line, state_text, table

MAX_THREADS = 64
"""Runs waited for at once; the others queue (a finished run takes one round trip)."""
REFRESH_SECONDS = 1.0
"""How often the live display reads the states of the unfinished runs."""
LISTED_FAILURES = 20
"""Runs that did not complete listed under the summary (the rest are counted)."""


@dataclass
class Outcome:
    """How a wait for several runs ended."""

    states: dict[str, State]
    """The last state seen of every run, by id."""
    messages: dict[str, str]
    """The status message of each run that has one."""
    timed_out: list[str]
    """Ids of the runs still unfinished when the timeout passed."""

    def counts(self) -> Counter[State]:
        """Runs per state."""
        return Counter(self.states.values())

    @property
    def all_completed(self) -> bool:
        """Whether every run ended COMPLETED."""
        return all(state is State.COMPLETED for state in self.states.values())


def _chunks(ids: Sequence[str], size: int = MAX_IDS) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def fetch_runs(client: Client, project: str, ids: Sequence[str]) -> dict[str, Run]:
    """Read the runs ``ids`` with one list request per 1,000 of them (missing ones left out)."""
    found: dict[str, Run] = {}
    for chunk in _chunks(ids):
        for run in client.list_runs(project, ids=chunk, page_size=len(chunk)):
            found[run.id] = run
    return found


def _read_again(client: Client, runs: Sequence[Run]) -> list[Run]:
    """The runs read again (those still there), one list request per project and 1,000."""
    by_project: dict[str, list[str]] = {}
    for run in runs:
        by_project.setdefault(run.project, []).append(run.id)
    return [
        run
        for project, ids in by_project.items()
        for run in fetch_runs(client, project, ids).values()
    ]


def count_line(counts: Mapping[State, int]) -> Text:
    """``RUNNING 3  COMPLETED 45  ERROR 2``: the states that have runs, in lifecycle order."""
    line = Text()
    for state in STATE_ORDER:
        if counts.get(state):
            if line:
                line.append("  ")
            line.append(str(state), style=STATE_STYLES[state])
            line.append(f" {counts[state]}")
    return line


def progress_view(counts: Mapping[State, int], total: int, elapsed: float) -> RenderableType:
    """The live display: a bar of finished runs out of ``total`` and the count per state."""
    finished = sum(n for state, n in counts.items() if state in TERMINAL)
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        Spinner("dots", style="cyan"),
        Text(f"waiting for {total} runs"),
        ProgressBar(total=max(total, 1), completed=finished, width=30),
        Text(f"{finished}/{total} finished"),
        Text(_clock(elapsed), style="dim"),
    )
    return Group(grid, count_line(counts))


def _clock(elapsed: float) -> str:
    return f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}"


def one_run_view(
    run_id: str, state: State, message: str | None, elapsed: float, doing: str = "waiting for"
) -> RenderableType:
    """The live line of a wait for one run: ``⠋ waiting for run ID  RUNNING  message  0:42``."""
    grid = Table.grid(padding=(0, 1))
    line = Text(f"{doing} run {run_id}  ")
    line.append_text(state_text(state))
    if message and message.casefold() != state.casefold():
        line.append(f"  {one_line(message)}", style="dim")
    grid.add_row(Spinner("dots", style="cyan"), line, Text(_clock(elapsed), style="dim"))
    return grid


View = Callable[[Mapping[str, State], Mapping[str, str], float], RenderableType]
"""A live display: from the states and messages of the runs, and the seconds waited."""


def many_runs_view(
    states: Mapping[str, State], messages: Mapping[str, str], elapsed: float
) -> RenderableType:
    """The live display of a wait for several runs (see :func:`progress_view`)."""
    return progress_view(Counter(states.values()), len(states), elapsed)


def summary_view(outcome: Outcome) -> RenderableType:
    """The final table: runs per state (lifecycle order) and the total, then the failures."""
    counts = outcome.counts()
    total = sum(counts.values())
    per_state = table("STATE", "RUNS", footer=True)
    per_state.columns[0].footer = "total"
    per_state.columns[1].footer = str(total)
    per_state.columns[1].justify = "right"
    for state in STATE_ORDER:
        if counts.get(state):
            per_state.add_row(state_text(state), str(counts[state]))
    parts: list[RenderableType] = [per_state]
    failed = [i for i, state in outcome.states.items() if state is not State.COMPLETED]
    if failed:
        runs = table("ID", "STATE", "MESSAGE")
        for run_id in failed[:LISTED_FAILURES]:
            message = outcome.messages.get(run_id, "")
            if run_id in outcome.timed_out:
                message = "still waiting when the timeout passed"
            runs.add_row(run_id, state_text(outcome.states[run_id]), one_line(message))
        parts += [Text(""), runs]
        if len(failed) > LISTED_FAILURES:
            parts.append(Text(f"... and {len(failed) - LISTED_FAILURES} more", style="dim"))
    return Group(*parts)


def _wait_one(run: Run, deadline: float | None) -> bool:
    """Wait for one run; ``False`` if the deadline passed first."""
    try:
        run.wait(log_info=False, timeout=None if deadline is None else deadline - time.monotonic())
    except WaitTimeout:
        return False
    return True


def wait_many(
    client: Client,
    runs: Mapping[str, Run],
    timeout: float | None,
    live_console: Console | None,
    view: View = many_runs_view,
) -> Outcome:
    """Wait for every run of ``runs`` (read beforehand), until all are terminal or timeout.

    Args:
        client: The client the runs belong to.
        runs: The runs, by the name the outcome gives them (their id, say).
        timeout: Seconds to wait at most, for all of them together.
        live_console: The console of the live display, or ``None`` for no display.
        view: What the live display shows.

    Returns:
        The last state of each run, and which did not finish in time.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    states = {run_id: run.status.state for run_id, run in runs.items()}
    messages = {i: r.status.message for i, r in runs.items() if r.status.message}
    pending = [i for i, state in states.items() if state not in TERMINAL]
    timed_out: list[str] = []
    if not pending:
        return Outcome(states, messages, timed_out)

    names = {(run.project, run.id): name for name, run in runs.items()}

    def note_as(name: str, run: Run) -> None:
        states[name] = run.status.state
        if run.status.message:
            messages[name] = run.status.message

    def note(run: Run) -> None:
        note_as(names[run.project, run.id], run)

    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(len(pending), MAX_THREADS), thread_name_prefix="asyncrun-wait"
    )
    futures = {pool.submit(_wait_one, runs[i], deadline): i for i in pending}
    live = None
    if live_console is not None:
        live = Live(
            view(states, messages, 0.0),
            console=live_console,
            transient=True,
            refresh_per_second=8,
        )
        live.start()
    try:
        remaining = set(futures)
        last_refresh = time.monotonic()
        while remaining:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            step: float | None = 0.25 if live is not None else None
            if deadline is not None:
                step = deadline - now if step is None else min(step, deadline - now)
            done, remaining = concurrent.futures.wait(
                remaining, timeout=step, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                run_id = futures[future]
                if future.result():
                    note(runs[run_id])
                else:
                    timed_out.append(run_id)
            if live is not None:
                if time.monotonic() - last_refresh >= REFRESH_SECONDS:
                    unfinished = [runs[futures[f]] for f in remaining]
                    with contextlib.suppress(AsyncRunError):  # for display only: the waits decide
                        for run in _read_again(client, unfinished):
                            note(run)
                    last_refresh = time.monotonic()
                live.update(view(states, messages, time.monotonic() - started))
        for future in remaining:
            if future.done() and future.result():
                note(runs[futures[future]])
            else:
                timed_out.append(futures[future])
    finally:
        if live is not None:
            live.stop()
        # Queued waits are dropped; running ones end at the deadline (or when the client
        # closes, on Ctrl-C), so this never blocks for long.
        pool.shutdown(wait=False, cancel_futures=True)
    return Outcome(states, messages, timed_out)
