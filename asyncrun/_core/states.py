"""The run state machine of DESIGN.md section 4, as pure data and functions."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import attrs

from .errors import InvalidTransition
from .records import State, Status, Transition

TERMINAL: Final = frozenset({State.COMPLETED, State.ERROR, State.STOPPED, State.DELETED})
"""States that end a ``wait()``."""

_ALL: Final = frozenset(State)

NEXT: Final[dict[State, frozenset[State]]] = {
    State.CREATED: frozenset({State.BUILT, State.ERROR}),
    State.BUILT: frozenset({State.READY, State.ERROR}),
    State.READY: frozenset({State.PENDING, State.RUNNING, State.STOP, State.ERROR}),
    State.PENDING: frozenset({State.RUNNING, State.STOP, State.ERROR}),
    State.RUNNING: frozenset({State.COMPLETED, State.ERROR, State.STOP}),
    State.STOP: frozenset({State.STOPPED, State.ERROR}),
    State.STOPPED: frozenset({State.READY}),
    State.COMPLETED: frozenset(),
    State.ERROR: frozenset(),
    State.DELETING: frozenset({State.DELETED}),
    State.DELETED: frozenset(),
}
"""Allowed next states; any state but DELETING/DELETED may also go to DELETING."""

ACTIONS: Final[dict[str, frozenset[State]]] = {
    "run": frozenset({State.CREATED, State.BUILT}),
    "stop": frozenset({State.READY, State.PENDING, State.RUNNING}),
    "resume": frozenset({State.STOPPED}),
}
"""The states from which each user action is allowed."""


def can_transition(src: State, dst: State) -> bool:
    """Tell whether the machine allows ``src -> dst``."""
    if dst is State.DELETING:
        return src not in (State.DELETING, State.DELETED)
    return dst in NEXT[src]


def check_action(action: str, state: State) -> None:
    """Raise :class:`InvalidTransition` unless ``action`` is allowed in ``state``."""
    allowed = ACTIONS.get(action)
    if allowed is None:
        raise InvalidTransition(f"unknown action {action!r}; use one of {sorted(ACTIONS)}")
    if state not in allowed:
        raise InvalidTransition(
            f"cannot {action} a run in state {state}; {action} is allowed from "
            f"{', '.join(sorted(allowed))}",
            detail={"action": action, "state": str(state)},
        )


def path_to(src: State, dst: State) -> list[State]:
    """The states to pass through from ``src`` to ``dst`` along the happy path, ``dst`` last.

    ``run()`` on a CREATED run records CREATED -> BUILT -> READY, for instance.
    """
    order = [State.CREATED, State.BUILT, State.READY, State.RUNNING]
    if src in order and dst in order and order.index(src) < order.index(dst):
        return order[order.index(src) + 1 : order.index(dst) + 1]
    return [dst]


def transition(status: Status, dst: State, now: datetime, message: str | None = None) -> Status:
    """Return ``status`` moved to ``dst``, with the transition recorded newest first.

    Raises:
        InvalidTransition: if the machine does not allow the move.
    """
    if not can_transition(status.state, dst):
        raise InvalidTransition(
            f"a run cannot go from {status.state} to {dst}",
            detail={"from": str(status.state), "to": str(dst)},
        )
    return attrs.evolve(
        status,
        state=dst,
        message=message,
        transitions=[Transition(dst, now, message), *status.transitions],
    )


def forward_path(src: State, dst: State) -> list[State] | None:
    """The states a run its client executes passes through from ``src`` to report ``dst``.

    The happy path is filled in (``CREATED`` to ``COMPLETED`` records ``BUILT``, ``READY`` and
    ``RUNNING`` on the way). ``None`` when ``dst`` is ``src``, behind it, or not reachable: a
    late or repeated report never moves a run back.
    """
    if dst is src:
        return None
    states: list[State]
    if dst is State.COMPLETED and src is not State.RUNNING:
        before = path_to(src, State.RUNNING)
        states = [*before, dst] if before[-1:] == [State.RUNNING] else [dst]
    else:
        states = path_to(src, dst)
    current = src
    for state in states:
        if not can_transition(current, state):
            return None
        current = state
    return states
