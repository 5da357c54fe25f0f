"""The MLflow side of the peer benchmarks: one repetition of every workload, one JSON record.

Runs in the ``bench_peers`` nox venv (``mlflow>=3,<4``). Starts ``mlflow server`` on loopback
with a fresh SQLite store and one worker (more workers put uvicorn in multi-process mode, which
never sets TCP_NODELAY: ~40 ms per keep-alive request, see shared/PEERS.md), waits until the
server and its helpers are idle, runs the workloads and stops the server's process group.
Every workload reads back what it wrote, outside the timed region.
"""

from __future__ import annotations

import gc
import os

# Before importing mlflow. Async logging batches what arrived in a 1 s window (PEERS.md's
# setting; MLflow 3.x still reads it on every pass of its logging loop). No telemetry calls:
# this machine has no network beyond loopback.
os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
# B3 runs 50 client threads: a connection pool of 50 (MLflow's default is 10) lets every thread
# keep its connection instead of opening a new one per request; read once, at the first request.
os.environ["MLFLOW_HTTP_POOL_MAXSIZE"] = "50"

import sqlite3
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag

BATCH = 1_000  # MLflow's limit of metrics per log_batch

# The server's SQLAlchemy pool. Its default (5 connections + 10 overflow) fails B3's 50
# concurrent create_run: requests wait for a connection until "QueuePool limit of size 5
# overflow 10 reached, connection timed out, timeout 30.00" (MLflow 3.17.2, SQLite store). A
# user running 50 clients would raise it the same way; it changes nothing for the sequential
# workloads.
SERVER_ENV = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "50", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "50"}


def b1_log_metric(n: int) -> dict[str, Any]:
    """``mlflow.log_metric(synchronous=False)`` in an active run: caller cost and end to end."""
    experiment = MlflowClient().create_experiment(f"b1-{uuid.uuid4().hex}")
    with mlflow.start_run(experiment_id=experiment) as run:
        for i in range(100):  # warm-up: starts the async queue and its threads
            mlflow.log_metric("warmup", i * 0.5, step=i, synchronous=False)
        mlflow.flush_async_logging()
        gc.collect()  # both sides: no collection of start-up garbage inside the timed loop
        start = time.perf_counter_ns()
        for i in range(n):
            mlflow.log_metric("loss", i * 0.5, step=i, synchronous=False)
        called = time.perf_counter_ns()
        mlflow.flush_async_logging()
        flushed = time.perf_counter_ns()
        stored = len(MlflowClient().get_metric_history(run.info.run_id, "loss"))
    _common.check(stored == n, f"B1: {stored} of {n} values stored")
    return {
        "b1_call": {"value": (called - start) / n / 1000, "check": f"{stored:,} values read back"},
        "b1_e2e": {"value": n / ((flushed - start) / 1e9), "check": f"{stored:,} read back"},
    }


def b1_client_log_metric(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.log_metric(run_id, ..., synchronous=False)``: the run-bound call.

    What the fluent call does underneath, without looking up the active run and building a
    client on every call: the MLflow counterpart of ``run.log_metric``. Flushed with
    ``mlflow.flush_async_logging()`` (the client shares the fluent API's store, hence its
    queue, for the same tracking URI: the read-back below checks that nothing was left behind).
    """
    run_id = client.create_run(client.create_experiment(f"b1c-{uuid.uuid4().hex}")).info.run_id
    log_metric = client.log_metric
    for i in range(100):  # warm-up, as for the fluent call
        log_metric(run_id, "warmup", i * 0.5, step=i, synchronous=False)
    mlflow.flush_async_logging()
    gc.collect()
    start = time.perf_counter_ns()
    for i in range(n):
        log_metric(run_id, "loss", i * 0.5, step=i, synchronous=False)
    called = time.perf_counter_ns()
    mlflow.flush_async_logging()
    flushed = time.perf_counter_ns()
    stored = len(client.get_metric_history(run_id, "loss"))
    _common.check(stored == n, f"B1 client: {stored} of {n} values stored")
    return {
        "b1_client_call": {
            "value": (called - start) / n / 1000,
            "check": f"{stored:,} values read back",
        },
        "b1_client_e2e": {"value": n / ((flushed - start) / 1e9), "check": f"{stored:,} read back"},
    }


def b2_log_batch(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.log_batch`` of 1,000 metrics per call, from the values to the last reply."""
    run_id = client.create_run(client.create_experiment(f"b2-{uuid.uuid4().hex}")).info.run_id
    start = time.perf_counter()
    for at in range(0, n, BATCH):
        ts = int(time.time() * 1000)
        batch = [Metric("loss", i * 0.5, ts, i) for i in range(at, min(n, at + BATCH))]
        client.log_batch(run_id, metrics=batch)
    elapsed = time.perf_counter() - start
    stored = len(client.get_metric_history(run_id, "loss"))
    _common.check(stored == n, f"B2: {stored} of {n} values stored")
    return {"b2": {"value": n / elapsed, "check": f"{stored:,} values read back"}}


def b3_create(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.create_run``, sequential."""
    experiment = client.create_experiment(f"b3-{uuid.uuid4().hex}")
    start = time.perf_counter()
    for _ in range(n):
        client.create_run(experiment)
    elapsed = time.perf_counter() - start
    found = len(client.search_runs([experiment], max_results=n + 100))
    _common.check(found == n, f"B3: {found} of {n} runs found")
    return {"b3": {"value": n / elapsed, "check": f"{found:,} runs found by search_runs"}}


def b3_create_concurrent(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.create_run`` from a pool of 50 threads (how MLflow users parallelise)."""
    experiment = client.create_experiment(f"b3c-{uuid.uuid4().hex}")
    with ThreadPoolExecutor(_common.IN_FLIGHT) as pool:
        start = time.perf_counter()
        ids = list(pool.map(lambda _: client.create_run(experiment).info.run_id, range(n)))
        elapsed = time.perf_counter() - start
    found = len(client.search_runs([experiment], max_results=n + 100))
    _common.check(found == n == len(set(ids)), f"B3 concurrent: {found} of {n} runs found")
    return {"b3c": {"value": n / elapsed, "check": f"{found:,} runs found by search_runs"}}


def b7_memory(client: MlflowClient, k: int) -> dict[str, Any]:
    """Bytes held per ``mlflow.entities.Run`` from ``get_run``: k objects, of 20 finished runs.

    Each run carries the same parameters, metrics (latest values, as ``get_run`` returns them)
    and tags as on the asyncrun side, and is FINISHED.
    """
    experiment = client.create_experiment(f"b7-{uuid.uuid4().hex}")
    ids = []
    for i in range(_common.B7_DISTINCT):
        run_id = client.create_run(experiment, run_name=f"train-{i}").info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, v, ts, 10) for key, v in _common.B7_METRICS.items()],
            params=[Param(key, v) for key, v in _common.B7_PARAMS.items()],
            tags=[RunTag(key, v) for key, v in _common.B7_TAGS.items()],
        )
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    for run_id in ids:  # warm-up: whatever get_run caches, it caches now
        client.get_run(run_id)
    with _common.Held() as held:
        runs: list[Run] = [client.get_run(ids[i % len(ids)]) for i in range(k)]
    one = runs[0].data
    _common.check(
        len(runs) == k
        and all(r.info.status == "FINISHED" for r in runs)
        and one.params == _common.B7_PARAMS
        and one.metrics == _common.B7_METRICS
        and _common.B7_TAGS.items() <= one.tags.items(),
        "B7: runs read back without their content",
    )
    check = (
        f"{k:,} FINISHED runs held, each with {len(one.params)} params, {len(one.metrics)} "
        f"metrics, {len(one.tags)} tags (incl. MLflow's own)"
    )
    return {"b7": {"value": held.bytes / k, "check": check}}


