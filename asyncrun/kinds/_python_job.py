"""``python+job``: call ``package.module:function(**parameters)`` in a child process.

The function's return value (JSON-able) becomes ``status.results``; an exception ends the run
in ERROR with the exception as the message. ``spec.modules`` may carry the source of modules
the handler imports (``{"main": "<base64 of main.py>"}``): each execution writes them into its
own scratch folder, first on the job's import path, so a run needs no code on the server's disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.records import Run, State
from ._base import Kind, Outcome, ProcessSpec, check_env_cwd, exit_outcome

_PACKAGE = Path(__file__).resolve().parents[1]
_HANDLER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_MODULE_RE = re.compile(r"^[A-Za-z_]\w{0,99}$")
MAX_MODULES = 100
RESULT_FILE = "result.json"
MODULES_DIR = "modules"


def _validate(spec: Mapping[str, Any]) -> None:
    handler = spec.get("handler")
    if not isinstance(handler, str) or not _HANDLER_RE.fullmatch(handler):
        raise ValueError(f"spec.handler must be 'package.module:function', got {handler!r}")
    parameters = spec.get("parameters")
    if parameters is not None and (
        not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters)
    ):
        raise ValueError("spec.parameters must be an object of keyword arguments")
    _check_modules(spec.get("modules"))
    check_env_cwd(spec)


def _check_modules(modules: object) -> None:
    if modules is None:
        return
    if not isinstance(modules, dict) or len(modules) > MAX_MODULES:
        raise ValueError(
            f"spec.modules must map at most {MAX_MODULES} module names to their base64 source"
        )
    for name, source in modules.items():
        if not isinstance(name, str) or not _MODULE_RE.fullmatch(name):
            raise ValueError(f"spec.modules: {name!r} is not a module name (like 'main')")
        if not isinstance(source, str):
            raise ValueError(f"spec.modules.{name} must be the module's source in base64")
        try:
            base64.b64decode(source, validate=True)
        except binascii.Error:
            raise ValueError(f"spec.modules.{name} is not valid base64") from None


def _process(spec: Mapping[str, Any], scratch: Path, python: str) -> ProcessSpec:
    env = dict(spec.get("env") or {})
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are printed
    job: dict[str, Any] = {"handler": spec["handler"], "parameters": spec.get("parameters") or {}}
    modules = spec.get("modules")
    if modules:
        folder = scratch / MODULES_DIR
        folder.mkdir()
        for name, source in modules.items():
            (folder / f"{name}.py").write_bytes(base64.b64decode(source))
        job["path"] = [str(folder)]
    (scratch / "job.json").write_text(json.dumps(job))
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
