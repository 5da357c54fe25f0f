"""Issue 14: a newcomer can list the projects, on the embedded backend and on a server.

Before, the API had no projects endpoint: ``asyncrun projects`` failed against a server, and
a token holder could not learn which of its projects have runs.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, cli, create_token

import asyncrun


@pytest.mark.anyio
async def test_projects_lists_those_with_runs(client: asyncrun.AsyncClient, project: str) -> None:
    for _ in range(3):
        await client.new_run(project, "test+record")
    await client.new_run(project + "-b", "test+record")
    found = {p.name: p for p in await client.projects()}
    assert found[project].runs == 3
    assert found[project + "-b"].runs == 1
    assert found[project].newest.tzinfo is not None


def test_a_token_sees_only_its_projects(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", auth=True)
    server.start()
    try:
        admin = create_token(server.db, "*", role="run")
        alpha = create_token(server.db, "alpha", role="read")
        with asyncrun.Client(server.url, token=admin) as client:
            client.new_run("alpha", "test+record")
            client.new_run("beta", "test+record")
            assert [p.name for p in client.projects()] == ["alpha", "beta"]
        with asyncrun.Client(server.url, token=alpha) as client:
            assert [p.name for p in client.projects()] == ["alpha"]
        refused = httpx.get(f"{server.url}/api/v1/projects:list")
        assert refused.status_code == 401
        shown = cli(
            "projects", "-q", env={"ASYNCRUN_ENDPOINT": server.url, "ASYNCRUN_TOKEN": alpha}
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.split() == ["alpha"]
    finally:
        server.stop()
