"""The MLflow side of the peer benchmarks: one repetition of every workload, one JSON record.

Runs in the ``bench_peers`` nox venv (``mlflow>=3,<4``). Starts ``mlflow server`` on loopback
with a fresh SQLite store and one worker (more workers put uvicorn in multi-process mode, which
never sets TCP_NODELAY: ~40 ms per keep-alive request, see shared/PEERS.md), waits until the
server and its helpers are idle, runs the workloads and stops the server's process group.
Every workload reads back what it wrote, outside the timed region.
"""

from __future__ import annotations

import os

# Before importing mlflow. Async logging batches what arrived in a 1 s window (PEERS.md's
# setting; MLflow 3.x still reads it on every pass of its logging loop). No telemetry calls:
# this machine has no network beyond loopback.
os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric

BATCH = 1_000  # MLflow's limit of metrics per log_batch


def b1_log_metric(n: int) -> dict[str, Any]:
    """``mlflow.log_metric(synchronous=False)`` in an active run: caller cost and end to end."""
    experiment = MlflowClient().create_experiment(f"b1-{uuid.uuid4().hex}")
    with mlflow.start_run(experiment_id=experiment) as run:
        for i in range(100):  # warm-up: starts the async queue and its threads
            mlflow.log_metric("warmup", i * 0.5, step=i, synchronous=False)
        mlflow.flush_async_logging()
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


def get_run(client: MlflowClient, n: int) -> dict[str, Any]:
    """``MlflowClient.get_run`` of one run, sequential."""
    run_id = client.create_run(client.create_experiment(f"get-{uuid.uuid4().hex}")).info.run_id
    start = time.perf_counter()
    for _ in range(n):
        _common.check(client.get_run(run_id).info.run_id == run_id, "B-get: wrong run")
    elapsed = time.perf_counter() - start
    return {"get": {"value": n / elapsed, "check": "every reply carried the run's id"}}


def main() -> None:
    args = _common.parse_args()
    n = _common.sizes(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        port = _common.free_port()
        url = f"http://127.0.0.1:{port}"
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
        # cwd=tmp: the server's default artifact store (./mlartifacts) lands there too.
        with _common.server(argv, f"{url}/health", Path(tmp), dict(os.environ)) as facts:
            mlflow.set_tracking_uri(url)
            client = MlflowClient(url)
            figures: dict[str, Any] = {}
            figures |= b1_log_metric(n["b1"])
            figures |= b2_log_batch(client, n["b2"])
            figures |= b3_create(client, n["b3"])
            figures |= get_run(client, n["get"])
            mlflow.flush_async_logging()
    _common.write_record(args.out, "mlflow", mlflow.__version__, facts, figures)


if __name__ == "__main__":
    main()
