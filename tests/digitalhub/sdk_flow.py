"""The DigitalHub SDK's own flow against ``asyncrun server`` (run by ``run_flows.py``).

Usage: ``python sdk_flow.py remote|local``, with ``DHCORE_ENDPOINT`` and credentials set. Runs
in the SDK's venv (``nox -s digitalhub``), never in the test session: it imports the real
``digitalhub`` package. Every assertion is on what the SDK's own objects report. Prints one
``ok <step>`` line per step; any failure raises (a non-zero exit).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import digitalhub as dh

PROJECT = os.environ.get("FLOW_PROJECT", "demo")
PY = "PYTHON3_10"
TRAIN = """
def train(lr: float):
    print("training", lr)
    print("done")
    return lr * 2
"""
SLOW = """
import time

def slow(seconds: float):
    print("sleeping", seconds, flush=True)
    time.sleep(seconds)
    return "woke up"
"""


def step(name: str) -> None:
    print(f"ok {name}", flush=True)


def wait_state(run: Any, states: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while run.status.state not in states:
        assert time.monotonic() < deadline, f"run stayed {run.status.state}, wanted {states}"
        time.sleep(0.2)
        run.refresh()


def wait_output(run: Any, text: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        logs = run.logs()
        if logs and logs[0].text.count(text) >= count:
            return
        assert time.monotonic() < deadline, f"no {text!r} (x{count}) in the run's logs: {logs}"
        time.sleep(0.2)


def main(mode: str) -> None:
    local = mode == "local"
    project = dh.get_or_create_project(PROJECT)
    assert project.name == PROJECT
    again = dh.get_or_create_project(PROJECT)
    assert again.name == PROJECT
    assert again.id == project.id
    step("get_or_create_project twice")

    function = project.new_function(
        name="train", kind="python", code=TRAIN, handler="train", python_version=PY
    )
    assert function.kind == "python"
    assert function.name == "train"
    step("new_function")

    run = function.run(action="job", parameters={"lr": 0.1}, local_execution=local)
    assert run.kind == "python+job:run"
    assert run.spec.parameters == {"lr": 0.1}
    step(f"function.run(action='job', local_execution={local})")

    run.refresh()
    assert run.status.state in {"READY", "RUNNING", "COMPLETED"}, run.status.state
    step("refresh")

    run.wait(log_info=False)
    assert run.status.state == "COMPLETED", (run.status.state, run.status.message)
    assert run.status.results == {"output_0": 0.2}, run.status.results
    assert run.result("output_0") == 0.2
    step("wait")

    logs = run.logs()
    if local:
        assert logs == [], logs  # the SDK ran it in this process: the server has no output
    else:
        assert len(logs) == 1, logs
        assert logs[0].spec.run == run.id
        assert logs[0].text == "training 0.1\ndone\n", logs[0].text
    step("logs")

    run.log_metric("loss", 0.002)
    run.log_metric("loss", 0.0019)
    run.log_metric("loss", [0.0018, 0.0015])
    run.log_metric("accuracy", 0.9, single_value=True)
    run.log_metric("accuracy", [0.8, 0.9], overwrite=True)
    assert run.metrics == {"loss": [0.002, 0.0019, 0.0018, 0.0015], "accuracy": [0.8, 0.9]}
    step("log_metric (the specification's examples)")

    run.log_metrics({"loss": 0.002, "accuracy": 0.95, "f1": 0.5})
    run.log_metrics({"loss": [0.1, 0.05], "epoch": 10})
    run.log_metrics({"loss": 0.001, "accuracy": 0.96})
    expected = {
        "loss": [0.002, 0.0019, 0.0018, 0.0015, 0.002, 0.1, 0.05, 0.001],
        "accuracy": [0.8, 0.9, 0.95, 0.96],
        "f1": 0.5,
        "epoch": 10,
    }
    assert run.metrics == expected, run.metrics
    run.log_metrics({"loss": 0.0005, "accuracy": 0.98}, overwrite=True)
    expected |= {"loss": 0.0005, "accuracy": 0.98}
    fresh = dh.get_run(run.key)
    assert fresh.metrics == expected, fresh.metrics
    step("log_metrics (the specification's examples) and metrics")

    path = Path(run.export())
    assert path.exists()
    assert run.id in path.read_text()
    step("export")

    run.metadata.description = "saved by the SDK"
    run.save(update=True)
    fresh = dh.get_run(run.key)
    assert fresh.metadata.description == "saved by the SDK"
    assert fresh.status.state == "COMPLETED"  # a PUT without revision never rolls it back
    assert fresh.status.results == {"output_0": 0.2}
    assert fresh.metrics == expected
    step("save(update=True)")

    if local:
        return
    slow = project.new_function(
        name="slow", kind="python", code=SLOW, handler="slow", python_version=PY
    )
    long_run = slow.run(action="job", parameters={"seconds": 600})
    wait_state(long_run, {"RUNNING"})
    wait_output(long_run, "sleeping 600")
    long_run.stop()
    long_run.wait(log_info=False)
    assert long_run.status.state == "STOPPED", long_run.status.state
    step("stop on a long run")

    long_run.resume()  # asyncrun's own: DHCore has no resume for python jobs
    wait_state(long_run, {"RUNNING"})
    wait_output(long_run, "sleeping 600", count=2)  # its logs follow the first execution's
    long_run.stop()
    long_run.wait(log_info=False)
    assert long_run.status.state == "STOPPED", long_run.status.state
    step("resume, then stop again")


if __name__ == "__main__":
    main(sys.argv[1])
