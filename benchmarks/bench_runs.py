"""Runs at scale: many runs from one loop, wake-up latency, log streaming, the sync facade, memory.

- B3 create N runs (50 in flight) through a real ``asyncrun server``, start them, wait for all
  from one loop: runs/s created vs httpx POSTs of the same body to a trivial Starlette app at the
  same concurrency; and the requests made while waiting, counted in the server's access log, for
  N and 10 N (the count, the count per second of waiting, and the wall time).
- B4 wake-up latency, from the write that ends a job (a ``cat`` of a FIFO) to the return of a
  ``wait()`` already in flight: p50 and p99 vs the same ``wait()`` on a run already COMPLETED
  (one watch round trip that returns at once: the least a wait that has to hear from the
  backend can cost). HTTP and embedded.
- B5 log streaming: a ``python+job`` prints N lines stamped with ``time.time_ns()``; the client
  follows ``logs(follow=True)``: lines/s delivered (first to last) and p50 write-to-delivery
  latency vs the same child writing to a pipe read by this process with ``readline``. The job
  writes as fast as it can (so the latency includes any backlog), and again at a pace every
  stage can follow (the latency of the path itself).
- B6 the sync facade's cost per call: ``Client.get_run`` minus ``AsyncClient.get_run`` on the
  embedded backend, vs the Python floor of a call into another thread (a ``Future`` ping-pong
  between two threads), next to the C floor (a pthread condition-variable ping-pong), asyncio's
  ``run_coroutine_threadsafe`` and the facade's bare round trip; as the scheduler places the
  threads, and on one CPU.
- B7 bytes held per ``AsyncRun`` (tracemalloc over a list of K runs: built, and COMPLETED as read
  back from the backend) vs the same record as compact JSON: the information it carries, in
  its most compact common form.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs
import httpx
import orjson
import psutil
from _harness import REPEATS, free_port, measure, trivial_server, wait_healthy

import asyncrun
from asyncrun import _serde
from asyncrun.client._batch import MAX_IN_FLIGHT
from asyncrun.client._transports._http import HTTPTransport

HERE = Path(__file__).parent
SPEC = {"command": ["true"]}
IN_FLIGHT = 50
CREATE_IN_FLIGHT = MAX_IN_FLIGHT  # create requests a client keeps on the wire per project
T = TypeVar("T")
U = TypeVar("U")


# -- plumbing -------------------------------------------------------------------------------


@attrs.frozen
class Server:
    url: str
    log: Path
    """The server's output: with ``--log-level info``, one access-log line per request."""
    pid: int
    db: Path

    def processes(self) -> dict[str, psutil.Process]:
        """The server, its agent (if it runs) and this process, for their CPU times."""
        found = {"server": psutil.Process(self.pid), "client": psutil.Process()}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "asyncrun.server._agent" in cmdline and str(self.db) in cmdline:
                found["agent"] = proc
        return found


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    times = {}
    for name, proc in procs.items():
        with contextlib.suppress(psutil.Error):
            user, system = proc.cpu_times()[:2]
            times[name] = user + system
    return times


@contextlib.contextmanager
def logged_server(*options: str) -> Iterator[Server]:
    """A real ``asyncrun server`` with ``--log-level info`` (one access-log line per request)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        db = Path(tmp).resolve() / "bench.sqlite3"
        argv = [
            sys.executable, "-m", "asyncrun", "server", "--port", str(port),
            "--db", str(db), "--log-level", "info", "--no-auth", *options,
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_healthy(f"{url}/healthz", proc)
                yield Server(url, log, proc.pid, db)
            finally:
                proc.terminate()
                proc.wait(timeout=15)


def access_lines(log: Path, start: int) -> list[str]:
    """The access-log lines (one per request answered) written after byte ``start``."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode("utf-8", "replace")
    return [line for line in text.splitlines() if ' HTTP/1.1" ' in line]


