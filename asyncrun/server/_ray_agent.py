"""The Ray agent: the reconciler between a server's store and a Ray cluster.

It is the local agent's counterpart for ``asyncrun server --executor ray``: one process per
server (its lock file is ``ray-agent.lock`` in the jobs folder), started and kept alive by the
service the same way, that claims executions in the store with the same heartbeat protocol
(``_store/_agents.py``). Each tick it:

- starts every execution it owns that has no job yet: a job token, the job's environment,
  and a submission to Ray (:class:`~._ray_executor.RayExecutor`: repeat-safe by id) whose
  entrypoint is the launcher (``asyncrun._launcher``);
- asks Ray to stop the jobs of runs in ``STOP``; a job Ray still holds ``PENDING`` ignores a
  stop, so its run is recorded ``STOPPED`` here (the job is stopped and deleted once Ray lets
  it start or fail);
- polls every job it tracks in **one** request and records what changed
  (:func:`asyncrun._core.reconcile.decide`): ``PENDING``/``RUNNING`` as Ray says; at the end,
  the launcher's report (the kind's message, exit code, result), else Ray's word; a job Ray
  no longer knows is lost (``ERROR``);
- deletes the Ray jobs whose end it recorded.

Logs and results never come from Ray: the launcher sends them to the server with the job's
token. A job Ray keeps running survives a restart of this agent (the next one adopts it by
its submission id); while the head cannot be reached, nothing changes, and after
``--lost-after`` seconds every open run ends ``ERROR`` (lost): nothing waits forever.

Usage: ``python -m asyncrun.server._ray_agent --db PATH --lock FILE --ray-address URL ...``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from .. import _serde
from .._core import launch as _launch
from .._core.errors import AsyncRunError, NotFound, TransportError
from .._core.reconcile import Reported, Target, decide
from .._core.records import Run, State
from .._core.states import TERMINAL
from .._launcher import WRITER_ENV
from ._agent import DB_ENV, AgentLock, beat, job_token, move, try_exit, unclaimed
from ._engine import Executor, JobRequest, Observation
from ._factory import open_store
from ._ray import RayJobs, trim
from ._ray_executor import RayExecutor
from ._store import _agents
from ._store._execution import Execution, Ident
from ._store._sqlstore import Blocking

POLL = 0.2
"""Seconds between two ticks (each polls Ray once)."""
ORPHAN_STOP_EVERY = 5.0
"""Seconds between two stops of a job no run needs that Ray has not ended yet."""
REDELETE_WATCH = 30.0
"""Seconds a deleted Ray job is watched for Ray writing it back (then deleted again)."""
MAX_MESSAGE = 2000
"""Characters of a message from Ray kept on a run."""


def _log(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"asyncrun ray agent: {message}", file=sys.stderr, flush=True)


def unreachable_message(address: str, seconds: float) -> str:
    """The message of a run lost because the head could not be reached."""
    return (
        f"the Ray job was lost: the Ray head at {address} could not be reached for "
        f"{seconds:.0f} s; start a new run"
    )


def writer_of(execution: Execution) -> str:
    """The log writer id of an execution's launcher (unique per execution ident)."""
    return f"x{execution.number}-{execution.reserved_us}"


def key_of(execution: Execution) -> str:
    """The key an execution's job is known by (its handle is derived from it)."""
    return f"{execution.key}/{execution.reserved_us}"


@attrs.define(eq=False)
class Tracked:
    """One execution whose job Ray has (or had)."""

    execution: Execution
    handle: str
    stop_sent: bool = False
    last: Observation | None = None


