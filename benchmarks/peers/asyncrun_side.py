"""The asyncrun side of the peer benchmarks: one repetition of every workload, one JSON record.

Runs in the venv nested in the ``bench_peers`` nox venv (``pip install -e .[server]``). Starts
``asyncrun server`` on loopback with a fresh SQLite database, waits until it is idle, runs the
same workloads as ``mlflow_side.py`` with the same sizes and stops the server. Every workload
reads back what it wrote, outside the timed region.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common
import anyio
import anyio.lowlevel

import asyncrun

SPEC = {"command": ["true"]}


def b1_async(url: str, n: int) -> dict[str, Any]:
    """``AsyncRun.log_metric`` in a loop that never yields: caller cost and end to end."""

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            run = await client.new_run(f"b1-{uuid.uuid4().hex}", "command+job", spec=SPEC)
            for i in range(100):  # warm-up, as on the MLflow side
                run.log_metric("warmup", i * 0.5)
            await run.flush()
            gc.collect()  # both sides: no collection of start-up garbage inside the timed loop
            start = time.perf_counter_ns()
            for i in range(n):
                run.log_metric("loss", i * 0.5)
            called = time.perf_counter_ns()
            await run.flush()
            flushed = time.perf_counter_ns()
            await run.refresh()
            stored = len(run.metrics["loss"])
        _common.check(stored == n, f"B1: {stored} of {n} values stored")
        check = f"{stored:,} values read back"
        return {
            "b1_async_call": {"value": (called - start) / n / 1000, "check": check},
            "b1_async_e2e": {"value": n / ((flushed - start) / 1e9), "check": check},
        }

    return anyio.run(main)


def b1_sync(url: str, n: int) -> dict[str, Any]:
    """The same with the sync facade's ``Run.log_metric``."""
    with asyncrun.Client(url) as client:
        run = client.new_run(f"b1s-{uuid.uuid4().hex}", "command+job", spec=SPEC)
        for i in range(100):
            run.log_metric("warmup", i * 0.5)
        run.flush()
        gc.collect()  # both sides: no collection of start-up garbage inside the timed loop
        start = time.perf_counter_ns()
        for i in range(n):
            run.log_metric("loss", i * 0.5)
        called = time.perf_counter_ns()
        run.flush()
        flushed = time.perf_counter_ns()
        stored = len(run.refresh().metrics["loss"])
    _common.check(stored == n, f"B1 sync: {stored} of {n} values stored")
    check = f"{stored:,} values read back"
    return {
        "b1_sync_call": {"value": (called - start) / n / 1000, "check": check},
        "b1_sync_e2e": {"value": n / ((flushed - start) / 1e9), "check": check},
    }


def b2_persisted(url: str, n: int) -> dict[str, Any]:
    """One ``log_metric`` per value, yielding every 1,000 values, then ``flush()``."""

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            run = await client.new_run(f"b2-{uuid.uuid4().hex}", "command+job", spec=SPEC)
            start = time.perf_counter()
            for i in range(n):
                run.log_metric("loss", i * 0.5)
                if i % 1000 == 999:
                    await anyio.lowlevel.checkpoint()  # a training loop awaits now and then
            await run.flush()
            elapsed = time.perf_counter() - start
            await run.refresh()
            stored = len(run.metrics["loss"])
        _common.check(stored == n, f"B2: {stored} of {n} values stored")
        return {"b2": {"value": n / elapsed, "check": f"{stored:,} values read back"}}

    return anyio.run(main)


def b3_create(url: str, n: int) -> dict[str, Any]:
    """``AsyncClient.new_run``, sequential."""

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            project = f"b3-{uuid.uuid4().hex}"
            start = time.perf_counter()
            for _ in range(n):
                await client.new_run(project, "command+job", spec=SPEC)
            elapsed = time.perf_counter() - start
            found = len([r async for r in client.list_runs(project)])
        _common.check(found == n, f"B3: {found} of {n} runs found")
        return {"b3": {"value": n / elapsed, "check": f"{found:,} runs found by list_runs"}}

    return anyio.run(main)