async def pool(items: Iterable[T], in_flight: int, fn: Callable[[T], Awaitable[U]]) -> list[U]:
    """``fn`` over ``items`` with at most ``in_flight`` calls at a time (results unordered)."""
    todo = iter(items)
    done: list[U] = []

    async def worker() -> None:
        for item in todo:
            done.append(await fn(item))

    async with anyio.create_task_group() as tasks:
        for _ in range(in_flight):
            tasks.start_soon(worker)
    return done


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def result(
    workload: str,
    unit: str,
    ours: dict[str, Any],
    floor: dict[str, Any],
    floor_name: str,
    goal: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "workload": workload,
        "unit": unit,
        "ours": ours,
        "floor": floor,
        "floor_name": floor_name,
        "ratio": ours["median"] / floor["median"] if floor["median"] else float("inf"),
        "goal": goal,
        **extra,
    }


def replay(values: list[float]) -> dict[str, Any]:
    """What ``measure`` reports, for figures already taken (e.g. the p99 of each repetition)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


# -- B3 create N runs and wait for all ------------------------------------------------------


class Counted(httpx.AsyncBaseTransport):
    """An httpx transport that counts the requests the client sends (a cross-check of the log)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def many_runs(server: Server, n: int) -> dict[str, float]:
    """Create ``n`` runs, start them, wait for all: rates, times, requests while waiting."""

    async def main() -> dict[str, float]:
        counted = Counted()
        transport = HTTPTransport(server.url, transport=counted)
        async with asyncrun.AsyncClient(server.url, transport=transport) as client:
            project = f"b3n{n}t{time.monotonic_ns()}"
            sent_at_start = counted.count
            start = time.perf_counter()
            runs = await pool(
                range(n), IN_FLIGHT, lambda _: client.new_run(project, "command+job", spec=SPEC)
            )
            created = time.perf_counter()
            create_requests = counted.count - sent_at_start
            await pool(runs, IN_FLIGHT, lambda run: run.run())
            started = time.perf_counter()
            log_at = server.log.stat().st_size
            sent_before = counted.count
            procs = server.processes()
            cpu_before = cpu_seconds(procs)
            async with anyio.create_task_group() as tasks:
                for run in runs:
                    tasks.start_soon(run.wait)
            waited = time.perf_counter()
            cpu_after = cpu_seconds(procs)
            sent = counted.count - sent_before
        await anyio.sleep(0.3)  # let the server write its last access-log lines
        served = access_lines(server.log, log_at)
        states = {str(run.status.state) for run in runs}
        assert states == {"COMPLETED"}, states
        wait_s = waited - started
        return {
            "create_per_s": n / (created - start),
            "create_requests": create_requests,
            "start_per_s": n / (started - created),
            "wait_s": wait_s,
            "wall_ms": (waited - start) * 1000,
            "wait_requests": len(served),
            "wait_requests_per_s": len(served) / wait_s,
            "watch_requests": sum(":watch" in line or "%3Awatch" in line for line in served),
            "client_requests": sent,
            **{
                f"wait_cpu_s_{name}": cpu_after[name] - cpu_before[name]
                for name in cpu_after
                if name in cpu_before
            },
        }

    return anyio.run(main)


def trivial_posts(url: str, n: int, in_flight: int) -> float:
    async def main() -> float:
        async with asyncrun.AsyncClient(url) as client:
            body = _serde.dumps(client.build_run("bench", "command+job", spec=SPEC).record)
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url) as http:
            start = time.perf_counter()
            await pool(
                range(n), in_flight, lambda _: http.post("/echo", content=body, headers=headers)
            )
            return n / (time.perf_counter() - start)

    return anyio.run(main)


def trivial_batched_posts(url: str, n: int, per_request: int, in_flight: int) -> float:
    """The same ``n`` run bodies sent ``per_request`` to a POST, as ``runs:batchCreate`` does."""

    async def main() -> float:
        async with asyncrun.AsyncClient(url) as client:
            record = _serde.to_dict(client.build_run("bench", "command+job", spec=SPEC).record)
        headers = {"Content-Type": "application/json"}
        sizes = [min(per_request, n - at) for at in range(0, n, per_request)]
        bodies = {size: orjson.dumps({"runs": [record] * size}) for size in set(sizes)}
        async with httpx.AsyncClient(base_url=url) as http:
            start = time.perf_counter()
            await pool(
                sizes,
                in_flight,
                lambda size: http.post("/echo", content=bodies[size], headers=headers),
            )
            return n / (time.perf_counter() - start)

    return anyio.run(main)


