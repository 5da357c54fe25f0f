"""Client side of metrics: an I/O-free, thread-safe buffer and the flusher that drains it.

``log_metric`` appends a tuple to a list under a lock: no await, no I/O, no thread hop. The
flusher (a background task of the client) turns the buffer into numbered batches per run and
sends them in order; a batch keeps its number and contents until the server acknowledges it,
so a retry is never applied twice and nothing acknowledged is ever resent differently.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Final

import anyio

from .._core.errors import AsyncRunError, TransportError
from .._core.metrics import Batch, Op, Value, compact_per_run, size, split
from .._core.polling import Backoff
from ._random import jitter
from ._transports._base import AsyncTransport

log = logging.getLogger("asyncrun")

RunKey = tuple[str, str]
TICK: Final = 0.02
"""Seconds between two looks of the background flusher at the buffer."""
_BACKOFF: Final = Backoff(base=0.05, factor=2.0, cap=5.0, jitter=0.5)


class MetricBuffer:
    """Operations logged but not yet formed into batches.

    Bounded: past ``capacity`` operations, ``add`` from any thread but the event loop's blocks
    until the flusher has made room (back-pressure, never a drop). On the event loop's own
    thread it cannot block (the flusher runs there), so it accepts the operation and warns.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.loop_thread: int | None = None
        self.closed = False
        # deque.append and deque.popleft are atomic: the hot path takes no lock at all.
        self.items: deque[tuple[RunKey, str, int, Value]] = deque()
        self._room = threading.Condition()
        self._warned = False

    def __len__(self) -> int:
        return len(self.items)

    def add(self, run: RunKey, key: str, mode: int, value: Value) -> None:
        self.items.append((run, key, mode, value))
        if len(self.items) > self.capacity:
            self.full()

    def add_many(self, run: RunKey, ops: list[Op]) -> None:
        self.items.extend([(run, op.key, int(op.mode), op.value) for op in ops])
        if len(self.items) > self.capacity:
            self.full()

    def full(self) -> None:
        """Back-pressure, called by a writer that found the buffer over its bound."""
        if self.loop_thread is None or threading.get_ident() == self.loop_thread:
            if not self._warned:
                self._warned = True
                log.warning(
                    "the metric buffer holds %d operations, over its bound of %d: the event "
                    "loop must get a chance to run (await something) for them to be sent",
                    len(self.items),
                    self.capacity,
                )
            return
        with self._room:
            while len(self.items) > self.capacity and not self.closed:
                self._room.wait(timeout=0.5)  # the flusher takes items, then notifies

    def take(self) -> list[tuple[RunKey, str, int, Value]]:
        """Everything buffered so far, in call order (items added meanwhile stay)."""
        items = self.items
        taken = [items.popleft() for _ in range(len(items))]
        self._warned = False
        with self._room:
            self._room.notify_all()
        return taken


