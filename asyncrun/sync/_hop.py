"""Calls from any thread into the event loop of a ``BlockingPortal``, one round trip each."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, TypeVar

import anyio
import sniffio

T = TypeVar("T")
CANCEL_WAIT = 5.0
"""Seconds a Ctrl-C waits for the cancelled call to end in the loop before re-raising."""


class Hop:
    """Runs coroutine functions in an event loop from other threads, one round trip per call.

    ``BlockingPortal.start_task_soon`` blocks on a first round trip to the loop thread to spawn
    the task, then waits for its result: two thread wake-ups per call. Here the calling thread
    only enqueues a callback with the loop's own non-blocking, thread-safe primitive
    (``loop.call_soon_threadsafe`` on asyncio, ``TrioToken.run_sync_soon`` on Trio); in the
    loop, the callback starts the task in the loop's native task group (``asyncio.TaskGroup``,
    a Trio nursery: an anyio task group costs 10-15 us more per task), and the task completes
    the ``concurrent.futures.Future`` the caller waits on. The task body is backend-neutral
    anyio code, like everything it calls.

    The portal still owns the loop thread: :meth:`serve` runs inside it, in a portal task.
    """

    def __init__(self) -> None:
        self._soon: Callable[..., object] = self._not_serving
        self._spawn: Callable[..., object] = self._not_serving
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
        # A call arriving once the body has ended is refused (it may no longer be spawned
        # into a group that is winding down) rather than left without an answer.
        if sniffio.current_async_library() == "trio":
            import trio  # only a Trio loop needs it (an optional dependency)

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
            async with trio.open_nursery() as nursery:
                self._spawn = lambda *call: nursery.start_soon(self._run, *call)
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
                self._spawn = lambda *call: group.create_task(self._run(*call))
                try:
                    yield
                finally:
                    self._spawn = self._not_serving

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the loop and block for its result; its exception propagates.

        Ctrl-C while blocked cancels the task in the loop, then re-raises.

        Raises:
            RuntimeError: if called from the loop's own thread (it would wait on itself), or
                once the loop has stopped.
        """
        if threading.get_ident() == self._thread:
            raise RuntimeError("This method cannot be called from the event loop thread")
        future: Future[T] = Future()
        ended = threading.Event()
        try:
            self._soon(self._start, future, fn, args, ended)
            return future.result()
        except KeyboardInterrupt:
            future.cancel()  # the task's done-callback cancels it in the loop
            # Let the cancellation finish before the caller goes on: cleanup right after
            # (closing the generator this call was driving) must not find it still running.
            ended.wait(CANCEL_WAIT)
            raise

    def _start(
        self,
        future: Future[T],
        fn: Callable[..., Awaitable[T]],
        args: Any,
        ended: threading.Event,
    ) -> None:
        # In the loop thread. A call refused here must still complete its future, or its
        # caller would block for ever.
        try:
            self._spawn(future, fn, args, ended)
        except BaseException as exc:
            ended.set()
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)

    async def _run(
        self,
        future: Future[T],
        fn: Callable[..., Awaitable[T]],
        args: Any,
        ended: threading.Event,
    ) -> None:
        try:
            await self._body(future, fn, args)
        finally:
            ended.set()

    async def _body(self, future: Future[T], fn: Callable[..., Awaitable[T]], args: Any) -> None:
        if future.cancelled():
            return  # Ctrl-C came before the task started: do not start the work at all
        with anyio.CancelScope() as scope:
            future.add_done_callback(partial(self._cancel, scope))
            try:
                value = await fn(*args)
            except anyio.get_cancelled_exc_class():
                future.cancel()  # Ctrl-C in the caller, or the portal shutting down
                raise
            except BaseException as exc:
                # Every exception goes to the caller: raising it here would tear down the group.
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)
            else:
                if future.set_running_or_notify_cancel():
                    future.set_result(value)

    def _cancel(self, scope: anyio.CancelScope, future: Future[Any]) -> None:
        # A done-callback: runs in the caller's thread on Ctrl-C, in the loop's otherwise.
        if future.cancelled():
            with suppress(RuntimeError):  # the loop has ended: nothing left to cancel
                self._soon(scope.cancel)
