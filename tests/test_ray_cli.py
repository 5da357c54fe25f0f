"""``asyncrun server --executor ray``: what the command refuses before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

from asyncrun.server import open_service


def test_the_ray_executor_needs_an_address(tmp_path: Path) -> None:
    done = cli("server", "--no-auth", "--db", str(tmp_path / "db.sqlite3"), "--executor", "ray")
    assert done.returncode == 2
    assert "--executor ray needs --ray-address" in done.stderr


def test_the_ray_executor_is_a_servers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a server's"):
        open_service(tmp_path / "db.sqlite3", executor="ray", ray_address="http://h:8265")
    with pytest.raises(ValueError, match="'local' or 'ray'"):
        open_service(tmp_path / "db.sqlite3", executor="k8s")
