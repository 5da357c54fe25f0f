"""The job runner: the child side of ``python+job``, and of plug-in kinds with a job side.

``python -m asyncrun.kinds._runner SCRATCH_DIR`` (``python+job``) imports the handler, calls it
and writes what it returned; it is kept to the standard library so a job pays almost nothing to
start. ``python -m asyncrun.kinds._runner --kind NAME SCRATCH_DIR`` loads the kind ``NAME``
through its entry point (group ``asyncrun.kinds``) and exits with its ``job(SCRATCH_DIR)``.
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


def _run_kind(name: str, scratch: Path) -> int:
    from asyncrun import kinds  # only plug-in kinds pay for importing asyncrun

    try:
        kind = kinds.get(name)
    except kinds.KindLoadError as exc:
        print(f"asyncrun: {exc}", file=sys.stderr)
        return 2
    if kind is None or kind.job is None:
        why = "is not installed" if kind is None else "has no job side"
        print(f"asyncrun: the kind {name!r} {why} for {sys.executable}", file=sys.stderr)
        return 2
    return kind.job(scratch)


def main() -> int:
    if sys.argv[1] == "--kind":
        return _run_kind(sys.argv[2], Path(sys.argv[3]))
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
