"""Files are private: the data folder 0700, the database, its WAL/SHM, logs and lock 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from conftest import ServerProcess

import asyncrun


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run_one(client: asyncrun.Client) -> None:
    run = client.new_run("files", "command+job", spec={"command": ["echo", "hi"]})
    run.run()
    run.wait(timeout=60)
    assert run.status.state is asyncrun.State.COMPLETED


def _assert_private(db: Path) -> None:
    names = [db.name + suffix for suffix in ("", "-wal", "-shm", ".agent.lock")] + ["agent.log"]
    for name in names:
        path = db.with_name(name)
        assert path.exists(), name
        assert _mode(path) == 0o600, (name, oct(_mode(path)))


def test_the_embedded_backend_keeps_its_files_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    with asyncrun.Client(home=home) as client:
        _run_one(client)
    assert _mode(home) == 0o700
    _assert_private(home / "asyncrun.sqlite3")


def test_a_server_keeps_its_files_private_and_tightens_old_ones(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite3"
    db.touch(mode=0o644)  # as an older asyncrun left it
    db.chmod(0o644)
    server = ServerProcess(db)
    server.start()
    try:
        with asyncrun.Client(server.url) as client:
            _run_one(client)
        _assert_private(db)
    finally:
        server.stop()
