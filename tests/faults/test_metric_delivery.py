"""Metrics arrive exactly once and in order through a faulty network and a crashed server.

A real ``asyncrun server`` sits behind the fault proxy (``_proxy.py``), which drops, resets
after forwarding, delays and truncates metric batches, and answers some with 503 or 429 itself.
The reset-after-forward case is the one that would duplicate values without the batches'
sequence numbers: the server applied the batch, the client never heard and sends it again.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict
from typing import Any

import anyio
import anyio.to_thread
import pytest
from conftest import ServerProcess

import asyncrun

from ._proxy import (
    INJECTED,
    UPSTREAM_REFUSED,
    Fault,
    FaultPlan,
    FaultProxy,
    RequestRecord,
    metric_batches,
)

pytestmark = pytest.mark.anyio

N = 100_000
FLUSH_AT = 2_000
FLUSH_INTERVAL = 0.1
BLOCK = 250
QUIET_EVERY = 100
SPEC = {"command": ["true"]}


def batch_attempts(proxy: FaultProxy) -> list[RequestRecord]:
    return [r for r in proxy.records() if metric_batches(r.method, r.target)]


def loss_values(batch: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    for key, _mode, value in batch["ops"]:
        if key == "loss":
            values.extend(value if isinstance(value, list) else [value])
    return values


async def wait_for_count(proxy: FaultProxy, name: str, above: int, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while proxy.count(name) <= above:
            await anyio.sleep(0.02)


async def test_100k_values_arrive_exactly_once_in_order_through_faults_and_a_crash(
    fault_server: ServerProcess, fault_proxy: FaultProxy, project: str
) -> None:
    proxy = fault_proxy
    proxy.plan = FaultPlan(
        # About 18% of batch requests get a fault; the script makes sure each kind happens.
        rates={
            Fault.DROP: 0.03,
            Fault.RESET_AFTER_FORWARD: 0.04,
            Fault.TRUNCATE: 0.02,
            Fault.STATUS_503: 0.03,
            Fault.STATUS_429: 0.03,
            Fault.DELAY: 0.03,
        },
        # ... and the script makes sure each kind happens, early on.
        script=[step for fault in INJECTED for step in (None, fault)],
        delay=(0.02, 0.2),
        retry_after="0",
        matches=metric_batches,
    )
    started = time.monotonic()
    acc: list[int] = []
    chunks = N // BLOCK + N // BLOCK // QUIET_EVERY  # BLOCK-sized ones and small ones
    crash_at, restart_at = chunks // 2, chunks // 2 + 10
    refused_before = 0
    with anyio.fail_after(150):
        async with asyncrun.AsyncClient(
            proxy.url, timeout=10, flush_at=FLUSH_AT, flush_interval=FLUSH_INTERVAL
        ) as client:
            run = await client.new_run(project, "command+job", spec=SPEC)
            start, chunk = 0, 0
            while start < N:
                quiet = chunk % QUIET_EVERY == QUIET_EVERY - 1
                if quiet:
                    # A quiet spell: the timer flushes what is buffered, then a few values
                    # alone, flushed by the timer again.
                    await anyio.sleep(3 * FLUSH_INTERVAL)
                stop = min(N, start + (7 if quiet else BLOCK))
                for i in range(start, stop):
                    run.log_metric("loss", i)
                    if i % 50 == 0:
                        run.log_metrics({"acc": i})
                        acc.append(i)
                start = stop
                if chunk == crash_at:
                    # SIGKILL mid-stream; values keep coming while the server is down.
                    refused_before = proxy.count(UPSTREAM_REFUSED)
                    await anyio.to_thread.run_sync(functools.partial(fault_server.stop, kill=True))
                if chunk == restart_at:
                    await wait_for_count(proxy, UPSTREAM_REFUSED, refused_before, timeout=30)
                    await anyio.to_thread.run_sync(fault_server.start)  # same port, same db
                await anyio.sleep(3 * FLUSH_INTERVAL if quiet else 0.01)
                chunk += 1
            await run.flush(timeout=120)
            await run.refresh()
    elapsed = time.monotonic() - started

    # Every value exactly once, in order, on both keys.
    assert run.metrics["loss"] == list(range(N))
    assert run.metrics["acc"] == acc

    counts = proxy.counts()
    attempts = batch_attempts(proxy)
    print(f"\n{elapsed:.1f} s, {len(attempts)} batch requests, counters {counts}")
    for fault in INJECTED:
        assert counts.get(fault, 0) >= 1, (fault, counts)
    assert counts[UPSTREAM_REFUSED] >= 1  # the client met the crashed server
    injected = sum(counts.get(fault, 0) for fault in INJECTED)
    assert 0.05 <= injected / len(attempts) <= 0.6, counts

    # The client side of the contract: a batch keeps its number and contents until
    # acknowledged; numbers run 1, 2, 3...; the batches hold every value once, in order.
    by_seq: dict[int, set[bytes]] = defaultdict(set)
    for attempt in attempts:
        by_seq[attempt.json()["seq"]].add(attempt.body)  # type: ignore[index]
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    assert all(len(bodies) == 1 for bodies in by_seq.values())
    batches = [json.loads(next(iter(by_seq[seq]))) for seq in sorted(by_seq)]
    assert [v for batch in batches for v in loss_values(batch)] == list(range(N))
    sizes = [len(loss_values(batch)) for batch in batches]
    assert len(batches) >= 20, sizes  # many batches
    assert max(sizes) >= FLUSH_AT, sizes  # flushed on size...
    # ... and on the timer: the last batch is the explicit flush's, but a smaller one before
    # it was formed with fewer than flush_at operations waiting, so the timer formed it.
    assert min(sizes[:-1]) < FLUSH_AT // 2, sizes

    # The exactly-once case happened: the server applied a batch whose answer the proxy
    # reset away, and the retry of that same batch was recognised as a duplicate.
    applied_then_reset = [
        a
        for a in attempts
        if a.outcome == Fault.RESET_AFTER_FORWARD
        and a.response_json() == {"applied": True, "ignored": []}
    ]
    assert applied_then_reset
    for lost in applied_then_reset:
        later = [
            a
            for a in attempts
            if a.index > lost.index and a.body == lost.body and a.response_body is not None
        ]
        assert later
        assert all(a.response_json()["applied"] is False for a in later)  # type: ignore[index]
    # And no batch was ever applied twice, as far as the proxy saw the answers.
    applied = defaultdict(int)
    for attempt in attempts:
        answer = attempt.response_json()
        if isinstance(answer, dict) and answer.get("applied"):
            applied[attempt.json()["seq"]] += 1  # type: ignore[index]
    assert all(times == 1 for times in applied.values())
    assert elapsed < 120


async def test_a_lost_answer_is_retried_once_and_429_retry_after_is_honoured(
    fault_proxy: FaultProxy, project: str
) -> None:
    proxy = fault_proxy
    # First attempt: applied by the server, its answer reset away. Second: a 429 asking for
    # one second. Third: through.
    proxy.plan = FaultPlan(
        script=[Fault.RESET_AFTER_FORWARD, Fault.STATUS_429],
        retry_after="1",
        matches=metric_batches,
    )
    values = [0.5 * i for i in range(10)]
    with anyio.fail_after(60):
        async with asyncrun.AsyncClient(proxy.url, flush_at=10**9, flush_interval=3600) as client:
            run = await client.new_run(project, "command+job", spec=SPEC)
            for value in values:
                run.log_metric("loss", value)
            await run.flush(timeout=30)
            await run.refresh()

    assert run.metrics == {"loss": values}  # applied once: no value twice
    lost, limited, through = batch_attempts(proxy)
    assert [lost.outcome, limited.outcome, through.outcome] == [
        Fault.RESET_AFTER_FORWARD, Fault.STATUS_429, "forwarded",
    ]  # fmt: skip
    assert lost.body == limited.body == through.body  # the same batch, same number
    assert lost.json()["seq"] == 1  # type: ignore[index]
    assert lost.response_json() == {"applied": True, "ignored": []}
    assert through.response_json() == {"applied": False, "ignored": []}
    assert through.received - limited.received >= 0.9  # Retry-After: 1 was honoured
    assert (proxy.count(Fault.RESET_AFTER_FORWARD), proxy.count(Fault.STATUS_429)) == (1, 1)


# -- known bugs --------------------------------------------------------------------------------


async def test_a_retry_after_longer_than_the_retry_window_is_still_honoured(
    fault_proxy: FaultProxy, project: str
) -> None:
    proxy = fault_proxy
    proxy.plan = FaultPlan(script=[Fault.STATUS_429], retry_after="60", matches=metric_batches)
    async with asyncrun.AsyncClient(
        proxy.url, flush_at=10**9, flush_interval=0.1, exit_flush_timeout=0.5
    ) as client:
        run = await client.new_run(project, "command+job", spec=SPEC)
        run.log_metric("loss", 1.0)
        with anyio.move_on_after(3):  # 30 timer ticks
            while len(batch_attempts(proxy)) < 2:
                await anyio.sleep(0.02)
        attempts = batch_attempts(proxy)
    # The server asked for 60 s of quiet: nothing may be resent within 3 s.
    assert [(a.outcome, round(a.received - attempts[0].received, 2)) for a in attempts] == [
        (Fault.STATUS_429, 0)
    ]


async def test_flush_raises_no_stale_error_once_everything_is_delivered(
    fault_proxy: FaultProxy, project: str
) -> None:
    proxy = fault_proxy
    # The first batch (run a's) gets a 429 asking for 1 s; b's flush, allowed 0.3 s, leaves it
    # queued (and raises nothing: b's own batch went through); the background flusher then
    # delivers it.
    proxy.plan = FaultPlan(script=[Fault.STATUS_429], retry_after="1", matches=metric_batches)
    error: asyncrun.AsyncRunError | None = None
    async with asyncrun.AsyncClient(
        proxy.url, flush_at=10**9, flush_interval=0.2, exit_flush_timeout=5
    ) as client:
        a = await client.new_run(project, "command+job", spec=SPEC)
        b = await client.new_run(project, "command+job", spec=SPEC)
        a.log_metric("loss", 1.0)
        b.log_metric("loss", 2.0)
        await b.flush(timeout=0.3)
        with anyio.fail_after(10):
            while not [
                r for r in batch_attempts(proxy) if a.id in r.target and r.outcome == "forwarded"
            ]:
                await anyio.sleep(0.02)
        try:
            await a.flush(timeout=10)  # nothing of a is unsent: no error to report
        except asyncrun.AsyncRunError as exc:
            error = exc
        await a.refresh()
    outcomes = [(r.target.split("/")[-2] == a.id, r.outcome) for r in batch_attempts(proxy)]
    assert outcomes == [(True, Fault.STATUS_429), (False, "forwarded"), (True, "forwarded")]
    assert a.metrics == {"loss": [1.0]}
    assert error is None, repr(error)
