"""The child side of ``python+job``: import the handler, call it, write what it returned.

Kept to the standard library so a job pays almost nothing to start. Usage (by the supervisor):
``python -m asyncrun.kinds._runner SCRATCH_DIR``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path
from typing import Any


class _LoadError(Exception):
    """The handler could not be imported or found: the job never ran."""


def _load(handler: str) -> Any:
    module_name, _, function_name = handler.partition(":")
    try:
        return getattr(importlib.import_module(module_name), function_name)
    except BaseException as exc:  # a module may fail to import with anything, SystemExit too
        raise _LoadError(f"cannot load handler {handler!r}: {type(exc).__name__}: {exc}") from exc


def _call(handler: str, parameters: dict[str, Any]) -> Any:
    function = _load(handler)
    value = function(**parameters)
    if inspect.isawaitable(value):
        import asyncio

        async def _await() -> Any:
            return await value

        value = asyncio.run(_await())
    return value


def main() -> int:
    scratch = Path(sys.argv[1])
    job = json.loads((scratch / "job.json").read_text())
    sys.path.insert(0, ".")  # a handler in the working directory imports like a script's module
    for folder in reversed(job.get("path", [])):
        sys.path.insert(0, folder)  # modules the run carries (spec.modules) come first
    try:
        value = _call(job["handler"], job["parameters"])
        payload = json.dumps({"result": value})
    except BaseException as exc:  # report everything, including SystemExit, as the run's error
        traceback.print_exc()
        message = str(exc) if isinstance(exc, _LoadError) else f"{type(exc).__name__}: {exc}"
        (scratch / "result.json").write_text(json.dumps({"error": message}))
        return 1
    (scratch / "result.json").write_text(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
