"""Calls from any thread into the event loop of a ``BlockingPortal``, one round trip each."""

from __future__ import annotations

import _thread
import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import CancelledError
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, Generic, TypeVar

import anyio
import sniffio

T = TypeVar("T")
CANCEL_WAIT = 5.0
"""Seconds a Ctrl-C waits for the cancelled call to end in the loop before re-raising."""


class _Call(Generic[T]):
    """One call: what to run, its outcome, and the lock its caller blocks on until it ends.

    The lock is acquired when the call is made and released once, in the loop, when the call
    has ended: a C lock is the cheapest thing a thread can block on and another wake it from
    (a ``concurrent.futures.Future`` waits on a ``threading.Condition``, written in Python, and
    a ``threading.Event`` for the end of a cancelled call was a second one).
    """

    __slots__ = (
        "args", "cancel", "ended", "error", "finished", "fn", "interrupted", "started", "value"
    )  # fmt: skip

    def __init__(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.value: T  # set only on success
        self.error: BaseException | None = None
        self.started = False  # the task has begun (in the loop)
        self.finished = False  # the outcome is set and ``ended`` released (in the loop)
        self.interrupted = False  # Ctrl-C in the caller (set in the caller's thread)
        self.cancel: Callable[[], object] | None = None  # cancels the running task (in the loop)
        self.ended = _thread.allocate_lock()
        self.ended.acquire()


class Hop:
    """Runs coroutine functions in an event loop from other threads, one round trip per call.

    ``BlockingPortal.start_task_soon`` blocks on a first round trip to the loop thread to spawn
    the task, then waits for its result: two thread wake-ups per call. Here the calling thread
    only enqueues a callback with the loop's own non-blocking, thread-safe primitive
    (``loop.call_soon_threadsafe`` on asyncio, ``TrioToken.run_sync_soon`` on Trio) and blocks
    on a lock; in the loop, the callback starts the task in the loop's native task group
    (``asyncio.TaskGroup``, a Trio nursery: an anyio task group costs 10-15 us more per task),
    and the task releases the lock when the call has ended. The task body is backend-neutral
    anyio code, like everything it calls.

    The portal still owns the loop thread: :meth:`serve` runs inside it, in a portal task.
    """

    def __init__(self) -> None:
        self._soon: Callable[..., object] = self._not_serving
        self._spawn: Callable[[_Call[Any]], object] = self._not_serving
        self._cancelled: type[BaseException] = asyncio.CancelledError
        self._thread: int | None = None

    @staticmethod
    def _not_serving(*args: Any) -> None:
        raise RuntimeError("the event loop is not accepting calls")

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[None]:
        """Accept calls while the context is open; enter and exit it in one task of the loop.

        On exit it waits for the calls still running, as a portal does.
        """
        self._thread = threading.get_ident()
        self._cancelled = anyio.get_cancelled_exc_class()
        # A call arriving once the body has ended is refused (it may no longer be spawned
        # into a group that is winding down) rather than left without an answer.
        if sniffio.current_async_library() == "trio":
            import trio  # only a Trio loop needs it (an optional dependency)

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
            async with trio.open_nursery() as nursery:
                self._spawn = lambda call: nursery.start_soon(self._run_in_scope, call)
                try:
                    yield
                finally:
                    self._spawn = self._not_serving
        else:
            # Callbacks run in the loop's context, not in a copy of the calling thread's
            # (whose sniffio variable may name another library).
            self._soon = partial(
                asyncio.get_running_loop().call_soon_threadsafe,
                context=contextvars.copy_context(),
            )
            async with asyncio.TaskGroup() as group:

                def spawn(call: _Call[Any]) -> None:
                    # An asyncio task is cancelled natively (anyio code handles that): no
                    # cancel scope to enter and leave on every call.
                    call.cancel = group.create_task(self._run(call)).cancel

                self._spawn = spawn
                try:
                    yield
                finally:
                    self._spawn = self._not_serving

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the loop and block for its result; its exception propagates.

        Ctrl-C while blocked cancels the task in the loop, waits (up to ``CANCEL_WAIT``) for it
        to end, then re-raises.

        Raises:
            RuntimeError: if called from the loop's own thread (it would wait on itself), or
                once the loop has stopped.
            concurrent.futures.CancelledError: if the loop cancelled the call (shutting down).
        """
        if threading.get_ident() == self._thread:
            raise RuntimeError("This method cannot be called from the event loop thread")
        call: _Call[T] = _Call(fn, args)
        try:
            self._soon(self._start, call)
            call.ended.acquire()
        except KeyboardInterrupt:
            call.interrupted = True
            if not call.finished:
                with suppress(RuntimeError):  # the loop has ended: nothing left to cancel
                    self._soon(self._interrupt, call)
                # Let the cancellation finish before the caller goes on: cleanup right after
                # (closing the generator this call was driving) must not find it still running.
                call.ended.acquire(timeout=CANCEL_WAIT)
            raise
        if call.error is not None:
            error, call.error = call.error, None  # no reference cycle through the traceback
            raise error
        return call.value

    def _start(self, call: _Call[Any]) -> None:
        # In the loop thread. A call refused here must still end, or its caller would block for
        # ever.
        try:
            self._spawn(call)
        except BaseException as exc:
            call.error = exc
            self._end(call)

    @staticmethod
    def _end(call: _Call[Any]) -> None:
        # In the loop thread: the only place that releases the caller, once.
        if not call.finished:
            call.finished = True
            call.ended.release()

    def _interrupt(self, call: _Call[Any]) -> None:
        # In the loop thread, after Ctrl-C in the caller's.
        if call.finished:
            return
        if call.started and call.cancel is not None:
            call.cancel()  # the task ends by itself, then releases the caller
        else:
            self._end(call)  # not begun: the task will see ``interrupted`` and do nothing

    async def _run_in_scope(self, call: _Call[Any]) -> None:
        # Trio: a nursery does not hand back its tasks, so a cancel scope is the handle.
        with anyio.CancelScope() as scope:
            call.cancel = scope.cancel
            await self._run(call)

    async def _run(self, call: _Call[Any]) -> None:
        call.started = True
        try:
            if call.interrupted:
                return  # Ctrl-C came before the task started: do not start the work at all
            call.value = await call.fn(*call.args)
        except self._cancelled:
            call.error = CancelledError()  # Ctrl-C in the caller, or the portal shutting down
            raise
        except BaseException as exc:
            # Every exception goes to the caller: raising it here would tear down the group.
            call.error = exc
        finally:
            self._end(call)
