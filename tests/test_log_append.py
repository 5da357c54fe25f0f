"""``POST .../logs:append`` and the launcher (asyncrun._launcher) against a real server.

No Ray here: the launcher runs as a plain subprocess with the environment an executor gives
it, so its delivery (exactly once, across a server outage) is tested on its own; tests/ray
runs it under a real Ray head.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from conftest import JOBS_DIR, ServerProcess, create_token, wait_for

import asyncrun
from asyncrun._core.auth import WRITE, Grant, make_token, secret_hash
from asyncrun.server import Blocking, open_store

API = "/api/v1/projects"


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "runs.sqlite3", "--max-log-lines", "50", auth=True)
    proc.start()
    yield proc
    proc.stop()


def job_token(db: Path, project: str, id_: str) -> str:
    """A token as an executor gives a job: write on its project, tied to its run."""
    call = Blocking(open_store(db))
    try:
        token_id, token = make_token(secrets.token_bytes(40))
        grant = Grant(token_id, WRITE, frozenset({project}))
        call(call.store.add_token, grant, secret_hash(token), run=f"{project}/{id_}")
    finally:
        call.close()
    return token


def new_run(
    server: ServerProcess, token: str, project: str, spec: dict[str, Any], kind: str
) -> str:
    with asyncrun.Client(server.url, token) as client:
        return client.new_run(project=project, kind=kind, spec=spec).id


def append(server: ServerProcess, token: str, project: str, id_: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}{API}/{project}/runs/{id_}/logs:append",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )


def log_lines(server: ServerProcess, token: str, project: str, id_: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}{API}/{project}/runs/{id_}/logs",
        params={"limit": 10000},
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    assert answer.status_code == 200, answer.text
    lines: list[dict[str, Any]] = answer.json()["lines"]
    return lines


def job_end(db: Path | str, project: str, id_: str, writer: str) -> dict[str, Any] | None:
    call = Blocking(open_store(db))
    try:
        found = call(call.store.job_end, project, id_, writer)
    finally:
        call.close()
    return None if found is None else orjson.loads(found)


def test_batches_apply_once_in_order_and_only_for_the_jobs_own_run(
    auth_server: ServerProcess,
) -> None:
    db = Path(auth_server.db)
    user = create_token(db, "p", role="run")
    id_ = new_run(auth_server, user, "p", {"command": ["true"]}, "command+job")
    other = new_run(auth_server, user, "p", {"command": ["true"]}, "command+job")
    token = job_token(db, "p", id_)

    def batch(seq: int, *texts: str, **extra: Any) -> dict[str, Any]:
        return {"writer": "x1", "seq": seq, "lines": [["stdout", 7, t] for t in texts], **extra}

    assert append(auth_server, token, "p", id_, batch(1, "a", "b")).json() == {"applied": True}
    assert append(auth_server, token, "p", id_, batch(1, "a", "b")).json() == {"applied": False}
    gap = append(auth_server, token, "p", id_, batch(3, "z"))
    assert gap.status_code == 409
    assert gap.json()["code"] == "sequence_gap"
    assert gap.json()["detail"] == {"expected": 2, "got": 3}
    end = {"exit_code": 2, "state": "ERROR", "message": "boom", "status": {"exit_code": 2}}
    assert append(auth_server, token, "p", id_, batch(2, "c", end=end)).json()["applied"]
    lines = log_lines(auth_server, user, "p", id_)
    assert [(line["offset"], line["text"]) for line in lines] == [(0, "a"), (1, "b"), (2, "c")]
    assert job_end(db, "p", id_, "x1") == end
    # The job's token writes its own run's log only; a user's token none (even a run token).
    refused = append(auth_server, token, "p", other, batch(1, "x"))
    assert refused.status_code == 403, refused.text
    assert append(auth_server, user, "p", id_, batch(3, "x")).status_code == 403
    assert append(auth_server, "art_nope", "p", id_, batch(3, "x")).status_code == 401
    bad = append(auth_server, token, "p", id_, {"writer": "x1", "seq": 3, "lines": [["x"]]})
    assert bad.status_code == 422
    assert bad.json()["detail"] == {"field": "lines[0]"}
    assert log_lines(auth_server, user, "p", id_)[-1]["text"] == "c"


def test_appended_lines_keep_only_the_newest_with_contiguous_offsets(
    auth_server: ServerProcess,
) -> None:
    db = Path(auth_server.db)
    user = create_token(db, "p", role="run")
    id_ = new_run(auth_server, user, "p", {"command": ["true"]}, "command+job")
    token = job_token(db, "p", id_)
    for seq in range(1, 4):
        lines = [["stderr", seq, f"{seq}-{i}"] for i in range(30)]
        assert append(auth_server, token, "p", id_, {"writer": "w", "seq": seq, "lines": lines})
    kept = log_lines(auth_server, user, "p", id_)
    assert [line["offset"] for line in kept] == list(range(40, 90))  # --max-log-lines 50
    assert kept[-1]["text"] == "3-29"
    assert kept[-1]["stream"] == "stderr"


def launcher(server: ServerProcess, token: str, project: str, id_: str, writer: str) -> Any:
    env = {
        **os.environ,
        "ASYNCRUN_ENDPOINT": server.url,
        "ASYNCRUN_TOKEN": token,
        "ASYNCRUN_RUN_PROJECT": project,
        "ASYNCRUN_RUN_ID": id_,
        "ASYNCRUN_LOG_WRITER": writer,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "asyncrun._launcher"],
        env=env,
        cwd=JOBS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> int:
    """The launcher's exit code (its output is shown if a test fails)."""
    _out, err = proc.communicate(timeout=90)
    sys.stderr.write(err.decode(errors="replace"))
    return proc.returncode


