"""A real PostgreSQL server for the tests: the machine's binaries, a temporary folder, loopback.

``initdb --no-sync`` and ``pg_ctl start`` take about two seconds. As root, both must run as
the ``postgres`` user (``runuser``). The cluster requires a password over TCP
(``scram-sha-256``) for the role the tests use, so the password-handling paths are real.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

PASSWORD = "s3cret-" + secrets.token_hex(4)
USER = "asyncrun"


def binaries() -> Path | None:
    """The folder of the newest PostgreSQL server binaries on this machine, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Postgres:
    """A running cluster: where it is and how to reach it."""

    folder: Path
    port: int
    bin: Path
    owner: str | None  # the user the server runs as when we are root

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else argv

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the cluster's socket."""
        argv = [str(self.bin / "psql"), "-h", str(self.folder), "-p", str(self.port),
                "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                "-qAtc", sql]  # fmt: skip
        done = subprocess.run(
            self._as_owner(argv), capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the tests' role; its URL (with the password)."""
        name = name or "t_" + secrets.token_hex(6)
        self.psql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def start(self) -> None:
        argv = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
                "-w", "-t", "60", "-o",
                f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=300",
                "start"]  # fmt: skip
        subprocess.run(self._as_owner(argv), check=True, capture_output=True, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        argv = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
        subprocess.run(self._as_owner(argv), check=False, capture_output=True, timeout=90)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A fresh cluster on a free loopback port, removed afterwards.

    Raises:
        RuntimeError: if this machine has no PostgreSQL server binaries.
    """
    bin_ = binaries()
    if bin_ is None:
        raise RuntimeError(
            "no PostgreSQL server binaries: install Debian's postgresql package "
            "(`apt-get install -y postgresql`)"
        )
    owner = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))  # short: the socket path
    if owner:
        shutil.chown(folder, owner)
    pg = Postgres(folder, _free_port(), bin_, owner)
    secret = folder / "pw"
    secret.write_text("postgres\n")
    if owner:
        shutil.chown(secret, owner)
    initdb = [str(bin_ / "initdb"), "--no-sync", "-D", str(pg.data), "-U", "postgres",
              "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", str(secret),
              "-E", "UTF8", "--locale=C"]  # fmt: skip
    subprocess.run(pg._as_owner(initdb), check=True, capture_output=True, timeout=120)
    pg.start()
    try:
        pg.psql(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
