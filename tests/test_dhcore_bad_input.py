"""Bad input on the DHCore API: a DHCore-shaped 4xx naming what is wrong, and nothing stored.

Every answer goes through the same check as ``test_dhcore_api.py`` (a 4xx is DHCore's
``{"status", "message", "errorCode"}``, never a 5xx). After each refusal the test reads back
that nothing was stored: the entity is still absent, the run unchanged.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, create_token
from test_dhcore_api import (
    Checked,
    ctx,
    dh_server,
    function_body,
    project_body,
    run_body,
    setup,
    task_body,
    token,
    wait_state,
)

__all__ = ["dh_server", "token"]  # fixtures, imported to be used here

Body = dict[str, Any]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def http(dh_server: ServerProcess, token: str) -> Iterator[Checked]:
    headers = {"Authorization": f"Bearer {token}"}
    with Checked(base_url=dh_server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def world(http: Checked) -> dict[str, Any]:
    """One project with a function, its task, a completed run and a local run."""
    project = "bad-input"
    function, task = setup(http, project)
    done = run_body(project, function, task, lr=1)
    http.post(ctx(project, "/runs"), json=done)
    wait_state(http, project, done["id"], "COMPLETED")
    local = run_body(project, function, task, local=True)
    http.post(ctx(project, "/runs"), json=local)
    return {"project": project, "function": function, "task": task, "run": done, "local": local}


def _with(body: Body, path: str, value: Any) -> Body:
    """A copy of ``body`` with the dotted ``path`` set to ``value`` (deleted for ``...``)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def _refused(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert fragment in response.json()["message"], response.json()


# -- projects --------------------------------------------------------------------------------

PROJECT_CASES: list[tuple[str, Callable[[Body], Any], int, str]] = [
    ("uppercase name", lambda b: _with(b, "name", "Bad-Name"), 400, "must match"),
    ("one-letter name", lambda b: _with(b, "name", "x"), 400, "must match"),
    ("no name", lambda b: _with(b, "name", ...), 400, "name"),
    ("another kind", lambda b: _with(b, "kind", "folder"), 400, "kind 'project' only"),
    ("id is not the name", lambda b: _with(b, "id", "other"), 400, "must be the project's"),
    ("unknown field", lambda b: {**b, "colour": "red"}, 400, "unknown field(s) colour"),
    ("spec not an object", lambda b: _with(b, "spec", [1]), 400, "spec must be a JSON object"),
    ("labels not strings", lambda b: _with(b, "metadata.labels", [1]), 400, "labels"),
    ("a list", lambda b: [b], 400, "name"),
    ("deep nesting", lambda b: _with(b, "spec.x", _deep()), 400, "nested deeper"),
]  # fmt: skip


def _deep() -> Any:
    value: Any = []
    for _ in range(100):
        value = [value]
    return value


@pytest.mark.parametrize(("case", "change", "status", "fragment"), PROJECT_CASES)
def test_a_bad_project_is_refused_and_not_stored(
    http: Checked,
    case: str,
    change: Callable[[Body], Any],
    status: int,
    fragment: str,
) -> None:
    name = f"bad-{abs(hash(case)) % 10**8}"
    response = http.post("/api/v1/projects", json=change(project_body(name)))
    _refused(response, status, fragment)
    assert http.get(f"/api/v1/projects/{name}").status_code == 404


def test_bodies_that_are_not_json_are_refused(http: Checked) -> None:
    not_json = http.post("/api/v1/projects", content=b"{", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    broken = http.post(
        "/api/v1/projects", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    empty = http.post("/api/v1/projects", content=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400


# -- functions and tasks ---------------------------------------------------------------------


def test_bad_functions_and_tasks_are_refused(http: Checked, world: dict[str, Any]) -> None:
    project = world["project"]
    good = function_body(project)
    for body, status, fragment in (
        (_with(good, "kind", "container"), 400, "kind 'python' only"),
        (_with(good, "name", "a/b"), 400, "must match"),
        (_with(good, "project", "elsewhere"), 400, "names project 'elsewhere'"),
        (_with(good, "spec.source", "main.py"), 400, "spec.source must be a JSON object"),
        (_with(good, "id", "has+plus"), 400, "id must be"),
    ):
        _refused(http.post(ctx(project, "/functions"), json=body), status, fragment)
        assert http.get(ctx(project, f"/functions/{good['id']}")).status_code == 404
    _refused(http.post(ctx("no-such-project", "/functions"), json=good), 404, "No such project")

    task = task_body(project, world["function"])
    missing = function_body(project)  # never stored
    for body, status, fragment in (
        (task_body(project, missing), 404, "No such function"),
        (_with(task, "spec.function", "train"), 400, "spec.function must be"),
        (_with(task, "spec.function", "python://other/train:x1"), 400, "names project 'other'"),
        (_with(task, "kind", "python+serve"), 400, "kind 'python+job' only"),
    ):
        _refused(http.post(ctx(project, "/tasks"), json=body), status, fragment)
        assert http.get(ctx(project, f"/tasks/{task['id']}")).status_code == 404
    duplicate = http.post(ctx(project, "/tasks"), json=world["task"])
    _refused(duplicate, 400, "Duplicated entity task")


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"page": "-1"}, "'page' must be an integer"),
        ({"size": "0"}, "'size' must be an integer"),
        ({"size": "100000"}, "'size' must be an integer"),
        ({"q": "train"}, "q not supported"),
        ({"kind": ["a", "b"]}, "given 2 times"),
    ],
)
def test_bad_task_searches_are_refused(
    http: Checked, world: dict[str, Any], query: dict[str, Any], fragment: str
) -> None:
    _refused(http.get(ctx(world["project"], "/tasks"), params=query), 400, fragment)


