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
    """A registered kind.

    Attributes:
        name: The kind's name, e.g. ``python+job``.
        validate: Raises ``ValueError`` naming the field when a spec is invalid.
        process: Builds the process of an execution from the spec, a scratch folder and the
            interpreter recorded for the run (the caller's on the embedded backend).
        outcome: Reads how the process ended (exit code, scratch folder) into an outcome.
        methods: Kind-specific run methods; each takes the run record.
    """

    name: str
    validate: Callable[[Mapping[str, Any]], None]
    process: Callable[[Mapping[str, Any], Path, str], ProcessSpec]
    outcome: Callable[[int, Path], Outcome]
    methods: Mapping[str, Callable[[Run], Any]] = attrs.Factory(dict)


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