def b3_create_concurrent(url: str, n: int) -> dict[str, Any]:
    """``AsyncClient.new_run`` from 50 tasks in one event loop."""

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            project = f"b3c-{uuid.uuid4().hex}"
            todo = iter(range(n))  # shared by the tasks: each takes the next until none is left
            ids: list[str] = []

            async def worker() -> None:
                for _ in todo:
                    ids.append((await client.new_run(project, "command+job", spec=SPEC)).id)

            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(_common.IN_FLIGHT):
                    tasks.start_soon(worker)
            elapsed = time.perf_counter() - start
            found = len([r async for r in client.list_runs(project)])
        _common.check(found == n == len(set(ids)), f"B3 concurrent: {found} of {n} runs found")
        return {"b3c": {"value": n / elapsed, "check": f"{found:,} runs found by list_runs"}}

    return anyio.run(main)


def b7_memory(url: str, k: int) -> dict[str, Any]:
    """Bytes held per ``AsyncRun`` from ``get_run``: k objects, of 20 COMPLETED runs.

    Each run carries the same content as on the MLflow side: the parameters in its spec, one
    value per metric in ``status.metrics``, the tags as labels; each ran (``true``) to the end.
    """

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            project = f"b7-{uuid.uuid4().hex}"
            labels = [f"{key}={value}" for key, value in _common.B7_TAGS.items()]
            spec = {**SPEC, "parameters": dict(_common.B7_PARAMS)}
            ids = []
            for i in range(_common.B7_DISTINCT):
                run = await client.new_run(
                    project, "command+job", spec=spec, name=f"train-{i}", labels=labels
                )
                for key, value in _common.B7_METRICS.items():
                    run.log_metric(key, value, single_value=True)
                await run.flush()
                await run.run()
                ids.append(run.id)
            for run_id in ids:
                run = await client.get_run(project, run_id)
                await run.wait(log_info=False, timeout=120)
            for run_id in ids:  # warm-up: whatever get_run caches, it caches now
                await client.get_run(project, run_id)
            with _common.Held() as held:
                runs = [await client.get_run(project, ids[i % len(ids)]) for i in range(k)]
        one = runs[0]
        _common.check(
            len(runs) == k
            and all(r.status.state == "COMPLETED" for r in runs)
            and one.spec["parameters"] == _common.B7_PARAMS
            and one.metrics == _common.B7_METRICS
            and one.metadata.labels == labels,
            "B7: runs read back without their content",
        )
        check = (
            f"{k:,} COMPLETED runs held, each with {len(one.spec['parameters'])} parameters, "
            f"{len(one.metrics)} metrics, {len(one.metadata.labels)} labels"
        )
        return {"b7": {"value": held.bytes / k, "check": check}}

    return anyio.run(main)


def get_run(url: str, n: int) -> dict[str, Any]:
    """``AsyncClient.get_run`` of one run, sequential."""

    async def main() -> dict[str, Any]:
        async with asyncrun.AsyncClient(url) as client:
            project = f"get-{uuid.uuid4().hex}"
            run_id = (await client.new_run(project, "command+job", spec=SPEC)).id
            start = time.perf_counter()
            for _ in range(n):
                got = await client.get_run(project, run_id)
                _common.check(got.id == run_id, "B-get: wrong run")
            elapsed = time.perf_counter() - start
        return {"get": {"value": n / elapsed, "check": "every reply carried the run's id"}}

    return anyio.run(main)


def server_help() -> str:
    """``asyncrun server --help``: which options this version of the server has."""
    argv = [sys.executable, "-m", "asyncrun", "server", "--help"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def main() -> None:
    args = _common.parse_args()
    n = _common.sizes(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        port = _common.free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "asyncrun", "server", "--port", str(port), "--no-auth"]
        argv += ["--db", f"{tmp}/asyncrun.sqlite3"]
        if "--no-auth" in server_help():
            argv.append("--no-auth")  # loopback only, as MLflow's server: no tokens
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRUN_")}
        with _common.server(argv, f"{url}/healthz", Path(tmp), env) as facts:
            figures: dict[str, Any] = {}
            figures |= b1_async(url, n["b1"])
            figures |= b1_sync(url, n["b1"])
            figures |= b2_persisted(url, n["b2"])
            figures |= b3_create(url, n["b3"])
            figures |= b3_create_concurrent(url, n["b3c"])
            figures |= get_run(url, n["get"])
            figures |= b7_memory(url, n["b7"])
    _common.write_record(args.out, "asyncrun", asyncrun.__version__, facts, figures)


if __name__ == "__main__":
    main()
