"""The HTTP rows of the hostile-input table (``_table.py``), against a real server process.

Each row: create ``r1`` with a metric batch in a fresh project, snapshot every table of the
database, send the hostile request byte for byte, then check the exact status, ``code``,
message and detail, that the database is exactly as it was, and that the server logged no
traceback. Also here: a client that hangs up halfway through its body.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ._table import API, HTTP_ROWS, JSON, HttpRow, batch, dumps, record
from .conftest import TokenServer, raw_request, server_failures, snapshot, start_server


def _project() -> str:
    return f"bi-{uuid.uuid4().hex[:12]}"


def _prepare(server: TokenServer, project: str) -> None:
    """Run ``r1`` at revision 1, with one metric batch: what a hostile request must not touch."""
    auth = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
        created = http.post(
            f"{API}/{project}/runs",
            content=dumps(record(project, "r1")),
            headers={"Content-Type": JSON},
        )
        assert created.status_code == 201, created.text
        logged = http.patch(
            f"{API}/{project}/runs/r1/status",
            content=batch(["loss", 1, 0.5], writer="setup")(project),
            headers={"Content-Type": JSON},
        )
        assert logged.status_code == 200, logged.text


def _send(server: TokenServer, row: HttpRow, project: str) -> httpx.Response:
    headers = [server.authorization, *row.headers]
    if row.content_type is not None:
        headers.append(b"Content-Type: " + row.content_type.encode())
    body = row.payload(project)
    if row.declared_length is not None:
        headers.append(b"Content-Length: %d" % row.declared_length)
        return raw_request(
            server.port, row.method, row.target(project), tuple(headers), content_length=False
        )
    if row.chunked:
        headers.append(b"Transfer-Encoding: chunked")
        size = 1000
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return raw_request(
            server.port,
            row.method,
            row.target(project),
            tuple(headers),
            framed,
            content_length=False,
        )
    return raw_request(server.port, row.method, row.target(project), tuple(headers), body)


@pytest.mark.parametrize("row", HTTP_ROWS, ids=[row.id for row in HTTP_ROWS])
def test_hostile_request(table_server: TokenServer, row: HttpRow) -> None:
    project = _project()
    _prepare(table_server, project)
    before = snapshot(table_server.db)
    log_size = table_server.log.stat().st_size

    response = _send(table_server, row, project)

    expect = row.expect
    assert response.status_code == expect.status, response.text
    if expect.code is None:  # refused by the HTTP layer, before the app: not our JSON
        assert response.text == expect.message
    else:
        assert response.headers["content-type"].split(";")[0] == JSON
        body = response.json()
        assert set(body) == {"code", "message", "detail"}, body
        assert body["code"] == expect.code, body
        # The row's project is "{p}" in the table.
        message = body["message"].replace(project, "{p}")
        detail = json.loads(json.dumps(body["detail"]).replace(project, "{p}"))
        assert expect.check_message(message), body
        assert expect.check_detail(detail), body
    assert snapshot(table_server.db) == before  # nothing stored, nothing lost
    with table_server.log.open("rb") as log:
        log.seek(log_size)
        new_log = log.read().decode(errors="replace")
    assert "Traceback" not in new_log, new_log


def test_client_hanging_up_mid_body_is_not_a_server_error(tmp_path: Path) -> None:
    # Finding 10: Starlette raises ClientDisconnect inside the body read; the app logs it as an
    # unhandled error (a 500 nobody receives) with a traceback. A server of its own, so that
    # the table's server log stays about the table.
    server = start_server(tmp_path)
    try:
        _hang_up_mid_body(server)
    finally:
        server.stop()


def _hang_up_mid_body(server: TokenServer) -> None:
    project = _project()
    _prepare(server, project)
    before = snapshot(server.db)
    body = dumps(record(project))
    head = (
        f"POST {API}/{project}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {JSON}\r\nContent-Length: {len(body) + 100}\r\n"
        f"Authorization: Bearer {server.token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body[:20])
        time.sleep(0.2)
    time.sleep(1.0)  # the server reads the end of the stream at once; leave it time to log
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
    assert snapshot(server.db) == before
    assert server_failures(server) == [], server.log.read_text()[-4000:]


def test_table_server_never_failed(table_server: TokenServer) -> None:
    # Last in the file: no row reached an unhandled error.
    assert server_failures(table_server) == [], table_server.log.read_text()[-4000:]
