from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import anyio
import attrs

from .._core.errors import AsyncRunError, TransportError
from .._core.polling import Backoff
from .._core.query import MAX_WATCH_IDS, WatchQuery
from .._core.records import Run, State, Transition
from .._core.states import TERMINAL
from ._random import jitter
from ._transports._base import AsyncTransport

log = logging.getLogger("asyncrun")

_BACKOFF = Backoff()
HOLD = 20.0
"""Seconds the server may hold a watch request when nothing changes."""
TICK = 0.02
"""Shortest time between two watch requests of one project: changes arriving faster than this
are reported together, so the request rate depends on time, never on the number of waits."""


@attrs.define(eq=False)
class _Waiter:
    done: anyio.Event = attrs.Factory(anyio.Event)
    run: Run | None = None
    deleted: bool = False
    error: BaseException | None = None
    log_info: bool = False
    last_state: State | None = None


class Watcher:
    """One poller per project for every ``wait()`` of a client.

    The poller follows the project's changes feed: each request carries the sequence number of
    the previous answer and the ids of waits added since (read whole, once); the server holds
    it until something in the project changes (long-poll) and answers with what changed. The
    waits pick their runs out of it. So the cost of waiting follows the rate of changes, not
    the number of waits: 10,000 waits send no ids after their first request, and a wait wakes
    within milliseconds of its run's change.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        spawn: Callable[[Callable[[str], Coroutine[Any, Any, None]], str], None],
        *,
        hold: float = HOLD,
        tick: float = TICK,
        backoff: Backoff = _BACKOFF,
    ) -> None:
        self._tick = tick
        self._transport = transport
        self._spawn = spawn
        self._hold = hold
        self._backoff = backoff
        self._waiters: dict[str, dict[str, list[_Waiter]]] = {}
        self._fresh: dict[str, set[str]] = {}
        self._polls: dict[str, anyio.CancelScope] = {}

    async def wait(self, project: str, id: str, *, log_info: bool) -> tuple[Run | None, bool]:
        """Block until run ``id`` is terminal or deleted.

        Returns:
            The terminal run (``None`` if it was deleted) and whether it was deleted.
        """
        waiter = _Waiter(log_info=log_info)
        by_id = self._waiters.setdefault(project, {})
        new_id = id not in by_id
        by_id.setdefault(id, []).append(waiter)
        if new_id:
            self._fresh.setdefault(project, set()).add(id)
        if len(by_id) == 1 and new_id and project not in self._polls:
            self._polls[project] = anyio.CancelScope()
            self._spawn(self._loop, project)
        elif new_id and project in self._polls:
            self._polls[project].cancel()  # re-issue the long-poll with the new id in it
        try:
            await waiter.done.wait()
        finally:
            waiters = by_id.get(id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                by_id.pop(id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.run, waiter.deleted

    def close(self, error: BaseException) -> None:
        """Wake every waiter with ``error`` (the client is closing: nobody will poll)."""
        for by_id in self._waiters.values():
            self._fail(by_id, error)

    @staticmethod
    def _fail(by_id: dict[str, list[_Waiter]], error: BaseException) -> None:
        for waiters in by_id.values():
            for waiter in waiters:
                waiter.error = error
                waiter.done.set()
        by_id.clear()

    async def _loop(self, project: str) -> None:
        by_id = self._waiters[project]
        since: int | None = None  # the feed starts now; fresh ids are read whole
        attempt = 0
        try:
            while by_id:
                started = anyio.current_time()
                fresh = list(self._fresh.pop(project, set()) & by_id.keys())
                # At most MAX_WATCH_IDS per request; ids beyond wait for the next one.
                if len(fresh) > MAX_WATCH_IDS:
                    self._fresh.setdefault(project, set()).update(fresh[MAX_WATCH_IDS:])
                    fresh = fresh[:MAX_WATCH_IDS]
                query = WatchQuery(fresh=tuple(fresh), since=since, timeout=self._hold, feed=True)
                changes = None
                # A fresh scope per request: a new wait cancels the one in flight (see wait()).
                scope = self._polls[project] = anyio.CancelScope()
                with scope:
                    try:
                        changes = await self._transport.watch(project, query)
                    except TransportError as exc:
                        delay = self._backoff.delay(attempt, jitter(), exc.retry_after)
                        attempt += 1
                        log.warning("watching runs failed (%s); retrying in %.2fs", exc, delay)
                        await anyio.sleep(delay)
                    except AsyncRunError as exc:
                        # Not retryable (auth, validation): every wait of the project hears it.
                        self._fail(by_id, exc)
                        return
                if changes is None or scope.cancel_called:
                    self._fresh.setdefault(project, set()).update(fresh)
                    continue
                attempt = 0
                since = changes.seq
                # A deletion ends the waits that knew the run before it; a wait added in this
                # request got the run's newest record (created again, perhaps) instead.
                deleted = [id_ for id_ in changes.deleted if id_ not in fresh]
                for gone in (*deleted, *changes.missing):
                    for waiter in by_id.pop(gone, []):
                        waiter.deleted = True
                        waiter.done.set()
                # The feed brings every change of the project: keep those waited on.
                for run in changes.runs:
                    waiters = by_id.get(run.id)
                    if waiters:
                        self._dispatch(waiters, run)
                        if run.status.state in TERMINAL:
                            by_id.pop(run.id, None)
                if not changes.more:
                    await anyio.sleep(max(0.0, started + self._tick - anyio.current_time()))
        finally:
            self._polls.pop(project, None)
            if not by_id:
                self._waiters.pop(project, None)

    @staticmethod
    def _dispatch(waiters: list[_Waiter], run: Run) -> None:
        state = run.status.state
        for waiter in waiters:
            if waiter.log_info and state is not waiter.last_state:
                message = f": {run.status.message}" if run.status.message else ""
                log.info("run %s/%s is %s%s", run.project, run.id, state, message)
            waiter.last_state = state
            if state in TERMINAL:
                waiter.run = run
                waiter.done.set()


def mark_deleted(run: Run, now: datetime) -> Run:
    """A copy of ``run`` whose state says it was deleted while waited for."""
    transitions = [Transition(State.DELETED, now, "deleted"), *run.status.transitions]
    status = attrs.evolve(
        run.status, state=State.DELETED, message="deleted", transitions=transitions
    )
    return attrs.evolve(run, status=status)
