"""``command+job``: run an argv list; the exit code is recorded, non-zero is an ERROR."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._base import Kind, Outcome, ProcessSpec, check_env_cwd, exit_outcome


def _validate(spec: Mapping[str, Any]) -> None:
    command = spec.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(arg, str) for arg in command)
    ):
        raise ValueError('spec.command must be a non-empty list of strings, like ["echo", "hi"]')
    check_env_cwd(spec)


def _process(spec: Mapping[str, Any], scratch: Path, python: str) -> ProcessSpec:
    return ProcessSpec(list(spec["command"]), dict(spec.get("env") or {}), spec.get("cwd"))


def _outcome(code: int, scratch: Path) -> Outcome:
    return exit_outcome(code)


KIND = Kind("command+job", _validate, _process, _outcome)
