"""What a reconciler records on a run from what its engine and its launcher report.

Pure: the Ray agent passes the run's state, the engine's observation (already mapped onto
asyncrun's states) and the end the job's launcher reported, and gets the change to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .records import State
from .states import TERMINAL

STOPPED_MESSAGE: Final = "stopped"


@attrs.frozen
class Target:
    """The state a run moves to, with its message and the status keys to set."""

    state: State
    message: str | None = None
    status: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def final(self) -> bool:
        """Whether the execution ends with this change."""
        return self.state in TERMINAL


@attrs.frozen
class Reported:
    """How the launcher said the job ended (``_core.joblog.JobEnd``, as stored)."""

    state: State
    message: str | None
    status: Mapping[str, Any]


def decide(
    run_state: State,
    engine: Target | None,
    reported: Reported | None,
    *,
    stop_requested: bool = False,
) -> Target | None:
    """The change to record, or ``None`` for none (yet).

    - While the engine runs the job, the run follows it: ``PENDING``, then ``RUNNING``
      (never back, never while it is being stopped).
    - Once the engine says the job ended (or lost it), a run being stopped ends ``STOPPED``;
      otherwise the launcher's report wins, so a run ends as a local one would (its kind's
      message, exit code and results); without a report, the engine's word (a job whose
      launcher never ran, or was lost).

    Args:
        run_state: The run's state now.
        engine: The engine's observation as asyncrun's state (``None``: nothing to go by).
        reported: The end the launcher reported, if it arrived.
        stop_requested: Whether the run was asked to stop (it may be in ``STOP``).
    """
    if run_state in TERMINAL or engine is None:
        return None
    stopping = stop_requested or run_state is State.STOP
    if engine.state not in TERMINAL:
        if stopping or engine.state is run_state:
            return None
        if engine.state is State.PENDING and run_state is not State.READY:
            return None  # never back from RUNNING
        return Target(engine.state, None, {})
    status = dict(reported.status) if reported is not None else dict(engine.status)
    if stopping:
        return Target(State.STOPPED, STOPPED_MESSAGE, status)
    if reported is not None:
        return Target(reported.state, reported.message, status)
    return Target(engine.state, engine.message, status)
