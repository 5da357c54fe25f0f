"""``greet+job``: print a greeting ``times`` times; the run's status keeps the greeting.

Spec: ``{"name": str, "times": int, "fail": bool}``. The job side runs in the job's process
through the job runner; it logs a metric through ``current_run()`` as any job can.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncrun
from asyncrun import kinds


def validate(spec: Mapping[str, Any]) -> None:
    """Refuse a spec without a name or with a bad count."""
    if not isinstance(spec.get("name"), str):
        raise ValueError("spec.name must be a string")
    times = spec.get("times", 1)
    if not isinstance(times, int) or not 1 <= times <= 100:
        raise ValueError("spec.times must be an integer from 1 to 100")


def process(spec: Mapping[str, Any], scratch: Path, python: str) -> kinds.ProcessSpec:
    """The job runner, calling :func:`job` with the spec written into the scratch folder."""
    (scratch / "spec.json").write_text(json.dumps(dict(spec)))
    return kinds.ProcessSpec(kinds.runner_argv(python, "greet+job", scratch))


def job(scratch: Path) -> int:
    """Inside the job: greet, count, and leave the greeting for :func:`outcome`."""
    spec = json.loads((scratch / "spec.json").read_text())
    greeting = f"hello, {spec['name']}"
    for i in range(spec.get("times", 1)):
        print(f"{greeting} ({i})", flush=True)
    print("greeted", file=sys.stderr, flush=True)
    asyncrun.current_run().log_metric("greetings", spec.get("times", 1))
    if spec.get("fail"):
        return 3
    (scratch / "greeting.json").write_text(json.dumps(greeting))
    return 0


def outcome(code: int, scratch: Path) -> kinds.Outcome:
    """COMPLETED with the greeting, or ERROR saying why."""
    path = scratch / "greeting.json"
    if code != 0 or not path.exists():
        return kinds.Outcome(
            asyncrun.State.ERROR, f"the greeter failed with code {code}", {"exit_code": code}
        )
    return kinds.Outcome(
        asyncrun.State.COMPLETED,
        None,
        {"exit_code": code, "greeting": json.loads(path.read_text())},
    )


def greeting(run: asyncrun.RunRecord) -> str | None:
    """The greeting of a completed run (a run method: ``run.greeting()``)."""
    return run.status.extra.get("greeting")


KIND = kinds.Kind("greet+job", validate, process, outcome, {"greeting": greeting}, job=job)
kinds.register(KIND)  # harmless: a plug-in that also registers itself stays executable
