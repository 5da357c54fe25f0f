"""Kinds are plug-ins: entry points in group ``asyncrun.kinds`` load in every process.

- A kind registered with ``kinds.register()`` only in the caller's process cannot be executed
  by the agent (a separate process): ``run()`` refuses it at once with a clear message, instead
  of the run ending in ERROR later with "no kind ... registered in the agent".
- A small plug-in package, installed into a fresh virtual environment together with asyncrun,
  runs end to end on the embedded backend and over a real server (service, agent, job runner
  and client all load it from its entry point).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerProcess

import asyncrun
from asyncrun import kinds

_LOCAL = kinds.Kind(
    "local-only+job",
    lambda spec: None,
    lambda spec, scratch, python: kinds.ProcessSpec(["true"]),
    lambda code, scratch: kinds.Outcome(asyncrun.State.COMPLETED),
)


@pytest.fixture
def local_kind() -> Iterator[kinds.Kind]:
    kinds.register(_LOCAL)
    yield _LOCAL
    kinds.unregister(_LOCAL.name)


@pytest.mark.anyio
async def test_a_kind_registered_only_in_this_process_is_refused_at_run(
    local_kind: kinds.Kind, embedded_home: Path, tmp_path: Path
) -> None:
    project = f"p-{uuid.uuid4().hex[:12]}"
    async with asyncrun.AsyncClient(home=embedded_home, context=tmp_path / "c") as client:
        # Records of it are fine: it validates specs and gives runs their methods here.
        run = await client.new_run(project, local_kind.name, spec={})
        with pytest.raises(asyncrun.ValidationError) as caught:
            await run.run()
        message = str(caught.value)
        assert f"kind {local_kind.name!r} is registered only in this process" in message
        assert "entry point in group 'asyncrun.kinds'" in message
        await run.refresh()
        assert run.status.state is asyncrun.State.CREATED  # nothing was started


def test_builtin_kinds_are_executable_and_names_lists_them() -> None:
    assert {"python+job", "command+job"} <= set(kinds.names())
    assert kinds.origin("python+job") == "builtin"
    assert kinds.origin("no-such+kind") is None


def test_register_and_unregister(local_kind: kinds.Kind) -> None:
    assert kinds.get(local_kind.name) is local_kind
    assert kinds.origin(local_kind.name) == "process"
    assert local_kind.name in kinds.names()


_FAKE = """
from asyncrun import kinds
from asyncrun.kinds import _command_job as c

KIND = kinds.Kind("fake+job", c._validate, c._process, c._outcome)


def make():
    return kinds.Kind("factory+job", c._validate, c._process, c._outcome)


NOT_A_KIND = 42
"""


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Entry points in group asyncrun.kinds pointing into a module nothing imported yet."""
    (tmp_path / "fake_kinds_mod.py").write_text(_FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib.metadata.EntryPoint(name, value, kinds.GROUP)
        for name, value in [
            ("fake+job", "fake_kinds_mod:KIND"),
            ("factory+job", "fake_kinds_mod:make"),
            ("misnamed+job", "fake_kinds_mod:KIND"),
            ("number+job", "fake_kinds_mod:NOT_A_KIND"),
            ("missing+job", "no_such_module_for_asyncrun:KIND"),
            ("python+job", "fake_kinds_mod:KIND"),  # a built-in name: ignored
        ]
    ]

    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return points if group == kinds.GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(kinds, "_ENTRY_POINTS", None)
    monkeypatch.setattr(kinds, "_LOADED", {})
    yield
    sys.modules.pop("fake_kinds_mod", None)


def test_entry_points_are_listed_without_importing_and_loaded_once(fake_plugins: None) -> None:
    assert {"fake+job", "factory+job", "missing+job", "python+job"} <= set(kinds.names())
    assert kinds.origin("fake+job") == "entry point"
    assert "fake_kinds_mod" not in sys.modules  # listed, not imported
    fake = kinds.get("fake+job")
    assert fake is not None
    assert fake.name == "fake+job"
    assert kinds.get("fake+job") is fake  # once
    factory = kinds.get("factory+job")
    assert factory is not None
    assert factory.name == "factory+job"
    builtin = kinds.get("python+job")
    assert builtin is not None
    assert kinds.origin("python+job") == "builtin"
    # A plug-in registering its own kind on import stays a plug-in.
    kinds.register(fake)
    try:
        assert kinds.origin("fake+job") == "entry point"
    finally:
        kinds.unregister("fake+job")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing+job", "ModuleNotFoundError: No module named 'no_such_module_for_asyncrun'"),
        ("misnamed+job", "the kind it gives is named 'fake+job'"),
        ("number+job", "it is not an asyncrun.kinds.Kind"),
    ],
)
def test_a_plugin_that_cannot_load_says_which_and_why(
    fake_plugins: None, name: str, expected: str
) -> None:
    for _ in range(2):  # the failure is kept, and raised each time
        with pytest.raises(kinds.KindLoadError) as caught:
            kinds.get(name)
        assert f"cannot load plug-in kind {name!r}" in str(caught.value)
        assert expected in str(caught.value)
    assert kinds.get("fake+job") is not None  # the others still load


ROOT = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "kind_plugin"
INSTALL_TIMEOUT = 600


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtual environment with asyncrun and the plug-in installed.

    No system site packages: the plug-in is found only through what pip installed.
    """
    base = tmp_path_factory.mktemp("plugin")
    source = base / "asyncrun-greet"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("driver.py", "__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[server]", str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def _drive(python: Path, where: str, home: Path) -> dict[str, Any]:
    env = {**os.environ, "ASYNCRUN_HOME": str(home)}
    done = subprocess.run(
        [str(python), str(PLUGIN / "driver.py"), where],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _check(out: dict[str, Any]) -> None:
    assert out["state"] == "COMPLETED", out
    assert out["message"] is None
    assert out["greeting"] == "hello, plug-in"  # the kind's run method, in the client
    assert out["exit_code"] == 0
    assert [line for line in out["logs"] if line[0] == "stdout"] == [
        ["stdout", f"hello, plug-in ({i})"] for i in range(3)
    ]
    assert ["stderr", "greeted"] in out["logs"]
    assert out["metrics"] == {"greetings": 3}  # current_run() works in a plug-in's job
    assert out["failing"] == ["ERROR", "the greeter failed with code 3"]
    # The plug-in's validate() runs in the service.
    assert "invalid spec for greet+job: spec.name must be a string" in out["greet+job"]
    # A plug-in that fails to import is named, with its distribution.
    broken = out["broken+job"]
    assert "cannot load plug-in kind 'broken+job'" in broken
    assert "asyncrun-greet 0.1.0" in broken
    assert "ImportError: asyncrun_greet.broken needs a module" in broken


def test_a_plugin_kind_runs_end_to_end_embedded(plugin_python: Path, tmp_path: Path) -> None:
    _check(_drive(plugin_python, "embedded", tmp_path / "home"))


def test_a_plugin_kind_runs_end_to_end_over_a_server(plugin_python: Path, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", python=str(plugin_python))
    server.start()
    try:
        _check(_drive(plugin_python, server.url, tmp_path / "home"))
    finally:
        server.stop()