def b3(scale: float) -> list[dict[str, Any]]:
    small = max(10, int(1_000 * scale))
    big = max(20, int(10_000 * scale))
    repeats = REPEATS if big <= 2_000 else 1  # 10,000 real processes take minutes on 2 cores
    note = f"{repeats} repetition{'s' if repeats > 1 else ''}"
    figures: dict[int, list[dict[str, float]]] = {small: [], big: []}
    with logged_server() as server:
        many_runs(server, 1)  # start the agent: its cold start is not what is measured here
        for _ in range(repeats):
            for n in (small, big):
                figures[n].append(many_runs(server, n))
    # The runs per create request the client sent (it coalesces concurrent creates into
    # runs:batchCreate, with at most MAX_IN_FLIGHT requests on the wire per project).
    per_request = max(
        1, round(big / statistics.median(one["create_requests"] for one in figures[big]))
    )
    with trivial_server() as floor_url:
        floor = measure(lambda: trivial_posts(floor_url, big, IN_FLIGHT))
        batched_floor = measure(
            lambda: trivial_batched_posts(floor_url, big, per_request, CREATE_IN_FLIGHT)
        )

    def of(n: int, key: str) -> dict[str, Any]:
        return replay([one[key] for one in figures[n]])

    detail = {n: {key: [one[key] for one in figures[n]] for key in figures[n][0]} for n in figures}
    return [
        result(
            f"B3 create {big:,} runs, HTTP, {IN_FLIGHT} in flight ({note})",
            "runs/s",
            of(big, "create_per_s"),
            floor,
            f"one run per POST: httpx POST of the same body to a trivial Starlette app, "
            f"{IN_FLIGHT} in flight (not a floor: creates are batched)",
            ">= 2,000 runs/s",
            id="b3_create",
            detail=detail,
        ),
        result(
            f"B3 against batched POSTs: create {big:,} runs, HTTP, {IN_FLIGHT} in flight ({note})",
            "runs/s",
            of(big, "create_per_s"),
            batched_floor,
            f"the same run bodies, {per_request:,} per POST as the client sent them, "
            f"{CREATE_IN_FLIGHT} in flight, to a trivial Starlette app",
            "",
            id="b3_create_batched_floor",
        ),
        result(
            f"B3 requests while waiting for {big:,} runs ({note})",
            "requests",
            of(big, "wait_requests"),
            of(small, "wait_requests"),
            f"the same for {small:,} runs (access log); ratio 1 = independent of N",
            "wait requests independent of N",
            id="b3_wait_requests",
        ),
        result(
            f"B3 requests per second of waiting, {big:,} runs ({note})",
            "requests/s",
            of(big, "wait_requests_per_s"),
            of(small, "wait_requests_per_s"),
            f"the same for {small:,} runs; ratio 1 = rate independent of N",
            "",
            id="b3_wait_requests_per_s",
        ),
        result(
            f"B3 wall time, create+start+wait {big:,} runs ({note})",
            "ms",
            of(big, "wall_ms"),
            of(small, "wall_ms"),
            f"the same for {small:,} runs (ratio {big // small} = linear)",
            "",
            id="b3_wall",
        ),
    ]


# -- B4 wake-up latency ---------------------------------------------------------------------


async def open_writer(fifo: Path) -> int:
    """Open ``fifo`` for writing once its reader (the job's ``cat``) has opened it."""
    with anyio.fail_after(30):
        while True:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                await anyio.sleep(0.001)


def wake_latencies(client_kwargs: dict[str, Any], reps: int) -> list[float]:
    """Seconds from the write that ends a job to the return of a ``wait()`` in flight."""

    async def main() -> list[float]:
        latencies = []
        with tempfile.TemporaryDirectory() as tmp:
            async with asyncrun.AsyncClient(**client_kwargs) as client:
                project = f"b4t{time.monotonic_ns()}"
                for i in range(reps):
                    fifo = Path(tmp) / f"trigger{i}"
                    os.mkfifo(fifo)
                    spec = {"command": ["cat", str(fifo)]}
                    run = await client.new_run(project, "command+job", spec=spec)
                    await run.run()
                    fd = await open_writer(fifo)
                    returned = 0.0

                    async def wait(run: asyncrun.AsyncRun = run) -> None:
                        nonlocal returned
                        await run.wait(log_info=False)
                        returned = time.perf_counter()

                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(wait)
                        await anyio.sleep(0.05)  # the wait's long-poll is now held by the backend
                        triggered = time.perf_counter()
                        os.write(fd, b"go\n")
                        os.close(fd)
                    assert str(run.status.state) == "COMPLETED", run.status
                    latencies.append(returned - triggered)
        return latencies

    return anyio.run(main)


