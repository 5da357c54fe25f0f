"""Issue 15, item 1: one Store interface, and one place that wires store, executor and service.

The embedded client, ``asyncrun server``, ``asyncrun server token`` and ``asyncrun ui`` open
their backend through ``asyncrun.server``; without ``--db`` they must all open the same file,
the one under ``ASYNCRUN_HOME``.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import cli, free_port

import asyncrun
from asyncrun import server
from asyncrun._core.auth import READ, Grant
from asyncrun.server import Blocking, RunService, Store, default_db_path, open_service, open_store
from asyncrun.server._store._sqlstore import SQLStore, finish

# -- the interface ------------------------------------------------------------------------


def test_sql_store_satisfies_the_store_protocol() -> None:
    # Statically, mypy checks ``_: type[Store] = SQLStore`` in _sqlstore; here, every method
    # of the Protocol exists on SQLStore with the same parameters.
    assert getattr(Store, "_is_protocol", False)
    members = {
        name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")
    }
    assert {"insert", "modify", "changes", "current_seq", "token", "append_logs"} <= members
    for name in members:
        implemented = getattr(SQLStore, name, None)
        assert implemented is not None, f"SQLStore has no {name}()"
        wanted = inspect.signature(getattr(Store, name)).parameters
        got = inspect.signature(implemented).parameters
        assert list(wanted) == list(got), name
        for param in wanted.values():
            assert got[param.name].kind == param.kind, (name, param.name)
            assert got[param.name].default == param.default, (name, param.name)


def test_the_service_uses_only_the_store_protocol() -> None:
    # What the service, app, agent and DHCore routes call on a store is in the Protocol.
    import re

    root = Path(server.__file__).parent
    members = {name for name in vars(Store) if not name.startswith("_")}
    for path in [*root.glob("_*.py"), *root.glob("_dhcore/*.py")]:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"\bstore\.([a-z_]+)\b", text):
            assert name in members, f"{path.name} calls store.{name}(), not in Store"


def test_public_face_of_asyncrun_server() -> None:
    assert server.__all__ == sorted(server.__all__, key=lambda n: (not n[0].isupper(), n))
    for name in server.__all__:
        assert getattr(server, name) is not None
    assert server.RunService is RunService


def test_open_service_is_typed_against_store(tmp_path: Path) -> None:
    service = open_service(tmp_path / "db" / "runs.sqlite3")
    try:
        assert isinstance(service.store, SQLStore)
        assert service.executor is not None
        assert service.executor.db_path == (tmp_path / "db" / "runs.sqlite3").resolve()
        assert service.executor.endpoint is None
        assert service.executor.jobs_dir is None
    finally:
        finish(service.aclose())
    served = open_service(tmp_path / "s.sqlite3", endpoint="http://127.0.0.1:1")
    try:
        assert served.executor is not None
        assert served.executor.jobs_dir == (tmp_path / "jobs").resolve()
    finally:
        finish(served.aclose())


def test_session_token_replaces_the_stored_ones(tmp_path: Path) -> None:
    stored = Grant("a" * 16, READ, frozenset({"p"}))
    only = Grant("b" * 16, READ, frozenset({"*"}))
    call = Blocking(open_store(tmp_path / "t.sqlite3"))
    call(call.store.add_token, stored, b"digest-a")
    call.close()
    plain = open_service(tmp_path / "t.sqlite3")
    ui = open_service(tmp_path / "t.sqlite3", session_token=(only, b"digest-b"))
    try:
        assert finish(plain.token(stored.token_id)) == (stored, b"digest-a")
        assert finish(plain.token(only.token_id)) is None
        assert finish(ui.token(only.token_id)) == (only, b"digest-b")
        assert finish(ui.token(stored.token_id)) is None
    finally:
        finish(plain.aclose())
        finish(ui.aclose())


# -- one default database -----------------------------------------------------------------


def test_default_db_path_reads_asyncrun_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCRUN_HOME", str(tmp_path / "elsewhere"))
    assert default_db_path() == (tmp_path / "elsewhere" / "asyncrun.sqlite3").resolve()
    assert default_db_path(tmp_path / "h") == (tmp_path / "h" / "asyncrun.sqlite3").resolve()
    assert server.db_path(None) == default_db_path()
    assert server.db_path(Path("x.sqlite3")) == Path("x.sqlite3").resolve()


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "asyncrun", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )


def _wait_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"did not start:\n{log.read_text()}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_embedded_server_tokens_and_ui_open_the_same_default_database(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    home = Path(os.environ["ASYNCRUN_HOME"])
    expected = (home / "asyncrun.sqlite3").resolve()

    # The embedded client writes a run to the default database.
    with asyncrun.Client() as client:
        run = client.new_run("p", "command+job", spec={"command": ["true"]}, name="from-embedded")
    assert expected.is_file()

    # `asyncrun server token create` with no --db adds a token to that same file.
    made = cli("server", "token", "create", "--project", "p", "--role", "read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    listed = cli("server", "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert token.removeprefix("art_").split("_")[0] in listed.stdout
    call = Blocking(open_store(expected))
    assert call(call.store.tokens), "the token is in the default database"
    call.close()

    # `asyncrun server` with no --db serves that file: the run is there, the token works.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.append(_start(["server", "--port", str(port)], tmp_path / "server.log"))
    _wait_up(procs[-1], url, tmp_path / "server.log")
    got = httpx.get(
        f"{url}/api/v1/projects/p/runs/{run.id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert got.status_code == 200, got.text
    assert got.json()["metadata"]["name"] == "from-embedded"
    assert f"{expected}" in (tmp_path / "server.log").read_text()

    # `asyncrun ui` with no --db shows the same runs, with its own token only.
    ui_port = free_port()
    ui_url = f"http://127.0.0.1:{ui_port}"
    procs.append(
        _start(["ui", "--port", str(ui_port), "--no-browser", "--read-only"], tmp_path / "ui.log")
    )
    _wait_up(procs[-1], ui_url, tmp_path / "ui.log")
    ui_log = (tmp_path / "ui.log").read_text()
    assert f"dashboard of {expected}" in ui_log
    ui_token = next(line for line in ui_log.splitlines() if line.startswith("art_"))
    seen = httpx.get(
        f"{ui_url}/api/v1/projects/p/runs/{run.id}",
        headers={"Authorization": f"Bearer {ui_token}"},
        timeout=10,
    )
    assert seen.status_code == 200, seen.text
    stored = httpx.get(
        f"{ui_url}/api/v1/projects/p/runs/{run.id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert stored.status_code == 401, "the ui accepts its own token only"
