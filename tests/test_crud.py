"""CRUD behaviour: the same tests on the embedded backend and a real server, asyncio and trio."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import asyncrun

pytestmark = pytest.mark.anyio

SPEC = {"command": ["echo", "hi"], "unknown_key": {"kept": [1, 2.5, None]}}


async def test_new_run_is_created_and_readable(client: asyncrun.AsyncClient, project: str) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC, name="first", labels=["a"])
    assert run.status.state is asyncrun.State.CREATED
    assert run.metadata.revision == 1
    assert run.key == f"store://{project}/run/command+job/{run.id}"
    assert run.metadata.created is not None
    assert run.metadata.created.utcoffset() is not None
    same = await client.get_run(project, run.id)
    assert same == run
    assert same.spec == SPEC  # keys the kind does not know survive


async def test_build_run_is_not_saved_until_save(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = client.build_run(project, "python+job", spec={"handler": "m:f"}, id="run-1")
    with pytest.raises(asyncrun.NotFound):
        await client.get_run(project, "run-1")
    saved = await run.save()
    assert saved is run
    assert (await client.get_run(project, "run-1")) == run


async def test_save_twice_without_update_is_already_exists(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC)
    with pytest.raises(asyncrun.AlreadyExists) as info:
        await run.save()
    assert info.value.code == "already_exists"
    assert isinstance(info.value, asyncrun.Conflict)


async def test_update_bumps_revision_and_refresh_reads_it(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC)
    run.spec["command"] = ["echo", "changed"]
    run.metadata.labels.append("edited")
    await run.save(update=True)
    assert run.metadata.revision == 2
    other = await client.get_run(project, run.id)
    assert other.spec["command"] == ["echo", "changed"]
    assert other.metadata.labels == ["edited"]
    other.metadata.description = "from the other copy"
    await other.save(update=True)
    refreshed = await run.refresh()
    assert refreshed is run
    assert run.metadata.description == "from the other copy"
    assert run.metadata.revision == 3


async def test_stale_update_is_a_conflict_not_an_overwrite(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC)
    first = await client.get_run(project, run.id)
    second = await client.get_run(project, run.id)
    first.spec["winner"] = "first"
    await first.save(update=True)
    second.spec["winner"] = "second"
    with pytest.raises(asyncrun.RevisionConflict):
        await second.save(update=True)
    assert (await client.get_run(project, run.id)).spec["winner"] == "first"


async def test_update_cannot_change_state_or_kind(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC)
    run.status.state = asyncrun.State.COMPLETED
    await run.save(update=True)
    assert run.status.state is asyncrun.State.CREATED  # the server owns the state
    copy = await client.get_run(project, run.id)
    copy.record.kind = "python+job"
    with pytest.raises(asyncrun.ValidationError):
        await copy.save(update=True)


async def test_delete(client: asyncrun.AsyncClient, project: str) -> None:
    run = await client.new_run(project, "command+job", spec=SPEC)
    await run.delete()
    with pytest.raises(asyncrun.NotFound):
        await client.get_run(project, run.id)
    with pytest.raises(asyncrun.NotFound):
        await run.delete()


async def test_list_filters(client: asyncrun.AsyncClient, project: str) -> None:
    a = await client.new_run(project, "command+job", spec=SPEC, name="alpha", labels=["x", "y"])
    b = await client.new_run(project, "python+job", spec={"handler": "m:f"}, labels=["x"])
    c = await client.new_run(project, "command+job", spec=SPEC, name="gamma")
    await client.new_run(f"{project}-other", "command+job", spec=SPEC)

    async def ids(**filters: object) -> set[str]:
        return {run.id async for run in client.list_runs(project, **filters)}  # type: ignore[arg-type]

    assert await ids() == {a.id, b.id, c.id}
    assert await ids(kind="python+job") == {b.id}
    assert await ids(name="alpha") == {a.id}
    assert await ids(label="x") == {a.id, b.id}
    assert await ids(label=["x", "y"]) == {a.id}
    assert await ids(state="CREATED") == {a.id, b.id, c.id}
    assert await ids(state=["RUNNING", "COMPLETED"]) == set()
    assert await ids(ids=[a.id, c.id, "missing"]) == {a.id, c.id}
    created = b.metadata.created
    assert created is not None
    assert await ids(created_after=created) >= {b.id, c.id}
    assert a.id not in await ids(created_after=created) or a.metadata.created == created
    future = datetime.now(UTC) + timedelta(days=1)
    assert await ids(created_after=future) == set()
    assert await ids(created_before=future) == {a.id, b.id, c.id}


async def test_list_pages_with_cursor_in_order(client: asyncrun.AsyncClient, project: str) -> None:
    made = [await client.new_run(project, "command+job", spec=SPEC) for _ in range(7)]
    listed = [run.id async for run in client.list_runs(project, page_size=3)]
    expected = sorted(made, key=lambda r: (r.metadata.created, r.id), reverse=True)
    assert listed == [run.id for run in expected]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"state": "NOPE"}, "state"),
        ({"page_size": 0}, "limit"),
        ({"page_size": 5000}, "limit"),
        ({"kind": "Bad Kind"}, "kind"),
        ({"label": "tab\there"}, "label"),
        ({"created_after": datetime(2020, 1, 1)}, "created_after"),  # naive on purpose
        ({"ids": ["../etc"]}, "ids"),
    ],
)
async def test_list_rejects_bad_filters_at_the_call(
    client: asyncrun.AsyncClient, project: str, filters: dict[str, object], field: str
) -> None:
    with pytest.raises(asyncrun.ValidationError) as info:
        client.list_runs(project, **filters)  # type: ignore[arg-type]
    assert info.value.detail == {"field": field}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"project": "../x", "kind": "command+job"},
        {"project": "ok", "kind": "Not A Kind"},
        {"project": "ok", "kind": "command+job", "id": "a/b"},
        {"project": "ok", "kind": "command+job", "labels": ["\x00"]},
        {"project": "ok", "kind": "command+job", "spec": ["not", "a", "dict"]},
    ],
)
async def test_build_run_rejects_bad_arguments(
    client: asyncrun.AsyncClient, kwargs: dict[str, object]
) -> None:
    with pytest.raises(asyncrun.ValidationError):
        client.build_run(**kwargs)  # type: ignore[arg-type]


async def test_get_missing_run_is_not_found_with_code(
    client: asyncrun.AsyncClient, project: str
) -> None:
    with pytest.raises(asyncrun.NotFound) as info:
        await client.get_run(project, "nope")
    assert info.value.code == "not_found"
    assert "nope" in str(info.value)


async def test_export_and_load_round_trip(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path
) -> None:
    run = await client.new_run(project, "python+job", spec={"handler": "m:f", "x": {"y": 1e-310}})
    path = await run.export()
    assert isinstance(path, str)
    assert Path(path) == tmp_path / "context" / f"runs-{run.id}.yaml"
    loaded = await client.load_run(path)
    assert loaded == run
    # A loaded record is bound to the client: it can be saved back as an update.
    loaded.spec["x"] = {"y": 2}
    await loaded.save(update=True)
    assert (await run.refresh()).spec["x"] == {"y": 2}


async def test_load_run_rejects_bad_yaml(client: asyncrun.AsyncClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: command+job\nid: [unclosed\n")
    with pytest.raises(asyncrun.ValidationError):
        await client.load_run(bad)
    bad.write_text("kind: command+job\nid: x\nproject: p\n")  # no metadata
    with pytest.raises(asyncrun.ValidationError, match="metadata"):
        await client.load_run(bad)


async def test_concurrent_creates_from_one_loop(client: asyncrun.AsyncClient, project: str) -> None:
    async def make(i: int) -> None:
        await client.new_run(project, "command+job", spec={"command": ["echo", str(i)]})

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(make, i)
    assert len([r async for r in client.list_runs(project, page_size=1000)]) == 50
