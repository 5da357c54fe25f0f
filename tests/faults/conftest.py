"""Fixtures of the fault tests: a real server of the test's own, behind a fault proxy.

Each test gets its own server process on a fresh database, so it may crash and restart it;
the proxy in front of it keeps its port whatever happens to the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess

from ._proxy import FaultProxy


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A started ``asyncrun server`` on a fresh database, killed at the end."""
    server = ServerProcess(tmp_path / "runs.sqlite3")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def fault_proxy(fault_server: ServerProcess) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``fault_server``, injecting nothing until given a plan."""
    with FaultProxy(fault_server.port, seed=20240607) as proxy:
        yield proxy
