"""The Ray agent's pure rules: what to record from Ray's word and the launcher's report."""

from __future__ import annotations

import pytest

from asyncrun._core.reconcile import Reported, Target, decide
from asyncrun._core.records import State
from asyncrun.server._ray import LOST_MESSAGE, to_outcome
from asyncrun.server._ray_executor import submission_id


def engine(status: str | None, exit_code: int | None = None, message: str | None = None) -> Target:
    outcome = to_outcome(status, True, exit_code=exit_code, message=message)
    assert outcome is not None
    return Target(outcome.state, outcome.message, outcome.status)


REPORT = Reported(State.ERROR, "the process exited with code 3", {"exit_code": 3})


@pytest.mark.parametrize(
    ("run_state", "ray", "expected"),
    [
        (State.READY, "PENDING", State.PENDING),
        (State.READY, "RUNNING", State.RUNNING),
        (State.PENDING, "RUNNING", State.RUNNING),
        (State.RUNNING, "RUNNING", None),
        (State.RUNNING, "PENDING", None),  # never back
        (State.STOP, "RUNNING", None),  # being stopped: wait for the end
    ],
)
def test_an_open_job_is_followed_forward_only(
    run_state: State, ray: str, expected: State | None
) -> None:
    target = decide(run_state, engine(ray), None)
    assert (target.state if target else None) is expected


def test_the_launchers_report_wins_over_rays_word() -> None:
    target = decide(State.RUNNING, engine("FAILED", 3, "Job entrypoint failed"), REPORT)
    assert target == Target(State.ERROR, "the process exited with code 3", {"exit_code": 3})
    # Also when Ray lost the job after the launcher reported its end.
    assert decide(State.RUNNING, engine(None), REPORT) == target


def test_without_a_report_rays_word_is_recorded() -> None:
    assert decide(State.RUNNING, engine(None), None) == Target(State.ERROR, LOST_MESSAGE, {})
    failed = decide(State.RUNNING, engine("FAILED", None, "runtime_env failed"), None)
    assert failed == Target(State.ERROR, "runtime_env failed", {})


def test_a_stopped_run_ends_stopped_whatever_ray_says() -> None:
    for ray in ("STOPPED", "FAILED", "SUCCEEDED", None):
        target = decide(State.STOP, engine(ray), None)
        assert target is not None
        assert (target.state, target.message) == (State.STOPPED, "stopped")
    kept = decide(State.RUNNING, engine("STOPPED"), REPORT, stop_requested=True)
    assert kept == Target(State.STOPPED, "stopped", {"exit_code": 3})


def test_terminal_runs_and_unknown_statuses_change_nothing() -> None:
    assert decide(State.COMPLETED, engine("FAILED"), None) is None
    assert decide(State.RUNNING, None, REPORT) is None


def test_submission_ids_are_safe_deterministic_and_bounded() -> None:
    assert submission_id("p/run-1/2/17") == "asyncrun-p-run-1-2-17"
    long = submission_id("p" * 128 + "/" + "i" * 128 + "/1/17")
    assert len(long) == 128
    assert long == submission_id("p" * 128 + "/" + "i" * 128 + "/1/17")
    assert long != submission_id("p" * 128 + "/" + "i" * 128 + "/2/17")