def test_the_launcher_delivers_tagged_lines_and_the_kinds_end(auth_server: ServerProcess) -> None:
    db = Path(auth_server.db)
    user = create_token(db, "p", role="run")
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    id_ = new_run(
        auth_server, user, "p", {"command": [sys.executable, "-c", script]}, "command+job"
    )
    proc = launcher(auth_server, job_token(db, "p", id_), "p", id_, "x1")
    assert finish(proc) == 3
    lines = log_lines(auth_server, user, "p", id_)
    assert sorted((line["stream"], line["text"]) for line in lines) == [
        ("stderr", "err"),
        ("stdout", "out"),
    ]
    assert job_end(db, "p", id_, "x1") == {
        "exit_code": 3,
        "state": "ERROR",
        "message": "the process exited with code 3",
        "status": {"exit_code": 3},
    }
    # python+job: the handler's result comes back through the kind, as on the local agent.
    spec = {"handler": "_jobs:count", "parameters": {"n": 3}, "cwd": JOBS_DIR}
    id2 = new_run(auth_server, user, "p", spec, "python+job")
    proc = launcher(auth_server, job_token(db, "p", id2), "p", id2, "x1")
    assert finish(proc) == 0
    end = job_end(db, "p", id2, "x1")
    assert end is not None
    assert end["state"] == "COMPLETED"
    assert end["status"] == {"exit_code": 0, "results": {"n": 3}}


def test_the_launcher_loses_nothing_while_the_server_is_away(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", auth=True)
    server.start()
    try:
        db = Path(server.db)
        user = create_token(db, "p", role="run")
        script = "import time\nfor i in range(40):\n    print(i, flush=True); time.sleep(0.1)"
        spec = {"command": [sys.executable, "-c", script]}
        id_ = new_run(server, user, "p", spec, "command+job")
        proc = launcher(server, job_token(db, "p", id_), "p", id_, "x1")
        wait_for(lambda: log_lines(server, user, "p", id_), "the first lines")
        server.stop()  # the job goes on printing while nobody listens
        time.sleep(2.5)
        server.start()  # the same port and database
        assert finish(proc) == 0
        texts = [line["text"] for line in log_lines(server, user, "p", id_)]
        assert texts == [str(i) for i in range(40)]  # each once, in order
        assert job_end(db, "p", id_, "x1") is not None
    finally:
        server.stop()


def test_the_launcher_holds_a_bounded_backlog_while_the_server_is_away(tmp_path: Path) -> None:
    # A job printing 200 MB while the server is down: the launcher stops reading its pipes
    # (the job waits on its writes, as on a full terminal) instead of holding it all.
    server = ServerProcess(tmp_path / "runs.sqlite3", auth=True)
    server.start()
    proc = None
    try:
        db = Path(server.db)
        user = create_token(db, "p", role="run")
        script = (
            "import sys, time\nprint('first', flush=True)\ntime.sleep(1)\n"
            "for i in range(50_000):\n    sys.stdout.write(str(i) + 'x' * 4000 + '\\n')"
        )
        spec = {"command": [sys.executable, "-c", script]}
        id_ = new_run(server, user, "p", spec, "command+job")
        proc = launcher(server, job_token(db, "p", id_), "p", id_, "x1")
        wait_for(lambda: log_lines(server, user, "p", id_), "the first line")
        server.stop()
        time.sleep(4)  # the job writes 200 MB in well under a second when nothing holds it
        rss = psutil.Process(proc.pid).memory_info().rss
        assert rss < 120 * 2**20, f"the launcher holds {rss / 2**20:.0f} MiB"
        assert proc.poll() is None  # still delivering: nothing was dropped to stay small
    finally:
        if proc is not None:
            proc.kill()
            proc.communicate()
        server.stop()


def test_batches_apply_once_on_postgresql(pg_server: ServerProcess) -> None:
    # Without tokens (--no-auth), on the PostgreSQL store: the same rules, its own SQL.
    project = f"pg{uuid.uuid4().hex[:8]}"
    id_ = new_run(pg_server, "", project, {"command": ["true"]}, "command+job")
    end = {"exit_code": 0, "state": "COMPLETED", "message": None, "status": {"exit_code": 0}}
    for seq, extra in ((1, {}), (1, {}), (2, {"end": end})):
        body = {"writer": "x1", "seq": seq, "lines": [["stdout", seq, f"l{seq}"]], **extra}
        assert append(pg_server, "", project, id_, body).status_code == 200
    gap = append(pg_server, "", project, id_, {"writer": "x1", "seq": 9, "lines": []})
    assert gap.status_code == 409
    lines = log_lines(pg_server, "", project, id_)
    assert [(line["offset"], line["text"]) for line in lines] == [(0, "l1"), (1, "l2")]
    assert job_end(pg_server.db, project, id_, "x1") == end
