"""Waiting and starting at scale, as growth factors (issue 13).

- wait on N runs (N = 1k, 5k, 10k) while 20 of them change per second, over HTTP: the server's
  CPU seconds, the watch requests and their JSON bytes, per second of waiting. The waits follow
  the project's changes feed, so these follow the rate of changes, not N (goal: within 1.3x
  for 10x N).
- the natural pattern, one task per run doing ``new_run``, ``run()`` and ``wait()`` on one
  client, N = 1k and 10k ``true`` jobs over HTTP: runs per second end to end (goal: within
  1.3x for 10x N, and no error).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import psutil
from _harness import asyncrun_server, measure

import asyncrun
from asyncrun import _serde
from asyncrun._core.query import Changes, WatchQuery

CHANGES_PER_SECOND = 20
WINDOW = 5.0  # seconds of steady changes measured


def _server_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "server" in cmdline and port in cmdline:
            return proc.pid
    raise RuntimeError(f"no server process for {url}")


def waiting(url: str, n: int) -> dict[str, float]:
    """Per second of waiting on ``n`` runs: server CPU ms, watch requests, watch JSON bytes."""
    project = f"w{n}-{time.monotonic_ns()}"
    server = psutil.Process(_server_pid(url))

    async def main() -> dict[str, float]:
        async with (
            asyncrun.AsyncClient(url) as client,
            asyncrun.AsyncClient(url) as other,
        ):
            runs = [client.build_run(project, "test+record") for _ in range(n)]
            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(run.save)
            seen = {"requests": 0, "bytes": 0}
            inner = client._transport.watch

            async def watch(project_: str, query: WatchQuery) -> Changes:
                changes = await inner(project_, query)
                seen["requests"] += 1
                seen["bytes"] += len(_serde.dumps(query.to_body())) + len(
                    _serde.dumps([_serde.to_dict(r) for r in changes.runs])
                )
                return changes

            client._transport.watch = watch  # type: ignore[method-assign]
            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(run.wait, False)
                while seen["requests"] == 0 or client._watcher._fresh.get(project):  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # every wait has had its first request
                await anyio.sleep(0.5)
                seen.update(requests=0, bytes=0)
                cpu = sum(server.cpu_times()[:2])
                begin = time.perf_counter()
                i = 0
                while time.perf_counter() - begin < WINDOW:
                    changed = await other.get_run(project, runs[i % n].id)
                    changed.metadata.labels = [str(i)]
                    await changed.save(update=True)
                    i += 1
                    await anyio.sleep(
                        max(0.0, begin + i / CHANGES_PER_SECOND - time.perf_counter())
                    )
                elapsed = time.perf_counter() - begin
                used = sum(server.cpu_times()[:2]) - cpu
                tg.cancel_scope.cancel()
            return {
                "cpu": used / elapsed * 1000,
                "requests": seen["requests"] / elapsed,
                "bytes": seen["bytes"] / elapsed,
            }

    return anyio.run(main)


def natural(url: str, n: int) -> float:
    """Runs per second for ``n`` tasks each doing new_run, run() and wait() on one client."""
    project = f"n{n}-{time.monotonic_ns()}"

    async def main() -> float:
        async with asyncrun.AsyncClient(url) as client:
            failed: list[BaseException] = []

            async def one() -> None:
                try:
                    run = await client.new_run(project, "command+job", spec={"command": ["true"]})
                    await run.run()
                    await run.wait(log_info=False)
                except Exception as exc:
                    failed.append(exc)

            begin = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)
            if failed:
                raise RuntimeError(f"{len(failed)} of {n} runs failed: {failed[0]!r}")
            return n / (time.perf_counter() - begin)

    return anyio.run(main)


def run(scale: float) -> list[dict[str, Any]]:
    """Run every workload; ``scale`` multiplies the sizes (1.0 is the recorded size)."""
    results: list[dict[str, Any]] = []
    sizes = [max(50, int(n * scale)) for n in (1_000, 5_000, 10_000)]
    with asyncrun_server() as url:
        figures = {n: [waiting(url, n) for _ in range(2)] for n in sizes}
    for what, unit in (("cpu", "CPU ms/s"), ("requests", "requests/s"), ("bytes", "bytes/s")):
        small = {"median": min(f[what] for f in figures[sizes[0]])}
        for n in sizes[1:]:
            large = {"median": min(f[what] for f in figures[n])}
            for fig in (small, large):
                fig.setdefault("min", fig["median"])
                fig.setdefault("max", fig["median"])
            results.append(
                {
                    "workload": f"waiting: server {what} per second, {n:,} vs {sizes[0]:,} waits",
                    "unit": unit,
                    "ours": large,
                    "floor": small,
                    "floor_name": f"the same with {sizes[0]:,} waits",
                    "ratio": large["median"] / max(small["median"], 1e-9),
                    "goal": f"<= 1.3x for {n // sizes[0]}x waits",
                    "growth": True,
                }
            )
    few, many = (max(100, int(n * scale)) for n in (1_000, 10_000))
    with asyncrun_server() as url:
        small = measure(lambda: natural(url, few))
        large = measure(lambda: natural(url, many))
    results.append(
        {
            "workload": f"natural pattern (new_run, run, wait per task): {many:,} vs {few:,} runs",
            "unit": "runs/s",
            "ours": large,
            "floor": small,
            "floor_name": f"the same with {few:,} runs",
            "ratio": large["median"] / small["median"],
            "goal": f">= 0.77x (within 1.3x) for {many // few}x runs, no error",
            "growth": True,
        }
    )
    return results
