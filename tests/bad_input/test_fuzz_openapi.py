"""Every operation of the live ``/openapi.json``, fuzzed by schemathesis against a real server.

Checks on every answer: never a 5xx; the status code, content type, documented headers and body
match the document; data the document calls invalid is refused with a 4xx. Bounded for CI: a
fixed seed, derandomized generation, no example database, a few dozen cases per operation and
phase (examples, coverage, fuzzing; the stateful phase is off).

The server requires tokens, as it does by default: an auth provider marks every case but those
schemathesis generates without a token (they must get a 401), and the marker becomes the fuzzed
server's write token for every project when the case is sent (schemathesis builds some cases at
collection, before the server runs).

What the fuzz must not do, and how it is kept from it:

- start processes: a run is executable only with a registered kind (``python+job``,
  ``command+job``). Any such kind in a generated body is replaced by a non-executable one, so
  ``:run`` answers 422 and ``:stop`` / ``:resume`` 409; the module ends by checking that the
  server never started an agent. Execution is covered by the hostile-input table.
- hold requests open: ``logs?follow=true`` on a run that never starts streams forever and a
  watch may hold up to 60 s. Follow cases are not sent (the table covers ``follow``), and a
  watch timeout the document allows is cut to 50 ms (still a valid value, so a case stays as
  valid or invalid as it was generated).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import processes_with
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from asyncrun import kinds
from asyncrun.server._openapi import openapi_document

from .conftest import TokenServer, server_failures, start_server

SEED = 20240607
MAX_EXAMPLES = 50
FUZZ_KIND = "fuzz+record"
WATCH_TIMEOUT_CAP = 0.05
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# negative_data_rejection would want a 4xx for the whole batch; the per-record check replaces it.
BATCH_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
_TRUE = frozenset({"true", "1", "yes"})
TOKEN_MARK = "Bearer <the fuzzed server's token>"
"""The Authorization the auth provider puts on a case; replaced by the real token when sent."""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    proc = start_server(tmp_path_factory.mktemp("fuzz"))
    yield proc
    proc.stop()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 20,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    }
)
# The document the server serves, loaded at collection so that every operation is its own test
# (schemathesis.pytest.from_fixture would load it from the live server, but it breaks on
# pytest >= 9.2); test_the_fuzzed_document_is_the_live_one checks that the two are the same.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@schema.auth(refresh_interval=None)
class _Bearer:
    """A token on every case but those meant to go without one (see TOKEN_MARK)."""

    def get(self, case: Any, ctx: Any) -> str:
        return TOKEN_MARK

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


def _disarm(value: Any) -> Any:
    """``value`` with every registered (executable) kind replaced by a record-only kind."""
    if isinstance(value, dict):
        return {
            key: FUZZ_KIND
            if key == "kind" and isinstance(item, str) and kinds.get(item) is not None
            else _disarm(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_disarm(item) for item in value]
    return value


def _cap_timeout(holder: Any) -> None:
    if not isinstance(holder, dict):
        return
    # Left out, a watch may be held for the default 20 s: as long as the request timeout. A
    # feed watch with nothing fresh is held the whole of it in a quiet project.
    timeout = holder.setdefault("timeout", WATCH_TIMEOUT_CAP)
    if (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and 0 <= timeout <= 60
    ):
        holder["timeout"] = min(timeout, WATCH_TIMEOUT_CAP)


def _follows(case: Any) -> bool:
    follow = (case.query or {}).get("follow")
    return follow is True or str(follow).lower() in _TRUE


def test_the_fuzzed_document_is_the_live_one(fuzz_server: TokenServer) -> None:
    live = httpx.get(f"{fuzz_server.url}/openapi.json", timeout=30)
    assert live.status_code == 200
    assert live.json() == json.loads(json.dumps(openapi_document()))


def _exercise(case: Any, fuzz_server: TokenServer) -> None:
    if case.headers and case.headers.get("Authorization") == TOKEN_MARK:
        case.headers["Authorization"] = f"Bearer {fuzz_server.token}"
    if case.path.endswith("/logs") and _follows(case):
        return  # a stream that ends only when a run that never starts ends
    if case.body is not None and not isinstance(case.body, bytes | str):
        case.body = _disarm(case.body)
    if case.path.endswith(":watch"):
        _cap_timeout(case.query)
        _cap_timeout(case.body)
    if not case.path.endswith(":batchCreate"):
        case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS)
        return
    # A batch answers 200 with one result per record, each run or error on its own: an invalid
    # record must come back as an error of its own with a 4xx status (never a 5xx in a 200).
    response = case.call_and_validate(base_url=fuzz_server.url, checks=BATCH_CHECKS)
    if response.status_code != 200:
        return
    results = response.json()["results"]
    assert len(results) == len(case.body["runs"])
    statuses = [item["error"]["status"] for item in results if "error" in item]
    assert all(400 <= status < 500 for status in statuses), results
    if case.meta is not None and case.meta.generation.mode.is_negative:
        assert statuses, f"an invalid record was stored: {results}"


def _operation_test(operation_id: str) -> Any:
    def test(case: Any, fuzz_server: TokenServer) -> None:
        _exercise(case, fuzz_server)

    test.__name__ = test.__qualname__ = f"test_fuzz_{operation_id}"
    return schema.include(operation_id=operation_id).parametrize()(test)


# One test function per operation, test_fuzz_<operationId>: with pytest 9.2, schemathesis gives
# the items of a single parametrized function the same node id, whatever their operation.
OPERATION_IDS = [
    operation["operationId"]
    for methods in openapi_document()["paths"].values()
    for operation in methods.values()
]
for _operation_id in OPERATION_IDS:
    globals()[f"test_fuzz_{_operation_id}"] = _operation_test(_operation_id)


def test_fuzzed_server_never_failed(fuzz_server: TokenServer) -> None:
    # Runs after the fuzz (file order): no request reached an unhandled error, and the fuzz
    # started no process: no agent ever ran for the database (an agent's start creates
    # agent.log next to it) and no process but the server names the database.
    assert server_failures(fuzz_server) == [], fuzz_server.log.read_text()[-4000:]
    assert not fuzz_server.db.with_name("agent.log").exists()
    assert fuzz_server.proc is not None
    assert processes_with(str(fuzz_server.db)) == [fuzz_server.proc.pid]
