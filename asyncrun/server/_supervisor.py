"""The supervisor of one execution: starts the job, captures its output, records how it ended.

It runs as its own detached process (``python -m asyncrun.server._supervisor ...``), started by
the local executor, and writes straight to the store. So a job survives a restart of the server
or the exit of the embedded client that started it, and a server can tell a lost job (its
supervisor is gone) from a live one.

On SIGTERM (``stop()``) it sends SIGTERM to the job's process group, then SIGKILL after the
grace period, and records STOPPED. The whole process group is killed when the job ends, so a
job leaves no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import attrs
import psutil

from .. import kinds
from .._core.records import Run, State
from .._core.states import TERMINAL, transition
from ._store._sqlite import SQLiteStore

FLUSH_SECONDS = 0.02
FLUSH_LINES = 2000
MAX_LINE_BYTES = 64 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


def _move(run: Run, *states: State, message: str | None = None, **extra: Any) -> Run:
    status = run.status
    for state in states:
        if status.state is not state:
            status = transition(status, state, _now(), message)
    status = attrs.evolve(status, extra={**status.extra, **extra})
    return attrs.evolve(run, status=status, metadata=attrs.evolve(run.metadata, updated=_now()))


class LogPump:
    """Reads the job's stdout and stderr line by line and appends them to the store in batches."""

    def __init__(self, store: SQLiteStore, project: str, id: str, keep: int) -> None:
        self.store, self.project, self.id, self.keep = store, project, id, keep
        self.pending: list[tuple[str, int, str]] = []
        self.partial: dict[str, bytes] = {}
        self.last_flush = time.monotonic()

    def feed(self, stream: str, data: bytes, *, final: bool = False) -> None:
        data = self.partial.pop(stream, b"") + data
        lines = data.split(b"\n")
        rest = lines.pop()
        if final and rest:
            lines.append(rest)
            rest = b""
        while len(rest) > MAX_LINE_BYTES:  # an endless line is cut, never buffered forever
            lines.append(rest[:MAX_LINE_BYTES])
            rest = rest[MAX_LINE_BYTES:]
        if rest:
            self.partial[stream] = rest
        now_us = time.time_ns() // 1000
        for line in lines:
            text = line.decode("utf-8", "replace").removesuffix("\r")
            self.pending.append((stream, now_us, text))

    def maybe_flush(self) -> None:
        due = time.monotonic() - self.last_flush >= FLUSH_SECONDS
        if self.pending and (due or len(self.pending) >= FLUSH_LINES):
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.append_logs(self.project, self.id, self.pending, self.keep)
            self.pending = []
        self.last_flush = time.monotonic()


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = SQLiteStore(args.db)
        self.stop_requested = False
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the client

    def _on_term(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def modify(self, change: Any) -> Run:
        return self.store.modify(self.args.project, self.args.id, change)

    def main(self) -> int:
        args = self.args
        me = psutil.Process()
        self.store.set_execution_pid(
            args.project, args.id, args.execution, me.pid, me.create_time()
        )
        run = self.store.get(args.project, args.id)
        if run is None:
            return 0
        if run.status.state is State.STOP or self.stop_requested:
            self.modify(lambda r: _move(r, State.STOPPED, message="stopped before it started"))
            return 0
        kind = kinds.get(run.kind)
        if kind is None:
            self.modify(lambda r: _move(r, State.ERROR, message=f"no kind {run.kind!r} here"))
            return 0
        scratch = Path(tempfile.mkdtemp(prefix="asyncrun-"))
        try:
            return self._execute(run, kind, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self.store.close()

    def _child_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, **extra}
        env["ASYNCRUN_RUN_PROJECT"] = self.args.project
        env["ASYNCRUN_RUN_ID"] = self.args.id
        if self.args.endpoint:
            env["ASYNCRUN_ENDPOINT"] = self.args.endpoint
        else:
            env.pop("ASYNCRUN_ENDPOINT", None)
            env["ASYNCRUN_HOME"] = str(Path(self.args.db).parent)
        return env

    def _execute(self, run: Run, kind: kinds.Kind, scratch: Path) -> int:
        try:
            spec = kind.process(run.spec, scratch)
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spec.cwd,
                env=self._child_env(spec.env),
                start_new_session=True,  # its own process group: stop() kills the whole group
            )
        except (OSError, ValueError) as exc:
            message = f"cannot start the job: {exc}"
            self.modify(lambda r: _move(r, State.ERROR, message=message))
            return 0

        def started(r: Run) -> Run:
            if r.status.state is State.STOP:
                self.stop_requested = True
                return r
            return _move(r, State.RUNNING)

        self.modify(started)
        code = self._pump(proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leave nothing of the job's group behind
        outcome = kind.outcome(code, scratch)
        stopped = self.stop_requested

        def ended(r: Run) -> Run:
            if stopped or r.status.state is State.STOP:
                return _move(r, State.STOP, State.STOPPED, message="stopped", **outcome.status)
            if r.status.state in TERMINAL:
                return r
            return _move(r, outcome.state, message=outcome.message, **outcome.status)

        self.modify(ended)
        return 0

    def _pump(self, proc: subprocess.Popen[bytes]) -> int:
        pump = LogPump(self.store, self.args.project, self.args.id, self.args.keep_lines)
        selector = selectors.DefaultSelector()
        streams: dict[int, tuple[str, IO[bytes]]] = {}
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, selectors.EVENT_READ)
            streams[pipe.fileno()] = (name, pipe)
        term_sent_at: float | None = None
        exited_at: float | None = None
        while streams:
            for key, _ in selector.select(timeout=FLUSH_SECONDS):
                name, pipe = streams[key.fd]
                data = os.read(key.fd, 1 << 16)
                if data:
                    pump.feed(name, data)
                else:
                    pump.feed(name, b"", final=True)
                    selector.unregister(pipe)
                    pipe.close()
                    del streams[key.fd]
            pump.maybe_flush()
            now = time.monotonic()
            if self.stop_requested and term_sent_at is None:
                term_sent_at = now
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            if term_sent_at is not None and now - term_sent_at > self.args.grace:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 2.0:
                break  # the job is gone but a grandchild holds its pipes: stop reading
        for name, pipe in streams.values():
            pump.feed(name, b"", final=True)
            pipe.close()
        pump.flush()
        selector.close()
        return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncrun-supervisor")
    parser.add_argument("--db", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--execution", type=int, required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--keep-lines", type=int, default=100_000)
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(PermissionError):
        os.setsid()  # detach from the starter's session: its Ctrl-C and exit are not ours
    return Supervisor(args).main()


if __name__ == "__main__":
    sys.exit(main())
