"""The OpenAPI document says what the server refuses (finding 12).

schemathesis's ``positive_data_acceptance`` check found requests that the document calls
valid but the server refuses with a 422: a client generated from the document would send them.
Each case below is a value the server refuses (see the hostile-input table and
``tests/test_http_bad_input.py``); the document must call it invalid too. The NDJSON log stream
must also be described as it is: its last line is an end marker, not a log line.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from asyncrun.server._openapi import openapi_document

DOCUMENT = openapi_document()


def _operation(operation_id: str) -> dict[str, Any]:
    for methods in DOCUMENT["paths"].values():
        for operation in methods.values():
            if operation["operationId"] == operation_id:
                return dict(operation)
    raise LookupError(operation_id)


def _valid(schema: dict[str, Any], value: Any) -> bool:
    # The components travel with the schema so that its $refs resolve.
    return bool(
        jsonschema_rs.validator_for({**schema, "components": DOCUMENT["components"]}).is_valid(
            value
        )
    )


def _parameter_schema(operation_id: str, name: str) -> dict[str, Any]:
    for parameter in _operation(operation_id)["parameters"]:
        if parameter["name"] == name:
            return dict(parameter["schema"])
    raise LookupError(name)


def _body_schema(operation_id: str) -> dict[str, Any]:
    return dict(_operation(operation_id)["requestBody"]["content"]["application/json"]["schema"])


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "test+record",
        "id": "r1",
        "project": "p",
        "metadata": {"project": "p"},
        **fields,
    }


REFUSED_PARAMETERS = [
    ("runLogs", "limit", 0),
    ("runLogs", "limit", -5),
    ("runLogs", "offset", 2**62 + 1),
    ("listRuns", "cursor", ""),
    ("listRuns", "label", ""),
    ("listRuns", "label", "a\tb"),
    ("listRuns", "kind", "Not A Kind"),
    ("listRuns", "ids", "../x"),
    ("watchRuns", "timeout", 61),
    ("watchRuns", "timeout", -1),
    ("watchRuns", "since", -1),
    ("updateRun", "If-Match", "abc"),
    ("updateRun", "If-Match", ""),
]

REFUSED_BODIES = [
    ("createRun", _record(name="")),
    ("createRun", _record(name="a\nb")),
    ("createRun", _record(metadata={"project": "p", "labels": ["a\tb"]})),
    ("createRun", _record(metadata={"project": "p", "labels": ["x" * 256]})),
    ("watchRunsBody", {"ids": [], "fresh": []}),
    ("watchRunsBody", {}),
    ("logMetrics", {"writer": "w", "seq": 1, "ops": [[None, None, None]]}),
    ("logMetrics", {"writer": "w", "seq": 1, "ops": [["k", 9, 1]]}),
    ("logMetrics", {"writer": "w", "seq": 1, "ops": [["k", 1, True]]}),
]


@pytest.mark.parametrize(("operation_id", "name", "value"), REFUSED_PARAMETERS)
def test_parameters_the_server_refuses_are_invalid_in_the_document(
    operation_id: str, name: str, value: Any
) -> None:
    assert not _valid(_parameter_schema(operation_id, name), value)


@pytest.mark.parametrize(("operation_id", "body"), REFUSED_BODIES)
def test_bodies_the_server_refuses_are_invalid_in_the_document(
    operation_id: str, body: dict[str, Any]
) -> None:
    assert not _valid(_body_schema(operation_id), body)


@pytest.mark.parametrize("line", [{"end": True}, {"end": True, "deleted": True}])
def test_the_log_stream_end_marker_is_documented(line: dict[str, Any]) -> None:
    content = _operation("runLogs")["responses"]["200"]["content"]
    assert _valid(dict(content["application/x-ndjson"]["schema"]), line)
