"""The hostile-input table: every hostile input, and the exact error it must produce.

This module is the single list of them. ``test_hostile_http.py`` and ``test_hostile_sdk.py``
run every row; :func:`markdown` renders the table for the README's "Reliability" section::

    python -m tests.bad_input._table

A row with ``finding`` set states what the code must do but does not do yet (the finding's
number is in the row); its test fails until the code is fixed.

HTTP rows go to a real ``asyncrun server`` started with ``--max-body-bytes 4096``, byte for byte
through a raw socket (httpx would normalise paths). Before each row the test creates run ``r1``
(with one metric batch) in a project of the row's own; ``{p}`` in a path is that project. After
the answer, every table of the server's database must be exactly as before (nothing stored,
nothing lost) and the server's log must hold no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

SMALL_BODY_LIMIT = 4096
"""``--max-body-bytes`` of the table's server (the CLI accepts 1024 and up)."""
API = "/api/v1/projects"
KIND = "test+record"  # not a registered kind: the record's own rules apply, nothing executes
JSON = "application/json"

Match = Literal["exact", "prefix", "contains"]
_ANY: Any = object()


@dataclass(frozen=True)
class Expect:
    """The error a hostile input must produce.

    Attributes:
        status: The HTTP status (for SDK rows, the status of the error class).
        code: The ``code`` of the JSON error body / of the typed exception; ``None`` when the
            HTTP layer (uvicorn) refuses the request before the app sees it (plain text body).
        message: The message, compared as ``match`` says.
        match: ``exact``, ``prefix`` (the rest comes from a parser, e.g. orjson's position) or
            ``contains`` (rows of findings: the wording is the fixer's).
        detail: The ``detail`` of the error body, if it is checked.
    """

    status: int
    code: str | None
    message: str
    match: Match = "exact"
    detail: Any = _ANY

    def check_message(self, message: str) -> bool:
        if self.match == "exact":
            return message == self.message
        if self.match == "prefix":
            return message.startswith(self.message)
        return self.message in message

    def check_detail(self, detail: Any) -> bool:
        return self.detail is _ANY or detail == self.detail


def record(project: str, id: str = "new", **fields: Any) -> dict[str, Any]:
    """A valid run record of ``project``; ``fields`` replace top-level keys."""
    data: dict[str, Any] = {
        "kind": KIND,
        "id": id,
        "project": project,
        "metadata": {"project": project, "labels": ["a"]},
        "spec": {"x": 1},
    }
    data.update(fields)
    return data


def with_labels(*labels: str) -> Callable[[str], bytes]:
    return lambda p: dumps(record(p, metadata={"project": p, "labels": list(labels)}))


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