def completed_wait_latencies(client_kwargs: dict[str, Any], reps: int) -> list[float]:
    """Seconds a ``wait()`` on a run already COMPLETED takes: one watch round trip."""

    async def main() -> list[float]:
        async with asyncrun.AsyncClient(**client_kwargs) as client:
            run = await client.new_run(f"b4f{time.monotonic_ns()}", "command+job", spec=SPEC)
            await run.run()
            await run.wait(log_info=False)
            latencies = []
            for _ in range(reps):
                # Let the client's poller finish its tick and end: a wait that joins a poller
                # still in its tick sleep waits for the rest of that tick (up to 20 ms).
                await anyio.sleep(0.05)
                start = time.perf_counter()
                await run.wait(log_info=False)
                latencies.append(time.perf_counter() - start)
            return latencies

    return anyio.run(main)


def b4(scale: float) -> list[dict[str, Any]]:
    reps = max(5, min(50, int(1_000 * scale)))
    results = []
    with tempfile.TemporaryDirectory() as home, logged_server() as server:
        for backend, kwargs in (("HTTP", {"endpoint": server.url}), ("embedded", {"home": home})):
            completed_wait_latencies(kwargs, 1)  # start the agent, warm up
            p99s: list[float] = []
            floor_p99s: list[float] = []

            def trial(kwargs: dict[str, Any] = kwargs, p99s: list[float] = p99s) -> float:
                us = [1e6 * s for s in wake_latencies(kwargs, reps)]
                p99s.append(percentile(us, 99))
                return percentile(us, 50)

            def floor_trial(
                kwargs: dict[str, Any] = kwargs, p99s: list[float] = floor_p99s
            ) -> float:
                us = [1e6 * s for s in completed_wait_latencies(kwargs, reps)]
                p99s.append(percentile(us, 99))
                return percentile(us, 50)

            p50 = measure(trial)
            floor_p50 = measure(floor_trial)
            floor_name = "wait() on a run already COMPLETED (one watch round trip)"
            results += [
                result(
                    f"B4 wake-up latency p50, {backend}, {reps} waits",
                    "us",
                    p50,
                    floor_p50,
                    floor_name,
                    "p50 <= 20 ms (20,000 us)" if backend == "HTTP" else "",
                    id=f"b4_p50_{backend.lower()}",
                ),
                result(
                    f"B4 wake-up latency p99, {backend}, {reps} waits",
                    "us",
                    replay(p99s),
                    replay(floor_p99s),
                    floor_name,
                    "p99 <= 100 ms (100,000 us)" if backend == "HTTP" else "",
                    id=f"b4_p99_{backend.lower()}",
                ),
            ]
    return results


# -- B5 log streaming -----------------------------------------------------------------------


def _delivery(stamps: list[tuple[int, bytes | str]]) -> dict[str, float]:
    """Lines/s from the first line delivered to the last; latency percentiles in us."""
    latencies = [at - int(text.split()[0]) for at, text in stamps]
    span = (stamps[-1][0] - stamps[0][0]) / 1e9
    return {
        "lines": len(stamps),
        "lines_per_s": (len(stamps) - 1) / span if span > 0 else float("inf"),
        "p50_us": percentile(latencies, 50) / 1e3,
        "p99_us": percentile(latencies, 99) / 1e3,
    }


def followed_logs(client_kwargs: dict[str, Any], n: int, rate: float = 0) -> dict[str, float]:
    """A job prints ``n`` stamped lines; this process follows them with ``logs(follow=True)``."""

    async def main() -> dict[str, float]:
        async with asyncrun.AsyncClient(**client_kwargs) as client:
            parameters = {"n": n, "rate": rate}
            spec = {"handler": "_jobs:emit", "parameters": parameters, "cwd": str(HERE)}
            run = await client.new_run(f"b5t{time.monotonic_ns()}", "python+job", spec=spec)
            await run.run()
            clock = time.time_ns
            stamps = []
            append = stamps.append
            async for line in run.logs(follow=True):
                append((clock(), line.text))
            await run.wait(log_info=False)
            assert str(run.status.state) == "COMPLETED", run.status
        return _delivery(stamps)

    return anyio.run(main)


