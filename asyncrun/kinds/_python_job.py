"""``python+job``: call ``package.module:function(**parameters)`` in a child process.

The function's return value (JSON-able) becomes ``status.results``; an exception ends the run
in ERROR with the exception as the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.records import Run, State
from ._base import Kind, Outcome, ProcessSpec, check_env_cwd, exit_outcome

_PACKAGE = Path(__file__).resolve().parents[1]
_HANDLER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
RESULT_FILE = "result.json"


def _validate(spec: Mapping[str, Any]) -> None:
    handler = spec.get("handler")
    if not isinstance(handler, str) or not _HANDLER_RE.fullmatch(handler):
        raise ValueError(f"spec.handler must be 'package.module:function', got {handler!r}")
    parameters = spec.get("parameters")
    if parameters is not None and (
        not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters)
    ):
        raise ValueError("spec.parameters must be an object of keyword arguments")
    check_env_cwd(spec)


def _process(spec: Mapping[str, Any], scratch: Path, python: str) -> ProcessSpec:
    env = dict(spec.get("env") or {})
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are printed
    (scratch / "job.json").write_text(
        json.dumps({"handler": spec["handler"], "parameters": spec.get("parameters") or {}})
    )
    argv = [python, "-m", "asyncrun.kinds._runner", str(scratch)]
    # The job imports asyncrun from where this one is installed: the launching side's.
    return ProcessSpec(argv, env, spec.get("cwd"), reads=(str(_PACKAGE),))


def _outcome(code: int, scratch: Path) -> Outcome:
    path = scratch / RESULT_FILE
    if not path.exists():
        return exit_outcome(code)
    try:
        written = json.loads(path.read_text())
    except ValueError:
        return Outcome(State.ERROR, "the job's result file is unreadable", {"exit_code": code})
    if "error" in written:
        return Outcome(State.ERROR, str(written["error"]), {"exit_code": code})
    return Outcome(State.COMPLETED, None, {"exit_code": code, "results": written["result"]})


def result(run: Run) -> Any:
    """The value the handler returned (``None`` until the run has completed)."""
    return run.status.extra.get("results")


def results(run: Run) -> dict[str, Any]:
    """The results as a mapping: the returned dict itself, or ``{"result": value}``."""
    value = result(run)
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"result": value}


KIND = Kind("python+job", _validate, _process, _outcome, {"result": result, "results": results})
