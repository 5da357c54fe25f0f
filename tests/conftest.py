"""Fixtures: every behavioural test runs on asyncio and trio, against both backends.

The HTTP backend is a real ``asyncrun server`` process on a free loopback port, started once
per session; each test gets its own project so tests never see each other's runs.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _postgres import Postgres, running_postgres

import asyncrun

# A test run started in the background (``cmd &`` in a script) inherits SIGINT ignored, and an
# ignored signal stays ignored across exec: the commands the Ctrl-C tests interrupt would never
# see it. A handler, unlike SIG_IGN, is reset to the default in every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never let the developer's own configuration leak into a test.
    for name in list(os.environ):
        if name.startswith("ASYNCRUN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASYNCRUN_HOME", str(tmp_path / "home"))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``asyncrun`` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "asyncrun", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def create_token(db: Path, *projects: str, role: str = "run") -> str:
    """A new token of ``role`` on ``projects``, made by ``asyncrun server token create``."""
    args = ["server", "token", "create", "--db", str(db), "--create", "--role", role]
    for project in projects:
        args += ["--project", project]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    token = done.stdout.splitlines()[-1]
    assert token.startswith("art_")
    assert token not in done.stderr
    return token


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something true (bounded); return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real ``asyncrun server`` subprocess on loopback (on a SQLite file or a PostgreSQL URL)."""

    def __init__(
        self,
        db: Path | str,
        *extra: str,
        log_level: str = "warning",
        auth: bool = False,
        scheme: str = "http",
        python: str = sys.executable,
        log: Path | None = None,
    ) -> None:
        self.db = db
        self.python = python
        # Loopback tests run without tokens unless they test tokens (tests/test_auth.py).
        self.extra = (*extra, "--log-level", log_level, *(() if auth else ("--no-auth",)))
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        if log is None:
            assert isinstance(db, Path), "a server on PostgreSQL needs a log= path"
            log = db.with_suffix(".log")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, verify: ssl.SSLContext | bool = True) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "asyncrun",
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    # A URL's password stays off the command line (anybody may read it).
                    *(() if isinstance(self.db, str) else ("--db", str(self.db))),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ASYNCRUN_DB": self.db} if isinstance(self.db, str) else None,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()  # SIGKILL: no shutdown, like a crash
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("server") / "runs.sqlite3")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of the machine's binaries, on loopback, for the whole session."""
    with running_postgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def pg_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``asyncrun server`` on a PostgreSQL database of its own."""
    home = tmp_path_factory.mktemp("pg-server")
    proc = ServerProcess(
        postgres.create_database(), "--jobs-dir", str(home / "jobs"), log=home / "server.log"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One database (so one agent) for the whole session; each test has its own project.
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(params=["embedded", "http", "postgres"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments that point a client at one backend.

    ``http`` is a server on SQLite, ``postgres`` a server on PostgreSQL: the behavioural
    suite runs on both stores.
    """
    if request.param == "embedded":
        return {"home": request.getfixturevalue("embedded_home")}
    server: ServerProcess = request.getfixturevalue(
        "pg_server" if request.param == "postgres" else "server"
    )
    return {"endpoint": server.url}


@pytest.fixture
def backend_db(request: pytest.FixtureRequest, backend: dict[str, Any]) -> Path | str:
    """The database behind ``backend``: a SQLite file, or the PostgreSQL server's URL."""
    if "home" in backend:
        return Path(backend["home"]) / "asyncrun.sqlite3"
    which = "pg_server" if request.node.callspec.params["backend"] == "postgres" else "server"
    server: ServerProcess = request.getfixturevalue(which)
    return server.db


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(backend: dict[str, Any], tmp_path: Path) -> AsyncIterator[asyncrun.AsyncClient]:
    async with asyncrun.AsyncClient(**backend, context=tmp_path / "context") as c:
        yield c


@pytest.fixture
def sync_client(
    backend: dict[str, Any], tmp_path: Path, anyio_backend: str
) -> Iterator[asyncrun.Client]:
    with asyncrun.Client(**backend, backend=anyio_backend, context=tmp_path / "context") as c:
        yield c


JOBS_DIR = str(Path(__file__).parent)


def job_spec(handler: str, **parameters: Any) -> dict[str, Any]:
    """A python+job spec calling ``tests/_jobs.py:<handler>``."""
    return {"handler": f"_jobs:{handler}", "parameters": parameters, "cwd": JOBS_DIR}


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts: it runs no more)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def agent_pids(db: Path) -> list[int]:
    """Pids of the agent serving the database ``db``.

    A child the agent has forked but not yet exec'd shows the agent's command line: left out.
    """
    import psutil

    agents = processes_with("asyncrun.server._agent")
    found = [pid for pid in processes_with(str(db)) if pid in agents]
    parents = {}
    for pid in found:
        try:
            parents[pid] = psutil.Process(pid).ppid()
        except psutil.Error:
            continue
    return [pid for pid, parent in parents.items() if parent not in found]