def piped_lines(n: int, rate: float = 0) -> dict[str, float]:
    """The floor: the same child writing to a pipe that this process reads with readline."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", f"import _jobs; _jobs.emit({n}, {rate})"]
    clock = time.time_ns
    stamps = []
    append = stamps.append
    with subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        readline = proc.stdout.readline
        while line := readline():
            append((clock(), line))
    assert proc.returncode == 0
    return _delivery(stamps)


PACE = 10_000
"""Lines per second of the paced job: slower than any stage, so no backlog builds up."""


def b5(scale: float) -> list[dict[str, Any]]:
    n = max(1_000, int(1_000_000 * scale))
    paced = max(1_000, min(PACE, int(200_000 * scale)))
    names = ["HTTP", "embedded", "pipe", "HTTP paced", "embedded paced", "pipe paced"]
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    # The server keeps every line (its default keeps the newest 100,000); the embedded backend
    # has no such option, so a follower slower than the job there may see lines dropped
    # ("lines" in the details says how many arrived).
    with logged_server("--max-log-lines", str(n)) as server:
        for _ in range(REPEATS):
            figures["HTTP"].append(followed_logs({"endpoint": server.url}, n))
            figures["HTTP paced"].append(followed_logs({"endpoint": server.url}, paced, PACE))
    with tempfile.TemporaryDirectory() as home:
        for _ in range(REPEATS):
            figures["embedded"].append(followed_logs({"home": home}, n))
            figures["embedded paced"].append(followed_logs({"home": home}, paced, PACE))
    for _ in range(REPEATS):
        figures["pipe"].append(piped_lines(n))
        figures["pipe paced"].append(piped_lines(paced, PACE))

    def of(name: str, key: str) -> dict[str, Any]:
        return replay([one[key] for one in figures[name]])

    detail = {
        name: {k: [one[k] for one in runs] for k in runs[0]} for name, runs in figures.items()
    }
    pipe = "the same job's lines read from a pipe with readline"
    results = []
    for backend in ("HTTP", "embedded"):
        http = backend == "HTTP"
        results += [
            result(
                f"B5 log lines delivered, {backend}, job printing {n:,} lines",
                "lines/s",
                of(backend, "lines_per_s"),
                of("pipe", "lines_per_s"),
                pipe,
                ">= 200,000 lines/s" if http else "",
                id=f"b5_rate_{backend.lower()}",
                detail=detail,
            ),
            result(
                f"B5 write->delivery latency p50, {backend}, {n:,} lines",
                "us",
                of(backend, "p50_us"),
                of("pipe", "p50_us"),
                pipe,
                "p50 <= 50 ms (50,000 us)" if http else "",
                id=f"b5_p50_{backend.lower()}",
            ),
            result(
                f"B5 paced write->delivery latency p50, {backend}, {paced:,} lines at {PACE:,}/s",
                "us",
                of(f"{backend} paced", "p50_us"),
                of("pipe paced", "p50_us"),
                f"{pipe}, same pace",
                "p50 <= 50 ms (50,000 us)" if http else "",
                id=f"b5_paced_p50_{backend.lower()}",
            ),
        ]
    return results


# -- B6 sync facade overhead ----------------------------------------------------------------
#
# Every figure below is one call from this thread into another thread and back, measured in
# the same repetition as the others, one after the other, REPEATS times. Two floors:
# - the Python one: a ``concurrent.futures.Future`` handed to a thread blocked on a
#   ``queue.SimpleQueue``, which completes it; the least a call into another Python thread
#   that waits for its answer costs (two wake-ups, each followed by a GIL hand-off);
# - the C one: two threads passing a turn through a pthread mutex and condition variable (no
#   interpreter at all), built with the system's C compiler when there is one.
# And two figures that are not floors, to place the facade between them:
# ``asyncio.run_coroutine_threadsafe`` of a coroutine doing nothing (asyncio's own thread-safe
# call, the floor this benchmark used to name), and the facade's ``Hop.call`` of a coroutine
# doing nothing (the facade's round trip alone, without the work of a real call).
# Each is measured twice: as the scheduler places the threads, and with the process's threads
# confined to one CPU (wake-ups across CPUs cost more on this VM, and where the scheduler puts
# two threads changes from one measurement to the next; on one CPU the ratios are steadier).


def python_pingpong_us(n: int) -> float:
    """The Python floor: a Future handed to another thread, which completes it; n round trips."""
    requests: queue.SimpleQueue[Future[None] | None] = queue.SimpleQueue()

    def answer() -> None:
        while (future := requests.get()) is not None:
            future.set_result(None)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        start = time.perf_counter()
        for _ in range(n):
            future: Future[None] = Future()
            requests.put(future)
            future.result()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        requests.put(None)
        thread.join()


def build_c_pingpong(directory: str) -> Path | None:
    """Compile ``_pingpong.c``; ``None`` when this machine has no C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    binary = Path(directory) / "pingpong"
    argv = [compiler, "-O2", "-pthread", "-o", str(binary), str(HERE / "_pingpong.c")]
    done = subprocess.run(argv, capture_output=True, check=False)
    return binary if done.returncode == 0 else None