# -- runs ------------------------------------------------------------------------------------


def _run_cases(world: dict[str, Any]) -> list[tuple[Body, int, str]]:
    project, function, task = world["project"], world["function"], world["task"]
    good = run_body(project, function, task)
    other = function_body(project)
    return [
        (_with(good, "kind", "python+serve:run"), 400, "kind 'python+job:run' only"),
        (_with(good, "spec.task", f"python+job://{project}/nothing"), 404, "No such task"),
        (_with(good, "spec.task", "python+job"), 400, "spec.task must be"),
        (_with(good, "spec.function", f"python://{project}/x:nothing"), 404, "No such function"),
        (_with(good, "spec.function", f"python://{project}/{other['name']}:{other['id']}"),
         404, "No such function"),
        (_with(good, "spec.local_execution", "yes"), 400, "local_execution must be"),
        (_with(good, "spec.parameters", [1]), 400, "parameters must be an object"),
        (_with(good, "spec.handler", "os:system"), 400, "spec.handler is set by asyncrun"),
        (_with(good, "spec.env", {"A": "1"}), 400, "spec.env is set by asyncrun"),
        (_with(good, "spec.inputs", {"d": "store://x"}), 400, "spec.inputs"),
        (_with(good, "extensions", [{"kind": "x"}]), 400, "extensions are not supported"),
        (_with(good, "id", "a+b"), 400, "id must be"),
        (_with(good, "project", "elsewhere"), 400, "names project 'elsewhere'"),
        (_with(good, "metadata.project", "elsewhere"), 400, "metadata.project"),
    ]  # fmt: skip


def test_bad_runs_are_refused_and_not_stored(http: Checked, world: dict[str, Any]) -> None:
    project = world["project"]
    for body, status, fragment in _run_cases(world):
        response = http.post(ctx(project, "/runs"), json=body)
        _refused(response, status, fragment)
        # (An id asyncrun refuses is refused on reads too.)
        assert http.get(ctx(project, f"/runs/{body['id']}")).status_code in (400, 404)
        stored = http.get(f"/api/v1/projects/{project}/runs/{body['id']}")
        assert stored.status_code in (404, 422)
    duplicate = http.post(ctx(project, "/runs"), json=world["run"])
    _refused(duplicate, 400, "Duplicated entity run")


def test_a_write_token_cannot_make_the_server_execute_code(
    dh_server: ServerProcess, world: dict[str, Any]
) -> None:
    project, function, task = world["project"], world["function"], world["task"]
    write = create_token(dh_server.db, project, role="write")
    with Checked(base_url=dh_server.url, headers={"Authorization": f"Bearer {write}"}) as client:
        remote = run_body(project, function, task)
        _refused(client.post(ctx(project, "/runs"), json=remote), 403, "needs a run token")
        assert client.get(ctx(project, f"/runs/{remote['id']}")).status_code == 404
        local = run_body(project, function, task, local=True)  # the SDK executes: write is enough
        assert client.post(ctx(project, "/runs"), json=local).status_code == 200
        path = ctx(project, f"/runs/{world['run']['id']}/resume")
        _refused(client.post(path, json={}), 403, "needs a run token")


def test_bad_updates_change_nothing(http: Checked, world: dict[str, Any]) -> None:
    project, run, local = world["project"], world["run"], world["local"]
    path = ctx(project, f"/runs/{run['id']}")
    before = http.get(path).json()
    other = f"python://{project}/train:{'0' * 32}"
    for body, status, fragment in (
        (_with(run, "spec.function", other), 400, "spec.function of a run cannot change"),
        (_with(run, "spec.local_execution", True), 400, "local_execution of a run cannot change"),
        (_with(run, "id", "other"), 400, "sent to run"),
        (_with(run, "kind", "python+job"), 400, "kind 'python+job:run' only"),
        (_with(run, "spec.modules", {"main": "eA=="}), 400, "spec.modules is set by asyncrun"),
    ):
        _refused(http.put(path, json=body), status, fragment)
    assert http.get(path).json() == before
    _refused(http.put(ctx(project, "/runs/nothing"), json=run), 404, "No such run")
    local_path = ctx(project, f"/runs/{local['id']}")
    bad_state = _with(local, "status", {"state": "SLEEPING"})
    _refused(http.put(local_path, json=bad_state), 400, "is not a state")
    assert http.get(local_path).json()["status"]["state"] == "CREATED"


