"""Issue 12, server and agent items: each test failed on the code before its fix."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from _stores import SyncStore
from conftest import ServerProcess, job_spec, wait_for

import asyncrun
from asyncrun.server._executor import LocalExecutor


def _metrics_job(client: asyncrun.Client, project: str) -> asyncrun.Run:
    run = client.new_run(project, "python+job", spec=job_spec("metrics", n=5))
    run.run()
    run.wait(timeout=60)
    return run


def test_item2_jobs_of_a_tls_server_reach_it_over_https(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the server passes it on: --job-env
    server = ServerProcess(
        tmp_path / "tls.sqlite3",
        *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--job-env", "SSL_CERT_FILE"),
        scheme="https",
    )
    server.start(verify=ssl.create_default_context(cafile=str(cert)))
    try:
        with asyncrun.Client(server.url) as client:
            run = _metrics_job(client, "tls")
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
        assert run.metrics["step"] == [0, 1, 2, 3, 4]
    finally:
        server.stop()


def test_item2_jobs_of_a_server_on_ipv6_loopback_reach_it(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "v6.sqlite3", "--host", "::1")
    server.url = f"http://[::1]:{server.port}"
    server.start()
    try:
        with asyncrun.Client(server.url) as client:
            run = _metrics_job(client, "v6")
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
        assert run.metrics["step"] == [0, 1, 2, 3, 4]
    finally:
        server.stop()


def test_item3_new_jobs_reach_the_server_that_started_them_not_the_first_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite3"
    first = ServerProcess(db)
    first.start()
    try:
        with asyncrun.Client(first.url) as client:
            sleeper = client.new_run("p", "command+job", spec={"command": ["sleep", "300"]})
            sleeper.run()  # keeps the agent busy, so it never idles out
            assert _metrics_job(client, "p").status.state is asyncrun.State.COMPLETED
    finally:
        first.stop()
    second = ServerProcess(db)  # another port, the same database and agent
    second.start()
    try:
        with asyncrun.Client(second.url) as client:
            run = _metrics_job(client, "p")
            assert run.status.state is asyncrun.State.COMPLETED, run.status.message
            assert run.metrics["step"] == [0, 1, 2, 3, 4]
            client.get_run("p", sleeper.id).stop()
    finally:
        second.stop()


@pytest.mark.anyio
async def test_item4_a_cold_burst_of_run_spawns_one_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawns = 0
    spawn = LocalExecutor._spawn

    async def counted(self: LocalExecutor) -> None:
        nonlocal spawns
        spawns += 1
        await spawn(self)  # the real spawn: this only counts

    monkeypatch.setattr(LocalExecutor, "_spawn", counted)
    async with asyncrun.AsyncClient(home=tmp_path / "home") as client:
        runs = [
            await client.new_run("burst", "command+job", spec={"command": ["true"]})
            for _ in range(150)
        ]
        async with anyio.create_task_group() as tasks:
            for run in runs:
                tasks.start_soon(run.run)
        async with anyio.create_task_group() as tasks:
            for run in runs:
                tasks.start_soon(run.wait)
    assert spawns == 1


@pytest.mark.parametrize("backend_name", ["embedded", "http"])
def test_item5_a_deleted_runs_job_never_writes_to_the_run_recreated_with_its_id(
    request: pytest.FixtureRequest, project: str, backend_name: str
) -> None:
    backend: dict[str, Any] = (
        {"home": request.getfixturevalue("embedded_home")}
        if backend_name == "embedded"
        else {"endpoint": request.getfixturevalue("server").url}
    )
    # A grandchild in a session of its own keeps the old job's pipes open, so the agent reads
    # on (up to its pipe grace) after the job itself is killed by the deletion.
    loop = "while true; do echo old; sleep 0.01; done"
    old_spec = {"command": ["sh", "-c", f"setsid sh -c '{loop}' & {loop}"]}
    with asyncrun.Client(**backend) as client:
        old = client.new_run(project, "command+job", spec=old_spec, id="same")
        old.run()
        wait_for(lambda: list(old.logs()), "the old job's output")
        old.delete()
        new = client.new_run(project, "command+job", spec={"command": ["echo", "new"]}, id="same")
        new.run()
        new.wait(timeout=60)
        time.sleep(3)  # past the agent's pipe grace: room for a stale write to land
        new.refresh()
        assert new.status.state is asyncrun.State.COMPLETED, new.status.message
        assert [line.text for line in new.logs()] == ["new"]


def test_item8_a_long_line_is_never_cut_inside_a_character(
    sync_client: asyncrun.Client, project: str
) -> None:
    spec = {"command": ["python3", "-c", "print('\u20ac' * 30000, end='')"]}
    run = sync_client.new_run(project, "command+job", spec=spec)
    run.run()
    run.wait(timeout=60)
    text = "".join(line.text for line in run.logs())
    assert "\ufffd" not in text
    assert text == "\u20ac" * 30000


def test_item9_replacing_a_runs_labels_uses_an_index(tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "runs.sqlite3")
    try:
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM run_labels WHERE project = ? AND id = ?", ("p", "r")
        ).fetchall()
    finally:
        store.close()
    assert any("(project=? AND id=?)" in str(row[-1]) for row in plan), plan


def test_item1_head_is_answered_like_get_without_a_body(tmp_path: Path) -> None:
    import httpx
    from conftest import create_token

    server = ServerProcess(tmp_path / "runs.sqlite3", auth=True)
    server.start()
    try:
        token = create_token(server.db, "A", role="read")
        runs = f"{server.url}/api/v1/projects/A/runs"
        for url in (runs, f"{runs}/x", f"{runs}/x/logs", f"{runs}:watch", f"{server.url}/healthz"):
            anonymous = httpx.head(url)
            get = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
            head = httpx.head(url, headers={"Authorization": f"Bearer {token}"})
            assert anonymous.status_code == (200 if url.endswith("healthz") else 401), url
            assert head.status_code == get.status_code, url
            assert head.content == b""
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
