"""Growth factors: what an operation costs as the store and a run's history grow.

Each row sets the cost at a large size against the cost at a small size, measured in the same
run: the ratio is the growth factor, and the goal is that it stays near 1 where the answer does
not grow (issue 12, items 9 and 11).

- create / update in a project of 1k, 10k and 100k labelled runs (embedded): the label rows of
  a run are found by index, so a write costs the same in a full project as in an empty one.
- list a page of runs, change a run's state, save it, and read one key's latest page, for runs
  with 10k and 1M metric values (over HTTP): lists carry summaries, the server reads no values
  for actions and saves, and a history page is found by index.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
from _harness import asyncrun_server, measure

import asyncrun

LABELS = ["team:a", "stage:bench", "model:resnet"]
OPS = 300  # operations timed per measurement
SPEC = {"command": ["true"]}


def _us_per_op(seconds: float, ops: int) -> float:
    return seconds / ops * 1e6


def writes_in_a_project_of(size: int) -> Callable[[], float]:
    """µs per labelled create + update in a project that already holds ``size`` runs."""
    tmp = tempfile.TemporaryDirectory()

    async def fill() -> None:
        async with asyncrun.AsyncClient(home=tmp.name) as client:
            for start in range(0, size, 1000):
                batch = [
                    client.build_run("p", "command+job", spec=SPEC, labels=[*LABELS, f"n:{i}"])
                    for i in range(start, min(size, start + 1000))
                ]
                async with anyio.create_task_group() as tg:
                    for run in batch:
                        tg.start_soon(run.save)  # coalesced into batch creates

    anyio.run(fill)

    def once() -> float:
        async def main() -> float:
            async with asyncrun.AsyncClient(home=tmp.name) as client:
                begin = time.perf_counter()
                for _ in range(OPS):
                    run = await client.new_run("p", "command+job", spec=SPEC, labels=LABELS)
                    run.metadata.labels.append("edited")
                    await run.save(update=True)
                return _us_per_op(time.perf_counter() - begin, OPS)

        return anyio.run(main)

    once.cleanup = tmp.cleanup  # type: ignore[attr-defined]
    return once


async def _runs_with_history(client: asyncrun.AsyncClient, project: str, values: int) -> list[str]:
    ids = []
    for _ in range(3):
        run = await client.new_run(project, "command+job", spec=SPEC)
        for start in range(0, values, 500_000):
            run.log_metric("loss", [float(i) for i in range(start, min(values, start + 500_000))])
            await run.flush()
        run.log_metric("best", 0.5, single_value=True)
        ids.append(run.id)
    return ids


def history_workloads(url: str, values: int) -> dict[str, Callable[[], float]]:
    """µs per operation on runs holding ``values`` metric values each."""
    project = f"h{values}"

    async def prepare() -> list[str]:
        async with asyncrun.AsyncClient(url) as client:
            return await _runs_with_history(client, project, values)

    ids = anyio.run(prepare)

    def timed(op: Callable[[asyncrun.AsyncClient], Any], n: int) -> Callable[[], float]:
        def once() -> float:
            async def main() -> float:
                async with asyncrun.AsyncClient(url) as client:
                    begin = time.perf_counter()
                    for _ in range(n):
                        await op(client)
                    return _us_per_op(time.perf_counter() - begin, n)

            return anyio.run(main)

        return once

    async def listing(client: asyncrun.AsyncClient) -> None:
        runs = [r async for r in client.list_runs(project)]
        assert runs[0].metric_summary["loss"].count == values

    async def save(client: asyncrun.AsyncClient) -> None:
        (run,) = [r async for r in client.list_runs(project, ids=[ids[0]])]
        run.metadata.labels = [str(time.monotonic_ns())]
        await run.save(update=True)

    async def last_page(client: asyncrun.AsyncClient) -> None:
        page = await client._transport.metric_history(project, ids[1], "loss", values - 100, 100)
        assert len(page) == 100

    return {
        "list a page of 3 runs (summaries)": timed(listing, 50),
        "save a run (from a listing)": timed(save, 50),
        "read the last 100 values of a key": timed(last_page, 50),
    }


def run(scale: float) -> list[dict[str, Any]]:
    """Run every workload; ``scale`` multiplies the sizes (1.0 is the recorded size)."""
    results: list[dict[str, Any]] = []

    def add(name: str, small: str, large: str, ours: Any, base: Any, goal: str) -> None:
        results.append(
            {
                "workload": f"{name}: {large} vs {small}",
                "unit": "µs/op",
                "ours": ours,
                "floor": base,
                "floor_name": f"the same at {small}",
                "ratio": ours["median"] / base["median"],
                "goal": goal,
                "growth": True,
            }
        )

    sizes = [max(100, int(n * scale)) for n in (1_000, 10_000, 100_000)]
    writes = {size: writes_in_a_project_of(size) for size in sizes}
    measured = {size: measure(fn) for size, fn in writes.items()}
    for fn in writes.values():
        fn.cleanup()  # type: ignore[attr-defined]
    for size in sizes[1:]:
        add(
            "labelled create + update (embedded)",
            f"{sizes[0]:,} runs",
            f"{size:,} runs",
            measured[size],
            measured[sizes[0]],
            f"<= 1.3x for {size // sizes[0]}x runs",
        )
    small, large = (max(1000, int(n * scale)) for n in (10_000, 1_000_000))
    with asyncrun_server() as url:
        few = history_workloads(url, small)
        many = history_workloads(url, large)
        for name in few:
            add(
                f"{name} (HTTP)",
                f"{small:,} values/run",
                f"{large:,} values/run",
                measure(many[name]),
                measure(few[name]),
                f"<= 1.3x for {large // small}x values",
            )
    return results
