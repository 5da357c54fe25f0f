"""DHCore entities: checking what the DigitalHub SDK sends, and what asyncrun answers it.

Pure code: no store, no HTTP. Projects, functions and tasks are stored as documents (their JSON
kept whole, with server-set times and state); a ``python+job:run`` is an asyncrun run, and this
module translates between the two shapes. Every check raises an error whose message says what
is wrong; the routes render it as DHCore does (``{"status", "message", "errorCode"}``).

How a DHCore run is kept as an asyncrun run:

- Executed by the server (``spec.local_execution`` false): kind ``python+job``. Its spec is the
  DHCore spec plus ``handler`` (``main:<function>``) and ``modules`` (``{"main": <base64>}``,
  the function's single-file source), which the DHCore view leaves out.
- Executed by the SDK (``local_execution`` true): kind ``python+job.local``, a kind asyncrun
  does not execute; its spec is the DHCore spec as sent, and its state is what the SDK reports.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from ... import _serde
from ..._core.errors import AsyncRunError, NotFound, ValidationError
from ..._core.records import CONTROL_RE, LogLine, Run, State, check_name
from .._store._documents import Document

RUN_KIND: Final = "python+job:run"
TASK_KIND: Final = "python+job"
FUNCTION_KIND: Final = "python"
PROJECT_KIND: Final = "project"
REMOTE: Final = "python+job"
"""asyncrun kind of a run the server executes."""
LOCAL: Final = "python+job.local"
"""asyncrun kind of a run the SDK executes (``local_execution=True``): asyncrun only records it."""
SERVER_SPEC: Final = ("handler", "modules")
"""Keys the server adds to the spec of a run it executes (left out of the DHCore view)."""
RESERVED_SPEC: Final = (*SERVER_SPEC, "env", "cwd")
"""Spec keys a run the server executes cannot be sent: they would change what it executes."""
MODULE: Final = "main"
"""The module a function's single-file source becomes (the SDK's ``main.py``)."""

_SLUG_RE: Final = re.compile(r"^[a-zA-Z0-9._+-]+$")
_PROJECT_RE: Final = re.compile(r"^[a-z0-9-]{2,38}$")
_KIND_RE: Final = re.compile(r"^[a-zA-Z0-9._+:-]+$")
_FUNCTION_REF_RE: Final = re.compile(r"^([^:/]+)://([^/]+)/([^:/]+):([^:/]+)$")
_TASK_REF_RE: Final = re.compile(r"^([^:/]+)://([^/]+)/([^:/]+)$")
_HANDLER_RE: Final = re.compile(rf"^(?:{MODULE}:)?([A-Za-z_]\w*)$")
_TOP: Final = frozenset(
    {"kind", "id", "key", "name", "project", "user", "metadata", "spec", "status"}
)
_SERVER_METADATA: Final = ("created", "updated", "revision")
MAX_PAGE_SIZE: Final = 1000
MAX_PAGE: Final = 1_000_000


class DHCoreError(AsyncRunError):
    """A refusal worded for the DigitalHub SDK, with the status DHCore gives it."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message, code=code)
        self.dh_status = status


def no_such(entity: str, what: str = "") -> DHCoreError:
    """DHCore's 404: ``No such run.`` (the SDK reads "No such" as not found)."""
    return DHCoreError(404, f"No such {entity}." + (f" {what}" if what else ""), NotFound.code)


def duplicated(entity: str, id_: str) -> DHCoreError:
    """DHCore's 400 for a taken id (the SDK reads "Duplicated entity" as already exists)."""
    return DHCoreError(400, f"Duplicated entity {entity}:{id_}.", "already_exists")


def bad(message: str) -> ValidationError:
    """A 400 for input the server refuses (nothing is stored)."""
    return ValidationError(message)


# -- checking bodies -------------------------------------------------------------------------


