"""Roles: read < write < run. Starting and resuming runs (executing code) needs ``run``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import JOBS_DIR, ServerProcess, cli, create_token

import asyncrun
from asyncrun.server._store import _sqlite


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("roles") / "runs.sqlite3", auth=True)
    server.start()
    yield server
    server.stop()


def _url(server: ServerProcess, rest: str = "") -> str:
    return f"{server.url}/api/v1/projects/alpha/runs{rest}"


def _body(id_: str) -> dict[str, object]:
    return {
        "kind": "command+job",
        "id": id_,
        "project": "alpha",
        "metadata": {"project": "alpha"},
        "spec": {"command": ["sleep", "300"]},
    }


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_write_keeps_records_metrics_and_stop_but_cannot_start(secured: ServerProcess) -> None:
    writer = create_token(secured.db, "alpha", role="write")
    runner = create_token(secured.db, "alpha", role="run")
    reader = create_token(secured.db, "alpha", role="read")
    assert httpx.post(_url(secured), json=_body("w1"), headers=_auth(reader)).status_code == 403
    assert httpx.post(_url(secured), json=_body("w1"), headers=_auth(writer)).status_code == 201
    refused = httpx.post(_url(secured, "/w1/run"), json={}, headers=_auth(writer))
    assert refused.status_code == 403
    assert refused.json()["message"].endswith("that needs a run token")
    assert refused.json()["detail"]["needs"] == "run"
    started = httpx.post(_url(secured, "/w1/run"), json={}, headers=_auth(runner))
    assert started.status_code == 200, started.text
    batch = {"writer": "w", "seq": 1, "ops": [["loss", 1, 1.0]]}
    metrics = httpx.patch(_url(secured, "/w1/status"), json=batch, headers=_auth(writer))
    assert metrics.status_code == 200, metrics.text
    stopped = httpx.post(_url(secured, "/w1/stop"), json={}, headers=_auth(writer))
    assert stopped.status_code == 200, stopped.text
    with asyncrun.Client(secured.url, token=reader) as client:
        client.get_run("alpha", "w1").wait(timeout=60)
    resumed = httpx.post(_url(secured, "/w1/resume"), json={}, headers=_auth(writer))
    assert resumed.status_code == 403
    for action in ("resume", "stop"):
        done = httpx.post(_url(secured, f"/w1/{action}"), json={}, headers=_auth(runner))
        assert done.status_code == 200, done.text


@pytest.mark.parametrize(("role", "expected"), [("write", "refused"), ("run", "started")])
def test_a_jobs_own_token_starts_runs_only_if_the_operator_allows(
    tmp_path: Path, role: str, expected: str
) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", "--job-token-role", role, auth=True)
    server.start()
    try:
        token = create_token(server.db, "alpha", role="run")
        with asyncrun.Client(server.url, token=token) as client:
            spec = {"handler": "_jobs:start_another", "cwd": JOBS_DIR}
            run = client.new_run("alpha", "python+job", spec=spec)
            run.run()
            run.wait(timeout=60)
            assert run.status.state is asyncrun.State.COMPLETED, run.status.message
            assert str(run.result()).startswith(expected), run.result()
    finally:
        server.stop()


def test_write_tokens_of_an_older_database_keep_starting_runs_with_a_notice(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as old:  # the schema as the release before roles left it
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statements in _sqlite.MIGRATIONS[:4]:
            for statement in statements:
                old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (4)")
    from asyncrun._core.auth import make_token, secret_hash

    token_id, token = make_token(bytes(range(40)))
    with sqlite3.connect(db) as old:
        old.execute(
            "INSERT INTO tokens VALUES (?, ?, 'write', '[\"alpha\"]', 'old', NULL, 0)",
            (token_id, secret_hash(token)),
        )
    server = ServerProcess(db, auth=True)
    server.start()
    try:
        assert httpx.post(_url(server), json=_body("o1"), headers=_auth(token)).status_code == 201
        started = httpx.post(_url(server, "/o1/run"), json={}, headers=_auth(token))
        assert started.status_code == 200, started.text
        stopped = httpx.post(_url(server, "/o1/stop"), json={}, headers=_auth(token))
        assert stopped.status_code == 200, stopped.text
    finally:
        server.stop()
    log = server.log.read_text()
    assert log.count("write token(s) from before the 'run' role now have it") == 1
    listing = cli("server", "token", "list", "--db", str(db))
    assert f"{token_id}  run" in listing.stdout
    assert "from before the run role" in listing.stdout


def test_token_create_names_the_roles_and_what_each_allows() -> None:
    done = cli("server", "token", "create", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for phrase in ("read: read runs", "write: also create", "run: also start and resume runs"):
        assert phrase in text
