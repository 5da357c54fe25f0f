"""Coalescing of concurrent calls: many ``new_run`` or ``run()`` calls, few requests.

A lone call is sent at once, as one request. While a project already has ``max_in_flight``
requests of the same kind on the wire, further calls queue up and leave together in one batch
request (``runs:batchCreate``, ``runs:batchRun``, ...) as soon as a request comes back. So an
idle client adds no latency, and one that creates or starts thousands of runs concurrently
spends one round trip per batch instead of one per run (the batch is one transaction on the
server), and never holds more than ``max_in_flight`` connections per kind of call.
"""

from __future__ import annotations

import contextlib
import copy
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from .._core.errors import AsyncRunError
from .._core.records import Run

MAX_IN_FLIGHT: Final = 2
"""Requests of one kind one project may have on the wire; more calls wait and batch up."""
MAX_BATCH: Final = 500
"""Most calls per batch request (the server accepts up to 1,000)."""

T = TypeVar("T")
One = Callable[[str, T], Awaitable[Run]]
Many = Callable[[str, list[T]], Awaitable[list[Run | AsyncRunError]]]


@attrs.define(eq=False)
class _Pending(Generic[T]):
    item: T
    done: anyio.Event = attrs.Factory(anyio.Event)
    sent: bool = False
    result: Run | None = None
    error: BaseException | None = None


@attrs.define(eq=False)
class _Project(Generic[T]):
    in_flight: int = 0
    queue: deque[_Pending[T]] = attrs.Factory(deque)


class Batcher(Generic[T]):
    """Sends calls of one kind through a transport, batching those that arrive while busy.

    Args:
        one: Sends one call (``project, item``) and returns its run.
        many: Sends a batch and returns, per item, its run or the error refusing it.
        what: What the calls do, for errors ("create", "run", ...).
        tasks: Returns the client's task group for background sends, ``None`` when the client
            was not entered with ``async with``: then every call is its own request.
    """

    def __init__(
        self,
        one: One[T],
        many: Many[T],
        what: str,
        tasks: Callable[[], TaskGroup | None],
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._one = one
        self._many = many
        self._what = what
        self._tasks = tasks
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._projects: dict[str, _Project[T]] = {}

    async def submit(self, project: str, item: T) -> Run:
        """Send one call, alone or as part of a batch.

        Raises:
            AsyncRunError: what the backend said about this call (each call of a batch gets
                its own answer).
        """
        state = self._projects.setdefault(project, _Project())
        idle = state.in_flight < self._max_in_flight and not state.queue
        if idle or self._tasks() is None:
            state.in_flight += 1
            try:
                return await self._one(project, item)
            finally:
                state.in_flight -= 1
                self._pump(project, state)
        pending = _Pending(item)
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

    def _pump(self, project: str, state: _Project[T]) -> None:
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
            self._fail(
                batch, RuntimeError(f"the client was closed before this {self._what} was sent")
            )

    async def _send(self, project: str, state: _Project[T], batch: list[_Pending[T]]) -> None:
        try:
            results = await self._many(project, [p.item for p in batch])
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, AsyncRunError):
                    pending.error = result
                else:
                    pending.result = result
        except anyio.get_cancelled_exc_class():
            closed = f"the client was closed while this {self._what} was in flight"
            self._fail(batch, RuntimeError(closed))
            raise
        except Exception as exc:  # the callers get it; the client's task group must not
            self._fail(batch, exc)
        finally:
            state.in_flight -= 1
            for pending in batch:
                pending.done.set()
            self._pump(project, state)

    @staticmethod
    def _fail(batch: list[_Pending[T]], error: BaseException) -> None:
        for pending in batch:
            if pending.result is None and pending.error is None:
                pending.error = error
            pending.done.set()
