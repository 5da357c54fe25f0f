"""Bad input against a real server process: each case is one exact 4xx, and nothing is stored.

Requests go out through plain httpx, or through a raw socket where httpx would normalise the
path, so the bytes on the wire are the ones under test. Every answer is recorded; the last test
of the file checks that none was a 5xx and that the server never logged a traceback.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess
from starlette.routing import Route

from asyncrun import kinds
from asyncrun._core.protocol import API_PREFIX
from asyncrun._core.query import MAX_IDS
from asyncrun.server import open_store
from asyncrun.server._app import create_app
from asyncrun.server._openapi import openapi_document
from asyncrun.server._service import RunService
from asyncrun.server._store._sqlstore import finish

KIND = "test+record"  # not a registered kind: only the record's own rules apply to its spec
assert kinds.get(KIND) is None
JSON_TYPE = {"Content-Type": "application/json"}
ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 422: "validation_error"}

# (method, url, status) of every answer the shared server gave in this file.
ANSWERS: list[tuple[str, str, int]] = []


def _record_answer(response: httpx.Response) -> None:
    ANSWERS.append((response.request.method, str(response.request.url), response.status_code))


def _client(server: ServerProcess, *, record: bool) -> httpx.Client:
    # Connection: close because the server may answer before reading a body (413) and closes
    # the connection after a 5xx: a fresh connection per request keeps cases independent.
    hooks = {"response": [_record_answer]} if record else {}
    return httpx.Client(
        base_url=server.url, timeout=30, headers={"Connection": "close"}, event_hooks=hooks
    )


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with _client(server, record=True) as client:
        yield client


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("small") / "db.sqlite3", "--max-body-bytes", "2048"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def small_http(small_server: ServerProcess) -> Iterator[httpx.Client]:
    with _client(small_server, record=True) as client:
        yield client


@pytest.fixture(scope="module")
def scratch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Known-bug reproducers answer 500: they get their own server so the shared server's log
    # stays clean for test_server_never_failed.
    proc = ServerProcess(tmp_path_factory.mktemp("scratch") / "db.sqlite3")
    proc.start()
    yield proc
    proc.stop()


# --- helpers ------------------------------------------------------------------------------------


def runs_path(project: str, id: str | None = None) -> str:
    path = f"{API_PREFIX}/projects/{project}/runs"
    return path if id is None else f"{path}/{id}"


def record(project: str, id: str = "r1", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": KIND,
        "id": id,
        "project": project,
        "metadata": {"project": project, "labels": ["a"]},
        "spec": {"x": 1},
    }
    data.update(fields)
    return data


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


def assert_error(response: httpx.Response, status: int, code: str) -> Any:
    """Check the status and the ``{code, message, detail}`` body; return the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"code", "message", "detail"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"].strip(), body
    return body["detail"]


