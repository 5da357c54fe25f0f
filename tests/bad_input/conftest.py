"""Fixtures and helpers of the bad-input suite: servers of its own, raw requests, DB snapshots.

Each module gets its own ``asyncrun server`` on a fresh database, so a snapshot of every table
before and after a hostile request proves that nothing was stored and nothing was lost, and
the server's log can be checked for tracebacks without other tests' noise. The servers run as
they do by default, with bearer tokens required; the suite's requests carry a token that may
write to every project, so what they meet is the input validation, not the access check.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess

from ._table import SMALL_BODY_LIMIT


class TokenServer(ServerProcess):
    """A server requiring tokens, with a write token for every project (``token``)."""

    token = ""

    @property
    def authorization(self) -> bytes:
        return b"Authorization: Bearer " + self.token.encode()


def start_server(tmp: Path, *extra: str) -> TokenServer:
    proc = TokenServer(tmp / "runs.sqlite3", *extra, auth=True)
    proc.start()
    create = ["server", "token", "create", "--db", str(proc.db), "--project", "*"]
    done = subprocess.run(
        [sys.executable, "-m", "asyncrun", *create, "--role", "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        proc.stop()
        raise RuntimeError(f"asyncrun server token create failed: {done.stderr}")
    proc.token = done.stdout.splitlines()[-1]
    return proc


@pytest.fixture(scope="module")
def table_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """A server with a small body limit, for the hostile-input table."""
    proc = start_server(tmp_path_factory.mktemp("table"), "--max-body-bytes", str(SMALL_BODY_LIMIT))
    yield proc
    proc.stop()


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the server's database, in a stable order.

    Read-only and through SQLite itself (WAL included), so it sees exactly what the server
    committed: two equal snapshots mean that nothing was stored, changed or lost in between.
    """
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in sorted(names)
        }


def raw_request(
    port: int,
    method: str,
    target: bytes,
    headers: tuple[bytes, ...] = (),
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> httpx.Response:
    """Send ``target`` and ``headers`` byte for byte; httpx would normalise and re-quote them."""
    head = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += headers
    if content_length:
        head.append(b"Content-Length: %d" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    blob, _, content = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = blob.decode("latin-1").split("\r\n")
    pairs = [line.partition(":") for line in lines]
    headers_out = [(k.strip(), v.strip()) for k, _, v in pairs if k.lower() != "transfer-encoding"]
    return httpx.Response(int(status_line.split()[1]), headers=headers_out, content=content)


def server_failures(proc: ServerProcess) -> list[str]:
    """Signs in the server's log that a request reached an unhandled error (a 5xx)."""
    log = proc.log.read_text(errors="replace")
    signs = ("Traceback", "Exception in ASGI application", "unhandled error")
    return [sign for sign in signs if sign in log]