def c_pingpong_us(binary: Path, n: int) -> float:
    """The C floor: two pthreads passing a turn through a mutex and condition variable."""
    done = subprocess.run([str(binary), str(n)], capture_output=True, text=True, check=True)
    return float(done.stdout)


def run_coroutine_threadsafe_us(n: int) -> float:
    """``asyncio.run_coroutine_threadsafe`` of a coroutine that does nothing, from this thread."""

    async def nothing() -> None:
        pass

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        for _ in range(n):
            asyncio.run_coroutine_threadsafe(nothing(), loop).result()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def facade_us(home: str, n: int) -> dict[str, float]:
    """``get_run`` on both facades, and the sync facade's bare round trip (``Hop.call``)."""

    async def nothing() -> None:
        pass

    async def main() -> float:
        async with asyncrun.AsyncClient(home=home) as client:
            run = await client.new_run("b6", "command+job", spec=SPEC)
            get_run, project, id_ = client.get_run, run.project, run.id
            start = time.perf_counter()
            for _ in range(n):
                await get_run(project, id_)
            return (time.perf_counter() - start) / n * 1e6

    async_us = anyio.run(main)
    with asyncrun.Client(home=home) as client:
        run = client.new_run("b6", "command+job", spec=SPEC)
        get_run, project, id_ = client.get_run, run.project, run.id
        start = time.perf_counter()
        for _ in range(n):
            get_run(project, id_)
        sync_us = (time.perf_counter() - start) / n * 1e6
        call = client._hop.call  # the facade's round trip, without the work of a real call
        start = time.perf_counter()
        for _ in range(n):
            call(nothing)
        hop_us = (time.perf_counter() - start) / n * 1e6
    return {
        "async_us": async_us,
        "sync_us": sync_us,
        "overhead_us": sync_us - async_us,
        "hop_us": hop_us,
    }


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Confine this thread, and the threads and processes it starts, to one CPU (Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def b6_repetition(home: str, n: int, c_binary: Path | None) -> dict[str, float]:
    figures = {"python_us": python_pingpong_us(n)}
    if c_binary is not None:
        figures["c_us"] = c_pingpong_us(c_binary, n)
    figures["rcts_us"] = run_coroutine_threadsafe_us(n)
    return figures | facade_us(home, n)


def b6(scale: float) -> list[dict[str, Any]]:
    n = max(200, int(20_000 * scale))
    runs: dict[str, list[dict[str, float]]] = {"B6 ": [], "B6 threads on one CPU, ": []}
    with tempfile.TemporaryDirectory() as home:
        c_binary = build_c_pingpong(home)
        for _ in range(REPEATS):
            runs["B6 "].append(b6_repetition(home, n, c_binary))
            with one_cpu():
                runs["B6 threads on one CPU, "].append(b6_repetition(home, n, c_binary))
    python = "Python Future ping-pong between two threads (SimpleQueue + Future.set_result)"
    results = []
    for where, figures in runs.items():

        def of(key: str, figures: list[dict[str, float]] = figures) -> dict[str, Any]:
            return replay([one[key] for one in figures])

        tag = "_one_cpu" if "one CPU" in where else ""
        results += [
            result(
                f"{where}sync facade overhead, get_run, embedded ({n:,} calls)",
                "us/call",
                of("overhead_us"),
                of("python_us"),
                python,
                "<= 30 us; <= 2x the Python ping-pong",
                id=f"b6_overhead{tag}",
                detail={key: [one[key] for one in figures] for key in figures[0]},
            ),
            result(
                f"{where}facade round trip alone (Hop.call of a coroutine doing nothing)",
                "us/call",
                of("hop_us"),
                of("python_us"),
                python,
                "",
                id=f"b6_hop{tag}",
            ),
            result(
                f"{where}asyncio.run_coroutine_threadsafe of a coroutine doing nothing",
                "us/call",
                of("rcts_us"),
                of("python_us"),
                python,
                "",
                id=f"b6_rcts{tag}",
            ),
        ]
        if "c_us" in figures[0]:
            results.append(
                result(
                    f"{where}Python Future ping-pong (the Python floor)",
                    "us/call",
                    of("python_us"),
                    of("c_us"),
                    "C ping-pong: two pthreads, one mutex and condition variable",
                    "",
                    id=f"b6_python_floor{tag}",
                )
            )
    return results


# -- B7 memory per run ----------------------------------------------------------------------


def _spec(i: int) -> dict[str, Any]:
    # What a training job's run typically carries: a handler, a few parameters, a label.
    return {
        "handler": "pipelines.train:main",
        "parameters": {"lr": 0.001 * (i % 10 + 1), "epochs": 10, "batch_size": 64, "seed": i},
        "env": {"CUDA_VISIBLE_DEVICES": "0"},
    }


def held_bytes(k: int) -> tuple[float, float, float, float]:
    """Bytes per ``AsyncRun`` retained by a list of ``k`` runs, and per record as compact JSON.

    Twice: runs built by ``build_run`` (state CREATED, each with its own spec), and runs as
    read back from the backend once COMPLETED (transitions, exit code), each parsed from the
    JSON the HTTP transport receives.
    """

    async def main() -> tuple[float, float, float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            async with asyncrun.AsyncClient(home=tmp) as client:
                build = client.build_run
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                runs = [
                    build("bench", "python+job", spec=_spec(i), labels=["nightly"])
                    for i in range(k)
                ]
                gc.collect()
                built = (tracemalloc.get_traced_memory()[0] - before) / k
                tracemalloc.stop()
                built_json = len(orjson.dumps(_serde.to_dict(runs[k // 2].record)))
                del runs

                done = await client.new_run("bench", "command+job", spec=SPEC, labels=["nightly"])
                await (await done.run()).wait(log_info=False)
                payload = _serde.dumps(done.record)
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                runs = [asyncrun.AsyncRun(client, _serde.run_from_json(payload)) for _ in range(k)]
                gc.collect()
                read = (tracemalloc.get_traced_memory()[0] - before) / k
                tracemalloc.stop()
                del runs
                return built, built_json, read, len(payload)

    return anyio.run(main)


def b7(scale: float) -> list[dict[str, Any]]:
    k = max(1_000, int(10_000 * scale))
    figures = [held_bytes(k) for _ in range(REPEATS)]
    floor_name = "the same record as compact JSON (orjson)"
    return [
        result(
            f"B7 memory per AsyncRun held, built ({k:,} runs)",
            "bytes",
            replay([one[0] for one in figures]),
            replay([one[1] for one in figures]),
            floor_name,
            "<= 2 KB",
            id="b7_built",
        ),
        result(
            f"B7 memory per AsyncRun held, COMPLETED, read back ({k:,} runs)",
            "bytes",
            replay([one[2] for one in figures]),
            replay([one[3] for one in figures]),
            floor_name,
            "<= 2 KB",
            id="b7_completed",
        ),
    ]


def run(scale: float) -> list[dict[str, Any]]:
    """B3 to B7; ``scale`` multiplies the sizes (1.0 is the recorded size)."""
    return [*b6(scale), *b7(scale), *b4(scale), *b5(scale), *b3(scale)]
