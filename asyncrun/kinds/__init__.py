"""Kinds: a registry of how each kind's spec is validated and executed, and its run methods."""

from __future__ import annotations

from ._base import Kind, Outcome, ProcessSpec
from ._command_job import KIND as COMMAND_JOB
from ._python_job import KIND as PYTHON_JOB

_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> None:
    """Register (or replace) a kind."""
    _REGISTRY[kind.name] = kind


def get(name: str) -> Kind | None:
    """The registered kind called ``name``, if any."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """Names of every registered kind."""
    return sorted(_REGISTRY)


register(COMMAND_JOB)
register(PYTHON_JOB)

__all__ = ["Kind", "Outcome", "ProcessSpec", "get", "names", "register"]
