"""The launcher: the entrypoint of a job on a remote executor (Ray), between it and the server.

``python -m asyncrun._launcher`` runs the process of one execution as its kind builds it (the
command of ``command+job``, the job runner of ``python+job``), reads its stdout and stderr line
by line, and sends the lines, tagged ``(stream, time_us, text)``, then how the job ended, to the
server in numbered batches (``POST .../runs/{id}/logs:append``, see :mod:`asyncrun._core.joblog`)
with the job's own token. A batch is sent again until the server acknowledges it, across an
outage (backoff with jitter); the server applies each batch exactly once. So a run's logs and
result never depend on the engine's log plumbing, and nothing is lost while the server is away.

Its environment (set by the executor): ``ASYNCRUN_ENDPOINT``, ``ASYNCRUN_TOKEN``,
``ASYNCRUN_RUN_PROJECT``, ``ASYNCRUN_RUN_ID`` and ``ASYNCRUN_LOG_WRITER`` (the execution's writer
id). The job gets the same environment plus its ``spec.env``, so ``asyncrun.current_run()``
works inside it. It exits with the job's exit code (128 + N for a signal N).

On SIGTERM (a stop), the job gets SIGTERM too (it usually already has: it is in the
launcher's process group) and the launcher goes on reading it and sending what it wrote
until it has exited. A batch is given up only when the server refuses it for good (the run
was deleted, the token revoked) or after ``--give-up`` seconds of failures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from . import _serde, kinds
from ._core.joblog import Batcher, JobEnd, LineSplitter, LogBatch
from ._core.polling import Backoff
from ._core.protocol import API_PREFIX
from ._core.records import State

WRITER_ENV = "ASYNCRUN_LOG_WRITER"
"""The variable that names the execution's log writer."""
BACKOFF = Backoff(base=0.2, factor=2.0, cap=5.0, jitter=0.5)
GIVE_UP = 24 * 3600.0
"""Seconds of failing to reach the server after which a batch is dropped (by default)."""
PIPE_GRACE = 2.0
READ_AHEAD = 128
"""Reads of a job's pipes (at most 64 KiB each) held while batches wait for the server: at
most ~8 MiB per job. Beyond it the readers stop reading and the job waits on its writes, as
it would on a full terminal; nothing is dropped."""
"""Seconds to keep reading after the job exited while a grandchild still holds its pipes."""
_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504, 507})


class GiveUp(Exception):
    """The server refused a batch for good: nothing more can be delivered."""


def _log(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"asyncrun launcher: {message}", file=sys.stderr, flush=True)