def get_run(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.get_run`` of one run, sequential."""
    run_id = client.create_run(client.create_experiment(f"get-{uuid.uuid4().hex}")).info.run_id
    start = time.perf_counter()
    for _ in range(n):
        _common.check(client.get_run(run_id).info.run_id == run_id, "B-get: wrong run")
    elapsed = time.perf_counter() - start
    return {"get": {"value": n / elapsed, "check": "every reply carried the run's id"}}


# asyncrun's SQLite runs in WAL mode with synchronous=NORMAL (a commit is durable once the WAL
# is synced at a checkpoint: a power cut may lose the last commits, never corrupt the file);
# MLflow's runs with SQLite's defaults, a rollback journal and synchronous=FULL (every commit
# synced). Put in front of the MLflow server's Python processes, this makes every SQLite
# connection MLflow opens use asyncrun's settings, so that B3 measures how much of the create
# gap is durability. It leaves a file behind as evidence that it ran.
SAME_DURABILITY_SITECUSTOMIZE = """
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _wal_normal(dbapi_connection, record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        Path(os.environ["BENCH_SQLITE_PRAGMAS_APPLIED"]).touch()
"""


def mlflow_server(tmp: str) -> tuple[list[str], str]:
    """The ``mlflow server`` command on a fresh SQLite store in ``tmp``, and its URL."""
    port = _common.free_port()
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp}/mlflow.sqlite3",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return argv, f"http://127.0.0.1:{port}"


def b3_same_durability(n: int) -> dict[str, Any]:
    """B3 sequential against an MLflow server whose SQLite has asyncrun's durability settings."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SAME_DURABILITY_SITECUSTOMIZE)
        applied = Path(tmp) / "pragmas-applied"
        pythonpath = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {
            **os.environ,
            **SERVER_ENV,
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "BENCH_SQLITE_PRAGMAS_APPLIED": str(applied),
        }
        argv, url = mlflow_server(tmp)
        with _common.server(argv, f"{url}/health", Path(tmp), env):
            figure = b3_create(MlflowClient(url), n)["b3"]
        with sqlite3.connect(Path(tmp) / "mlflow.sqlite3") as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        _common.check(applied.exists() and mode == "wal", "B3 same durability: pragmas not applied")
    figure["check"] += "; the store was in WAL mode, synchronous=NORMAL on every connection"
    return {"b3_wal_normal": figure}


def main() -> None:
    args = _common.parse_args()
    n = _common.sizes(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        argv, url = mlflow_server(tmp)
        # cwd=tmp: the server's default artifact store (./mlartifacts) lands there too.
        with _common.server(
            argv, f"{url}/health", Path(tmp), {**os.environ, **SERVER_ENV}
        ) as facts:
            mlflow.set_tracking_uri(url)
            client = MlflowClient(url)
            figures: dict[str, Any] = {}
            figures |= b1_log_metric(n["b1"])
            figures |= b1_client_log_metric(client, n["b1"])
            figures |= b2_log_batch(client, n["b2"])
            figures |= b3_create(client, n["b3"])
            figures |= b3_create_concurrent(client, n["b3c"])
            figures |= get_run(client, n["get"])
            figures |= b7_memory(client, n["b7"])
            mlflow.flush_async_logging()
    figures |= b3_same_durability(n["b3"])
    _common.write_record(args.out, "mlflow", mlflow.__version__, facts, figures)


if __name__ == "__main__":
    main()
