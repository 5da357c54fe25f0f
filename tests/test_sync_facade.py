"""The sync facade: ``Client``/``Run`` mirror ``AsyncClient``/``AsyncRun`` and block safely.

These tests are plain (not ``pytest.mark.anyio``): the ``sync_client`` fixture is parametrised
over both backends and, through ``anyio_backend``, over the event loop of the client's portal
thread. Ctrl-C and fork are exercised in subprocesses so this process stays clean.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import sniffio
import trio

import asyncrun

SPEC = {"command": ["echo", "hi"], "unknown_key": {"kept": [1, 2.5, None]}}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- 1. The sync API mirrors the async one, on both backends and both portal loops ----------


def test_new_run_returns_a_sync_run_readable_with_get_run(
    sync_client: asyncrun.Client, project: str
) -> None:
    run = sync_client.new_run(project, "command+job", spec=SPEC, name="first", labels=["a"])
    assert type(run) is asyncrun.Run
    assert run.status.state is asyncrun.State.CREATED
    assert run.metadata.revision == 1
    assert run.name == "first"
    assert run.metadata.labels == ["a"]
    assert run.key == f"store://{project}/run/command+job/{run.id}"
    same = sync_client.get_run(project, run.id)
    assert type(same) is asyncrun.Run
    assert same is not run
    assert same == run
    assert same.spec == SPEC


def test_build_run_then_save_returns_the_same_run(
    sync_client: asyncrun.Client, project: str
) -> None:
    run = sync_client.build_run(project, "python+job", spec={"handler": "m:f"}, id="run-1")
    assert type(run) is asyncrun.Run
    assert run.metadata.revision == 0  # not saved yet
    with pytest.raises(asyncrun.NotFound) as info:
        sync_client.get_run(project, "run-1")
    assert info.value.code == "not_found"
    saved = run.save()
    assert saved is run
    assert run.metadata.revision == 1  # refreshed from what the backend stored
    assert sync_client.get_run(project, "run-1") == run
    with pytest.raises(asyncrun.AlreadyExists) as exists:
        run.save()
    assert exists.value.code == "already_exists"
    assert isinstance(exists.value, asyncrun.Conflict)


def test_save_update_and_refresh_return_the_same_run_refreshed(
    sync_client: asyncrun.Client, project: str
) -> None:
    run = sync_client.new_run(project, "command+job", spec=SPEC)
    run.spec["command"] = ["echo", "changed"]
    run.metadata.labels.append("edited")
    assert run.save(update=True) is run
    assert run.metadata.revision == 2
    other = sync_client.get_run(project, run.id)
    assert other.spec["command"] == ["echo", "changed"]
    assert other.metadata.labels == ["edited"]
    other.metadata.description = "from the other copy"
    other.save(update=True)
    assert run.refresh() is run
    assert run.metadata.description == "from the other copy"
    assert run.metadata.revision == 3


def test_stale_update_is_a_revision_conflict(sync_client: asyncrun.Client, project: str) -> None:
    run = sync_client.new_run(project, "command+job", spec=SPEC)
    first = sync_client.get_run(project, run.id)
    second = sync_client.get_run(project, run.id)
    first.spec["winner"] = "first"
    first.save(update=True)
    second.spec["winner"] = "second"
    with pytest.raises(asyncrun.RevisionConflict) as info:
        second.save(update=True)
    assert info.value.code == "revision_conflict"
    assert sync_client.get_run(project, run.id).spec["winner"] == "first"


def test_validation_errors_are_typed(sync_client: asyncrun.Client, project: str) -> None:
    with pytest.raises(asyncrun.ValidationError):
        sync_client.build_run("../x", "command+job")
    with pytest.raises(asyncrun.ValidationError):
        sync_client.new_run(project, "Not A Kind")
    with pytest.raises(asyncrun.ValidationError):
        sync_client.build_run(project, "command+job", spec=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(asyncrun.ValidationError) as info:
        sync_client.list_runs(project, state="NOPE")  # raised at the call, not at next()
    assert info.value.detail == {"field": "state"}
    copy = sync_client.new_run(project, "command+job", spec=SPEC)
    copy.record.kind = "python+job"
    with pytest.raises(asyncrun.ValidationError):
        copy.save(update=True)
    assert list(sync_client.list_runs(project)) == [sync_client.get_run(project, copy.id)]


def test_delete(sync_client: asyncrun.Client, project: str) -> None:
    run = sync_client.new_run(project, "command+job", spec=SPEC)
    assert run.delete() is None
    with pytest.raises(asyncrun.NotFound):
        sync_client.get_run(project, run.id)
    with pytest.raises(asyncrun.NotFound):
        run.delete()


def test_list_runs_is_a_plain_iterator_with_filters(
    sync_client: asyncrun.Client, project: str
) -> None:
    a = sync_client.new_run(project, "command+job", spec=SPEC, name="alpha", labels=["x", "y"])
    b = sync_client.new_run(project, "python+job", spec={"handler": "m:f"}, labels=["x"])
    c = sync_client.new_run(project, "command+job", spec=SPEC, name="gamma")
    sync_client.new_run(f"{project}-other", "command+job", spec=SPEC)

    listing = sync_client.list_runs(project)
    assert isinstance(listing, Iterator)
    assert not hasattr(listing, "__aiter__")
    runs = list(listing)
    assert all(type(run) is asyncrun.Run for run in runs)
    assert {run.id for run in runs} == {a.id, b.id, c.id}

    def ids(**filters: Any) -> set[str]:
        return {run.id for run in sync_client.list_runs(project, **filters)}

    assert ids(kind="python+job") == {b.id}
    assert ids(name="alpha") == {a.id}
    assert ids(label="x") == {a.id, b.id}
    assert ids(label=["x", "y"]) == {a.id}
    assert ids(state="CREATED") == {a.id, b.id, c.id}
    assert ids(state=["RUNNING", "COMPLETED"]) == set()
    assert ids(ids=[a.id, c.id, "missing"]) == {a.id, c.id}
    future = datetime.now(UTC) + timedelta(days=1)
    assert ids(created_after=future) == set()
    assert ids(created_before=future) == {a.id, b.id, c.id}


def test_list_runs_pages_in_order(sync_client: asyncrun.Client, project: str) -> None:
    made = [sync_client.new_run(project, "command+job", spec=SPEC) for _ in range(7)]
    listed = [run.id for run in sync_client.list_runs(project, page_size=3)]
    expected = sorted(made, key=lambda r: (r.metadata.created, r.id), reverse=True)
    assert listed == [run.id for run in expected]


def test_abandoned_list_iterator_does_not_break_the_client(
    sync_client: asyncrun.Client, project: str
) -> None:
    for _ in range(3):
        sync_client.new_run(project, "command+job", spec=SPEC)
    listing = sync_client.list_runs(project, page_size=1)
    next(listing)
    listing.close()  # mid-iteration: the async generator is closed in the portal
    del listing
    half = sync_client.list_runs(project, page_size=1)
    next(half)
    del half  # dropped without close(): its finaliser runs in this thread
    gc.collect()
    assert len(list(sync_client.list_runs(project, page_size=2))) == 3


def test_export_and_load_run_round_trip(
    sync_client: asyncrun.Client, project: str, tmp_path: Path
) -> None:
    run = sync_client.new_run(project, "python+job", spec={"handler": "m:f", "x": {"y": 1}})
    path = run.export()
    assert isinstance(path, str)
    assert Path(path) == tmp_path / "context" / f"runs-{run.id}.yaml"
    assert sync_client.context == tmp_path / "context"
    loaded = sync_client.load_run(path)
    assert type(loaded) is asyncrun.Run
    assert loaded == run
    loaded.spec["x"] = {"y": 2}
    assert loaded.save(update=True) is loaded
    assert run.refresh().spec["x"] == {"y": 2}
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: command+job\nid: [unclosed\n")
    with pytest.raises(asyncrun.ValidationError):
        sync_client.load_run(bad)


# --- 2. The facades cannot drift: same public methods, same parameters ----------------------

ASYNC_TO_SYNC = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}


def public_methods(cls: type) -> list[str]:
    names = []
    for name in dir(cls):
        if name.startswith("_") and name not in ASYNC_TO_SYNC:
            continue
        if isinstance(inspect.getattr_static(cls, name), property):
            continue
        if callable(getattr(cls, name)):
            names.append(name)
    return sorted(names)


def method_pairs() -> list[Any]:
    pairs = []
    for async_cls, sync_cls in [
        (asyncrun.AsyncClient, asyncrun.Client),
        (asyncrun.AsyncRun, asyncrun.Run),
    ]:
        for name in public_methods(async_cls):
            pairs.append(pytest.param(async_cls, sync_cls, name, id=f"{async_cls.__name__}.{name}"))
    return pairs


def test_the_introspection_sees_the_methods() -> None:
    # Guard against the parametrisation silently finding nothing.
    assert {
        "aclose",
        "build_run",
        "new_run",
        "get_run",
        "list_runs",
        "load_run",
        "__aenter__",
        "__aexit__",
    } <= set(public_methods(asyncrun.AsyncClient))
    assert {"save", "refresh", "export", "delete"} <= set(public_methods(asyncrun.AsyncRun))


def parameters(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("async_cls", "sync_cls", "name"), method_pairs())
def test_sync_method_mirrors_async_method(async_cls: type, sync_cls: type, name: str) -> None:
    sync_name = ASYNC_TO_SYNC.get(name, name)
    assert hasattr(sync_cls, sync_name), f"{sync_cls.__name__} lacks {sync_name}()"
    async_fn = getattr(async_cls, name)
    sync_fn = getattr(sync_cls, sync_name)
    assert not inspect.iscoroutinefunction(sync_fn)
    assert not inspect.isasyncgenfunction(sync_fn)
    assert parameters(sync_fn) == parameters(async_fn)


def test_sync_run_has_the_async_run_properties() -> None:
    def properties(cls: type) -> set[str]:
        return {
            name
            for name in dir(cls)
            if not name.startswith("_") and isinstance(inspect.getattr_static(cls, name), property)
        }

    assert properties(asyncrun.AsyncRun) <= properties(asyncrun.Run)
    assert "record" in properties(asyncrun.Run)


@pytest.mark.parametrize(
    "name",
    [
        "context",
        "endpoint",
    ],
)
def test_public_client_attributes_are_mirrored(
    name: str, backend: dict[str, Any], tmp_path: Path
) -> None:
    async def public_attributes() -> dict[str, Any]:
        async with asyncrun.AsyncClient(**backend, context=tmp_path / "context") as c:
            return {k: v for k, v in vars(c).items() if not k.startswith("_")}

    expected = anyio.run(public_attributes)
    assert set(expected) == {"context", "endpoint"}  # a new attribute needs a test here
    with asyncrun.Client(**backend, context=tmp_path / "context") as client:
        assert getattr(client, name) == expected[name]


# --- 3. Several threads share one Client -------------------------------------------------------


def test_threads_share_one_client(sync_client: asyncrun.Client, project: str) -> None:
    n_threads, per_thread = 8, 20
    start = threading.Barrier(n_threads)
    created: list[str] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(per_thread):
                run = sync_client.new_run(
                    project, "command+job", spec={"command": ["echo", f"{t}-{i}"]}
                )
                created.append(run.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(created) == len(set(created)) == n_threads * per_thread
    listed = [run.id for run in sync_client.list_runs(project, page_size=50)]
    assert len(listed) == n_threads * per_thread
    assert set(listed) == set(created)


def test_a_blocked_call_does_not_hold_up_calls_from_other_threads(
    sync_client: asyncrun.Client, project: str
) -> None:
    # Each call is a task of its own in the portal: while one thread blocks in wait(), many
    # threads calling at once each get their own answer.
    idle = sync_client.new_run(project, "command+job", spec=SPEC)  # CREATED: never terminal
    runs = [
        sync_client.new_run(project, "command+job", spec={"command": ["echo", str(i)]})
        for i in range(8)
    ]
    waited: list[asyncrun.Run | BaseException] = []

    def wait_idle() -> None:
        try:
            waited.append(idle.wait(timeout=60))
        except BaseException as exc:
            waited.append(exc)

    waiter = threading.Thread(target=wait_idle)
    waiter.start()
    start = threading.Barrier(len(runs))

    def read(run: asyncrun.Run) -> list[Any]:
        start.wait(timeout=10)
        return [sync_client.get_run(project, run.id).spec["command"] for _ in range(25)]

    with ThreadPoolExecutor(len(runs)) as pool:
        results = list(pool.map(read, runs))
    assert results == [[["echo", str(i)]] * 25 for i in range(len(runs))]
    assert waiter.is_alive()  # still blocked: the reads did not need it
    assert waited == []
    sync_client.get_run(project, idle.id).delete()  # ends the wait
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert waited == [idle]
    assert idle.status.state is asyncrun.State.DELETED


def test_a_call_from_the_portal_thread_is_refused_not_deadlocked(
    sync_client: asyncrun.Client, project: str
) -> None:
    run = sync_client.new_run(project, "command+job", spec=SPEC)
    # What a finaliser or callback running in the client's own loop thread would do.
    with pytest.raises(RuntimeError, match="cannot be called from the event loop thread"):
        sync_client._portal.call(sync_client.get_run, project, run.id)
    assert sync_client.get_run(project, run.id) == run


def test_the_caller_context_does_not_leak_into_the_portal(
    sync_client: asyncrun.Client, anyio_backend: str, project: str
) -> None:
    # A caller whose context names the other library (a sync callback that some other loop's
    # portal runs) must not make the portal's tasks believe they run that library.
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    token = sniffio.current_async_library_cvar.set(other)
    try:
        run = sync_client.new_run(project, "command+job", spec=SPEC)
        assert sync_client.get_run(project, run.id) == run
        assert [r.id for r in sync_client.list_runs(project)] == [run.id]
    finally:
        sniffio.current_async_library_cvar.reset(token)


# --- 4. Inside a running event loop (a Jupyter cell) ----------------------------------------


@pytest.mark.parametrize(
    ("outer", "portal"),
    # trio inside trio hangs (a bug, see test_trio_portal_inside_trio_run below), so it runs in
    # a subprocess with a watchdog rather than here.
    [("asyncio", "asyncio"), ("asyncio", "trio"), ("trio", "asyncio")],
)
def test_usable_inside_a_running_event_loop(
    outer: str, portal: str, backend: dict[str, Any], project: str, tmp_path: Path
) -> None:
    def cell() -> tuple[str, list[str]]:
        # Plain blocking calls, no await: what a notebook cell does.
        client = asyncrun.Client(**backend, backend=portal, context=tmp_path / "context")
        try:
            run = client.new_run(project, "command+job", spec=SPEC)
            run.spec["more"] = 1
            run.save(update=True)
            got = client.get_run(project, run.id)
            assert got.spec["more"] == 1
            return run.id, [r.id for r in client.list_runs(project)]
        finally:
            client.close()

    async def main() -> tuple[str, list[str]]:
        if outer == "asyncio":
            asyncio.get_running_loop()  # really inside a running loop
        else:
            trio.lowlevel.current_trio_token()
        return cell()

    run_id, listed = asyncio.run(main()) if outer == "asyncio" else trio.run(main)
    assert listed == [run_id]


TRIO_IN_TRIO_SCRIPT = textwrap.dedent(
    """
    import faulthandler, sys
    import trio
    import asyncrun

    faulthandler.dump_traceback_later(4, exit=True)  # a hang exits 1 with the stacks

    async def main():
        client = asyncrun.Client(home=sys.argv[1], backend="trio")  # a notebook cell, in trio
        run = client.new_run("p", "command+job", spec={"command": ["echo"]})
        assert [r.id for r in client.list_runs("p")] == [run.id]
        client.close()
        print("OK", flush=True)

    trio.run(main)
    """
)


def test_trio_portal_inside_trio_run(tmp_path: Path) -> None:
    script = tmp_path / "trio_in_trio.py"
    script.write_text(TRIO_IN_TRIO_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script), str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "OK\n"), proc.stderr


# --- 5. close() and the context manager --------------------------------------------------------


def assert_closed(client: asyncrun.Client, run: asyncrun.Run, project: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.get_run(project, run.id),
        lambda: client.new_run(project, "command+job", spec=SPEC),
        lambda: next(client.list_runs(project)),
        lambda: client.load_run("whatever.yaml"),
        lambda: run.save(update=True),
        run.refresh,
        run.export,
        run.delete,
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"Client is closed; create a new one"):
            call()


def test_close_stops_the_portal_thread_and_is_idempotent(
    backend: dict[str, Any], anyio_backend: str, project: str, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    client = asyncrun.Client(**backend, backend=anyio_backend, context=tmp_path / "context")
    portal_threads = set(threading.enumerate()) - before
    assert portal_threads, "the client runs its event loop in a thread of its own"
    run = client.new_run(project, "command+job", spec=SPEC)
    assert [r.id for r in client.list_runs(project)] == [run.id]
    outstanding = client.list_runs(project, page_size=1)
    next(outstanding)  # a half-consumed listing is still open when the client closes

    assert client.close() is None
    assert wait_until(lambda: not any(t.is_alive() for t in portal_threads))
    assert wait_until(lambda: set(threading.enumerate()) <= before)

    started = time.monotonic()
    assert client.close() is None  # a second close is a no-op
    assert time.monotonic() - started < 1
    assert_closed(client, run, project)
    del outstanding
    gc.collect()  # dropping the listing after close warns about nothing (warnings are errors)


def test_context_manager_closes_even_on_error(
    backend: dict[str, Any], anyio_backend: str, project: str, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    kwargs = {**backend, "backend": anyio_backend, "context": tmp_path / "context"}
    with asyncrun.Client(**kwargs) as client:
        assert type(client) is asyncrun.Client
        run = client.new_run(project, "command+job", spec=SPEC)
    assert wait_until(lambda: set(threading.enumerate()) <= before)
    assert_closed(client, run, project)

    def failing_block() -> None:
        with asyncrun.Client(**kwargs) as inner:
            inner.get_run(project, "missing")

    with pytest.raises(asyncrun.NotFound):  # the error propagates unchanged
        failing_block()
    assert wait_until(lambda: set(threading.enumerate()) <= before)


def test_close_ends_a_wait_blocked_in_another_thread(
    backend: dict[str, Any], anyio_backend: str, project: str, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    client = asyncrun.Client(**backend, backend=anyio_backend, context=tmp_path / "context")
    run = client.new_run(project, "command+job", spec=SPEC)  # CREATED: never terminal
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            run.wait()
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    time.sleep(0.3)  # let the wait reach the portal
    started = time.monotonic()
    client.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 10
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert "closed" in str(errors[0])
    assert wait_until(lambda: set(threading.enumerate()) <= before)


# --- 6. Ctrl-C during a blocking call -----------------------------------------------------------

HUNG_SERVER_SCRIPT = textwrap.dedent(
    """
    import socket, sys, threading, time
    import asyncrun

    listener = socket.create_server(("127.0.0.1", 0))
    request_seen = threading.Event()
    connection_dropped = threading.Event()

    def handle(conn):
        with conn:
            while True:
                data = conn.recv(65536)  # read the request, never answer
                if not data:
                    connection_dropped.set()
                    return
                request_seen.set()

    def serve():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    client = asyncrun.Client(endpoint=f"http://127.0.0.1:{port}", timeout=60,
                             backend=sys.argv[1])
    print("READY", flush=True)
    try:
        client.get_run("p", "x")
    except KeyboardInterrupt:
        print("KEYBOARD-INTERRUPT", flush=True)
        if request_seen.is_set():
            print("REQUEST-WAS-IN-FLIGHT", flush=True)
        # The cancelled task drops its connection by itself, before close() is called.
        if connection_dropped.wait(5):
            print("CONNECTION-DROPPED", flush=True)
        client.close()
        print("CANCELLED-CLEAN", flush=True)
        sys.exit(0)
    print("RETURNED-WITHOUT-INTERRUPT", flush=True)
    sys.exit(2)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX-only")
