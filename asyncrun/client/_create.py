"""Coalescing of concurrent creates: many ``new_run`` calls, few requests.

A lone create is sent at once, as one request. While a project already has ``max_in_flight``
create requests on the wire, further creates queue up and leave together in one
``runs:batchCreate`` request as soon as a request comes back. So an idle client adds no
latency, and one that creates thousands of runs concurrently spends one round trip per batch
instead of one per run (the batch is one transaction on the server).
"""

from __future__ import annotations

import contextlib
import copy
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import anyio
import attrs
from anyio.abc import TaskGroup

from .._core.errors import AsyncRunError
from .._core.records import Run
from ._transports._base import AsyncTransport

MAX_IN_FLIGHT: Final = 2
"""Create requests one project may have on the wire; more creates wait and batch up."""
MAX_BATCH: Final = 500
"""Most creates per batch request (the server accepts up to 1,000)."""


@attrs.define(eq=False)
class _Pending:
    data: dict[str, Any]
    done: anyio.Event = attrs.Factory(anyio.Event)
    sent: bool = False
    result: Run | None = None
    error: BaseException | None = None


@attrs.define(eq=False)
class _Project:
    in_flight: int = 0
    queue: deque[_Pending] = attrs.Factory(deque)


class CreateBatcher:
    """Creates runs through a transport, batching those that arrive while requests are busy.

    Args:
        transport: Where the runs are created.
        tasks: Returns the client's task group for background sends, ``None`` when the client
            was not entered with ``async with``: then every create is its own request.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        tasks: Callable[[], TaskGroup | None],
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._transport = transport
        self._tasks = tasks
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._projects: dict[str, _Project] = {}

    async def create(self, project: str, data: dict[str, Any]) -> Run:
        """Create one run, alone or as part of a batch.

        Raises:
            AsyncRunError: what the backend said about this run (each run of a batch gets
                its own answer).
        """
        state = self._projects.setdefault(project, _Project())
        idle = state.in_flight < self._max_in_flight and not state.queue
        if idle or self._tasks() is None:
            state.in_flight += 1
            try:
                return await self._transport.create_run(project, data)
            finally:
                state.in_flight -= 1
                self._pump(project, state)
        pending = _Pending(data)
        state.queue.append(pending)
        self._pump(project, state)
        try:
            await pending.done.wait()
        except BaseException:
            if not pending.sent:  # cancelled before it left: it never will
                state.queue.remove(pending)
            raise
        if pending.error is not None:
            # Each waiter raises its own copy: one exception object must not collect the
            # tracebacks of many tasks.
            raise copy.copy(pending.error) from pending.error
        assert pending.result is not None
        return pending.result

    def _pump(self, project: str, state: _Project) -> None:
        tasks = self._tasks()
        while state.queue and state.in_flight < self._max_in_flight:
            batch = [state.queue.popleft() for _ in range(min(self._max_batch, len(state.queue)))]
            for pending in batch:
                pending.sent = True
            with contextlib.suppress(RuntimeError):  # a task group that has ended refuses
                if tasks is not None:
                    # A background task, so a caller cancelled mid-batch cannot strand others.
                    tasks.start_soon(self._send, project, state, batch)
                    state.in_flight += 1
                    continue
            self._fail(batch, RuntimeError("the client was closed before this create was sent"))

    async def _send(self, project: str, state: _Project, batch: list[_Pending]) -> None:
        try:
            results = await self._transport.create_runs(project, [p.data for p in batch])
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, AsyncRunError):
                    pending.error = result
                else:
                    pending.result = result
        except anyio.get_cancelled_exc_class():
            self._fail(batch, RuntimeError("the client was closed while this create was in flight"))
            raise
        except Exception as exc:  # the callers get it; the client's task group must not
            self._fail(batch, exc)
        finally:
            state.in_flight -= 1
            for pending in batch:
                pending.done.set()
            self._pump(project, state)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for pending in batch:
            if pending.result is None and pending.error is None:
                pending.error = error
            pending.done.set()