class MetricFlusher:
    """Forms batches from the buffer and delivers them exactly once, in order, per run."""

    def __init__(
        self,
        transport: AsyncTransport,
        buffer: MetricBuffer,
        *,
        writer: str,
        flush_interval: float,
        flush_at: int,
        max_batch_values: int,
        retry_window: float = 30.0,
    ) -> None:
        self.transport = transport
        self.buffer = buffer
        self.writer = writer
        self.flush_interval = flush_interval
        self.flush_at = flush_at
        self.max_batch_values = max_batch_values
        self.retry_window = retry_window
        self._queues: dict[RunKey, deque[Batch]] = {}
        self._last_seq: dict[RunKey, int] = {}
        self._errors: dict[RunKey, list[AsyncRunError]] = {}  # batches refused: final
        self._stalled: dict[RunKey, TransportError] = {}  # why a run's batches still wait
        self._not_before: dict[RunKey, float] = {}  # a server's Retry-After, across flushes
        self._lock = anyio.Lock()

    def _queued_values(self) -> int:
        return sum(size(op) for q in self._queues.values() for b in q for op in b.ops)

    def pending(self) -> int:
        """Metric values not yet acknowledged by the server (buffered or in formed batches).

        Counted in values, as logged: batches merge many calls into one operation.
        """
        return len(self.buffer) + self._queued_values()

    def errors_of(self, run: RunKey) -> list[AsyncRunError]:
        """What the caller of ``flush()`` must hear about a run, then forgets it.

        Batches the server refused (final), and, only while some of the run's batches are
        still undelivered, the reason they wait. A transient failure that a later flush got
        past is not reported: the values arrived, and logging them again would duplicate them.
        """
        errors: list[AsyncRunError] = self._errors.pop(run, [])
        if run in self._queues and run in self._stalled:
            errors.append(self._stalled[run])
        return errors

    def all_errors(self) -> list[AsyncRunError]:
        """What every run's ``flush()`` would report (then forgotten)."""
        return [error for run in {*self._errors, *self._queues} for error in self.errors_of(run)]

    async def run_forever(self) -> None:
        """The background flusher: on size, on the timer."""
        last = anyio.current_time()
        while True:
            await anyio.sleep(TICK)
            now = anyio.current_time()
            waiting = len(self.buffer)
            due = now - last >= self.flush_interval and (waiting or self._queues)
            # A bound below flush_at must still trigger a flush, or a blocked writer would
            # wait for the timer.
            if waiting >= min(self.flush_at, self.buffer.capacity) or due:
                await self.flush(now + self.retry_window)
                last = anyio.current_time()

    def _form_batches(self) -> None:
        for run, ops in compact_per_run(self.buffer.take()).items():
            queue = self._queues.setdefault(run, deque())
            for part in split(ops, self.max_batch_values):
                seq = self._last_seq.get(run, 0) + 1
                self._last_seq[run] = seq
                queue.append(Batch(self.writer, seq, part))

    async def flush(self, deadline: float | None = None) -> None:
        """Send everything buffered; retryable failures are retried until ``deadline``.

        Batches that could not be delivered by then stay queued, in order, for the next flush.
        """
        async with self._lock:
            if self._queued_values() < self.buffer.capacity:
                # While batches wait (server down), leave new values in the bounded buffer:
                # its back-pressure then holds writers, and memory stays bounded.
                self._form_batches()
            for run in list(self._queues):
                queue = self._queues[run]
                wait = self._not_before.get(run, 0.0) - anyio.current_time()
                if wait > 0:
                    if deadline is not None and anyio.current_time() + wait > deadline:
                        continue  # the server asked for more patience than this flush has
                    await anyio.sleep(wait)
                while queue:
                    if not await self._deliver(run, queue, deadline):
                        break
                if not queue:
                    del self._queues[run]
                    self._stalled.pop(run, None)
                    self._not_before.pop(run, None)

    async def _deliver(self, run: RunKey, queue: deque[Batch], deadline: float | None) -> bool:
        batch = queue[0]
        attempt = 0
        while True:
            try:
                _, ignored = await self.transport.log_metrics(run[0], run[1], batch)
            except TransportError as exc:
                delay = _BACKOFF.delay(attempt, jitter(), exc.retry_after)
                attempt += 1
                if deadline is not None and anyio.current_time() + delay > deadline:
                    self._stalled[run] = exc
                    if exc.retry_after is not None:
                        self._not_before[run] = anyio.current_time() + exc.retry_after
                    log.warning(
                        "metrics of run %s/%s not delivered yet (%s); %d operations stay "
                        "buffered and will be retried",
                        *run,
                        exc,
                        sum(len(b.ops) for b in queue),
                    )
                    return False
                await anyio.sleep(delay)
                continue
            except AsyncRunError as exc:
                self._reject(run, queue, exc)
                return True
            queue.popleft()
            for key in dict.fromkeys(ignored):
                log.warning(
                    "metric %r of run %s/%s already has a value: single_value=True left it "
                    "unchanged (pass overwrite=True to replace it)",
                    key,
                    *run,
                )
            return True

    def _reject(self, run: RunKey, queue: deque[Batch], exc: AsyncRunError) -> None:
        # The server refused the batch: it will never be applied. Drop it, say so, and give
        # its number to the next batch (the server still expects it).
        dropped = queue.popleft()
        log.error(
            "the server rejected %d metric operations of run %s/%s: %s",
            len(dropped.ops),
            *run,
            exc,
        )
        self._errors.setdefault(run, []).append(exc)
        renumbered = [Batch(b.writer, b.seq - 1, b.ops) for b in queue]
        queue.clear()
        queue.extend(renumbered)
        self._last_seq[run] -= 1


def unsent_message(count: int, where: str, seconds: float, errors: list[Any]) -> str:
    """What to say when metrics could not all be sent before a deadline."""
    reason = f": {errors[-1]}" if errors else ""
    return (
        f"{count} metric values were not sent to {where} within {seconds:g} s{reason}; "
        "they are lost with this process"
    )