@pytest.mark.parametrize("portal", ["asyncio", "trio"])
def test_ctrl_c_cancels_the_blocked_call(portal: str, tmp_path: Path) -> None:
    script = tmp_path / "hung.py"
    script.write_text(HUNG_SERVER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", str(script), portal],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err)
    assert out.splitlines() == [
        "KEYBOARD-INTERRUPT",
        "REQUEST-WAS-IN-FLIGHT",
        "CONNECTION-DROPPED",
        "CANCELLED-CLEAN",
    ], err
    assert elapsed < 5, "far below the 60 s timeout"
    assert err == ""


# --- 7. A forked child cannot use the parent's Client -----------------------------------------

FORK_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, warnings
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
    import asyncrun

    target = sys.argv[1]
    kwargs = {"endpoint": target} if target.startswith("http") else {"home": target}
    client = asyncrun.Client(**kwargs, backend=sys.argv[2])
    run = client.new_run("fork-test", "command+job", spec={"command": ["echo"]})
    mode = sys.argv[3]

    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(5)  # a hang in the child shows up as SIGALRM, not a stuck test
            if mode == "use":
                calls = [
                    lambda: client.get_run("fork-test", run.id),
                    lambda: client.new_run("fork-test", "command+job"),
                    lambda: next(client.list_runs("fork-test")),
                    lambda: run.save(update=True),
                    run.refresh,
                    run.delete,
                ]
                code = 0
                for i, call in enumerate(calls):
                    try:
                        call()
                    except RuntimeError as exc:
                        if "another process" not in str(exc):
                            code = 10 + i
                            break
                    except BaseException:
                        code = 30 + i
                        break
                    else:
                        code = 50 + i
                        break
            else:  # "close": leaving a with-block in the child must not hang
                signal.alarm(2)
                try:
                    client.close()
                except RuntimeError:
                    pass
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("CHILD-EXIT", os.waitstatus_to_exitcode(status), flush=True)
    assert client.get_run("fork-test", run.id) == run  # the parent's client is untouched
    client.close()
    print("PARENT-OK", flush=True)
    """
)


def run_fork_script(tmp_path: Path, backend: dict[str, Any], portal: str, mode: str) -> list[str]:
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    target = backend.get("endpoint") or str(backend["home"])
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script), target, portal, mode],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stderr == ""
    return proc.stdout.splitlines()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
@pytest.mark.parametrize("portal", ["asyncio", "trio"])
def test_forked_child_gets_runtime_error(
    portal: str, backend: dict[str, Any], tmp_path: Path
) -> None:
    assert run_fork_script(tmp_path, backend, portal, "use") == ["CHILD-EXIT 0", "PARENT-OK"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_close_in_forked_child_does_not_hang(tmp_path: Path) -> None:
    lines = run_fork_script(tmp_path, {"home": tmp_path / "home"}, "asyncio", "close")
    assert lines == ["CHILD-EXIT 0", "PARENT-OK"]
