"""Kinds: how each kind's spec is validated and executed, and which methods its runs have.

A kind is a :class:`Kind` (see there for the protocol). Two are built in, ``python+job`` and
``command+job``; any other comes from a **plug-in**: a distribution that declares an entry point
in group ``asyncrun.kinds`` whose name is the kind's name and whose object is a :class:`Kind`
(or a callable taking no argument and returning one)::

    [project.entry-points."asyncrun.kinds"]
    "greet+job" = "asyncrun_greet:KIND"

Every process that deals with runs finds plug-ins the same way, so they agree on what a kind
is: the service (which validates specs and refuses runs it cannot execute), the agent (which
starts jobs and reads how they ended), the job runner (``python -m asyncrun.kinds._runner``,
for kinds with a job side) and the client (run methods, the command line). Entry points are
listed once per process, on first use, and a plug-in is imported only when its kind is first
asked for; one that fails to import raises :class:`KindLoadError`, naming its distribution.

:func:`register` adds a kind to this process only. Such a kind validates specs and gives runs
its methods here, but no agent can execute it: ``run()`` refuses it with a ``ValidationError``
telling to publish it as an entry point.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Literal

from ._base import Kind, Outcome, ProcessSpec, runner_argv
from ._command_job import KIND as COMMAND_JOB
from ._python_job import KIND as PYTHON_JOB

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUP = "asyncrun.kinds"
"""The entry-point group plug-in kinds are published in."""

Origin = Literal["builtin", "entry point", "process"]

_BUILTIN: dict[str, Kind] = {COMMAND_JOB.name: COMMAND_JOB, PYTHON_JOB.name: PYTHON_JOB}
_REGISTERED: dict[str, Kind] = {}  # by register(), in this process only
_LOADED: dict[str, Kind | KindLoadError] = {}  # entry points imported so far (or their failure)
_ENTRY_POINTS: dict[str, EntryPoint] | None = None
_SCANNED_AT = 0.0
_RESCAN_AFTER = 1.0  # seconds: an unknown name looks again (a plug-in installed meanwhile)
_LOCK = threading.RLock()


class KindLoadError(RuntimeError):
    """A plug-in kind's entry point could not be loaded (its message names the distribution)."""


def register(kind: Kind) -> None:
    """Register (or replace) a kind in this process only.

    Its specs are validated and its runs have its methods here, but runs of it cannot be
    executed: an agent is another process. To execute them, publish the kind as an entry point
    in group ``asyncrun.kinds`` (see the module's documentation).
    """
    with _LOCK:
        _REGISTERED[kind.name] = kind


def unregister(name: str) -> None:
    """Forget a kind :func:`register` added (built-in and plug-in kinds stay)."""
    with _LOCK:
        _REGISTERED.pop(name, None)


def get(name: str) -> Kind | None:
    """The kind called ``name``, if any: registered here, built in, or from a plug-in.

    Raises:
        KindLoadError: if the plug-in that publishes ``name`` cannot be imported.
    """
    with _LOCK:
        kind = _REGISTERED.get(name) or _BUILTIN.get(name)
        if kind is not None:
            return kind
        loaded = _LOADED.get(name)
        if loaded is None:
            if name not in _entry_points(name):
                return None
            _loaded(name)
            loaded = _LOADED[name]
    if isinstance(loaded, KindLoadError):
        raise KindLoadError(str(loaded))  # a new one each time: tracebacks do not pile up
    return loaded


def origin(name: str) -> Origin | None:
    """Where the kind ``name`` comes from, without importing a plug-in (``None``: unknown).

    Only ``builtin`` and ``entry point`` kinds can be executed: the agent finds them too.
    """
    with _LOCK:
        registered = _REGISTERED.get(name)
        # A plug-in that also registers its kind when imported is still a plug-in.
        plugin = registered is not None and name in _entry_points(name)
        plugin = plugin and registered is _loaded(name)
        if registered is not None and registered is not _BUILTIN.get(name) and not plugin:
            return "process"
        if name in _BUILTIN:
            return "builtin"
        return "entry point" if name in _entry_points(name) else None


def _loaded(name: str) -> Kind | None:
    loaded = _LOADED.get(name)
    if loaded is None:
        loaded = _LOADED[name] = _load(_entry_points(name)[name])
    return None if isinstance(loaded, KindLoadError) else loaded


def names() -> list[str]:
    """Names of every known kind (plug-ins are listed, not imported)."""
    with _LOCK:
        return sorted({*_BUILTIN, *_entry_points(None), *_REGISTERED})


def _entry_points(wanted: str | None) -> dict[str, EntryPoint]:
    """The plug-in entry points by kind name, listed once (again for an unknown ``wanted``)."""
    global _ENTRY_POINTS, _SCANNED_AT
    now = time.monotonic()
    stale = wanted is not None and now - _SCANNED_AT > _RESCAN_AFTER
    if _ENTRY_POINTS is None or (stale and wanted not in _ENTRY_POINTS):
        import importlib.metadata  # only when kinds are looked up: not at ``import asyncrun``

        found: dict[str, EntryPoint] = {}
        for point in importlib.metadata.entry_points(group=GROUP):
            # Built-in names cannot be taken over; the first of two same-named plug-ins wins.
            if point.name not in _BUILTIN:
                found.setdefault(point.name, point)
        _ENTRY_POINTS, _SCANNED_AT = found, now
    return _ENTRY_POINTS


def _load(point: EntryPoint) -> Kind | KindLoadError:
    dist = point.dist
    source = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    where = f"plug-in kind {point.name!r} (entry point {point.value!r} of {source})"
    try:
        value = point.load()
        kind = value if isinstance(value, Kind) else value() if callable(value) else value
    except BaseException as exc:  # a plug-in may fail with anything while importing
        if isinstance(exc, KeyboardInterrupt):
            raise
        return KindLoadError(f"cannot load {where}: {type(exc).__name__}: {exc}")
    if not isinstance(kind, Kind):
        return KindLoadError(f"cannot load {where}: it is not an asyncrun.kinds.Kind")
    if kind.name != point.name:
        return KindLoadError(f"cannot load {where}: the kind it gives is named {kind.name!r}")
    return kind


__all__ = [
    "GROUP",
    "Kind",
    "KindLoadError",
    "Origin",
    "Outcome",
    "ProcessSpec",
    "get",
    "names",
    "origin",
    "register",
    "runner_argv",
    "unregister",
]
