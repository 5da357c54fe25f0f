"""Kinds are plug-ins: entry points in group ``asyncrun.kinds`` load in every process.

- A kind registered with ``kinds.register()`` only in the caller's process cannot be executed
  by the agent (a separate process): ``run()`` refuses it at once with a clear message, instead
  of the run ending in ERROR later with "no kind ... registered in the agent".
- A small plug-in package, installed into a fresh virtual environment together with asyncrun,
  runs end to end on the embedded backend and over a real server (service, agent, job runner
  and client all load it from its entry point).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


_ = Any
