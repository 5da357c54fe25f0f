"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from functools import cache
from typing import Any

from .._core import joblog, logs
from .._core.protocol import ACTIONS, API_PREFIX, MAX_BATCH_CREATE
from .._core.query import MAX_IDS, MAX_LIMIT, MAX_WATCH_IDS, MAX_WATCH_SECONDS
from .._core.records import State
from .._core.summary import MAX_HISTORY_PAGE, MAX_INLINE_VALUES

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
_PLAIN = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No C0 or C1 control characters (what the server refuses in names, labels and keys)."""
_LABEL = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _PLAIN}
_DISPLAY_NAME = {"type": ["string", "null"], "minLength": 1, "pattern": _PLAIN}
_KIND = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9+._-]{0,63}$"}
_NUMBER = {"oneOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int, write: bool = False) -> dict[str, Any]:
    """Error responses of an API operation.

    Every one may answer 401 and 403 (tokens), and 500 ``corrupt_record`` when a stored record
    was changed outside asyncrun (any other 5xx is a bug).
    """
    text = {
        400: "Malformed request (bad JSON, bad parameter)",
        401: "No valid bearer token",
        403: "The token does not cover this project, or its role is too weak (read < write < run)",
        500: "A stored record was changed outside asyncrun (code corrupt_record)",
        507: "The server's disk is full: nothing was stored",
        404: "No such run or route",
        409: "Conflict (the id exists, or the state does not allow the action)",
        412: "The run changed since the given revision",
        413: "Body larger than the server's limit",
        415: "Body is not JSON",
        422: "The record or a parameter is invalid",
    }
    codes = (*codes, 401, 403, 500, *((507,) if write else ()))
    return {str(code): _json_body(_ref("Error"), text[code]) for code in sorted(codes)}


_SCHEMAS: dict[str, Any] = {
    "Identity": {
        "type": "object",
        "required": ["role", "projects", "token_id"],
        "properties": {
            "role": {"enum": ["read", "write", "run"]},
            "projects": {"type": "array", "items": {"type": "string"}},
            "token_id": {
                "type": ["string", "null"],
                "description": "The token's public id; null on a server without tokens",
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["code", "message", "detail"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "detail": {}},
    },
    "Transition": {
        "type": "object",
        "required": ["state", "time"],
        "properties": {
            "state": {"enum": list(State)},
            "time": _TIME,
            "message": _NULLABLE_STR,
        },
    },
    "Metadata": {
        "type": "object",
        "required": ["project"],
        "additionalProperties": True,
        "properties": {
            "project": _NAME,
            "name": _DISPLAY_NAME,
            "description": _NULLABLE_STR,
            "labels": {"type": "array", "items": _LABEL},
            "created": {"type": ["string", "null"], "format": "date-time"},
            "created_by": _NULLABLE_STR,
            "updated": {"type": ["string", "null"], "format": "date-time"},
            "updated_by": _NULLABLE_STR,
            "relationships": {"type": "array", "items": {"type": "object"}},
            "revision": {"type": "integer"},
        },
    },
    "Status": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "state": {"enum": list(State)},
            "message": _NULLABLE_STR,
            "transitions": {"type": "array", "items": _ref("Transition")},
            "metrics": {
                "type": "object",
                "description": "Each key's number or list of numbers, in full. Only a read of "
                f"one run carries it, and only up to {MAX_INLINE_VALUES} values in all; lists, "
                "watches, saves and actions carry metric_summary alone (read histories with "
                "GET .../metrics?key=)",
            },
            "metric_summary": {
                "type": "object",
                "description": "Each metric key at a glance (set by the server)",
                "additionalProperties": _ref("MetricSummary"),
            },
        },
    },
    "MetricSummary": {
        "type": "object",
        "required": ["count", "last", "min", "max"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "last": {"oneOf": [_NUMBER, {"type": "null"}]},
            "min": {"oneOf": [_NUMBER, {"type": "null"}], "description": "NaN left out"},
            "max": {"oneOf": [_NUMBER, {"type": "null"}], "description": "NaN left out"},
            "single": {"type": "boolean", "description": "The key holds one number, no list"},
        },
    },
    "MetricHistory": {
        "type": "object",
        "required": ["key", "offset", "values", "next_offset"],
        "properties": {
            "key": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0},
            "values": {"type": "array", "items": _NUMBER},
            "next_offset": {"type": "integer", "minimum": 0},
        },
    },
    "BatchActionRequest": {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {
                "type": "array",
                "items": _NAME,
                "minItems": 1,
                "maxItems": MAX_BATCH_CREATE,
                "uniqueItems": True,
            }
        },
    },
    "Run": {
        "type": "object",
        "required": ["kind", "id", "project", "metadata"],
        "additionalProperties": False,
        "properties": {
            "kind": _KIND,
            "id": _NAME,
            "key": {
                "type": "string",
                "description": "store://project/run/kind/id: derived, ignored on input",
            },
            "project": _NAME,
            "name": _DISPLAY_NAME,
            "metadata": _ref("Metadata"),
            "spec": {"type": "object"},
            "status": _ref("Status"),
            "user": _NULLABLE_STR,
        },
    },
    "BatchCreateRequest": {
        "type": "object",
        "required": ["runs"],
        "properties": {
            "runs": {
                "type": "array",
                "items": _ref("Run"),
                "minItems": 1,
                "maxItems": MAX_BATCH_CREATE,
            }
        },
    },
    "BatchCreateResult": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One entry per record sent, in order",
                "items": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["run"],
                            "properties": {"run": _ref("Run")},
                        },
                        {
                            "type": "object",
                            "required": ["error"],
                            "properties": {
                                "error": {
                                    "allOf": [
                                        _ref("Error"),
                                        {
                                            "type": "object",
                                            "required": ["status"],
                                            "properties": {"status": {"type": "integer"}},
                                        },
                                    ]
                                }
                            },
                        },
                    ]
                },
            }
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["offset", "stream", "time", "text"],
        "properties": {
            "offset": {"type": "integer", "minimum": 0},
            "stream": {"enum": ["stdout", "stderr"]},
            "time": _TIME,
            "text": {"type": "string"},
        },
    },
    "LogEnd": {
        "type": "object",
        "description": "The last line of a followed stream (blank lines are heartbeats)",
        "required": ["end"],
        "additionalProperties": False,
        "properties": {"end": {"const": True}, "deleted": {"type": "boolean"}},
    },
    "LogPage": {
        "type": "object",
        "description": f"At most {logs.MAX_PAGE_BYTES} bytes of JSON: a page stops before the "
        "line that would cross it (a page always holds its first line)",
        "required": ["lines", "next_offset", "end_offset"],
        "properties": {
            "lines": {"type": "array", "items": _ref("LogLine")},
            "next_offset": {
                "type": "integer",
                "description": "Where the next page starts (pass it as offset)",
            },
            "end_offset": {
                "type": "integer",
                "description": "The offset the run's next line will get (lines written so far), "
                "as the page was read; the page stops there",
            },
        },
    },
    "WatchRequest": {
        "type": "object",
        "additionalProperties": False,
        "description": "Follow the project's changes feed (feed: true, no ids: every run "
        "written or deleted after since; since omitted starts now), or watch given ids "
        "(at least one, in ids or fresh)",
        "anyOf": [
            {
                "required": ["feed"],
                "properties": {"feed": {"const": True}, "ids": {"maxItems": 0}},
            },
            {"required": ["ids"], "properties": {"ids": {"minItems": 1}, "feed": {"const": False}}},
            {
                "required": ["fresh"],
                "properties": {"fresh": {"minItems": 1}, "feed": {"const": False}},
            },
        ],
        "properties": {
            "feed": {"type": "boolean"},
            "ids": {"type": "array", "items": _NAME},
            "fresh": {"type": "array", "items": _NAME},
            "since": {"type": "integer", "minimum": 0},
            "timeout": {"type": "number", "minimum": 0, "maximum": MAX_WATCH_SECONDS},
        },
    },
    "Changes": {
        "type": "object",
        "required": ["seq", "runs", "missing", "deleted", "more"],
        "properties": {
            "seq": {"type": "integer"},
            "runs": {
                "type": "array",
                "items": _ref("Run"),
                "description": "Records carry metric_summary, not metrics",
            },
            "missing": {"type": "array", "items": {"type": "string"}},
            "deleted": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Runs deleted after since (feed)",
            },
            "more": {"type": "boolean", "description": "More changes follow seq: ask again"},
        },
    },
    "MetricBatch": {
        "type": "object",
        "required": ["writer", "seq", "ops"],
        "additionalProperties": False,
        "properties": {
            "writer": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
            "seq": {"type": "integer", "minimum": 1},
            "ops": {
                "type": "array",
                "description": "[key, mode, value]; mode 1 append, 2 replace, 3 single, "
                "4 set, 5 merge; value a number, NaN/Infinity/-Infinity as strings, or a list",
                "items": {
                    "type": "array",
                    "prefixItems": [
                        {"type": "string", "minLength": 1, "maxLength": 250, "pattern": _PLAIN},
                        {"type": "integer", "minimum": 1, "maximum": 5},
                        {"oneOf": [_NUMBER, {"type": "array", "items": _NUMBER}]},
                    ],
                    "minItems": 3,
                    "maxItems": 3,
                },
            },
        },
    },
    "LogBatch": {
        "type": "object",
        "required": ["writer", "seq", "lines"],
        "additionalProperties": False,
        "properties": {
            "writer": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
            "seq": {"type": "integer", "minimum": 1},
            "lines": {
                "type": "array",
                "maxItems": joblog.MAX_BATCH_LINES,
                "description": "[stream, time_us, text] in order",
                "items": {
                    "type": "array",
                    "prefixItems": [
                        {"enum": list(joblog.STREAMS)},
                        {"type": "integer", "minimum": 0},
                        {"type": "string", "maxLength": joblog.MAX_TEXT_CHARS},
                    ],
                    "minItems": 3,
                    "maxItems": 3,
                },
            },
            "end": {
                "type": "object",
                "description": "How the job ended (the launcher's last batch only)",
                "required": ["exit_code", "state"],
                "additionalProperties": False,
                "properties": {
                    "exit_code": {"type": "integer"},
                    "state": {"enum": [str(state) for state in joblog.END_STATES]},
                    "message": _NULLABLE_STR,
                    "status": {"type": "object"},
                },
            },
        },
    },
    "BatchResult": {
        "type": "object",
        "required": ["applied", "ignored"],
        "properties": {
            "applied": {"type": "boolean"},
            "ignored": {"type": "array", "items": {"type": "string"}},
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Run")},
            "next_cursor": _NULLABLE_STR,
        },
    },
}


_IDS = {
    "type": "string",
    "pattern": r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,127}(,[A-Za-z0-9][A-Za-z0-9_.-]{0,127})*)?$",
}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (built once)."""
    project = _param("project", "path", _NAME, "Project name")
    run_id = _param("id", "path", _NAME, "Run id")
    etag_header = {"ETag": {"schema": {"type": "string"}, "description": "The run's revision"}}
    run_ok = {**_json_body(_ref("Run"), "The run"), "headers": etag_header}
    list_params = [
        project,
        _param("state", "query", {"enum": list(State)}, "Keep runs in this state (repeatable)"),
        _param("kind", "query", _KIND, "Keep runs of this kind"),
        _param("name", "query", {"type": "string"}, "Keep runs with this name"),
        _param("label", "query", _LABEL, "Keep runs with this label (repeatable)"),
        _param("created_after", "query", _TIME, "Keep runs created at or after this time"),
        _param("created_before", "query", _TIME, "Keep runs created before this time"),
        _param("ids", "query", _IDS, f"Comma-separated ids, at most {MAX_IDS}"),
        _param(
            "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Page size"
        ),
        _param(
            "cursor",
            "query",
            {"type": "string", "minLength": 1},
            "next_cursor of the previous page",
        ),
    ]
    runs = f"{API_PREFIX}/projects/{{project}}/runs"
    watch_ok = _json_body(_ref("Changes"), "What changed")
    return {
        "openapi": "3.1.0",
        "info": {"title": "asyncrun", "version": "1"},
        "paths": {
            runs: {
                "post": {
                    "operationId": "createRun",
                    "summary": "Create a run (409 if the id exists)",
                    "parameters": [project],
                    "requestBody": {"required": True, **_json_body(_ref("Run"), "The run")},
                    "responses": {"201": run_ok, **_errors(400, 409, 413, 415, 422, write=True)},
                },
                "get": {
                    "operationId": "listRuns",
                    "summary": "List runs, newest first, with filters and cursor pagination",
                    "parameters": list_params,
                    "responses": {
                        "200": _json_body(_ref("RunPage"), "One page of runs"),
                        **_errors(400, 422),
                    },
                },
            },
            f"{runs}/{{id}}": {
                "get": {
                    "operationId": "getRun",
                    "summary": "Read a run",
                    "parameters": [project, run_id],
                    "responses": {"200": run_ok, **_errors(404, 422)},
                },
                "put": {
                    "operationId": "updateRun",
                    "summary": "Update a run (optimistic: If-Match or metadata.revision)",
                    "parameters": [
                        project,
                        run_id,
                        _param(
                            "If-Match",
                            "header",
                            {"type": "string", "pattern": r'^(\*|(W/)?"?[0-9]{1,19}"?)$'},
                            "ETag last read",
                        ),
                    ],
                    "requestBody": {"required": True, **_json_body(_ref("Run"), "The run")},
                    "responses": {
                        "200": run_ok,
                        **_errors(400, 404, 412, 413, 415, 422, write=True),
                    },
                },
                "delete": {
                    "operationId": "deleteRun",
                    "summary": "Delete a run",
                    "parameters": [project, run_id],
                    "responses": {
                        "204": {"description": "Deleted"},
                        **_errors(404, 422, write=True),
                    },
                },
            },
            f"{runs}:batchCreate": {
                "post": {
                    "operationId": "createRuns",
                    "summary": f"Create up to {MAX_BATCH_CREATE} runs in one transaction; each "
                    "record succeeds or fails on its own (its error carries its status)",
                    "parameters": [project],
                    "requestBody": {
                        "required": True,
                        **_json_body(_ref("BatchCreateRequest"), "The runs"),
                    },
                    "responses": {
                        "200": _json_body(_ref("BatchCreateResult"), "One result per run"),
                        **_errors(400, 413, 415, 422, write=True),
                    },
                }
            },
            **{
                f"{runs}:batch{action.capitalize()}": {
                    "post": {
                        "operationId": f"{action}Runs",
                        "summary": f"{action} up to {MAX_BATCH_CREATE} runs in one transaction; "
                        "each succeeds or fails on its own (its error carries its status)",
                        "parameters": [project],
                        "requestBody": {
                            "required": True,
                            **_json_body(_ref("BatchActionRequest"), "The run ids"),
                        },
                        "responses": {
                            "200": _json_body(_ref("BatchCreateResult"), "One result per id"),
                            **_errors(400, 413, 415, 422, write=True),
                        },
                    }
                }
                for action in ACTIONS
            },
            f"{runs}/{{id}}/metrics": {
                "get": {
                    "operationId": "metricHistory",
                    "summary": "One page of a metric key's values, oldest first (a single "
                    "number reads as a list of one)",
                    "parameters": [
                        project,
                        run_id,
                        _param("key", "query", {"type": "string", "minLength": 1}, "The key"),
                        _param(
                            "offset",
                            "query",
                            {"type": "integer", "minimum": 0, "maximum": 2**62},
                            "First value",
                        ),
                        _param(
                            "limit",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_PAGE},
                            "Most values",
                        ),
                    ],
                    "responses": {
                        "200": _json_body(_ref("MetricHistory"), "The values"),
                        **_errors(404, 422),
                    },
                }
            },
            f"{runs}:watch": {
                "get": {
                    "operationId": "watchRuns",
                    "summary": "Long-poll: answers as soon as a watched run changes after since",
                    "parameters": [
                        project,
                        _param("ids", "query", _IDS, "Comma-separated run ids"),
                        _param("fresh", "query", _IDS, "Ids reported at once"),
                        _param(
                            "since", "query", {"type": "integer", "minimum": 0}, "seq last seen"
                        ),
                        _param(
                            "timeout",
                            "query",
                            {"type": "number", "minimum": 0, "maximum": MAX_WATCH_SECONDS},
                            "Seconds to hold",
                        ),
                    ],
                    "responses": {"200": watch_ok, **_errors(400, 422)},
                },
                "post": {
                    "operationId": "watchRunsBody",
                    "summary": f"The same, ids in the body (up to {MAX_WATCH_IDS})",
                    "parameters": [project],
                    "requestBody": {
                        "required": True,
                        **_json_body(_ref("WatchRequest"), "What to watch"),
                    },
                    "responses": {"200": watch_ok, **_errors(400, 413, 415, 422)},
                },
            },
            f"{runs}/{{id}}/logs": {
                "get": {
                    "operationId": "runLogs",
                    "summary": "Log lines from offset (or the last tail lines); follow=true "
                    'streams NDJSON until the run is terminal, then {"end": true}. Pages and '
                    f"streamed batches hold at most {logs.MAX_PAGE_BYTES} bytes of JSON",
                    "parameters": [
                        project,
                        run_id,
                        _param(
                            "offset",
                            "query",
                            {"type": "integer", "minimum": 0, "maximum": logs.MAX_OFFSET},
                            "First line",
                        ),
                        _param(
                            "limit",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": logs.MAX_LIMIT},
                            f"Most lines in the page (default {logs.DEFAULT_LIMIT}; with tail, "
                            f"{logs.MAX_LIMIT}); ignored with follow",
                        ),
                        _param(
                            "tail",
                            "query",
                            {"type": "integer", "minimum": 0, "maximum": logs.MAX_OFFSET},
                            "Start this many lines before the end instead of at offset (422 "
                            "with a non-zero offset); with follow, stream on from there. "
                            "tail=0 reads no line: the cheap way to get end_offset",
                        ),
                        _param("follow", "query", {"type": "boolean"}, "Stream as written"),
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of lines, or an NDJSON stream of LogLine",
                            "content": {
                                "application/json": {"schema": _ref("LogPage")},
                                "application/x-ndjson": {
                                    "schema": {"oneOf": [_ref("LogLine"), _ref("LogEnd")]}
                                },
                            },
                        },
                        **_errors(404, 422),
                    },
                }
            },
            f"{runs}/{{id}}/logs:append": {
                "post": {
                    "operationId": "appendLogs",
                    "summary": "A job launcher's numbered batch of log lines (and, last, how the "
                    "job ended), applied exactly once; only the run's own job token may send it",
                    "parameters": [project, run_id],
                    "requestBody": {
                        "required": True,
                        **_json_body(_ref("LogBatch"), "The batch"),
                    },
                    "responses": {
                        "200": _json_body(
                            {
                                "type": "object",
                                "required": ["applied"],
                                "properties": {"applied": {"type": "boolean"}},
                            },
                            "Applied, or a duplicate (applied false)",
                        ),
                        **_errors(400, 404, 409, 413, 415, 422, write=True),
                    },
                }
            },
            f"{runs}/{{id}}/status": {
                "patch": {
                    "operationId": "logMetrics",
                    "summary": "Apply a numbered batch of metric operations exactly once",
                    "parameters": [project, run_id],
                    "requestBody": {
                        "required": True,
                        **_json_body(_ref("MetricBatch"), "The batch"),
                    },
                    "responses": {
                        "200": _json_body(_ref("BatchResult"), "Applied, or a duplicate"),
                        **_errors(400, 404, 409, 413, 415, 422, write=True),
                    },
                }
            },
            f"{runs}/{{id}}/{{action}}": {
                "post": {
                    "operationId": "runAction",
                    "summary": "run, stop or resume a run (409 invalid_transition if the "
                    "state does not allow it)",
                    "parameters": [
                        project,
                        run_id,
                        _param("action", "path", {"enum": ["run", "stop", "resume"]}, "Action"),
                    ],
                    "responses": {"200": run_ok, **_errors(404, 409, 422, write=True)},
                }
            },
            f"{API_PREFIX}/whoami": {
                "get": {
                    "operationId": "whoami",
                    "summary": "What the presented token may do: its role and projects ('*': "
                    "all); without --no-auth, 401 for no or a wrong token",
                    "responses": {
                        "200": _json_body(_ref("Identity"), "The token's role and projects"),
                        **_errors(),
                    },
                }
            },
            f"{API_PREFIX}/projects:list": {
                "get": {
                    "operationId": "listProjects",
                    "summary": "The projects that have runs, among those the token covers, by "
                    "name (/api/v1/projects itself is DHCore's: see docs/guides/digitalhub.md)",
                    "responses": {
                        "200": _json_body(
                            {
                                "type": "object",
                                "required": ["items"],
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "runs", "newest"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "runs": {"type": "integer", "minimum": 1},
                                                "newest": _TIME,
                                            },
                                        },
                                    }
                                },
                            },
                            "The projects",
                        ),
                        **_errors(),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "summary": "Liveness",
                    "responses": {"200": {"description": "The server is up"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "summary": "This document",
                    "responses": {"200": {"description": "The OpenAPI document"}},
                }
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `asyncrun server token create` "
                    "(not needed when the server runs with --no-auth)",
                }
            },
        },
        "security": [{"bearer": []}],
    }