def _object(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad(f"{field} must be a JSON object, got {type(data).__name__}")
    return data


def _optional_object(body: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field)
    return {} if value is None else dict(_object(value, field))


def _string(value: Any, field: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or CONTROL_RE.search(value):
        raise bad(f"{field} must be a non-empty string without control characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise bad(f"{field} {value!r} must match {pattern.pattern}")
    return value


def _id(value: Any, field: str) -> str:
    # An asyncrun name is a strict subset of a DHCore slug: ids become store keys and folders.
    _string(value, field, _SLUG_RE)
    try:
        return check_name(field, value)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _body(data: Any, allowed: frozenset[str] = _TOP) -> dict[str, Any]:
    body = _object(data, "the body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}; a DHCore entity has {sorted(allowed)}")
    _serde.check_data(body)
    if "key" in body and not isinstance(body["key"], str):
        raise bad("key must be a string (the server derives it)")
    if "user" in body and body["user"] is not None:
        _string(body["user"], "user")
    return body


def _kind(body: Mapping[str, Any], expected: str, what: str) -> str:
    kind = _string(body.get("kind"), "kind", _KIND_RE)
    if kind != expected:
        raise bad(
            f"asyncrun server supports {what} of kind {expected!r} only, not {kind!r} "
            "(see docs/guides/digitalhub.md)"
        )
    return kind


def _metadata(body: Mapping[str, Any], project: str, name: str) -> dict[str, Any]:
    metadata = _optional_object(body, "metadata")
    for field, expected in (("project", project), ("name", name)):
        if metadata.get(field) not in (None, expected):
            raise bad(f"metadata.{field} ({metadata[field]!r}) must be {expected!r}")
    labels = metadata.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(label, str) for label in labels)
    ):
        raise bad("metadata.labels must be a list of strings")
    for field in _SERVER_METADATA:
        metadata.pop(field, None)  # the server's to set
    return {**metadata, "project": project, "name": name}


def _project_of(body: Mapping[str, Any], project: str) -> None:
    sent = body.get("project")
    if sent is not None and sent != project:
        raise bad(f"the body names project {sent!r} but was sent to project {project!r}")


def project_name(value: Any) -> str:
    """A project name DHCore and asyncrun both accept (2-38 of ``a-z``, ``0-9``, ``-``)."""
    _string(value, "name", _PROJECT_RE)
    return _id(value, "name")


def new_project(data: Any, now: datetime) -> Document:
    """The document of a new project from a ``POST /projects`` body.

    Raises:
        ValidationError: if the body is not a project asyncrun server can keep.
    """
    body = _body(data)
    _kind(body, PROJECT_KIND, "projects")
    name = project_name(body.get("name"))
    for field in ("id", "project"):
        if body.get(field) not in (None, name):
            raise bad(f"{field} ({body[field]!r}) must be the project's name {name!r}")
    doc = {
        "id": name,
        "name": name,
        "kind": PROJECT_KIND,
        "key": f"store://{name}",
        "project": name,
        "metadata": _metadata(body, name, name) | _times(now),
        "spec": _optional_object(body, "spec"),
        "status": _optional_object(body, "status") | {"state": "CREATED"},
    }
    if body.get("user"):
        doc["user"] = body["user"]
    return Document(name, "project", name, name, PROJECT_KIND, None, _us(now), doc)


def new_function(project: str, data: Any, now: datetime) -> Document:
    """The document of a new function version from a ``POST .../functions`` body.

    Its source is not checked here: a function whose source the server cannot run can still
    be run by the SDK (``local_execution=True``).

    Raises:
        ValidationError: if the body is not a function asyncrun server can keep.
    """
    body = _body(data)
    kind = _kind(body, FUNCTION_KIND, "functions")
    _project_of(body, project)
    name = _id(body.get("name"), "name")
    id_ = _id(body.get("id") or uuid.uuid4().hex, "id")
    spec = _optional_object(body, "spec")
    if "source" in spec:
        _object(spec["source"], "spec.source")
    doc = {
        "id": id_,
        "name": name,
        "kind": kind,
        "key": f"store://{project}/function/{kind}/{name}:{id_}",
        "project": project,
        "metadata": _metadata(body, project, name) | {"version": id_} | _times(now),
        "spec": spec,
        "status": _optional_object(body, "status") | {"state": "CREATED"},
    }
    if body.get("user"):
        doc["user"] = body["user"]
    return Document(project, "function", id_, name, kind, None, _us(now), doc)


def function_ref(value: Any, project: str) -> tuple[str, str, str]:
    """``(kind, name, id)`` of a function string, ``python://<project>/<name>:<id>``."""
    match = _FUNCTION_REF_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise bad(f"spec.function must be 'kind://project/name:id', got {value!r:.200}")
    kind, ref_project, name, id_ = match.groups()
    if ref_project != project:
        raise bad(f"spec.function names project {ref_project!r}, not {project!r}")
    return kind, name, id_


def task_ref(value: Any, project: str) -> tuple[str, str]:
    """``(kind, id)`` of a task string, ``python+job://<project>/<id>``."""
    match = _TASK_REF_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise bad(f"spec.task must be 'kind://project/id', got {value!r:.200}")
    kind, ref_project, id_ = match.groups()
    if ref_project != project:
        raise bad(f"spec.task names project {ref_project!r}, not {project!r}")
    return kind, id_


def new_task(project: str, data: Any, now: datetime) -> tuple[Document, str]:
    """The document of a new task, and the id of the function it needs to exist.

    Raises:
        ValidationError: if the body is not a task asyncrun server can keep.
    """
    body = _body(data)
    kind = _kind(body, TASK_KIND, "tasks")
    _project_of(body, project)
    id_ = _id(body.get("id") or uuid.uuid4().hex, "id")
    name = _id(body.get("name") or id_, "name")
    spec = _optional_object(body, "spec")
    function = spec.get("function")
    fkind, _, function_id = function_ref(function, project)
    if fkind != FUNCTION_KIND:
        raise bad(f"a {TASK_KIND} task runs a {FUNCTION_KIND} function, not {fkind!r}")
    doc = {
        "id": id_,
        "name": name,
        "kind": kind,
        "key": f"store://{project}/task/{kind}/{id_}",
        "project": project,
        "metadata": _metadata(body, project, name) | _times(now),
        "spec": spec,
        "status": _optional_object(body, "status") | {"state": "CREATED"},
    }
    if body.get("user"):
        doc["user"] = body["user"]
    return Document(project, "task", id_, name, kind, str(function), _us(now), doc), function_id


def _times(now: datetime) -> dict[str, str]:
    return {"created": now.isoformat(), "updated": now.isoformat()}


def _us(now: datetime) -> int:
    return int(now.timestamp() * 1_000_000)


# -- runs ------------------------------------------------------------------------------------


def run_body(data: Any, project: str, id_: str | None = None) -> dict[str, Any]:
    """A run body, checked as far as it goes without the stored entities.

    Raises:
        ValidationError: naming what is wrong.
    """
    body = _body(data, _TOP | {"extensions"})
    _kind(body, RUN_KIND, "runs")
    _project_of(body, project)
    if id_ is not None and body.get("id") not in (None, id_):
        raise bad(f"the body is run {body['id']!r} but was sent to run {id_!r}")
    extensions = body.get("extensions")
    if extensions not in (None, []):
        raise bad("run extensions are not supported by asyncrun server; send none")
    spec = _optional_object(body, "spec")
    local = spec.get("local_execution", False)
    if not isinstance(local, bool):
        raise bad("spec.local_execution must be true or false")
    parameters = spec.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad("spec.parameters must be an object of keyword arguments")
    if not local:
        reserved = sorted(set(spec) & set(RESERVED_SPEC))
        if reserved:
            raise bad(
                f"spec.{reserved[0]} is set by asyncrun server for the runs it executes; "
                "send it not"
            )
        if spec.get("inputs"):
            raise bad(
                "spec.inputs (data items, artifacts) are not supported by asyncrun server; "
                "pass plain values as parameters, or run with local_execution=True"
            )
    return body


def source_module(function: Mapping[str, Any]) -> tuple[str, str]:
    """``(handler, base64 source)`` a run of ``function`` executes as a ``python+job``.

    Only a single-file source carried in the function (``spec.source.base64`` or ``code``)
    can run on the server; its handler names a function of that file.

    Raises:
        ValidationError: saying why the server cannot run it, and what can.
    """
    spec = function.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    source = spec.get("source")
    source = source if isinstance(source, dict) else {}
    pointer = source.get("source")
    encoded = source.get("base64")
    if encoded is None and isinstance(source.get("code"), str):
        encoded = base64.b64encode(source["code"].encode()).decode()
    if not isinstance(encoded, str):
        where = f" ({pointer!r:.200})" if isinstance(pointer, str) else ""
        raise bad(
            "asyncrun server runs only a function whose source is a single file carried in "
            f"the function (new_function(code=...) or code_src='file.py'); this one's source"
            f"{where} is not: zip archives, git repositories, S3 and URLs are not fetched. "
            "Run it with local_execution=True, where the SDK fetches it"
        )
    try:
        base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise bad("the function's spec.source.base64 is not valid base64") from None
    handler = source.get("handler")
    match = _HANDLER_RE.fullmatch(handler) if isinstance(handler, str) else None
    if match is None:
        raise bad(
            f"the function's handler must name a function of its source, like 'train' or "
            f"'{MODULE}:train'; got {handler!r:.200}"
        )
    return f"{MODULE}:{match.group(1)}", encoded


def new_run(
    project: str, body: Mapping[str, Any], server_spec: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The asyncrun record (as data) of a new DHCore run; ``server_spec`` when it executes it."""
    id_ = _id(body.get("id") or uuid.uuid4().hex, "id")
    name = _id(body.get("name") or id_, "name")
    spec = _optional_object(body, "spec")
    record: dict[str, Any] = {
        "kind": LOCAL if server_spec is None else REMOTE,
        "id": id_,
        "project": project,
        "name": name,
        "metadata": _metadata(body, project, name),
        "spec": {**spec, **(server_spec or {})},
        "status": {},
    }
    if body.get("user"):
        record["user"] = body["user"]
    return record


def is_dhcore(run: Run) -> bool:
    """Whether ``run`` was created through the DHCore API (others are not shown there)."""
    task = run.spec.get("task")
    return run.kind in (REMOTE, LOCAL) and isinstance(task, str) and task.startswith(TASK_KIND)


def is_local(run: Run) -> bool:
    """Whether the SDK executes ``run`` (the server only records it)."""
    return run.kind == LOCAL


def reported_state(body: Mapping[str, Any]) -> tuple[State | None, str | None]:
    """The state (and message) an SDK that executes a run reports in a ``PUT`` body."""
    status = _optional_object(body, "status")
    raw = status.get("state")
    if raw is None:
        return None, None
    try:
        state = State(raw)
    except ValueError:
        states = ", ".join(str(s) for s in State)
        raise bad(f"status.state {raw!r:.60} is not a state; one of {states}") from None
    message = status.get("message")
    return state, message if isinstance(message, str) else None


_STATUS_SERVER: Final = frozenset(
    {"state", "message", "transitions", "metrics", "metric_summary", "launch"}
)


def updated_run(current: Run, body: Mapping[str, Any]) -> dict[str, Any]:
    """The asyncrun record (as data) after a lenient ``PUT``: what the SDK may change, changed.

    The SDK sends no revision and often a stale copy: the state, the transitions, the
    metrics and (for runs the server executes) the whole status stay the server's. Name,
    metadata, user and the DHCore spec are the user's, as in asyncrun's own API.

    Raises:
        ValidationError: if the body tries to change what a run cannot change.
    """
    record = _serde.to_dict(current)
    spec = body.get("spec")
    if spec is not None:
        spec = dict(_object(spec, "spec"))
        for field in ("task", "function"):
            if field in spec and spec[field] != current.spec.get(field):
                raise bad(f"spec.{field} of a run cannot change: create a new run instead")
        local = spec.get("local_execution", is_local(current))
        if local != is_local(current):
            raise bad("spec.local_execution of a run cannot change: create a new run instead")
        if not is_local(current):
            spec |= {key: current.spec[key] for key in SERVER_SPEC if key in current.spec}
        record["spec"] = spec
    name = current.name or current.id
    if body.get("name") not in (None, name):
        raise bad("the name of a run cannot change")
    if "metadata" in body:
        metadata = _metadata(body, current.project, name)
        record["metadata"] = {
            **metadata,
            **{k: record["metadata"][k] for k in _SERVER_METADATA if k in record["metadata"]},
        }
    if body.get("user"):
        record["user"] = body["user"]
    if is_local(current) and "status" in body:
        sent = _optional_object(body, "status")
        kept = {k: v for k, v in record["status"].items() if k in _STATUS_SERVER}
        record["status"] = {**{k: v for k, v in sent.items() if k not in _STATUS_SERVER}, **kept}
    record["status"].pop("metrics", None)  # metrics change through their own route only
    return record


def results(value: Any) -> dict[str, Any]:
    """A handler's return value named as the SDK names it: ``output_0``, ``output_1``..."""
    if value is None:
        return {}
    values = value if isinstance(value, list) else [value]
    return {f"output_{index}": item for index, item in enumerate(values)}


def run_view(run: Run) -> dict[str, Any]:
    """What the DHCore API shows of a run: the SDK's ``python+job:run``."""
    record = _serde.to_dict(run)
    metadata = {k: v for k, v in record["metadata"].items() if k != "revision" and v is not None}
    spec = dict(record["spec"])
    status: dict[str, Any] = {"state": str(run.status.state)}
    if run.status.message:
        status["message"] = run.status.message
    if is_local(run):
        status |= {k: v for k, v in run.status.extra.items() if k not in _STATUS_SERVER}
    else:
        for key in SERVER_SPEC:
            spec.pop(key, None)
        if "results" in run.status.extra:
            status["results"] = results(run.status.extra["results"])
            status["outputs"] = {}
    view: dict[str, Any] = {
        "id": run.id,
        "name": run.name or run.id,
        "kind": RUN_KIND,
        "key": f"store://{run.project}/run/{RUN_KIND}/{run.id}",
        "project": run.project,
        "metadata": metadata,
        "spec": spec,
        "status": status,
        "extensions": [],
    }
    if run.user:
        view["user"] = run.user
    return view


def log_view(run: Run, lines: Sequence[LogLine], end: int, first: int) -> dict[str, Any]:
    """The run's log as one DHCore Log object: its text in base64, ``spec.run`` its run."""
    text = "".join(f"{line.text}\n" for line in lines)
    created = _serde.to_dict(run)["metadata"].get("created")
    newest = lines[-1].time if lines else None
    return {
        "id": run.id,
        "name": run.id,
        "kind": "log",
        "key": f"store://{run.project}/log/log/{run.id}",
        "project": run.project,
        "metadata": {
            "project": run.project,
            "name": run.id,
            **({"created": created} if created else {}),
            **({"updated": newest.isoformat()} if newest else {}),
        },
        "spec": {
            "run": run.id,
            **({"timestamp": int(newest.timestamp() * 1000)} if newest else {}),
        },
        "status": {
            "lines": len(lines),
            "first_offset": lines[0].offset if lines else end,
            "end_offset": end,
            "truncated": bool(lines) and lines[0].offset > first,
        },
        "content": base64.b64encode(text.encode()).decode(),
    }


# -- pages -----------------------------------------------------------------------------------


def page_params(params: Mapping[str, Sequence[str]], filters: Sequence[str]) -> dict[str, Any]:
    """``page``, ``size`` and the named filters of a listing's query, checked.

    Raises:
        ValidationError: for an unknown parameter or a bad value.
    """
    allowed = {"page", "size", "sort", *filters}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise bad(
            f"query parameter(s) {', '.join(unknown)} not supported by asyncrun server here; "
            f"use {', '.join(sorted(allowed))}"
        )
    out: dict[str, Any] = {}
    for name, values in params.items():
        if len(values) != 1:
            raise bad(f"query parameter {name!r} is given {len(values)} times")
        out[name] = values[0]
    for name, low, high, default in (("page", 0, MAX_PAGE, 0), ("size", 1, MAX_PAGE_SIZE, 25)):
        raw = out.get(name)
        if raw is None:
            out[name] = default
            continue
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise bad(f"query parameter {name!r} must be an integer from {low} to {high}")
        out[name] = int(raw)
    return out


def page(items: list[dict[str, Any]], number: int, size: int, total: int) -> dict[str, Any]:
    """A Spring page of ``items`` (the SDK reads ``content`` and ``totalPages``)."""
    pages = math.ceil(total / size)
    sort = {"sorted": True, "unsorted": False, "empty": False}
    return {
        "content": items,
        "pageable": {
            "pageNumber": number,
            "pageSize": size,
            "offset": number * size,
            "paged": True,
            "unpaged": False,
            "sort": sort,
        },
        "totalElements": total,
        "totalPages": pages,
        "last": number >= pages - 1,
        "first": number == 0,
        "size": size,
        "number": number,
        "numberOfElements": len(items),
        "sort": sort,
        "empty": not items,
    }