def stored_rows(db: Path, project: str | None = None) -> int:
    """Rows in the server's database (of one project, or all): what the API cannot hide."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        if project is None:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        sql = "SELECT count(*) FROM runs WHERE project = ?"
        return int(conn.execute(sql, (project,)).fetchone()[0])


def assert_nothing_stored(
    http: httpx.Client, server: ServerProcess, project: str, *ids: str
) -> None:
    listed = http.get(runs_path(project))
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []
    for id_ in ids:
        assert_error(http.get(runs_path(project, id_)), 404, "not_found")
    assert stored_rows(server.db, project) == 0


def create(http: httpx.Client, project: str, id: str = "r1", **fields: Any) -> httpx.Response:
    response = http.post(
        runs_path(project), content=dumps(record(project, id, **fields)), headers=JSON_TYPE
    )
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    return response


def assert_unchanged(http: httpx.Client, project: str, id: str, before: httpx.Response) -> None:
    now = http.get(runs_path(project, id))
    assert now.status_code == 200, now.text
    assert now.json() == before.json()
    assert now.headers["etag"] == before.headers["etag"]


def raw_request(
    server: ServerProcess,
    method: str,
    target: bytes,
    headers: tuple[bytes, ...] = (),
    body: bytes = b"",
) -> httpx.Response:
    """Send ``target`` byte for byte (httpx would resolve ``..`` and re-quote the path)."""
    head = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [*headers, b"Content-Length: %d" % len(body)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    blob, _, content = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = blob.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    ANSWERS.append((method, target.decode("latin-1"), status))
    pairs = [line.partition(":") for line in lines]
    return httpx.Response(
        status, headers=[(k.strip(), v.strip()) for k, _, v in pairs], content=content
    )


# --- POST: bodies that are not a run ------------------------------------------------------------


def _valid(project: str) -> bytes:
    return dumps(record(project))


@pytest.mark.parametrize(
    ("make_body", "status", "code"),
    [
        pytest.param(lambda p: _valid(p)[:-7], 400, "malformed_request", id="truncated"),
        pytest.param(
            lambda p: _valid(p).replace(b'"', b"'"), 400, "malformed_request", id="quotes"
        ),
        pytest.param(lambda p: _valid(p) + b" trailing", 400, "malformed_request", id="trailing"),
        pytest.param(lambda p: _valid(p)[:-1] + b',"n": NaN}', 400, "malformed_request", id="nan"),
        pytest.param(
            lambda p: _valid(p).replace(b'"x"', b'"caf\xe9"'), 400, "malformed_request", id="latin1"
        ),
        pytest.param(lambda p: b"\xff\xfe\x00\x01", 400, "malformed_request", id="binary"),
        pytest.param(
            lambda p: _valid(p).decode().encode("utf-16"), 400, "malformed_request", id="utf16"
        ),
        pytest.param(lambda p: b"", 400, "malformed_request", id="empty"),
        pytest.param(lambda p: b"  \n ", 400, "malformed_request", id="whitespace"),
        pytest.param(lambda p: b"[" * 5000 + b"]" * 5000, 400, "malformed_request", id="too-deep"),
        pytest.param(lambda p: b"[]", 422, "validation_error", id="list"),
        pytest.param(lambda p: dumps([record(p)]), 422, "validation_error", id="list-of-run"),
        pytest.param(lambda p: b'"run"', 422, "validation_error", id="string"),
        pytest.param(lambda p: b"null", 422, "validation_error", id="null"),
        pytest.param(lambda p: b"42", 422, "validation_error", id="number"),
        pytest.param(lambda p: b"{}", 422, "validation_error", id="empty-object"),
    ],
)
def test_post_body_that_is_not_a_run(
    http: httpx.Client,
    server: ServerProcess,
    project: str,
    make_body: Callable[[str], bytes],
    status: int,
    code: str,
) -> None:
    response = http.post(runs_path(project), content=make_body(project), headers=JSON_TYPE)
    assert_error(response, status, code)
    assert_nothing_stored(http, server, project, "r1")


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("id",), 1, "id"),
        (("kind",), 1, "kind"),
        (("name",), ["n"], "name"),
        (("user",), 7, "user"),
        (("metadata", "labels"), "a,b", "labels"),
        (("metadata", "labels"), [1], "labels"),
        (("metadata", "labels"), ["tab\there"], "label"),
        (("metadata", "revision"), "1", "revision"),
        (("metadata", "description"), {"a": 1}, "description"),
        (("spec",), ["not", "an", "object"], "spec"),
        (("spec",), "text", "spec"),
        (("metadata", "created"), "2024-01-01T00:00:00", "created"),
        (("metadata", "created"), "2024-01-01T00:00:00.123456", "created"),
        (("metadata", "created"), "not a time", "created"),
        (("metadata", "created"), 1_700_000_000, "created"),
        (("status",), {"state": "NOPE"}, "state"),
        (("status",), {"state": "created"}, "state"),
        (
            ("status",),
            {"transitions": [{"state": "CREATED", "time": "2024-01-01T00:00:00"}]},
            "time",
        ),
        (("status",), {"transitions": "CREATED"}, "transitions"),
        (("metadata",), "p", "metadata"),
        (("metadata", "project"), "someone-else", "metadata.project"),
        (("id",), "../escape", "id"),
        (("id",), "", "id"),
        (("kind",), "Upper+Case", "kind"),
        (("bogus",), 1, "bogus"),
        (("Spec",), {}, "Spec"),
    ],
)
def test_post_wrong_fields_are_rejected(
    http: httpx.Client,
    server: ServerProcess,
    project: str,
    path: tuple[str | int, ...],
    value: Any,
    named: str,
) -> None:
    data = _set(record(project), path, value)
    response = http.post(runs_path(project), content=dumps(data), headers=JSON_TYPE)
    assert_error(response, 422, "validation_error")
    assert named in response.json()["message"]
    assert_nothing_stored(http, server, project, "r1")


@pytest.mark.parametrize("missing", ["kind", "id", "project", "metadata"])
def test_post_missing_required_field(
    http: httpx.Client, server: ServerProcess, project: str, missing: str
) -> None:
    data = record(project)
    del data[missing]
    response = http.post(runs_path(project), content=dumps(data), headers=JSON_TYPE)
    assert_error(response, 422, "validation_error")
    assert missing in response.json()["message"]
    assert_nothing_stored(http, server, project, "r1")


def test_post_run_of_another_project(
    http: httpx.Client, server: ServerProcess, project: str
) -> None:
    other = f"{project}-other"
    response = http.post(runs_path(project), content=dumps(record(other)), headers=JSON_TYPE)
    assert assert_error(response, 422, "validation_error") == {"field": "project"}
    assert_nothing_stored(http, server, project, "r1")
    assert_nothing_stored(http, server, other, "r1")


# --- Content-Type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json-patch+json",
        "application/jsonx",
        "json",
    ],
)
def test_post_without_json_content_type(
    http: httpx.Client, server: ServerProcess, project: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = http.post(runs_path(project), content=_valid(project), headers=headers)
    if content_type is None:
        assert "content-type" not in response.request.headers
    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_stored(http, server, project, "r1")


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json ;v=1"]
)
def test_json_content_type_variants_are_accepted(
    http: httpx.Client, project: str, content_type: str
) -> None:
    # The control for the 415 cases: the same body with a JSON type is created.
    response = http.post(
        runs_path(project), content=_valid(project), headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text


# --- body size ----------------------------------------------------------------------------------


def _big(project: str, size: int = 4096) -> bytes:
    data = dumps(record(project, spec={"pad": ""}))
    return data.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(data)) + b'"')


def _chunks(data: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_body_under_the_limit_is_accepted(small_http: httpx.Client, project: str) -> None:
    body = _big(project, 2000)
    assert json.loads(body)["spec"]["pad"]
    response = small_http.post(runs_path(project), content=body, headers=JSON_TYPE)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_body_is_413(
    small_http: httpx.Client, small_server: ServerProcess, project: str, framing: str
) -> None:
    body = _big(project)
    assert len(body) == 4096
    assert json.loads(body)["id"] == "r1"  # valid apart from its size
    content: bytes | Iterator[bytes] = body if framing == "content-length" else _chunks(body)
    response = small_http.post(runs_path(project), content=content, headers=JSON_TYPE)
    sent = response.request.headers
    if framing == "chunked":
        assert sent["transfer-encoding"] == "chunked"
        assert "content-length" not in sent
    else:
        assert sent["content-length"] == "4096"
    assert assert_error(response, 413, "payload_too_large") == {"limit": 2048}
    assert_nothing_stored(small_http, small_server, project, "r1")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_update_is_413_and_changes_nothing(
    small_http: httpx.Client, project: str, framing: str
) -> None:
    before = create(small_http, project)
    data = json.loads(_big(project))
    data["metadata"]["revision"] = 1
    body = dumps(data)
    assert len(body) > 4096
    content: bytes | Iterator[bytes] = body if framing == "content-length" else _chunks(body)
    response = small_http.put(runs_path(project, "r1"), content=content, headers=JSON_TYPE)
    assert_error(response, 413, "payload_too_large")
    assert_unchanged(small_http, project, "r1", before)


# --- routes and methods -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/ui/nope.js"),
        ("GET", "/ui/"),
        ("GET", "/api/v1/nope"),
        ("GET", "/api/v2/projects/p/runs"),
        # /api/v1/projects/{name} is DHCore's (test_dhcore_bad_input.py); deeper paths are not.
        ("GET", "/api/v1/projects/p/q"),
        ("POST", "/api/v1/projects/p/q"),
        ("GET", "/api/v1/projects/p/jobs"),
        ("GET", "/api/v1/projects/p/runs/r1/logs/extra"),
        ("GET", "/openapi.yaml"),
    ],
)
def test_unknown_route_is_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path, content=b"{}", headers=JSON_TYPE)
    assert assert_error(response, 404, "not_found") is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/v1/projects/{p}/runs"),
        ("DELETE", "/api/v1/projects/{p}/runs"),
        ("PUT", "/api/v1/projects/{p}/runs"),
        ("PATCH", "/api/v1/projects/{p}/runs/r1"),
        ("POST", "/openapi.json"),
        ("DELETE", "/healthz"),
        ("POST", "/"),
        ("PUT", "/ui/app.css"),
    ],
)
def test_wrong_method_is_405(
    http: httpx.Client, server: ServerProcess, project: str, method: str, path: str
) -> None:
    url = path.format(p=project)
    response = http.request(method, url, content=_valid(project), headers=JSON_TYPE)
    assert_error(response, 405, "method_not_allowed")
    assert_nothing_stored(http, server, project, "r1")


def test_405_says_which_methods_are_allowed(http: httpx.Client, project: str) -> None:
    response = http.request("PATCH", runs_path(project))
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
    assert {"GET", "POST"} <= allowed


# --- bad names in the path ----------------------------------------------------------------------

BAD_PATH_TARGETS = [
    b"/api/v1/projects/../runs",
    b"/api/v1/projects/%2E%2E/runs",
    b"/api/v1/projects/%2e%2e%2fetc/runs",
    b"/api/v1/projects/a%2Fb/runs",
    b"/api/v1/projects/a%20b/runs",
    b"/api/v1/projects/a%00b/runs",
    b"/api/v1/projects/%01/runs",
    b"/api/v1/projects/%FF/runs",
    b"/api/v1/projects/.hidden/runs",
    b"/api/v1/projects/" + b"p" * 129 + b"/runs",
    b"/api/v1/projects/{p}/runs/..",
    b"/api/v1/projects/{p}/runs/%2E%2E",
    b"/api/v1/projects/{p}/runs/a%2Fb",
    b"/api/v1/projects/{p}/runs/..%2F..%2Fetc",
    b"/api/v1/projects/{p}/runs/a%20b",
    b"/api/v1/projects/{p}/runs/%00",
    b"/api/v1/projects/{p}/runs/x%0D%0AX-Injected:%20y",
    b"/api/v1/projects/{p}/runs/-lead",
    b"/api/v1/projects/{p}/runs/" + b"r" * 129,
]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("target", BAD_PATH_TARGETS, ids=lambda t: t.decode()[16:60])
def test_bad_names_in_path_are_a_4xx(
    http: httpx.Client, server: ServerProcess, project: str, target: bytes, method: str
) -> None:
    rows = stored_rows(server.db)
    body = _valid(project) if method in ("POST", "PUT") else b""
    headers = (b"Content-Type: application/json",) if body else ()
    response = raw_request(server, method, target.replace(b"{p}", project.encode()), headers, body)
    assert response.status_code in ERROR_CODES, response.text
    assert_error(response, response.status_code, ERROR_CODES[response.status_code])
    assert "x-injected" not in response.headers
    assert stored_rows(server.db) == rows
    assert_nothing_stored(http, server, project, "r1")


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1/projects/a b/runs",
        b"/api/v1/projects/a\x01b/runs",
        b"/api/v1/projects/p/runs/\x7f",
        b"/api/v1/projects/p/runs/x\x00y",
    ],
    ids=["space", "ctrl-01", "del", "nul"],
)
def test_raw_control_bytes_in_request_line_are_refused(
    server: ServerProcess, target: bytes
) -> None:
    # Not valid HTTP: the HTTP layer refuses it before the app sees it; still never a 5xx.
    rows = stored_rows(server.db)
    response = raw_request(server, "GET", target)
    assert response.status_code == 400
    assert stored_rows(server.db) == rows


# --- PUT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_match", ["abc", '"abc"', "1.5", '"1", "2"', '""', "W/", '"0x1"', "--1"]
)
def test_put_with_bad_if_match_is_422(http: httpx.Client, project: str, if_match: str) -> None:
    before = create(http, project)
    response = http.put(
        runs_path(project, "r1"),
        content=before.content,
        headers={**JSON_TYPE, "If-Match": if_match},
    )
    assert assert_error(response, 422, "validation_error") == {"header": "If-Match"}
    assert_unchanged(http, project, "r1", before)


@pytest.mark.parametrize("how", ["if-match", "weak-if-match", "body-revision"])
def test_put_with_stale_revision_is_412(http: httpx.Client, project: str, how: str) -> None:
    read = create(http, project).content
    first = json.loads(read)
    first["spec"] = {"x": "first"}
    updated = http.put(
        runs_path(project, "r1"), content=dumps(first), headers={**JSON_TYPE, "If-Match": '"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == '"2"'

    stale = json.loads(read)  # still at revision 1
    stale["spec"] = {"x": "stale"}
    headers = dict(JSON_TYPE)
    if how == "if-match":
        headers["If-Match"] = '"1"'
    elif how == "weak-if-match":
        headers["If-Match"] = 'W/"1"'
    response = http.put(runs_path(project, "r1"), content=dumps(stale), headers=headers)
    detail = assert_error(response, 412, "revision_conflict")
    assert detail["expected_revision"] == 1
    assert_unchanged(http, project, "r1", updated)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "r2"), ("project", "elsewhere"), ("kind", "other+kind")],
)
def test_put_cannot_change_identity(
    http: httpx.Client, server: ServerProcess, project: str, field: str, value: str
) -> None:
    before = create(http, project)
    data = before.json()
    data[field] = value
    if field == "project":
        data["metadata"]["project"] = value
    response = http.put(
        runs_path(project, "r1"), content=dumps(data), headers={**JSON_TYPE, "If-Match": '"1"'}
    )
    detail = assert_error(response, 422, "validation_error")
    assert detail == {"field": "kind" if field == "kind" else "id"}
    assert_unchanged(http, project, "r1", before)
    assert_error(http.get(runs_path(project, "r2")), 404, "not_found")
    assert stored_rows(server.db, project) == 1
    assert stored_rows(server.db, "elsewhere") == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "malformed_request"),
        (b"", "application/json", 400, "malformed_request"),
        (b"[]", "application/json", 422, "validation_error"),
        (None, "text/plain", 415, "unsupported_media_type"),
        ({"metadata": {"labels": "a,b"}}, "application/json", 422, "validation_error"),
        ({"spec": ["x"]}, "application/json", 422, "validation_error"),
        ({"bogus": 1}, "application/json", 422, "validation_error"),
    ],
)
def test_put_bad_body_changes_nothing(
    http: httpx.Client,
    project: str,
    content: bytes | dict[str, Any] | None,
    content_type: str,
    status: int,
    code: str,
) -> None:
    before = create(http, project)
    if content is None:
        body = before.content
    elif isinstance(content, dict):
        data = before.json()
        for key, value in content.items():
            if isinstance(value, dict):
                data[key].update(value)
            else:
                data[key] = value
        body = dumps(data)
    else:
        body = content
    response = http.put(
        runs_path(project, "r1"), content=body, headers={"Content-Type": content_type}
    )
    assert_error(response, status, code)
    assert_unchanged(http, project, "r1", before)


def test_put_of_missing_run_is_404_and_creates_nothing(
    http: httpx.Client, server: ServerProcess, project: str
) -> None:
    data = record(project)
    data["metadata"]["revision"] = 1
    response = http.put(runs_path(project, "r1"), content=dumps(data), headers=JSON_TYPE)
    assert_error(response, 404, "not_found")
    assert_nothing_stored(http, server, project, "r1")


def test_delete_of_missing_run_is_404(http: httpx.Client, project: str) -> None:
    assert_error(http.delete(runs_path(project, "r1")), 404, "not_found")


# --- list parameters ----------------------------------------------------------------------------


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("bogus=1", "bogus"),
        ("limit=10&Limit=3", "Limit"),
        ("page_size=3", "page_size"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1&limit=2", "limit"),
        ("state=NOPE", "state"),
        ("state=created", "state"),
        ("state=CREATED&state=NOPE", "state"),
        ("cursor=!!!", "cursor"),
        ("cursor=", "cursor"),
        (f"cursor={_cursor(b'no-colon')}", "cursor"),
        (f"cursor={_cursor(b'12:../etc')}", "cursor"),
        (f"cursor={_cursor(b'x:r1')}", "cursor"),
        # cursor=%FF%FE (not UTF-8) is a 400: tests/bad_input's query-ff row
        ("created_after=yesterday", "created_after"),
        ("created_after=2024-13-01T00:00:00%2B00:00", "created_after"),
        ("created_after=2024-01-01T00:00:00", "created_after"),
        ("created_before=2024-01-01", "created_before"),
        ("created_after=1700000000", "created_after"),
        ("ids=" + ",".join(f"r{i}" for i in range(MAX_IDS + 1)), "ids"),
        ("&".join(f"ids=r{i}" for i in range(MAX_IDS + 1)), "ids"),
        ("ids=../x", "ids"),
        ("ids=a%2Fb", "ids"),
        ("kind=Bad%20Kind", "kind"),
        ("kind=", "kind"),
        ("label=", "label"),
        ("label=%00", "label"),
        ("label=" + "x" * 256, "label"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_list_with_bad_query_parameter(
    http: httpx.Client, project: str, query: str, field: str
) -> None:
    create(http, project)  # a non-empty project: the error must not come from an empty listing
    response = http.get(f"{runs_path(project)}?{query}")
    detail = assert_error(response, 422, "validation_error")
    assert detail == {"field": field}


def test_list_at_the_limits_is_accepted(http: httpx.Client, project: str) -> None:
    # The controls for the cases above: the boundary values themselves are fine.
    create(http, project)
    ids = ",".join(["r1", *(f"r{i}" for i in range(2, MAX_IDS + 1))])
    for query in (f"ids={ids}", "limit=1", "limit=1000", "state=CREATED", "label=a"):
        response = http.get(f"{runs_path(project)}?{query}")
        assert response.status_code == 200, (query, response.text)
        assert [item["id"] for item in response.json()["items"]] == ["r1"], query


# --- duplicate create ---------------------------------------------------------------------------


def test_duplicate_create_is_409_and_keeps_the_first(
    http: httpx.Client, server: ServerProcess, project: str
) -> None:
    first = create(http, project)
    second = record(project, spec={"x": "second"}, name="second")
    response = http.post(runs_path(project), content=dumps(second), headers=JSON_TYPE)
    detail = assert_error(response, 409, "already_exists")
    assert detail == {"project": project, "id": "r1"}
    assert_unchanged(http, project, "r1", first)
    assert first.json()["spec"] == {"x": 1}
    assert stored_rows(server.db, project) == 1


# --- OpenAPI ------------------------------------------------------------------------------------


def _dhcore_path(path: str) -> bool:
    return path.startswith("/api/v1/-/") or path in (
        "/api/v1/projects",
        "/api/v1/projects/{project}",
    )


@pytest.fixture
def app_routes(tmp_path: Path) -> Iterator[list[tuple[str, str]]]:
    service = RunService(open_store(tmp_path / "openapi.sqlite3"))
    try:
        app = create_app(service)
        pairs = []
        for route in app.routes:
            assert isinstance(route, Route), route
            if _dhcore_path(route.path) and "PATCH" in (route.methods or ()):
                # DHCore's API (its routes take every method, to answer 405 as DHCore does):
                # DHCore's own document describes it (test_dhcore_api.py).
                continue
            if route.path == "/" or route.path.startswith("/ui/"):
                continue  # the dashboard's page and files, not the API
            # Starlette adds HEAD to every GET route on its own; it is not part of the API.
            pairs += [(route.path, m.lower()) for m in sorted(route.methods or ()) if m != "HEAD"]
        yield pairs
    finally:
        finish(service.aclose())


def test_openapi_is_served(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "application/json"
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document == json.loads(json.dumps(openapi_document()))
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_openapi_documents_only_routes_that_exist(
    http: httpx.Client, app_routes: list[tuple[str, str]]
) -> None:
    document = http.get("/openapi.json").json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented <= set(app_routes), documented - set(app_routes)
    # The CRUD routes are documented with their path parameters and error bodies.
    for path, ops in document["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert declared == names, (path, method)
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


def test_openapi_documents_every_route(
    http: httpx.Client, app_routes: list[tuple[str, str]]
) -> None:
    document = http.get("/openapi.json").json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert set(app_routes) - documented == set()


# --- inputs that once caused a 5xx (run on their own server) ---------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "spec-nested-255-deep:orjson.dumps-recursion-limit",
        "if-match-beyond-int64:sqlite-OverflowError",
        "cursor-beyond-int64:sqlite-OverflowError",
        "990-label-filters:sqlite-expression-tree-too-large",
    ],
)
def test_inputs_that_once_caused_500s_are_4xx(
    scratch_server: ServerProcess, project: str, case: str
) -> None:
    with _client(scratch_server, record=False) as client:
        base = runs_path(project)
        if case.startswith("spec-nested"):
            data = record(project, spec={"deep": json.loads("[" * 300 + "]" * 300)})
            response = client.post(base, content=dumps(data), headers=JSON_TYPE)
        elif case.startswith("if-match"):
            created = create(client, project)
            response = client.put(
                runs_path(project, "r1"),
                content=created.content,
                headers={**JSON_TYPE, "If-Match": '"99999999999999999999"'},
            )
        elif case.startswith("cursor"):
            response = client.get(base, params={"cursor": _cursor(b"99999999999999999999:r1")})
        else:
            response = client.get(f"{base}?" + "&".join(["label=a"] * 990))
        assert response.status_code < 500, response.text
        assert 400 <= response.status_code < 500


# --- the server never failed --------------------------------------------------------------------


def test_server_never_failed(server: ServerProcess, small_server: ServerProcess) -> None:
    # Runs last in this file: every answer above was a deliberate status, never a 5xx, and
    # neither server logged a traceback (the shared server's log covers the other files too).
    assert ANSWERS, "no requests were recorded"
    failures = [answer for answer in ANSWERS if answer[2] >= 500]
    assert failures == []
    for proc in (server, small_server):
        log = proc.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]
        assert "Exception in ASGI application" not in log
        assert "unhandled error" not in log