def nested(depth: int) -> Any:
    """A JSON value nested ``depth`` levels deep (the record adds two: the run and spec)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def batch(*ops: list[Any], writer: str = "w", seq: int = 1) -> Callable[[str], bytes]:
    return lambda p: dumps({"writer": writer, "seq": seq, "ops": list(ops)})


def update_r1(project: str, **fields: Any) -> bytes:
    """An update of ``r1`` at revision 1 (as created before each row), with ``fields``."""
    data = record(project, "r1", **fields)
    data["metadata"] = {**data["metadata"], "revision": 1}
    return dumps(data)


Body = bytes | Callable[[str], bytes] | None


@dataclass(frozen=True)
class HttpRow:
    """One hostile HTTP request.

    Attributes:
        id: The pytest id.
        group: What kind of hostile input (the README groups by it).
        what: The input, for the README.
        method: The HTTP method.
        path: The request target after ``/api/v1/projects/`` (bytes, sent as is; ``{p}`` is the
            row's project).
        body: The body, or a function of the project building it.
        content_type: The Content-Type header (``None``: no header).
        headers: More raw header lines.
        chunked: Send the body with ``Transfer-Encoding: chunked`` (no Content-Length).
        declared_length: Send this Content-Length and no body at all.
        expect: The error.
        finding: The number of the finding when the server does not do this yet.
    """

    id: str
    group: str
    what: str
    method: str
    path: bytes
    expect: Expect
    body: Body = None
    content_type: str | None = JSON
    headers: tuple[bytes, ...] = ()
    chunked: bool = False
    declared_length: int | None = None
    finding: int | None = None

    def target(self, project: str) -> bytes:
        return API.encode() + b"/" + self.path.replace(b"{p}", project.encode())

    def payload(self, project: str) -> bytes:
        if self.body is None:
            return b""
        return self.body if isinstance(self.body, bytes) else self.body(project)


TOO_LARGE = Expect(
    413,
    "payload_too_large",
    f"the body is larger than the server's limit of {SMALL_BODY_LIMIT} bytes",
    detail={"limit": SMALL_BODY_LIMIT},
)
NOT_JSON = Expect(400, "malformed_request", "the body is not valid JSON: ", "prefix")
TOO_DEEP = Expect(
    422,
    "validation_error",
    "the record is nested deeper than 64 levels; flatten it",
    detail={"limit": 64},
)
_NAME_RULE = (
    "must be 1-128 characters of letters, digits, '_', '.' or '-', starting with a letter or "
    "digit; got "
)


def bad_path_name(what: Literal["id", "project"], shown: str) -> Expect:
    return Expect(422, "validation_error", f"{what} {_NAME_RULE}{shown}", detail={"field": "path"})


def bad_record(message: str) -> Expect:
    return Expect(422, "validation_error", f"invalid run record: {message}", detail=None)


def bad_label(shown: str) -> Expect:
    return bad_record(f"a label must not contain control characters; got {shown}")


def wrong_type(got: str) -> Expect:
    return Expect(
        415,
        "unsupported_media_type",
        f"send the body as JSON with Content-Type: application/json (got {got!r})",
        detail=None,
    )


SEPARATOR_IN_NAME = Expect(422, "validation_error", "%2F", "contains", detail={"field": "path"})
C1_LABEL = Expect(422, "validation_error", "control characters", "contains")

_BIG = b" " * (SMALL_BODY_LIMIT + 1)
_RUNS = b"{p}/runs"
_R1 = b"{p}/runs/r1"

HTTP_ROWS: list[HttpRow] = [
    # --- huge bodies ---------------------------------------------------------------------------
    HttpRow("huge-create", "huge body", "a create body one byte over `--max-body-bytes`",
            "POST", _RUNS, TOO_LARGE, body=lambda p: dumps(record(p)) + _BIG),
    HttpRow("huge-chunked", "huge body", "the same, chunked (no Content-Length)",
            "POST", _RUNS, TOO_LARGE, body=lambda p: dumps(record(p)) + _BIG, chunked=True),
    HttpRow("huge-declared", "huge body",
            "a Content-Length of 10^11 and no body (refused before reading)",
            "POST", _RUNS, TOO_LARGE, declared_length=10**11),
    HttpRow("huge-update", "huge body", "an update of `r1` over the limit",
            "PUT", _R1, TOO_LARGE, body=lambda p: update_r1(p) + _BIG),
    HttpRow("huge-metrics", "huge body", "a metric batch over the limit",
            "PATCH", _R1 + b"/status", TOO_LARGE, body=lambda p: batch(["k", 1, 1])(p) + _BIG),
    HttpRow("huge-watch", "huge body", "a watch body over the limit",
            "POST", b"{p}/runs:watch", TOO_LARGE, body=b'{"ids": ["r1"]}' + _BIG),
    HttpRow("huge-batch", "huge body", "a batchCreate body over the limit",
            "POST", b"{p}/runs:batchCreate", TOO_LARGE,
            body=lambda p: dumps({"runs": [record(p)]}) + _BIG),
    # --- deep JSON nesting ---------------------------------------------------------------------
    HttpRow("deep-2000", "deep nesting", "`[` x 2000 (past orjson's recursion limit)",
            "POST", _RUNS, NOT_JSON, body=b"[" * 2000 + b"]" * 2000),
    HttpRow("deep-spec-65", "deep nesting", "`spec` nested 65 levels",
            "POST", _RUNS, TOO_DEEP, body=lambda p: dumps(record(p, spec={"x": nested(64)}))),
    HttpRow("deep-spec-300", "deep nesting",
            "`spec` nested 300 levels (orjson cannot write it back)",
            "POST", _RUNS, TOO_DEEP, body=lambda p: dumps(record(p, spec={"x": nested(300)}))),
    HttpRow("deep-update", "deep nesting", "an update of `r1` with `spec` nested 65 levels",
            "PUT", _R1, TOO_DEEP, body=lambda p: update_r1(p, spec={"x": nested(64)})),
    # --- not UTF-8 -----------------------------------------------------------------------------
    HttpRow("latin1", "not UTF-8", "a Latin-1 byte (`\\xe9`) inside a JSON string",
            "POST", _RUNS, NOT_JSON,
            body=lambda p: dumps(record(p, name="cafe")).replace(b"cafe", b"caf\xe9")),
    HttpRow("utf16", "not UTF-8", "the record encoded as UTF-16 (with BOM)",
            "POST", _RUNS, NOT_JSON, body=lambda p: json.dumps(record(p)).encode("utf-16")),
    HttpRow("utf8-bom", "not UTF-8", "a UTF-8 byte order mark before the JSON",
            "POST", _RUNS, NOT_JSON, body=lambda p: b"\xef\xbb\xbf" + dumps(record(p))),
    HttpRow("overlong", "not UTF-8", "an overlong encoding of `/` (`\\xc0\\xaf`)",
            "POST", _RUNS, NOT_JSON,
            body=lambda p: dumps(record(p, name="a-b")).replace(b"a-b", b"a\xc0\xafb")),
    HttpRow("lone-surrogate", "not UTF-8", "a lone surrogate escape `\\ud800` in a label",
            "POST", _RUNS, NOT_JSON,
            body=lambda p: with_labels("x")(p).replace(b'"x"', b'"\\ud800"')),
    HttpRow("path-ff", "not UTF-8", "a `%FF` byte as the run id",
            "GET", b"{p}/runs/%FF", bad_path_name("id", "'\ufffd'")),
    HttpRow("query-ff", "not UTF-8", "a `%FF` byte as a label filter (`?label=%FF`)",
            "GET", b"{p}/runs?label=%FF",
            Expect(400, "malformed_request", "UTF-8", "contains"), finding=7),
    # --- wrong content types -------------------------------------------------------------------
    HttpRow("text-plain", "content type", "`text/plain`",
            "POST", _RUNS, wrong_type("text/plain"), body=lambda p: dumps(record(p)),
            content_type="text/plain"),
    HttpRow("no-type", "content type", "no Content-Type",
            "POST", _RUNS, wrong_type("none"), body=lambda p: dumps(record(p)), content_type=None),
    HttpRow("form", "content type", "`application/x-www-form-urlencoded`",
            "POST", _RUNS, wrong_type("application/x-www-form-urlencoded"),
            body=b"kind=x&id=y", content_type="application/x-www-form-urlencoded"),
    HttpRow("multipart", "content type", "`multipart/form-data`",
            "POST", _RUNS, wrong_type("multipart/form-data"),
            body=b"--x\r\n\r\n{}\r\n--x--\r\n", content_type="multipart/form-data; boundary=x"),
    HttpRow("two-types", "content type", "`application/json, text/plain`",
            "POST", _RUNS, wrong_type("application/json, text/plain"),
            body=lambda p: dumps(record(p)), content_type="application/json, text/plain"),
    HttpRow("update-text", "content type", "`text/plain` on an update of `r1`",
            "PUT", _R1, wrong_type("text/plain"), body=lambda p: update_r1(p),
            content_type="text/plain"),
    HttpRow("merge-patch", "content type", "`application/merge-patch+json` on a metric batch",
            "PATCH", _R1 + b"/status", wrong_type("application/merge-patch+json"),
            body=batch(["k", 1, 1]), content_type="application/merge-patch+json"),
    # --- ids and projects with path separators, `..`, NUL --------------------------------------
    HttpRow("id-dotdot", "path names", "run id `..`",
            "GET", b"{p}/runs/..", bad_path_name("id", "'..'")),
    HttpRow("id-dotdot-encoded", "path names", "run id `%2E%2E`",
            "DELETE", b"{p}/runs/%2E%2E", bad_path_name("id", "'..'")),
    HttpRow("id-nul", "path names", "run id `%00`",
            "DELETE", b"{p}/runs/%00", bad_path_name("id", "'\\x00'")),
    HttpRow("id-backslash", "path names", "run id `a%5Cb` (backslash)",
            "GET", b"{p}/runs/a%5Cb", bad_path_name("id", "'a\\\\b'")),
    HttpRow("project-dotdot", "path names", "project `..`",
            "POST", b"../runs", bad_path_name("project", "'..'"),
            body=lambda p: dumps(record(".."))),
    HttpRow("id-slash-logs", "path names", "run id `r1%2Flogs` (an encoded `/`)",
            "GET", b"{p}/runs/r1%2Flogs", SEPARATOR_IN_NAME, finding=2),
    HttpRow("id-slash-stop", "path names", "run id `r1%2Fstop` (an encoded `/`)",
            "POST", b"{p}/runs/r1%2Fstop", SEPARATOR_IN_NAME, finding=2),
    HttpRow("project-slash-delete", "path names",
            "project `{p}%2Fruns%2Fr1` (encoded `/`s)",
            "DELETE", b"{p}%2Fruns%2Fr1", SEPARATOR_IN_NAME, finding=2),
    HttpRow("raw-nul", "path names", "a raw NUL byte in the request line",
            "GET", b"{p}/runs/x\x00y", Expect(400, None, "Invalid HTTP request received.")),
    HttpRow("body-id-dotdot", "path names", "a record with id `../x`",
            "POST", _RUNS, bad_record(f"id {_NAME_RULE}'../x'"),
            body=lambda p: dumps(record(p, "../x"))),
    HttpRow("body-id-slash", "path names", "a record with id `a/b`",
            "POST", _RUNS, bad_record(f"id {_NAME_RULE}'a/b'"),
            body=lambda p: dumps(record(p, "a/b"))),
    HttpRow("body-id-nul", "path names", "a record with id `a\\u0000b`",
            "POST", _RUNS, bad_record(f"id {_NAME_RULE}'a\\x00b'"),
            body=lambda p: dumps(record(p, "a\x00b"))),
    HttpRow("body-project-dotdot", "path names", "a record of project `../p`",
            "POST", _RUNS, bad_record(f"project {_NAME_RULE}'../p'"),
            body=lambda p: dumps(record("../p"))),
    HttpRow("ids-filter-dotdot", "path names", "`?ids=../x`",
            "GET", b"{p}/runs?ids=../x",
            Expect(422, "validation_error", f"id {_NAME_RULE}'../x'", detail={"field": "ids"})),
    # --- labels and names with control characters ----------------------------------------------
    HttpRow("label-tab", "control characters", "label `a\\tb`",
            "POST", _RUNS, bad_label("'a\\tb'"), body=with_labels("a\tb")),
    HttpRow("label-newline", "control characters", "label `a\\nb`",
            "POST", _RUNS, bad_label("'a\\nb'"), body=with_labels("a\nb")),
    HttpRow("label-nul", "control characters", "label `a\\u0000b`",
            "POST", _RUNS, bad_label("'a\\x00b'"), body=with_labels("a\x00b")),
    HttpRow("label-ansi", "control characters", "label `\\u001b[31mred` (ANSI escape)",
            "POST", _RUNS, bad_label("'\\x1b[31mred'"), body=with_labels("\x1b[31mred")),
    HttpRow("label-del", "control characters", "label `a\\u007fb` (DEL)",
            "POST", _RUNS, bad_label("'a\\x7fb'"), body=with_labels("a\x7fb")),
    HttpRow("label-nel", "control characters", "label `a\\u0085b` (NEL, a C1 control)",
            "POST", _RUNS, C1_LABEL, body=with_labels("a\x85b"), finding=1),
    HttpRow("label-csi", "control characters", "label `\\u009b31m` (CSI, a C1 control)",
            "POST", _RUNS, C1_LABEL, body=with_labels("\x9b31m"), finding=1),
    HttpRow("label-update", "control characters", "an update of `r1` adding label `a\\tb`",
            "PUT", _R1, bad_label("'a\\tb'"),
            body=lambda p: update_r1(p, metadata={"project": p, "labels": ["a\tb"]})),
    HttpRow("label-filter", "control characters", "`?label=a%09b`",
            "GET", b"{p}/runs?label=a%09b",
            Expect(422, "validation_error",
                   "a label must not contain control characters; got 'a\\tb'",
                   detail={"field": "label"})),
    HttpRow("label-filter-c1", "control characters", "`?label=a%C2%85b` (NEL)",
            "GET", b"{p}/runs?label=a%C2%85b",
            Expect(422, "validation_error", "control characters", "contains",
                   detail={"field": "label"}), finding=1),
    HttpRow("name-newline", "control characters", "name `a\\nb`",
            "POST", _RUNS,
            bad_record("name must be a non-empty string without control characters; got 'a\\nb'"),
            body=lambda p: dumps(record(p, name="a\nb"))),
    HttpRow("metadata-name-newline", "control characters", "`metadata.name` `a\\nb`",
            "POST", _RUNS, Expect(422, "validation_error", "control characters", "contains"),
            body=lambda p: dumps(record(p, metadata={"project": p, "name": "a\nb"})), finding=8),
    HttpRow("metric-key-tab", "control characters", "metric key `a\\tb`",
            "PATCH", _R1 + b"/status",
            Expect(422, "validation_error",
                   "metric key 'a\\tb' must not contain control characters",
                   detail={"field": "ops[0]"}),
            body=batch(["a\tb", 1, 1])),
    HttpRow("metric-key-c1", "control characters", "metric key `a\\u0085b` (NEL)",
            "PATCH", _R1 + b"/status",
            Expect(422, "validation_error", "control characters", "contains",
                   detail={"field": "ops[0]"}),
            body=batch(["a\x85b", 1, 1]), finding=1),
    # --- other parameters ----------------------------------------------------------------------
    HttpRow("follow-maybe", "parameters", "`logs?follow=maybe`",
            "GET", _R1 + b"/logs?follow=maybe",
            Expect(422, "validation_error", "follow must be true or false",
                   detail={"field": "follow"})),
    HttpRow("follow-missing", "parameters", "`logs?follow=true` of a run that does not exist",
            "GET", b"{p}/runs/nope/logs?follow=true",
            Expect(404, "not_found", "no run 'nope' in project '{p}'",
                   detail={"project": "{p}", "id": "nope"})),
    HttpRow("watch-61", "parameters", "`runs:watch?ids=r1&timeout=61`",
            "GET", b"{p}/runs:watch?ids=r1&timeout=61",
            Expect(422, "validation_error", "timeout must be 0 to 60 seconds",
                   detail={"field": "timeout"})),
    HttpRow("if-match-huge", "parameters", "`If-Match: \"99999999999999999999\"` (past int64)",
            "PUT", _R1,
            Expect(422, "validation_error",
                   "If-Match must be the ETag of a run (like '\"3\"'), "
                   "got '\"99999999999999999999\"'",
                   detail={"header": "If-Match"}),
            body=lambda p: update_r1(p), headers=(b'If-Match: "99999999999999999999"',)),
    HttpRow("key-object", "parameters", "a record whose read-only `key` is an object",
            "POST", _RUNS, Expect(422, "validation_error", "key", "contains"),
            body=lambda p: dumps(record(p, key={"a": [1]})), finding=11),
    HttpRow("metric-seq-huge", "parameters", "metric batch `seq` 2^63",
            "PATCH", _R1 + b"/status",
            Expect(422, "validation_error", "seq must be a positive integer",
                   detail={"field": "seq"}),
            body=batch(["k", 1, 1], seq=2**63)),
]  # fmt: skip


@dataclass(frozen=True)
class YamlRow:
    """One hostile file given to ``load_run``; it must raise ``ValidationError``.

    ``text`` may hold ``{marker}``: a path the test checks was never created.
    """

    id: str
    what: str
    text: bytes
    expect: Expect
    finding: int | None = None
    seconds: float = 2.0
    """The most the refusal may take."""


_HEAD = b"kind: test+record\nid: r1\nproject: p\nmetadata:\n  project: p\n"
_NOT_YAML = "not a valid YAML document: "
_NOT_A_RUN = "invalid run record: expected an object with string keys, got "


def yaml_bomb(levels: int, width: int = 9) -> bytes:
    """A "billion laughs" spec: each anchor is a list of ``width`` aliases of the previous."""
    lines = [b"spec:", b'  a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        aliases = b", ".join(b"*a%d" % (i - 1) for _ in range(width))
        lines.append(b"  a%d: &a%d [%s]" % (i, i, aliases))
    return _HEAD + b"\n".join(lines) + b"\n"


_TAG = "line 6: the file uses the YAML tag {}, which asyncrun does not read: write the value "
_TAG += "as a plain string, number, boolean, null, list or mapping"

YAML_ROWS: list[YamlRow] = [
    YamlRow("python-apply", "`!!python/object/apply:os.system` (would run a command)",
            _HEAD + b"spec: !!python/object/apply:os.system ['touch {marker}']\n",
            Expect(422, "validation_error", _TAG.format("!!python/object/apply:os.system"))),
    YamlRow("python-object", "`!!python/object:os.system`",
            _HEAD + b"spec: !!python/object:os.system {}\n",
            Expect(422, "validation_error", _TAG.format("!!python/object:os.system"))),
    YamlRow("local-tag", "a local tag `!custom`",
            _HEAD + b"spec: !custom {a: 1}\n",
            Expect(422, "validation_error", _TAG.format("!custom"))),
    YamlRow("timestamp-tag", "an explicit `!!timestamp` (JSON has no time type)",
            _HEAD + b"spec: {x: !!timestamp 2024-01-02}\n",
            Expect(422, "validation_error", _TAG.format("!!timestamp"))),
    YamlRow("too-big", "a file over 8 MiB (parsing 20 MB took 56 s and 200 MB)",
            _HEAD + b"# " + b"x" * (8 * 1024 * 1024) + b"\n",
            Expect(413, "payload_too_large", "holds 8388670 bytes; a run file may hold at most "
                   "8388608 bytes (8 MiB, asyncrun._serde.MAX_RUN_FILE_BYTES): remove what "
                   "makes it big (long lists under status.metrics, large spec values) and load "
                   "it again", "contains")),
    YamlRow("billion-laughs", 'anchors and aliases, 9 x 6 levels ("billion laughs": 400 bytes '
            "that expand to 530,000 strings)",
            yaml_bomb(6), Expect(422, "validation_error", "alias", "contains"), finding=3),
    YamlRow("deep-5000", "a flow sequence nested 5,000 levels",
            _HEAD + b"spec: {x: " + b"[" * 5000 + b"]" * 5000 + b"}\n",
            Expect(422, "validation_error", "nested deeper than 64 levels", "contains"),
            finding=4),
    YamlRow("deep-100", "a flow sequence nested 100 levels",
            _HEAD + b"spec: {x: " + b"[" * 100 + b"]" * 100 + b"}\n",
            Expect(422, "validation_error", TOO_DEEP.message)),
    YamlRow("list", "a list, not a mapping", b"- a\n- b\n",
            Expect(422, "validation_error", f"{_NOT_A_RUN}list")),
    YamlRow("scalar", "a scalar, not a mapping", b"just text\n",
            Expect(422, "validation_error", f"{_NOT_A_RUN}str")),
    YamlRow("empty", "an empty file", b"",
            Expect(422, "validation_error", f"{_NOT_A_RUN}NoneType")),
    YamlRow("two-documents", "two documents (`---`)", _HEAD + b"---\n" + _HEAD,
            Expect(422, "validation_error",
                   f"{_NOT_YAML}expected a single document in the stream", "prefix")),
    YamlRow("duplicate-key", "a duplicate key (`id` twice)", _HEAD + b"id: r2\n",
            Expect(422, "validation_error", f"{_NOT_YAML}while constructing a mapping",
                   "prefix")),
    YamlRow("latin1", "a Latin-1 file (`caf\\xe9`)", _HEAD + b"name: caf\xe9\n",
            Expect(422, "validation_error", "UTF-8", "contains"), finding=5),
    YamlRow("binary", "a `!!binary` value in `spec` (bytes: JSON cannot carry them)",
            _HEAD + b"spec: {x: !!binary aGVsbG8=}\n",
            Expect(422, "validation_error", _TAG.format("!!binary")), finding=6),
    YamlRow("nan", "`.nan` in `spec` (JSON cannot carry NaN)", _HEAD + b"spec: {x: .nan}\n",
            Expect(422, "validation_error", "spec", "contains"), finding=6),
]  # fmt: skip


@dataclass(frozen=True)
class JobRow:
    """A ``python+job`` whose handler does not import, and how its run must end.

    ``files`` are written to the job's working directory first (``{name}.py``: source). A row
    that runs ends in ``expect.code`` (the state, ERROR) with ``expect.message`` as the run's
    message and exit code 1. ``refused`` rows never run: creating the run raises
    ``ValidationError`` with ``expect``'s code, message and detail.
    """

    id: str
    what: str
    handler: Any
    expect: Expect
    files: dict[str, str] = field(default_factory=dict)
    refused: bool = False
    finding: int | None = None


def _cannot_load(handler: str, error: str) -> str:
    return f"cannot load handler {handler!r}: {error}"


JOB_ROWS: list[JobRow] = [
    JobRow("no-module", "a module that does not exist", "bi_no_such_module:main",
           Expect(0, "ERROR", _cannot_load(
               "bi_no_such_module:main",
               "ModuleNotFoundError: No module named 'bi_no_such_module'"))),
    JobRow("no-package", "a package that does not exist", "bi_no_such_pkg.sub:main",
           Expect(0, "ERROR", _cannot_load(
               "bi_no_such_pkg.sub:main",
               "ModuleNotFoundError: No module named 'bi_no_such_pkg'")), finding=9),
    JobRow("missing-dependency", "a module whose own import fails",
           "bi_imports_missing:main",
           Expect(0, "ERROR", _cannot_load(
               "bi_imports_missing:main",
               "ModuleNotFoundError: No module named 'bi_no_such_dependency'")),
           files={"bi_imports_missing": "import bi_no_such_dependency\n\n\ndef main():\n"
                                        "    return 1\n"},
           finding=9),
    JobRow("syntax-error", "a module with a syntax error", "bi_syntax_error:main",
           Expect(0, "ERROR", _cannot_load("bi_syntax_error:main", "SyntaxError: "), "prefix"),
           files={"bi_syntax_error": "def main(:\n"}, finding=9),
    JobRow("raises-at-import", "a module that raises while imported",
           "bi_raises_at_import:main",
           Expect(0, "ERROR", _cannot_load("bi_raises_at_import:main",
                                           "RuntimeError: broken at import")),
           files={"bi_raises_at_import": "raise RuntimeError('broken at import')\n"},
           finding=9),
    JobRow("no-function", "a module without the function", "bi_no_function:main",
           Expect(0, "ERROR", _cannot_load(
               "bi_no_function:main",
               "AttributeError: module 'bi_no_function' has no attribute 'main'")),
           files={"bi_no_function": "def other():\n    return 1\n"}),
    JobRow("not-a-handler", "a handler that is not `module:function` (refused at create)",
           "no colon here",
           Expect(422, "validation_error",
                  "invalid spec for python+job: spec.handler must be "
                  "'package.module:function', got 'no colon here'",
                  detail={"field": "spec"}),
           refused=True),
    JobRow("path-handler", "a handler with a path (refused at create)", "../evil:main",
           Expect(422, "validation_error",
                  "invalid spec for python+job: spec.handler must be "
                  "'package.module:function', got '../evil:main'",
                  detail={"field": "spec"}),
           refused=True),
]  # fmt: skip


# --- the README table ---------------------------------------------------------------------


def _shown(expect: Expect) -> str:
    text = expect.message.replace("|", "\\|").replace("{p}", "{project}")
    if expect.match == "prefix":
        return f"`{text}…`"
    if expect.match == "contains":
        return f"mentions `{text}`"
    return f"`{text}`"


def _request(row: HttpRow) -> str:
    path = row.path.decode("latin-1").replace("\x00", "\\x00").replace("{p}", "{project}")
    return f"`{row.method} …/{path}`".replace("|", "\\|")


def markdown() -> str:
    """The table of every hostile input and its exact error, for the README."""
    lines = [
        "| hostile input | request | status | code | message |",
        "|---|---|---|---|---|",
    ]
    for row in HTTP_ROWS:
        code = f"`{row.expect.code}`" if row.expect.code else "(uvicorn, plain text)"
        what = row.what.replace("{p}", "{project}")
        lines.append(
            f"| {what} | {_request(row)} | {row.expect.status} | {code} | {_shown(row.expect)} |"
        )
    lines += [
        "",
        "| file given to `load_run` | raises | code | message |",
        "|---|---|---|---|",
    ]
    for yrow in YAML_ROWS:
        lines.append(
            f"| {yrow.what} | `ValidationError` | `{yrow.expect.code}` | {_shown(yrow.expect)} |"
        )
    lines += [
        "",
        "| `python+job` handler | outcome | message |",
        "|---|---|---|",
    ]
    for jrow in JOB_ROWS:
        outcome = (
            f"refused at create: `ValidationError` (422 `{jrow.expect.code}`)"
            if jrow.refused
            else "the run ends in `ERROR`"
        )
        lines.append(f"| {jrow.what} (`{jrow.handler}`) | {outcome} | {_shown(jrow.expect)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