class RayAgent:
    """The reconciler's loop (see the module)."""

    def __init__(self, args: argparse.Namespace, engine: Executor | None = None) -> None:
        self.args = args
        url = os.environ.pop(DB_ENV, None) if args.db is None else None
        self.db = None if url is not None else Path(args.db)
        self.lock_file = Path(args.lock)
        self.store = open_store(url if url is not None else self.db)
        self.call = Blocking(self.store)
        self.address = args.ray_address
        self.engine: Executor = engine or RayExecutor(
            RayJobs(args.ray_address), entrypoint_num_cpus=args.entrypoint_cpus
        )
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.orphans: set[str] = set()  # jobs to stop and delete that no run needs any more
        # Deleted jobs, watched a while: Ray may write a job back (FAILED, "supervisor actor
        # died") when its supervisor exits after the deletion; it is deleted again.
        self.deleted: dict[str, float] = {}
        self.next_orphan_stop: dict[str, float] = {}
        self.tokens: dict[Ident, str] = {}  # of executions whose start is being retried
        self.next_claim = 0.0
        self.unreachable_since: float | None = None
        self.lock = AgentLock(self.lock_file)
        self.terminating = False
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminating = True

    # -- the lock (as the local agent's) ---------------------------------------------------

    def main(self) -> int:
        if not self.lock.acquire():
            return 0
        try:
            idle_since = time.monotonic()
            while True:
                now = time.monotonic()
                try:
                    self.tick(now)
                except AsyncRunError as exc:  # the store or Ray: try again next tick
                    _log(str(exc))
                if self.tracked or self.orphans or self.deleted:
                    idle_since = now
                elif self.terminating or now - idle_since >= self.args.idle_exit:
                    # Jobs on Ray outlive this process: a terminating agent leaves them to
                    # the next one, which adopts them by their submission ids.
                    if self.try_exit():
                        return 0
                    idle_since = now
                if self.terminating:
                    return 0  # its jobs go on on Ray: the next agent adopts them
                time.sleep(POLL)
        finally:
            with contextlib.suppress(AsyncRunError, OSError):
                self.call(self.store.leave, self.id)
            self.call.close()
            self.engine.close()
            self.lock.release()

    def try_exit(self) -> bool:
        return try_exit(self.lock, self.call, self.id)

    def _unclaimed(self) -> list[Execution]:
        return unclaimed(self.call, self.id)

    # -- one tick ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now >= self.next_claim or self._unclaimed():
            self.claim(now)
        stopping = self.call(self.store.ids_in_state, State.STOP) if self.tracked else set()
        for handle, when in list(self.deleted.items()):
            if now - when > REDELETE_WATCH:
                del self.deleted[handle]
        handles = [t.handle for t in self.tracked.values()]
        handles += sorted(self.orphans | set(self.deleted))
        try:
            seen = self.engine.poll(handles)
        except TransportError:
            self._unreachable(now)
            return
        self.unreachable_since = None
        for orphan in list(self.orphans):
            self._end_orphan(orphan, seen.get(orphan), now)
        for handle in list(self.deleted):
            observed = seen.get(handle)
            if observed is not None and observed.status is not None:
                self.orphans.add(handle)  # back again: delete it again once terminal
        for key, tracked in list(self.tracked.items()):
            observed = seen.get(tracked.handle)
            if observed is None:
                continue
            stop = key in stopping or tracked.stop_sent
            if stop and not tracked.stop_sent:
                tracked.stop_sent = True
                with contextlib.suppress(TransportError):
                    self.engine.stop(tracked.handle)
                if observed.pending:
                    # Ray ignores a stop while the job waits for resources: the run ends
                    # here; the job is stopped and deleted once Ray lets go of it.
                    self._record(tracked, Target(State.STOPPED, "stopped", {}))
                    self.orphans.add(tracked.handle)
                    continue
            unchanged = tracked.last is not None and tracked.last.status == observed.status
            if unchanged and not (observed.outcome and observed.outcome.state in TERMINAL):
                continue  # nothing new: the run is not read again
            self._observe(tracked, observed, stop)
            tracked.last = observed

    def _unreachable(self, now: float) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = now
        waited = now - self.unreachable_since
        if waited < self.args.lost_after:
            return
        message = unreachable_message(self.address, waited)
        for tracked in list(self.tracked.values()):
            self._record(tracked, Target(State.ERROR, message, {}), lost=True)
        self.orphans.clear()  # nothing to delete on a head that is gone

    def claim(self, now: float) -> None:
        self.next_claim = now + _agents.HEARTBEAT_US / 1e6
        owned = beat(self.call, self.id, others_dead=self.db is not None)
        idents = {execution.ident for execution in owned}
        for key, tracked in list(self.tracked.items()):
            if tracked.execution.ident not in idents:
                # Its run was deleted (or another agent took it): its job must not go on.
                del self.tracked[key]
                self.orphans.add(tracked.handle)
                with contextlib.suppress(AsyncRunError):
                    self.engine.stop(tracked.handle)
        for execution in owned:
            key = (execution.project, execution.id)
            if key in self.tracked:
                continue
            if execution.pid is None:
                self.start(execution, now)
            else:  # started by an earlier agent: Ray still has it (or lost it)
                handle = self.engine.handle(key_of(execution))
                self.tracked[key] = Tracked(execution, handle)

    # -- starting ---------------------------------------------------------------------------

    def _modify(self, execution: Execution, change: Callable[[Run], Run]) -> Run | None:
        try:
            return self.call(
                self.store.modify, execution.project, execution.id, change, of=execution.ident
            )
        except NotFound:
            return None

    def start(self, execution: Execution, now: float) -> None:
        run = self.call(self.store.get, execution.project, execution.id)
        if run is None or run.status.state is not State.READY:
            if run is not None and run.status.state is State.STOP:
                self._modify(execution, lambda r: move(r, State.STOPPED, message="stopped"))
            self.call(self.store.end_execution, execution.ident)
            return
        launch = execution.launch or _launch.capture(os.environ, sys.executable)
        own = {
            "ASYNCRUN_RUN_PROJECT": execution.project,
            "ASYNCRUN_RUN_ID": execution.id,
            "ASYNCRUN_ENDPOINT": launch.endpoint or self.args.endpoint,
            WRITER_ENV: writer_of(execution),
        }
        spec_env = run.spec.get("env") if isinstance(run.spec.get("env"), dict) else {}
        env = _launch.job_env(launch, {}, own)
        # The launcher passes spec.env to the job; it is set here too, so that what a
        # spec's variables change in the launcher's own start (PATH) holds.
        env = {**env, **{str(k): str(v) for k, v in (spec_env or {}).items()}, **own}
        request = JobRequest(
            key=key_of(execution),
            argv=[self.args.python, "-m", "asyncrun._launcher"],
            env=env,
            grace=self.args.grace,
            labels={"asyncrun_run": f"{execution.project}/{execution.id}"},
            files=self.args.working_dir,
        )
        # One token per execution, made once: a start retried while Ray is away reuses it.
        token = self.tokens.get(execution.ident)
        if token is None:
            token = self.tokens[execution.ident] = self._job_token(execution, launch.token_role)
        try:
            handle = self.engine.start(attrs.evolve(request, env={**env, "ASYNCRUN_TOKEN": token}))
        except TransportError as exc:
            if self.unreachable_since is None:
                self.unreachable_since = now
            if now - self.unreachable_since >= self.args.lost_after:
                self._refuse(execution, f"cannot start the job: {exc}")
            return  # tried again next tick
        except AsyncRunError as exc:
            self._refuse(execution, f"cannot start the job: {trim(str(exc), MAX_MESSAGE)}")
            return
        self.tokens.pop(execution.ident, None)
        # Recorded as started: a later agent adopts the job instead of submitting it again.
        self.call(self.store.set_execution_pid, execution.ident, 0, 0.0, None)
        execution = attrs.evolve(execution, pid=0, pid_started=0.0)
        tracked = Tracked(execution, handle)
        self.tracked[(execution.project, execution.id)] = tracked
        shown = _launch.public(launch, "(the Ray job's working folder)", None)
        shown["ray_job"] = handle

        def submitted(r: Run) -> Run:
            if r.status.state is State.STOP:
                return r
            return attrs.evolve(
                r, status=attrs.evolve(r.status, extra={**r.status.extra, "launch": shown})
            )

        if self._modify(execution, submitted) is None:
            tracked.stop_sent = True

    def _job_token(self, execution: Execution, role: str) -> str:
        return job_token(self.call, execution, role, "job token (ray)")

    def _refuse(self, execution: Execution, message: str) -> None:
        self.tokens.pop(execution.ident, None)
        self._modify(execution, lambda r: move(r, State.ERROR, message=message))
        self.call(self.store.end_execution, execution.ident)

    # -- observing --------------------------------------------------------------------------

    def _reported(self, execution: Execution) -> Reported | None:
        found = self.call(self.store.job_end, execution.project, execution.id, writer_of(execution))
        if found is None:
            return None
        data = _serde.loads(found)
        return Reported(State(data["state"]), data.get("message"), data.get("status") or {})

    def _observe(self, tracked: Tracked, observed: Observation, stop: bool) -> None:
        outcome = observed.outcome
        if outcome is None:
            return
        engine = Target(
            outcome.state,
            None if outcome.message is None else trim(outcome.message, MAX_MESSAGE),
            outcome.status,
        )
        run = self.call(self.store.get, tracked.execution.project, tracked.execution.id)
        if run is None:
            return  # deleted: the next claim drops it
        reported = self._reported(tracked.execution) if engine.state in TERMINAL else None
        target = decide(run.status.state, engine, reported, stop_requested=stop)
        if target is None:
            if run.status.state in TERMINAL:
                self._finish(tracked, observed.status is not None)
            return
        self._record(tracked, target, lost=observed.status is None)

    def _record(self, tracked: Tracked, target: Target, *, lost: bool = False) -> None:
        def change(r: Run) -> Run:
            if r.status.state in TERMINAL:
                return r
            if lost and r.status.state is State.STOP:  # as the local agent's lost runs
                return move(r, State.STOPPED, message="stopped (its Ray job was lost)")
            if target.state is State.STOPPED:
                return move(r, State.STOP, State.STOPPED, message=target.message, **target.status)
            if not target.final and r.status.state is State.STOP:
                return r
            path = [target.state]
            if target.state is State.COMPLETED and r.status.state is not State.RUNNING:
                path.insert(0, State.RUNNING)  # it ran between two polls
            return move(r, *path, message=target.message, **target.status)

        try:
            self._modify(tracked.execution, change)
        except (TypeError, ValueError, AsyncRunError) as exc:  # a result a record cannot carry
            message = f"cannot record the job's result: {exc}"
            self._modify(tracked.execution, lambda r: move(r, State.ERROR, message=message))
        if target.final:
            self._finish(tracked, not lost)

    def _finish(self, tracked: Tracked, known: bool) -> None:
        execution = tracked.execution
        self.call(self.store.end_execution, execution.ident)
        self.tracked.pop((execution.project, execution.id), None)
        if known:
            self.orphans.add(tracked.handle)  # deleted from Ray once it is terminal there

    def _end_orphan(self, handle: str, observed: Observation | None, now: float) -> None:
        if observed is None or observed.status is None:
            self.orphans.discard(handle)  # Ray does not know it (any more)
            self.next_orphan_stop.pop(handle, None)
            return
        try:
            if observed.outcome is not None and observed.outcome.state in TERMINAL:
                self.engine.forget(handle)
                self.orphans.discard(handle)
                self.next_orphan_stop.pop(handle, None)
                self.deleted[handle] = now
            elif now >= self.next_orphan_stop.get(handle, 0.0):
                # Repeat-safe, and repeated (not every tick): a PENDING job ignores a stop
                # until Ray starts it.
                self.next_orphan_stop[handle] = now + ORPHAN_STOP_EVERY
                self.engine.stop(handle)
        except AsyncRunError as exc:  # tried again next tick
            _log(f"Ray job {handle}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncrun-ray-agent")
    parser.add_argument("--db", help=f"a SQLite file (a PostgreSQL URL comes in ${DB_ENV})")
    parser.add_argument("--lock", required=True, help="the lock file of this agent")
    parser.add_argument("--ray-address", required=True, help="http://HOST:8265")
    parser.add_argument("--endpoint", default="", help="the URL jobs reach the server at")
    parser.add_argument("--python", default=sys.executable, help="the interpreter on the cluster")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--idle-exit", type=float, default=30.0)
    parser.add_argument("--lost-after", type=float, default=60.0)
    parser.add_argument("--entrypoint-cpus", type=float, default=None)
    parser.add_argument("--working-dir", default=None, help="a folder shipped with every job")
    args = parser.parse_args(argv)
    with contextlib.suppress(PermissionError):
        os.setsid()
    return RayAgent(args).main()


if __name__ == "__main__":
    sys.exit(main())
