"""The agent: one process per database that executes every run of that database.

The service never talks to jobs directly. It writes what it wants into the store (a new
execution to start, a run in state STOP) and makes sure an agent is alive; the agent polls the
store, starts jobs, pumps their stdout and stderr into the log table line by line, stops them
(SIGTERM to the job's process group, SIGKILL after the grace period) and records how they ended.

Why one agent rather than one supervisor per run: starting a job then costs a fork and an exec,
not a Python interpreter; thousands of runs share one event loop of ``selectors``. Why a
separate process: jobs outlive the server or embedded client that started them, and a server
restart loses nothing.

One agent per SQLite database is guaranteed by an exclusive ``flock`` on ``<db>.agent.lock``,
which the service also uses to tell whether an agent is alive. On PostgreSQL, each server
replica has an agent of its own (its lock file is in the replica's jobs folder), and which
agent executes which execution is claimed in the database (``_store/_agents.py``): an agent
that stops beating has its executions taken over by another. Every job gets
``PR_SET_PDEATHSIG``, so if the agent dies its jobs die with it; the next owner marks their
runs ERROR (lost) and ends what is left of them. An agent with nothing to do exits after
``--idle-exit`` seconds; the service starts a new one when needed.

How each execution starts (folder, interpreter, environment, user) was decided when it was
asked for and is stored with it (:mod:`asyncrun._core.launch`): nothing of the process that
happened to start the agent reaches a job. No process outlives its job (see ``_procs``).

Usage: ``python -m asyncrun.server._agent --db PATH [--grace S] [--job-uids LOW-HIGH] ...``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import attrs
import psutil

from .. import _serde, kinds
from .._core import launch as _launch
from .._core.auth import Grant, make_token, secret_hash
from .._core.errors import AsyncRunError, NotFound, StorageFull, StoreUnavailable
from .._core.joblog import cut_point
from .._core.logs import MAX_LINE_BYTES
from .._core.records import Run, State
from .._core.states import TERMINAL, transition
from ..kinds import Outcome
from . import _launching, _procs
from ._engine import JobRequest
from ._factory import open_store
from ._local_engine import LocalProcesses
from ._procs import MARKER
from ._store import _agents
from ._store._execution import Execution, Ident
from ._store._sqlstore import Blocking

POLL = 0.01
"""Seconds between two looks at the store for new executions and stop requests."""
FLUSH = 0.02
"""Seconds log lines may wait before they are written (or FLUSH_LINES, whichever first)."""
FLUSH_LINES = 5000
DISK_FULL_RETRY = 0.5
"""Seconds between two attempts to write while the disk is full (or the database is away)."""
RETRY_LATER = (StorageFull, StoreUnavailable)
"""Store errors the agent outlives: its jobs keep running, their output waits in memory
(bounded), and every write is retried (each is one transaction, so a retry is safe)."""
DISK_FULL_REPORT = 10.0
PIPE_GRACE = 2.0
"""Seconds to keep reading after a job exited while a grandchild still holds its pipes."""
REAP_ORPHANS = 0.5
"""Seconds between two collections of orphans that ended (the subreaper's duty)."""
LOST = (
    "the process running this run was lost (its agent died or the machine restarted); "
    "start a new run"
)


DB_ENV = "ASYNCRUN_AGENT_DB"
"""Where an agent of a PostgreSQL database finds its URL (never on its command line)."""


def lock_path(db: Path) -> Path:
    """The lock file held by the database's agent."""
    return db.with_name(db.name + ".agent.lock")


def _now() -> datetime:
    return datetime.now(UTC)


def move(run: Run, *states: State, message: str | None = None, **extra: Any) -> Run:
    """``run`` moved through ``states`` (each recorded), with ``extra`` status keys set."""
    now = _now()
    status = run.status
    for state in states:
        if status.state is not state:
            status = transition(status, state, now, message)
    status = attrs.evolve(status, extra={**status.extra, **extra})
    return attrs.evolve(run, status=status, metadata=attrs.evolve(run.metadata, updated=now))


def job_token(call: Blocking, execution: Execution, role: str, what: str = "job token") -> str:
    """A new token for an execution's job: its project only, revoked when the execution ends.

    Only its hash is stored; the token itself lives in the job's environment.
    """
    token_id, token = make_token(secrets.token_bytes(40))
    grant = Grant(token_id, role, frozenset({execution.project}))
    run = f"{execution.project}/{execution.id}"
    call(call.store.add_token, grant, secret_hash(token), description=what, run=run)
    return token


def beat(call: Blocking, agent: str, *, others_dead: bool) -> list[Execution]:
    """An agent's heartbeat and claim (see ``_store/_agents.py``): the executions it owns."""
    return call(
        call.store.claim_executions,
        agent,
        socket.gethostname(),
        os.getpid(),
        time.time_ns() // 1000,
        others_dead=others_dead,
    )


def unclaimed(call: Blocking, agent: str) -> list[Execution]:
    """Executions not started yet that ``agent`` may take (its own, or nobody's)."""
    pending = call(call.store.open_executions, unstarted=True)
    return [e for e in pending if e.owner is None or e.owner == agent]


def try_exit(lock: AgentLock, call: Blocking, agent: str) -> bool:
    """Whether an idle agent may exit: it lets its lock go, then looks once more.

    A launch that saw the lock held (and so started no agent) is seen by that last look; the
    agent then takes its lock again and stays (``False``), unless another took it meanwhile.
    """
    lock.release()
    if not unclaimed(call, agent):
        return True
    return not lock.acquire()


class AgentLock:
    """An agent's exclusive ``flock`` on its lock file, held while it serves.

    The service tells whether an agent is alive by trying the same lock (``_executor``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock; ``False`` if another agent holds it."""
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        """Let the lock go (a no-op if not held)."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@attrs.define(eq=False)
class Job:
    """One running execution."""

    execution: Execution
    kind: kinds.Kind
    scratch: Path
    handle: str
    pid: int
    pipes: dict[int, tuple[str, IO[bytes]]]
    uid: int | None = None
    stop_sent: float | None = None
    exited_at: float | None = None
    stop_requested: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.execution.project, self.execution.id)


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # A PostgreSQL URL comes in the environment: a command line is anybody's to read.
        url = os.environ.pop(DB_ENV, None) if args.db is None else None
        self.db = None if url is not None else Path(args.db)
        self.lock_file = Path(args.lock) if args.lock else lock_path(Path(args.db))
        self.store = open_store(url if url is not None else self.db)
        self.call = Blocking(self.store)
        # Its name in the claims table (see _store/_agents.py): unique across machines.
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.next_claim = 0.0
        self.selector = selectors.DefaultSelector()
        self.engine = LocalProcesses()  # the processes; this class reconciles them with the store
        self.jobs: dict[tuple[str, str], Job] = {}
        self.pending: dict[Ident, list[tuple[str, int, str]]] = {}
        self.partial: dict[tuple[Ident, str], bytes] = {}
        self.uids = tuple(int(part) for part in args.job_uids.split("-"))
        self.last_orphan_reap = 0.0
        self.last_flush = time.monotonic()
        self.write_after = 0.0  # while the disk is full: when to try writing again
        self.full_since = -DISK_FULL_REPORT
        self.lock = AgentLock(self.lock_file)
        self.terminating = False
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the client

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminating = True

    # -- the lock -------------------------------------------------------------------------

    # -- main loop ------------------------------------------------------------------------

    def main(self) -> int:
        if not self.lock.acquire():
            return 0  # another agent serves this database
        # Orphans of jobs become ours, not init's: they can be found and ended with their job.
        _procs.become_subreaper()
        try:
            # SQLite: the lock says no other agent lives, so what others owned is ours now.
            self.claim(time.monotonic(), others_dead=self.db is not None)
            idle_since = time.monotonic()
            last_poll = 0.0
            while True:
                self.read_pipes()
                now = time.monotonic()
                if now >= self.write_after:
                    try:
                        if now - last_poll >= POLL:
                            last_poll = now
                            self.poll_store(now)
                        if self.pending and (
                            now - self.last_flush >= FLUSH
                            or sum(map(len, self.pending.values())) >= FLUSH_LINES
                        ):
                            self.flush_logs()
                        self.reap(now)
                        if now - self.last_orphan_reap >= REAP_ORPHANS:
                            self.last_orphan_reap = now
                            _procs.reap_zombies(self.leaders())
                    except RETRY_LATER as exc:
                        # Jobs keep running; every write is one transaction, so trying again
                        # later is safe. Their output waits in memory, bounded.
                        self.disk_full(exc)
                if self.jobs:
                    idle_since = now
                elif self.terminating or now - idle_since >= self.args.idle_exit:
                    if self.try_exit():
                        return 0
                    idle_since = now
                if self.db is not None and not self.db.exists():
                    return 0  # the database was removed: nothing left to serve
        finally:
            for job in list(self.jobs.values()):
                self.end_processes(job)
            with contextlib.suppress(AsyncRunError, OSError):
                self.call(self.store.leave, self.id)
            self.call.close()
            self.lock.release()

    def jobs_uids(self) -> set[int]:
        return {job.uid for job in self.jobs.values() if job.uid is not None}

    def leaders(self) -> set[int]:
        return self.engine.leaders()

    def end_processes(self, job: Job) -> None:
        """SIGKILL every process of ``job``: its group, and what left the group."""
        self.engine.kill(job.handle)

    def try_exit(self) -> bool:
        return try_exit(self.lock, self.call, self.id)

    def _unclaimed(self) -> list[Execution]:
        return unclaimed(self.call, self.id)

    def claim(self, now: float, *, others_dead: bool = False) -> None:
        """Beat, claim what has no live owner, and act on every execution this agent owns.

        Those not started yet are started; those started by an agent that died (this
        machine's previous agent, or a dead replica's) lost their job: their runs end.
        """
        self.next_claim = now + _agents.HEARTBEAT_US / 1e6
        owned = beat(self.call, self.id, others_dead=others_dead)
        idents = {execution.ident for execution in owned}
        for job in self.jobs.values():
            if job.execution.ident not in idents and job.stop_sent is None:
                # Its run was deleted (on any replica), or another agent took this one for
                # dead and its execution over: the job must not go on.
                job.stop_requested = True
                job.stop_sent = now
                self.end_processes(job)
        for execution in owned:
            if (execution.project, execution.id) in self.jobs:
                continue
            if execution.pid is None:
                self.start(execution)
            else:
                self.lose(execution)

    def lose(self, execution: Execution) -> None:
        """An execution whose agent died: its job is lost (and ended, if any of it is left)."""
        assert execution.pid is not None
        # No agent reads its output any more: end all that is left of it (on this machine;
        # a dead replica's jobs died with its agent).
        _procs.kill_execution(execution.pid, execution.pid_started, execution.uid, execution.key)

        def lost(r: Run) -> Run:
            if r.status.state in TERMINAL:
                return r
            if r.status.state is State.STOP:
                return move(r, State.STOPPED, message="stopped (its process was already gone)")
            return move(r, State.ERROR, message=LOST)

        self._modify(execution.project, execution.id, lost, execution)
        self.call(self.store.end_execution, execution.ident)

    def poll_store(self, now: float) -> None:
        if now >= self.next_claim or self._unclaimed():
            self.claim(now)
        if not self.jobs:
            return
        stopping = self.call(self.store.ids_in_state, State.STOP)
        for key, job in self.jobs.items():
            if key in stopping or self.terminating:
                job.stop_requested = True
            if job.stop_requested and job.stop_sent is None:
                job.stop_sent = now
                self.engine.stop(job.handle)  # SIGTERM; SIGKILL after the grace (engine.poll)

    # -- starting -------------------------------------------------------------------------

    def _modify(
        self, project: str, id: str, change: Callable[[Run], Run], of: Execution | None = None
    ) -> Run | None:
        try:
            return self.call(
                self.store.modify, project, id, change, of=None if of is None else of.ident
            )
        except NotFound:
            return None  # deleted meanwhile

    def _own_env(self, execution: Execution, launch: _launch.Launch) -> dict[str, str]:
        env = {
            "ASYNCRUN_RUN_PROJECT": execution.project,
            "ASYNCRUN_RUN_ID": execution.id,
            MARKER: execution.key,
        }
        if launch.endpoint:
            env["ASYNCRUN_ENDPOINT"] = launch.endpoint
            env["ASYNCRUN_TOKEN"] = self._job_token(execution, launch.token_role)
        else:
            assert self.db is not None, "only a SQLite database has jobs without an endpoint"
            env["ASYNCRUN_HOME"] = str(self.db.parent)
        return env

    def _job_token(self, execution: Execution, role: str) -> str:
        return job_token(self.call, execution, role)

    def _refuse(self, execution: Execution, message: str) -> None:
        self._modify(
            execution.project, execution.id, lambda r: move(r, State.ERROR, message=message)
        )
        self.call(self.store.end_execution, execution.ident)

    def start(self, execution: Execution) -> None:
        project, id_ = execution.project, execution.id
        run = self.call(self.store.get, project, id_)
        if run is None or run.status.state is not State.READY:
            if run is not None and run.status.state is State.STOP:
                self._modify(
                    project, id_, lambda r: move(r, State.STOPPED, message="stopped"), execution
                )
            self.call(self.store.end_execution, execution.ident)
            return
        # Executions asked for by an asyncrun before launches were recorded: the base only.
        launch = execution.launch or _launch.capture(os.environ, sys.executable)
        scratch = Path(tempfile.mkdtemp(prefix="asyncrun-"))
        try:
            kind = kinds.get(run.kind)  # a plug-in is imported here, once per agent
            if kind is None:
                raise ValueError(
                    f"no kind {run.kind!r} is installed where the agent runs (a plug-in kind"
                    f" is an entry point in group {kinds.GROUP!r})"
                )
            uid = _launching.user_for(launch, self.uids, self.jobs_uids())
            run_dir = _launching.run_dir(launch, execution.project, execution.id, uid)
            try:
                spec = kind.process(run.spec, scratch, launch.python)
            except (OSError, ValueError):
                raise
            except Exception as exc:  # a plug-in's bug ends this run, not the agent
                raise ValueError(f"kind {run.kind!r}: {type(exc).__name__}: {exc}") from exc
            cwd = _launch.job_cwd(launch, spec.cwd, run_dir)
            own = self._own_env(execution, launch)
            if uid is not None:
                # The job's home and temporary files are its own; nothing of root's.
                own |= {"HOME": run_dir or str(scratch), "TMPDIR": str(scratch)}
                _launching.chown_tree(scratch, uid)
                _launching.check_reachable(spec, cwd, own, launch, uid)
            env = _launch.job_env(launch, spec.env, own)
            request = JobRequest(
                execution.key, spec.argv, env, self.args.grace, cwd, user=uid, umask=launch.umask
            )
            handle = self.engine.start(request)
        except (OSError, ValueError, kinds.KindLoadError) as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            self._refuse(execution, f"cannot start the job: {exc}")
            return
        pid = self.engine.pid(handle)
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            started = 0.0  # already gone: it is reaped below like any other
        shown = _launch.public(launch, cwd, None if uid is None else f"uid {uid}")
        stopping: list[bool] = []

        def running(r: Run) -> Run:
            if r.status.state is State.STOP:
                stopping.append(True)
                return r
            return move(r, State.RUNNING, launch=shown)  # status.launch (_launch.STATUS_KEY)

        # Its process and RUNNING in one transaction (one round trip fewer on PostgreSQL).
        try:
            recorded = self.call(
                self.store.start_execution, execution.ident, pid, started, uid, running
            )
        except NotFound:
            recorded = None  # deleted meanwhile: the job is stopped at once
        except RETRY_LATER:
            # Unrecorded, the job would be started again: end it, the start is retried.
            self.engine.discard(handle)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        execution = attrs.evolve(execution, pid=pid, pid_started=started, uid=uid)
        pipes = {}
        for name, pipe in self.engine.pipes(handle).items():
            os.set_blocking(pipe.fileno(), False)
            self.selector.register(pipe, selectors.EVENT_READ, (execution.ident, name))
            pipes[pipe.fileno()] = (name, pipe)
        job = Job(execution, kind, scratch, handle, pid, pipes, uid)
        self.jobs[job.key] = job
        if recorded is None or stopping:
            job.stop_requested = True

    # -- output ---------------------------------------------------------------------------

    def read_pipes(self) -> None:
        timeout = POLL if self.jobs else POLL * 5
        events = self.selector.select(timeout=timeout) if self.selector.get_map() else []
        if not events and not self.selector.get_map():
            time.sleep(timeout)
        for key, _ in events:
            ident, stream = key.data
            job = self.jobs[(ident[0], ident[1])]
            data = os.read(key.fd, 1 << 16)
            if data:
                self.feed(ident, stream, data)
            else:
                self.close_pipe(job, key.fd)

    def close_pipe(self, job: Job, fd: int) -> None:
        stream, pipe = job.pipes.pop(fd)
        self.feed(job.execution.ident, stream, b"", final=True)
        self.selector.unregister(pipe)
        pipe.close()

    def feed(self, ident: Ident, stream: str, data: bytes, *, final: bool = False) -> None:
        key = (ident, stream)
        data = self.partial.pop(key, b"") + data
        lines = data.split(b"\n")
        rest = lines.pop()
        if final and rest:
            lines.append(rest)
            rest = b""
        while len(rest) > MAX_LINE_BYTES:  # an endless line is cut, never buffered forever
            cut = cut_point(rest, MAX_LINE_BYTES)  # never inside a character
            lines.append(rest[:cut])
            rest = rest[cut:]
        if rest:
            self.partial[key] = rest
        if lines:
            now_us = time.time_ns() // 1000
            out = self.pending.setdefault(ident, [])
            out.extend(
                (stream, now_us, line.decode("utf-8", "replace").removesuffix("\r"))
                for line in lines
            )

    def flush_logs(self) -> None:
        if self.pending:
            self.call(self.store.append_logs, self.pending, self.args.keep_lines)
            self.pending = {}
        self.last_flush = time.monotonic()

    def disk_full(self, exc: StorageFull | StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self.full_since >= DISK_FULL_REPORT:
            with contextlib.suppress(OSError):  # its log may be on the same full disk
                print(f"asyncrun agent: {exc}; retrying", file=sys.stderr, flush=True)
            self.full_since = now
        for lines in self.pending.values():
            if len(lines) > self.args.keep_lines:  # the store would keep only the end anyway
                del lines[: len(lines) - self.args.keep_lines]
        self.write_after = now + DISK_FULL_RETRY

    # -- ending ---------------------------------------------------------------------------

    def reap(self, now: float) -> None:
        observed = self.engine.poll([job.handle for job in self.jobs.values()])
        for job in list(self.jobs.values()):
            if job.exited_at is None and observed[job.handle].status == "EXITED":
                job.exited_at = now
            if job.exited_at is None:
                continue
            if job.pipes and now - job.exited_at < PIPE_GRACE:
                continue  # drain what the job wrote before it exited
            for fd in list(job.pipes):
                self.close_pipe(job, fd)  # a grandchild holds the pipes: stop reading
            self.finish(job)

    def _finish(self, job: Job, change: Callable[[Run], Run]) -> None:
        """Record how the job ended and end its execution, in one transaction."""
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to record
            self.call(self.store.finish_execution, job.execution.ident, change)

    def finish(self, job: Job) -> None:
        self.flush_logs()  # every line is stored before the state says the run ended
        self.end_processes(job)  # leave nothing of the job behind
        code = self.engine.wait(job.handle)
        try:
            outcome = job.kind.outcome(code, job.scratch)
            # What a record cannot carry (too deep, ints beyond 64 bits) fails here, not later
            # on every read of the run.
            _serde.check_data(outcome.status, _serde.MAX_DEPTH - 2)
            _serde.dumps(outcome.status)
        except Exception as exc:
            outcome = Outcome(State.ERROR, f"cannot read how the job ended: {exc}", {})
        stopped = job.stop_requested

        def ended(r: Run) -> Run:
            if stopped or r.status.state is State.STOP:
                return move(r, State.STOP, State.STOPPED, message="stopped", **outcome.status)
            if r.status.state in TERMINAL:
                return r
            return move(r, outcome.state, message=outcome.message, **outcome.status)

        try:
            self._finish(job, ended)
        except RETRY_LATER:
            raise  # the job stays to finish: it is recorded once the store takes writes again
        except (TypeError, ValueError, AsyncRunError) as exc:  # e.g. a result JSON cannot carry
            message = f"cannot record the job's result: {exc}"
            self._finish(job, lambda r: move(r, State.ERROR, message=message))
        shutil.rmtree(job.scratch, ignore_errors=True)
        self.engine.forget(job.handle)
        del self.jobs[job.key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncrun-agent")
    parser.add_argument("--db", help=f"a SQLite file (a PostgreSQL URL comes in ${DB_ENV})")
    parser.add_argument("--lock", help="the lock file of this agent (default: next to --db)")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--keep-lines", type=int, default=100_000)
    parser.add_argument("--idle-exit", type=float, default=30.0)
    parser.add_argument("--job-uids", default=f"{_procs.DEFAULT_UIDS[0]}-{_procs.DEFAULT_UIDS[1]}")
    args = parser.parse_args(argv)
    with contextlib.suppress(PermissionError):
        os.setsid()  # detach from the starter's session: its Ctrl-C and exit are not ours
    return Agent(args).main()


if __name__ == "__main__":
    sys.exit(main())