class Sender:
    """Sends batches to the server until each is acknowledged (or given up)."""

    def __init__(self, endpoint: str, token: str, project: str, id: str, give_up: float) -> None:
        self.client = httpx.Client(
            base_url=endpoint.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(10.0, connect=5.0),
        )
        self.path = f"{API_PREFIX}/projects/{project}/runs/{id}"
        self.give_up = give_up
        self.dead = False

    def get_run(self) -> dict[str, Any]:
        """The run record (retried like a batch).

        Raises:
            GiveUp: if the server refuses it for good.
        """
        response = self._send("GET", self.path, None)
        data = _serde.loads(response.content)
        assert isinstance(data, dict)
        return data

    def send(self, batch: LogBatch) -> None:
        """Deliver ``batch`` (a no-op once a batch was given up: the run is gone)."""
        if self.dead:
            return
        try:
            self._send("POST", f"{self.path}/logs:append", batch.to_wire())
        except GiveUp as exc:
            _log(f"{exc}; the job's further output is not delivered")
            self.dead = True

    def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        content = None if body is None else _serde.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        while True:
            hint = None
            try:
                response = self.client.request(method, path, content=content, headers=headers)
                if response.status_code < 300:
                    return response
                if response.status_code not in _RETRY:
                    raise GiveUp(
                        f"the server refused {method} {path}: {response.status_code} "
                        f"{response.text[:300]}"
                    )
                why = f"{response.status_code}"
                retry_after = response.headers.get("retry-after", "")
                hint = float(retry_after) if retry_after.isdigit() else None
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > self.give_up:
                raise GiveUp(f"the server was unreachable for {self.give_up:.0f} s ({why})")
            if attempt in (0, 10) or attempt % 50 == 0:
                _log(f"cannot reach the server ({why}); retrying")
            time.sleep(BACKOFF.delay(min(attempt, 20), random.random(), hint))
            attempt += 1

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def _reader(
    pipe: IO[bytes], stream: str, out: queue.Queue[tuple[str, int, list[str]] | str]
) -> None:
    splitter = LineSplitter()
    fd = pipe.fileno()
    while True:
        data = os.read(fd, 1 << 16)
        lines = splitter.feed(data, final=not data)
        if lines:
            out.put((stream, time.time_ns() // 1000, lines))
        if not data:
            out.put(stream)  # this stream is done
            return


def _end(kind: kinds.Kind | None, code: int, scratch: Path, error: str | None) -> JobEnd:
    """How the job ended, read by its kind as the agent reads a local job's."""
    if kind is None or error is not None:
        return JobEnd(code, State.ERROR, error or "the job could not start", {})
    try:
        outcome = kind.outcome(code, scratch)
        state = outcome.state if outcome.state in (State.COMPLETED, State.ERROR) else State.ERROR
        return JobEnd(code, state, outcome.message, outcome.status)
    except Exception as exc:  # a plug-in's bug ends this run, not the delivery
        return JobEnd(code, State.ERROR, f"cannot read how the job ended: {exc}", {})


def run(args: argparse.Namespace) -> int:
    """Run the job and deliver its output; return the exit code to exit with."""
    env = dict(os.environ)
    project, id_ = env["ASYNCRUN_RUN_PROJECT"], env["ASYNCRUN_RUN_ID"]
    sender = Sender(
        env["ASYNCRUN_ENDPOINT"], env.get("ASYNCRUN_TOKEN", ""), project, id_, args.give_up
    )
    batcher = Batcher(env.get(WRITER_ENV) or f"launcher-{os.getpid()}")
    stopping = threading.Event()
    proc: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, frame: object) -> None:
        stopping.set()
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    scratch = Path(tempfile.mkdtemp(prefix="asyncrun-"))
    kind: kinds.Kind | None = None
    error: str | None = None
    code = 1
    try:
        try:
            record = sender.get_run()
            kind = kinds.get(str(record["kind"]))
            if kind is None:
                raise ValueError(f"no kind {record['kind']!r} is installed where the job runs")
            spec = kind.process(record.get("spec") or {}, scratch, sys.executable)
            cwd = os.path.join(os.getcwd(), spec.cwd) if spec.cwd else os.getcwd()
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env={**env, **spec.env},
            )
        except GiveUp as exc:
            _log(str(exc))
            return 1
        except Exception as exc:  # the job cannot start: that is its end, reported
            error = f"cannot start the job: {exc}"
            _log(error)
        if stopping.is_set() and proc is not None:
            proc.send_signal(signal.SIGTERM)
        if proc is not None:
            code = _pump(proc, batcher, sender)
        end = _end(kind, code, scratch, error)
        while True:  # what is left, then the end (with the last lines, or alone)
            batch = batcher.take(end)
            sender.send(batch)
            if batch.end is not None:
                break
        return code if code >= 0 else 128 - code
    finally:
        sender.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _pump(proc: subprocess.Popen[bytes], batcher: Batcher, sender: Sender) -> int:
    """Read the job's streams into batches and send them until both end; its exit code."""
    lines: queue.Queue[tuple[str, int, list[str]] | str] = queue.Queue(maxsize=READ_AHEAD)
    readers = []
    for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert pipe is not None
        thread = threading.Thread(target=_reader, args=(pipe, stream, lines), daemon=True)
        thread.start()
        readers.append(thread)
    open_streams = 2
    exited_at: float | None = None
    while open_streams:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > PIPE_GRACE:
            break  # a grandchild holds the pipes: what the job wrote is read
        try:
            item = lines.get(timeout=batcher.flush_seconds / 2)
        except queue.Empty:
            item = None
        if isinstance(item, str):
            open_streams -= 1
        elif item is not None:
            batcher.add(item[0], item[1], item[2], time.monotonic())
        if batcher.due(time.monotonic()):
            sender.send(batcher.take())
    while not lines.empty():
        item = lines.get()
        if not isinstance(item, str):
            batcher.add(item[0], item[1], item[2], time.monotonic())
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m asyncrun._launcher [--give-up SECONDS]``."""
    parser = argparse.ArgumentParser(prog="asyncrun-launcher")
    parser.add_argument("--give-up", type=float, default=GIVE_UP)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
