"""Tokens on a real ``asyncrun server``: 401 without one, 403 outside its grant, rotation."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import ServerProcess, cli, create_token, job_spec

import asyncrun

SPEC = {"command": ["true"]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("auth") / "runs.sqlite3", auth=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def writer(secured: ServerProcess) -> str:
    return create_token(secured.db, "alpha", "beta")


@pytest.fixture(scope="module")
def reader(secured: ServerProcess) -> str:
    return create_token(secured.db, "alpha", role="read")


def api(server: ServerProcess, project: str, rest: str = "") -> str:
    return f"{server.url}/api/v1/projects/{project}/runs{rest}"


def record(project: str, id_: str) -> dict[str, object]:
    return {
        "kind": "command+job",
        "id": id_,
        "project": project,
        "spec": SPEC,
        "metadata": {"project": project},
    }


def assert_nowhere(secret: bytes, files: list[Path]) -> None:
    for file in files:
        if file.is_file():
            assert secret not in file.read_bytes(), file


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401_and_says_how_to_get_one(secured: ServerProcess) -> None:
    response = httpx.get(api(secured, "alpha"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthorized"
    assert "asyncrun server token create" in response.json()["message"]


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer art_0123456789abcdef_" + "A" * 43, ""],
    ids=["garbage", "basic", "unknown", "empty"],
)
def test_a_bad_token_is_401_and_never_echoed(secured: ServerProcess, header: str) -> None:
    response = httpx.get(api(secured, "alpha"), headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    if header:
        assert header.split()[-1] not in response.text


def test_a_bad_project_name_without_a_token_is_still_401(secured: ServerProcess) -> None:
    assert httpx.get(api(secured, "..")).status_code in (401, 404)
    assert httpx.get(api(secured, "bad name")).status_code == 401


def test_a_token_on_another_project_is_403_whether_or_not_the_run_exists(
    secured: ServerProcess, writer: str, reader: str
) -> None:
    body = record("beta", "secret")
    created = httpx.post(api(secured, "beta"), json=body, headers=bearer(writer))
    assert created.status_code == 201, created.text
    existing = httpx.get(api(secured, "beta", "/secret"), headers=bearer(reader))
    missing = httpx.get(api(secured, "beta", "/nothing"), headers=bearer(reader))
    assert existing.status_code == missing.status_code == 403
    assert existing.json()["code"] == missing.json()["code"] == "forbidden"
    assert existing.json()["message"] == missing.json()["message"]


def test_a_read_token_reads_and_waits_but_cannot_write(
    secured: ServerProcess, writer: str, reader: str
) -> None:
    body = record("alpha", "r1")
    assert httpx.post(api(secured, "alpha"), json=body, headers=bearer(reader)).status_code == 403
    assert httpx.post(api(secured, "alpha"), json=body, headers=bearer(writer)).status_code == 201
    assert httpx.get(api(secured, "alpha", "/r1"), headers=bearer(reader)).status_code == 200
    watch = httpx.post(
        api(secured, "alpha", ":watch"),
        json={"ids": ["r1"], "fresh": ["r1"]},
        headers=bearer(reader),
    )
    assert watch.status_code == 200, watch.text
    for method, rest in [("DELETE", "/r1"), ("POST", "/r1/run"), ("PATCH", "/r1/status")]:
        response = httpx.request(
            method, api(secured, "alpha", rest), headers=bearer(reader), json={}
        )
        assert response.status_code == 403, (method, rest, response.text)
    assert httpx.get(f"{secured.url}/healthz").status_code == 200  # liveness needs no token


@pytest.mark.anyio
async def test_the_sdk_raises_typed_errors_without_the_token(
    secured: ServerProcess, reader: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(secured.url, context=tmp_path) as client:
        with pytest.raises(asyncrun.AuthError) as missing:
            await client.get_run("alpha", "r1")
    assert missing.value.status_code == 401
    async with asyncrun.AsyncClient(secured.url, token=reader, context=tmp_path) as client:
        with pytest.raises(asyncrun.Forbidden) as forbidden:
            await client.new_run("alpha", "command+job", spec=SPEC)
        assert reader not in str(forbidden.value)
        assert reader not in repr(forbidden.value)


@pytest.mark.anyio
async def test_the_token_is_stored_hashed_and_never_exported_or_logged(
    secured: ServerProcess, writer: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(secured.url, token=writer, context=tmp_path) as client:
        run = await client.new_run("alpha", "command+job", spec=SPEC)
        path = await run.export()
    secret = writer.rsplit("_", 1)[-1].encode()
    assert_nowhere(secret, [Path(path), *secured.db.parent.iterdir()])
    listing = cli("server", "token", "list", "--db", str(secured.db))
    assert listing.returncode == 0
    assert writer.split("_")[1] in listing.stdout  # the id is shown...
    assert secret.decode() not in listing.stdout  # ...never the secret


@pytest.mark.anyio
async def test_a_job_gets_its_own_token_which_ends_with_it(
    secured: ServerProcess, writer: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(secured.url, token=writer, context=tmp_path) as client:
        run = await client.new_run("alpha", "python+job", spec=job_spec("metrics", n=50))
        await run.run()
        await run.wait(log_info=False)
        assert run.status.state is asyncrun.State.COMPLETED, run.status.message
        assert run.metrics["step"] == list(range(50))
    listing = cli("server", "token", "list", "--db", str(secured.db))
    assert "job token" not in listing.stdout
    from _stores import SyncStore

    store = SyncStore(secured.db)
    try:
        assert [info for info in store.tokens() if info.run is not None] == []
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_long_wait_survives_token_rotation(
    secured: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = create_token(secured.db, "alpha")
    token_file = tmp_path / "token"
    token_file.write_text(old + "\n")
    monkeypatch.setenv("ASYNCRUN_TOKEN_FILE", str(token_file))
    async with asyncrun.AsyncClient(secured.url, context=tmp_path) as client:
        run = await client.new_run("alpha", "python+job", spec=job_spec("count", n=30, delay=0.1))
        await run.run()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run.wait)
            await anyio.sleep(0.5)
            new = create_token(secured.db, "alpha")
            token_file.write_text(new)
            revoked = cli("server", "token", "revoke", "--db", str(secured.db), old.split("_")[1])
            assert revoked.returncode == 0, revoked.stderr
        assert run.status.state is asyncrun.State.COMPLETED
        assert (await client.get_run("alpha", run.id)).status.state is asyncrun.State.COMPLETED
    async with httpx.AsyncClient() as http:
        response = await http.get(api(secured, "alpha"), headers=bearer(old))
    assert response.status_code == 401


def test_token_create_refuses_bad_grants(secured: ServerProcess) -> None:
    done = cli("server", "token", "create", "--db", str(secured.db), "--project", "a/b")
    assert done.returncode == 2
    assert "project must be" in done.stderr
    assert "art_" not in done.stdout
    done = cli("server", "token", "revoke", "--db", str(secured.db), "ffffffffffffffff")
    assert done.returncode == 1
    assert "no token with id" in done.stderr


def test_no_auth_refuses_a_public_address(tmp_path: Path) -> None:
    done = cli("server", "--no-auth", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert "--no-auth only binds to loopback" in done.stderr


def test_no_auth_on_loopback_says_so(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "open.sqlite3")  # --no-auth, 127.0.0.1
    server.start()
    try:
        assert httpx.get(api(server, "alpha")).status_code == 200
    finally:
        server.stop()
    log = " ".join(server.log.read_text().split())
    assert "authentication is OFF (--no-auth)" in log
    assert "every local user included, may read and change every run and run commands" in log
    root_warning = "this server runs as root without --isolate-jobs: every job runs as root"
    assert (root_warning in log) == (os.geteuid() == 0)


@pytest.fixture
def tls_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = certificate
    server = ServerProcess(
        tmp_path / "tls.sqlite3",
        *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        auth=True,
        scheme="https",
    )
    server.start(verify=ssl.create_default_context(cafile=str(cert)))
    yield server
    server.stop()


@pytest.mark.anyio
async def test_tls_with_a_token(
    tls_server: ServerProcess,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = create_token(tls_server.db, "alpha")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # how httpx is told to trust a CA
    async with asyncrun.AsyncClient(tls_server.url, token=token, context=tmp_path) as client:
        run = await client.new_run("alpha", "command+job", spec=SPEC)
        assert (await client.get_run("alpha", run.id)).id == run.id
    monkeypatch.delenv("SSL_CERT_FILE")
    async with asyncrun.AsyncClient(tls_server.url, token=token, context=tmp_path) as client:
        with pytest.raises(asyncrun.TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_run("alpha", run.id)
