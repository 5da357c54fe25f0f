"""The SDK rows of the hostile-input table (``_table.py``): ``load_run`` files, ``python+job``.

``load_run`` rows run on asyncio and trio; each hostile file must raise ``ValidationError``
(code ``validation_error``) with the table's message, quickly, and nothing may be written.
``python+job`` rows run on both backends: the run must end in ERROR naming the import error
(or be refused at create, storing nothing).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import asyncrun

from ._table import JOB_ROWS, YAML_ROWS, JobRow, YamlRow

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("row", YAML_ROWS, ids=[row.id for row in YAML_ROWS])
async def test_hostile_yaml(tmp_path: Path, row: YamlRow) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "runs-r1.yaml"
    path.write_bytes(row.text.replace(b"{marker}", str(marker).encode()))
    async with asyncrun.AsyncClient(home=tmp_path / "home") as client:
        started = time.monotonic()
        with pytest.raises(asyncrun.ValidationError) as info:
            await client.load_run(path)
        elapsed = time.monotonic() - started
        error = info.value
        assert error.code == row.expect.code
        assert row.expect.check_message(error.message), error.message
        assert elapsed < row.seconds
        assert not marker.exists()  # no tag ever ran code
        assert [run async for run in client.list_runs("p")] == []


@pytest.mark.parametrize("row", JOB_ROWS, ids=[row.id for row in JOB_ROWS])
async def test_python_job_that_does_not_import(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path, row: JobRow
) -> None:
    for name, source in row.files.items():
        (tmp_path / f"{name}.py").write_text(source)
    spec = {"handler": row.handler, "cwd": str(tmp_path)}
    if row.refused:
        with pytest.raises(asyncrun.ValidationError) as info:
            await client.new_run(project, "python+job", spec=spec, id="r1")
        error = info.value
        assert error.code == row.expect.code
        assert error.message == row.expect.message
        assert row.expect.check_detail(error.detail)
        assert [run async for run in client.list_runs(project)] == []
        return
    run = await client.new_run(project, "python+job", spec=spec, id="r1")
    await run.run()
    await run.wait(timeout=60)
    assert run.status.state is asyncrun.State.ERROR
    assert row.expect.check_message(run.status.message or ""), run.status.message
    assert run.status.extra["exit_code"] == 1
    stored = await client.get_run(project, "r1")  # the failed run is kept, with its story
    states = [transition.state for transition in stored.status.transitions]
    assert states == ["ERROR", "RUNNING", "READY", "BUILT", "CREATED"]
