"""Regressions of issue 12: each test failed on the code before its fix."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
import numpy as np
import pytest
from test_cli import Cli, backend_env

import asyncrun
from asyncrun import _config, _serde

pytestmark = pytest.mark.anyio

SLEEP = {"command": ["sleep", "3600"]}


# -- 12: load_run refuses huge files and keeps YAML's non-JSON types out ---------------------


def _edit(path: str, change: Callable[[str], str]) -> Path:
    file = Path(path)
    file.write_text(change(file.read_text(encoding="utf-8")), encoding="utf-8")
    return file


async def test_load_run_refuses_a_file_over_the_limit_before_parsing_it(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = client.build_run(project, "command+job", spec={"command": ["true"]})
    # A valid record padded past the limit with a comment: old code parsed it all.
    padding = "x" * _serde.MAX_RUN_FILE_BYTES
    path = _edit(await run.export(), lambda text: f"{text}# {padding}\n")
    with pytest.raises(asyncrun.PayloadTooLarge) as refused:
        await client.load_run(path)
    message = str(refused.value)
    assert f"at most {_serde.MAX_RUN_FILE_BYTES} bytes" in message
    assert str(path) in message
    assert refused.value.detail["limit"] == _serde.MAX_RUN_FILE_BYTES
    # The same text handed straight to the parser is refused too.
    with pytest.raises(asyncrun.PayloadTooLarge):
        _serde.from_yaml(f"# {padding}\n")


async def test_a_file_at_the_limit_still_loads(client: asyncrun.AsyncClient, project: str) -> None:
    run = client.build_run(project, "command+job", spec={"command": ["true"]})
    limit = _serde.MAX_RUN_FILE_BYTES
    path = _edit(await run.export(), lambda text: text + "#" * (limit - len(text) - 1) + "\n")
    assert (await anyio.Path(path).stat()).st_size == limit
    assert (await client.load_run(path)).id == run.id


async def test_yaml_timestamps_load_as_strings_and_save_unchanged(
    client: asyncrun.AsyncClient, project: str
) -> None:
    run = client.build_run(project, "command+job", spec={"command": ["true"]})
    times = {"day": "2024-01-02", "at": "2024-01-02 03:04:05", "iso": "2024-01-02T03:04:05Z"}
    lines = "".join(f"  {key}: {value}\n" for key, value in times.items())
    path = _edit(await run.export(), lambda text: text.replace("spec:\n", f"spec:\n{lines}"))
    loaded = await client.load_run(path)
    assert {key: loaded.spec[key] for key in times} == times  # old code: datetime.date...
    await loaded.save()
    stored = await client.get_run(project, run.id)
    assert {key: stored.spec[key] for key in times} == times
    # An exported record reads back with its own times intact.
    again = await client.load_run(await stored.export())
    assert again.metadata.created == stored.metadata.created
    assert again.spec == stored.spec


@pytest.mark.parametrize(
    "value",
    [
        "!!timestamp 2024-01-02",
        "!!binary aGVsbG8=",
        "!!set {a: null}",
        "!!omap [{a: 1}]",
        "!custom thing",
        "!!python/name:os.system ''",
    ],
)
def test_explicit_yaml_tags_other_than_json_types_are_refused(value: str) -> None:
    text = _serde.to_yaml(_record()).replace("spec:\n", f"spec:\n  bad: {value}\n")
    with pytest.raises(asyncrun.ValidationError, match="tag") as refused:
        _serde.from_yaml(text)
    assert "bad" in str(refused.value) or "line" in str(refused.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("!!str 12", "12"), ("!!int '12'", 12), ("!!float 1", 1.0), ("!!bool true", True),
     ("!!null ''", None), ("!!seq [1]", [1]), ("!!map {a: 1}", {"a": 1})],
)  # fmt: skip
def test_explicit_json_core_tags_still_load(value: str, expected: Any) -> None:
    text = _serde.to_yaml(_record()).replace("spec:\n", f"spec:\n  ok: {value}\n")
    assert _serde.from_yaml(text).spec["ok"] == expected


def _record() -> asyncrun.RunRecord:
    from datetime import UTC, datetime

    from asyncrun._core.records import new_run

    return new_run(project="p", kind="command+job", id="r", now=datetime.now(UTC), spec={"a": 1})


# -- 13: a tampered store cannot make export write outside the context folder ----------------


@pytest.mark.parametrize("field", ["id", "kind", "project"])
async def test_a_tampered_stored_record_is_refused_and_export_writes_nothing(
    tmp_path: Path, field: str
) -> None:
    home, context = tmp_path / "home", tmp_path / "a" / "b" / "context"
    async with asyncrun.AsyncClient(home=home, context=context) as client:
        run = await client.new_run("p", "command+job", id="r1", spec={"command": ["true"]})
        with sqlite3.connect(home / _config.DB_FILENAME) as db:
            doc = json.loads(db.execute("SELECT doc FROM runs WHERE id = 'r1'").fetchone()[0])
            doc[field] = "../../evil"
            if field == "project":
                doc["metadata"]["project"] = "../../evil"
            db.execute("UPDATE runs SET doc = ? WHERE id = 'r1'", (json.dumps(doc).encode(),))
        with pytest.raises(asyncrun.AsyncRunError) as refused:
            await (await client.get_run("p", "r1")).export()
        assert "corrupt" in str(refused.value)
        assert "'../../evil'" in str(refused.value)
        with pytest.raises(asyncrun.AsyncRunError, match="corrupt"):
            await run.refresh()
        with pytest.raises(asyncrun.AsyncRunError, match="corrupt"):
            [r async for r in client.list_runs("p")]
    assert not _files(tmp_path, "*.yaml")


def _files(folder: Path, pattern: str) -> list[Path]:
    return list(folder.rglob(pattern))


async def test_a_tampered_record_on_a_server_is_a_typed_error_at_once(
    server: Any, project: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(server.url, context=tmp_path) as client:
        await client.new_run(project, "command+job", id="r1", spec={"command": ["true"]})
        where = (project, "r1")
        with sqlite3.connect(server.db) as db:
            (good,) = db.execute(
                "SELECT doc FROM runs WHERE project = ? AND id = ?", where
            ).fetchone()
            bad = json.dumps({**json.loads(good), "id": "../../evil"}).encode()
            db.execute("UPDATE runs SET doc = ? WHERE project = ? AND id = ?", (bad, *where))
        try:
            with pytest.raises(asyncrun.CorruptRecord, match="corrupt") as refused:
                await client.get_run(project, "r1")
            assert refused.value.attempts == 1  # asking again cannot help: not retried
        finally:
            with sqlite3.connect(server.db) as db:
                db.execute("UPDATE runs SET doc = ? WHERE project = ? AND id = ?", (good, *where))
    assert not _files(tmp_path, "*.yaml")


async def test_export_refuses_a_record_whose_id_is_not_a_name(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path
) -> None:
    run = client.build_run(project, "command+job", spec={"command": ["true"]})
    run.record.id = "../../../evil"  # changed in memory after it was read
    with pytest.raises(asyncrun.ValidationError, match="id"):
        await run.export()
    assert not _files(tmp_path.parent, "evil.yaml")


# -- 14: long-lived streams do not take the connections short requests need -------------------

TALKER = {"command": ["sh", "-c", "echo started; exec sleep 3600"]}


async def test_many_log_follows_leave_room_for_other_calls(
    server: Any, project: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(server.url, context=tmp_path, timeout=10) as client:
        jobs = [await client.new_run(project, "command+job", spec=TALKER) for _ in range(4)]
        for job in jobs:
            await job.run()
        streaming = 0

        async def follow(job: asyncrun.AsyncRun) -> None:
            nonlocal streaming
            async with contextlib.aclosing(job.logs(follow=True)) as lines:
                async for _ in lines:
                    streaming += 1  # its first line: this stream holds a connection now
                    await anyio.sleep_forever()  # and keeps it until the test ends

        try:
            async with anyio.create_task_group() as tasks:
                for i in range(120):
                    tasks.start_soon(follow, jobs[i % len(jobs)])
                with anyio.fail_after(120):
                    while streaming < 120:
                        await anyio.sleep(0.02)
                    # Each of these needs a connection of its own while 120 streams are open.
                    assert (await client.get_run(project, jobs[0].id)).id == jobs[0].id
                    other = await client.new_run(project, "command+job", spec={"command": ["true"]})
                    other.log_metric("m", 1.0)
                    await other.flush(timeout=30)
                    await other.run()
                    await other.wait(timeout=60)
                    assert other.status.state is asyncrun.State.COMPLETED
                    assert (await other.refresh()).metrics == {"m": [1.0]}
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for job in jobs:
                    await job.stop()


async def test_a_pool_timeout_blames_the_client_limit_not_the_server(
    server: Any, project: str, tmp_path: Path
) -> None:
    async with asyncrun.AsyncClient(server.url, context=tmp_path, timeout=1) as client:
        http = client._transport._http  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as held:
            for _ in range(100):  # every connection of the pool short requests use, held
                await held.enter_async_context(http.stream("GET", "/healthz"))
            with pytest.raises(asyncrun.TransportError) as refused:
                await client.get_run(project, "r1")
    message = str(refused.value)
    assert "this client's limit of 100 connections" in message
    assert "server overloaded" not in message


# -- 15: numpy longdouble and clongdouble ------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["log_metric", "single_value", "log_metrics", "array", "array0d", "list"]
)
async def test_numpy_longdouble_is_logged_as_a_float(
    client: asyncrun.AsyncClient, project: str, how: str
) -> None:
    run = await client.new_run(project, "command+job", spec={"command": ["true"]})
    value = np.longdouble(1.5)
    if how == "log_metric":
        run.log_metric("a", value)
    elif how == "single_value":
        run.log_metric("a", value, single_value=True)
    elif how == "log_metrics":
        run.log_metrics({"a": value})
    elif how == "array":
        run.log_metric("a", np.array([value, value], dtype=np.longdouble))
    elif how == "array0d":
        run.log_metric("a", np.array(value, dtype=np.longdouble))
    else:
        run.log_metric("a", [value, np.float64(2.5)])
    await run.flush()
    await run.refresh()
    expected = {
        "single_value": 1.5,
        "log_metrics": 1.5,
        "array": [1.5, 1.5],
        "list": [1.5, 2.5],
    }.get(how, [1.5])
    assert run.metrics == {"a": expected}
    stored = run.metrics["a"]
    assert all(type(v) is float for v in (stored if isinstance(stored, list) else [stored]))


def test_longdouble_rounds_to_the_nearest_float_and_refuses_overflow() -> None:
    from asyncrun._core.metrics import check_value

    third = np.longdouble(1) / np.longdouble(3)
    assert check_value("a", third) == float(third) == 1 / 3
    assert check_value("a", np.longdouble("nan")) != check_value("a", np.longdouble("nan"))
    assert check_value("a", np.longdouble("-inf")) == float("-inf")
    if np.finfo(np.longdouble).max > np.finfo(np.float64).max:  # x86: 80-bit extended
        with pytest.raises(ValueError, match="float"):
            check_value("a", np.longdouble("1e400"))


@pytest.mark.parametrize(
    "value",
    [
        np.clongdouble(1 + 2j),
        np.complex128(1j),
        np.array([np.clongdouble(1)]),
        np.array(np.clongdouble(1)),
        [np.clongdouble(1)],
    ],
    ids=["clongdouble", "complex128", "array", "array0d", "list"],
)
async def test_numpy_complex_values_are_a_clear_type_error(
    client: asyncrun.AsyncClient, project: str, value: Any
) -> None:
    run = client.build_run(project, "command+job")
    for log in (
        lambda: run.log_metric("a", value),
        lambda: run.log_metric("a", value, single_value=True),
        lambda: run.log_metrics({"a": value}),
    ):
        with pytest.raises(TypeError, match="complex"):
            log()
    assert not client._metrics.items  # nothing buffered


# -- 16: the command line: a mistyped kind creates nothing; waits on CREATED runs say so ------


@pytest.fixture(params=["embedded", "http"])
def cli(request: pytest.FixtureRequest) -> Cli:
    return Cli(request.param, backend_env(request, request.param))


def test_a_mistyped_kind_creates_nothing_and_names_the_closest_kind(cli: Cli) -> None:
    done = cli("run", "pyhton+job", "--set", "handler=train:main")
    assert done.returncode == 2, done.stderr
    assert "unknown kind 'pyhton+job' (did you mean python+job?)" in done.stderr
    assert "command+job, python+job" in done.stderr
    done = cli("run", "-p", "other", "nonsense", "--", "echo", "hi")  # nothing close
    assert done.returncode == 2, done.stderr
    assert "did you mean" not in done.stderr
    done = cli("run", "python+job", "--set", "parameters.lr=0.1")  # no handler
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: invalid spec for python+job: ")
    assert json.loads(cli.ok("ls", "--json")) == []
    assert json.loads(cli.ok("-p", "other", "ls", "--json")) == []


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.communicate()  # and close its pipes


def _read_until(stream: IO[bytes], marker: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen  # a bound on a wait for a condition, not a timing assertion
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, seen
            seen += chunk
    return seen


@pytest.mark.parametrize("command", [("wait",), ("logs", "-f")], ids=["wait", "logs-f"])
def test_waiting_on_a_run_nobody_started_says_so_and_keeps_waiting(
    cli: Cli, command: tuple[str, ...]
) -> None:
    with cli.client() as client:
        run = client.new_run(cli.project, "command+job", spec={"command": ["echo", "hi"]})
        proc = cli.popen(*command, run.id)
        try:
            assert proc.stderr is not None
            note = _read_until(proc.stderr, b"(Ctrl-C to give up)").decode()
            assert f"run {run.id} is CREATED: nothing has started it yet" in note
            assert proc.poll() is None  # still waiting: the run has not even started
            run.run()
            out, _ = proc.communicate(timeout=60)
        finally:
            _end(proc)
    assert proc.returncode == 0
    assert out.decode() == ("hi\n" if command[0] == "logs" else f"run {run.id}: COMPLETED\n")


def test_waiting_on_several_runs_names_those_nobody_started(cli: Cli) -> None:
    with cli.client() as client:
        idle = client.new_run(cli.project, "command+job", spec={"command": ["true"]})
        started = client.new_run(cli.project, "command+job", spec={"command": ["true"]}).run()
        proc = cli.popen("wait", idle.id, started.id)
        try:
            assert proc.stderr is not None
            note = _read_until(proc.stderr, b"(Ctrl-C to give up)").decode()
            assert f"1 of 2 runs are CREATED: nothing has started them yet ({idle.id})" in note
            idle.run()
            proc.communicate(timeout=60)
        finally:
            _end(proc)
    assert proc.returncode == 0