def test_bad_actions_are_refused(http: Checked, world: dict[str, Any]) -> None:
    project, run, local = world["project"], world["run"], world["local"]
    _refused(http.post(ctx(project, f"/runs/{run['id']}/explode")), 400, "no action 'explode'")
    _refused(http.post(ctx(project, f"/runs/{run['id']}/stop")), 400, "cannot stop")
    _refused(http.post(ctx(project, f"/runs/{local['id']}/stop")), 400, "local_execution")
    _refused(http.post(ctx(project, "/runs/nothing/stop")), 404, "No such run")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "must be an int or a float"),
        ("0.5", "must be an int or a float"),
        ([[0.5]], "must be an int or a float"),
        ({"value": 1}, "must be an int or a float"),
        (None, "must be an int or a float"),
    ],
)
def test_bad_metric_values_are_refused(
    http: Checked, world: dict[str, Any], value: Any, fragment: str
) -> None:
    project, run = world["project"], world["run"]
    path = ctx(project, f"/runs/{run['id']}/metrics")
    before = http.get(path).json()
    sent = http.put(f"{path}/loss", content=json.dumps(value), headers=JSON)
    _refused(sent, 400, fragment)
    assert http.get(path).json() == before


def test_bad_metric_keys_and_runs_are_refused(http: Checked, world: dict[str, Any]) -> None:
    project, run = world["project"], world["run"]
    path = ctx(project, f"/runs/{run['id']}/metrics")
    _refused(http.put(f"{path}/{'k' * 251}", json=1), 400, "1 to 250 characters")
    _refused(http.put(ctx(project, "/runs/nothing/metrics/loss"), json=1), 404, "No such run")
    _refused(http.get(ctx(project, "/runs/nothing/metrics")), 404, "No such run")
    # A key with a slash is a key (the SDK does not encode it); DHCore's document has no
    # path for it, so it is sent unchecked.
    plain = httpx.Client(base_url=str(http.base_url), headers=http.headers)
    with plain:
        assert plain.put(f"{path}/train/loss", json=[1.0]).status_code == 200
    assert http.get(path).json()["train/loss"] == [1.0]


# -- access and routes -----------------------------------------------------------------------


def test_credentials_are_asyncrun_tokens(
    dh_server: ServerProcess, token: str, world: dict[str, Any]
) -> None:
    project = world["project"]
    path = f"/api/v1/projects/{project}"
    with Checked(base_url=dh_server.url) as client:
        missing = client.get(path)
        _refused(missing, 401, "DHCORE_ACCESS_TOKEN")
        assert "Bearer" in missing.headers["WWW-Authenticate"]
        _refused(client.get(path, headers={"Authorization": "Bearer nope"}), 401, "Bearer")
        basic = base64.b64encode(f"alice:{token}".encode()).decode()
        assert client.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
        wrong = base64.b64encode(b"alice:art_0000000000000000_" + b"x" * 43).decode()
        _refused(client.get(path, headers={"Authorization": f"Basic {wrong}"}), 401, "not valid")
        _refused(client.get(path, headers={"Authorization": "Basic !!"}), 401, "Bearer")
        reader = create_token(dh_server.db, project, role="read")
        headers = {"Authorization": f"Bearer {reader}"}
        assert client.get(path, headers=headers).status_code == 200
        new = project_body("made-by-reader")
        _refused(client.post("/api/v1/projects", json=new, headers=headers), 403, "may not")
        elsewhere = client.get("/api/v1/projects/other-project", headers=headers)
        _refused(elsewhere, 403, "may not access")


def test_unknown_routes_and_methods_answer_as_dhcore(http: Checked, world: dict[str, Any]) -> None:
    project = world["project"]
    _refused(http.get(ctx(project, "/artifacts")), 404, "not part of the DHCore API")
    listing = http.get("/api/v1/projects")
    _refused(listing, 405, "GET is not allowed")
    assert listing.headers["Allow"] == "POST"
    _refused(http.delete(ctx(project, f"/runs/{world['run']['id']}")), 405, "DELETE")
    _refused(http.get("/api/v1/projects/Not_A_Slug"), 400, "must match")
    _refused(http.get("/api/v1/projects/absent-project"), 404, "No such project")
    _refused(http.get(ctx("absent-project", "/runs/x")), 404, "No such project")
