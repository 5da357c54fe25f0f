"""What a kind is: how its spec is validated, how it executes, which methods its runs have."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .._core.records import Run, State


@attrs.frozen
class ProcessSpec:
    """How to start the process of one execution."""

    argv: list[str]
    env: dict[str, str] = attrs.Factory(dict)
    cwd: str | None = None
    reads: tuple[str, ...] = ()
    """Paths the job must be able to read besides ``argv[0]`` and ``cwd`` (checked before an
    isolated job starts, so that an unreachable one fails with a clear message)."""


@attrs.frozen
class Outcome:
    """How an execution ended, as the kind reads it."""

    state: State
    message: str | None = None
    status: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen
class Kind:
    """A kind: the protocol every built-in and plug-in kind follows.

    How a run of it goes, and which process calls what:

    1. ``validate(spec)`` is called where a run is created or updated (the service: the
       caller's process on the embedded backend, the server otherwise) and by the command
       line before it asks; it raises ``ValueError`` naming the field of an invalid spec.
    2. When the run is started, the agent (a separate process) calls
       ``process(spec, scratch, python)``: ``scratch`` is a new private folder of this
       execution, ``python`` the interpreter recorded for the run (the caller's on the embedded
       backend). It returns the :class:`ProcessSpec` the agent starts: argv, environment, working
       folder. Each line the process writes becomes a log line (stdout or stderr); metrics come
       from ``asyncrun.current_run()`` inside it as in every job.
    3. A kind whose job is Python code of its own gives ``job(scratch)`` and makes ``process``
       return :func:`runner_argv`: the job runner (``python -m asyncrun.kinds._runner``) loads
       the kind in the job's process and calls ``job`` there; its return value is the exit code.
    4. When the process has ended, the agent calls ``outcome(code, scratch)`` (the exit code,
       negative for a signal, and the same folder, removed afterwards): the run's end state,
       message, and fields added to its status (e.g. ``results``).
    5. ``methods`` are the run's kind-specific methods in the client (``run.result()`` of
       ``python+job``); each takes the run record.

    Functions must be importable from the kind's module in every process: a plug-in is found
    through its entry point in group ``asyncrun.kinds``, never pickled.

    Attributes:
        name: The kind's name, e.g. ``python+job``; a plug-in's entry point has this name.
        validate: Raises ``ValueError`` naming the field when a spec is invalid.
        process: Builds the process of an execution from the spec, a scratch folder and the
            interpreter recorded for the run.
        outcome: Reads how the process ended (exit code, scratch folder) into an outcome.
        methods: Kind-specific run methods; each takes the run record.
        job: The job side, run by the job runner in the job's process (``None``: none).
    """

    name: str
    validate: Callable[[Mapping[str, Any]], None]
    process: Callable[[Mapping[str, Any], Path, str], ProcessSpec]
    outcome: Callable[[int, Path], Outcome]
    methods: Mapping[str, Callable[[Run], Any]] = attrs.Factory(dict)
    job: Callable[[Path], int] | None = None


def runner_argv(python: str, kind: str, scratch: Path) -> list[str]:
    """The argv that runs ``kind``'s ``job(scratch)`` in a job process, with ``python``.

    The job runner finds the kind there through its entry point, so the plug-in must be
    installed for that interpreter too.
    """
    return [python, "-m", "asyncrun.kinds._runner", "--kind", kind, str(scratch)]


def check_env_cwd(spec: Mapping[str, Any]) -> None:
    """Validate the optional ``env`` (str -> str) and ``cwd`` (str) that every job kind takes."""
    env = spec.get("env")
    if env is not None and (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise ValueError("spec.env must map variable names to string values")
    cwd = spec.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError("spec.cwd must be a path string")


def exit_outcome(code: int) -> Outcome:
    """The outcome of a process from its exit code alone."""
    status: dict[str, Any] = {"exit_code": code}
    if code == 0:
        return Outcome(State.COMPLETED, None, status)
    if code < 0:
        return Outcome(State.ERROR, f"the process was killed by signal {-code}", status)
    return Outcome(State.ERROR, f"the process exited with code {code}", status)
