"""Issue 12 items 6 and 7: open log streams end on shutdown and on token revocation.

Each test failed on the code before its fix: a SIGTERMed server stayed up while a follow was
open, and a revoked token's follow kept delivering lines.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, cli, create_token, wait_for

import asyncrun

# Prints a line every 50 ms for about a minute: a follow of it stays open that long.
_CHATTY = ["sh", "-c", "i=0; while [ $i -lt 1200 ]; do echo line $i; i=$((i+1)); sleep 0.05; done"]


def _follow_in_thread(url: str, project: str, id_: str, token: str | None) -> dict[str, object]:
    """Follow a run's log in a thread; the dict gets "lines" (a count) and "error" or "done"."""
    seen: dict[str, object] = {"lines": 0}

    def follow() -> None:
        try:
            with asyncrun.Client(url, token=token) as client:
                run = client.get_run(project, id_)
                for _ in run.logs(follow=True):
                    seen["lines"] = int(seen["lines"]) + 1  # type: ignore[call-overload]
            seen["done"] = True
        except BaseException as exc:  # the test inspects it
            seen["error"] = exc

    threading.Thread(target=follow, daemon=True).start()
    return seen


def test_item6_sigterm_ends_open_log_follows_and_the_server_exits(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite3"
    server = ServerProcess(db)
    server.start()
    with asyncrun.Client(server.url) as client:
        run = client.new_run("p", "command+job", spec={"command": _CHATTY})
        run.run()
    seen = _follow_in_thread(server.url, "p", run.id, None)
    wait_for(lambda: int(seen["lines"]) >= 3, "the follow to deliver lines")  # type: ignore[call-overload]
    assert server.proc is not None
    server.proc.terminate()
    try:
        # Before the fix the server was still up 40 s later; a liveness bound, not a timing.
        server.proc.wait(timeout=30)
    except Exception:
        server.proc.kill()
        server.proc.wait()
        raise
    finally:
        again = ServerProcess(db)  # the job goes on under its agent: stop it
        again.start()
        with asyncrun.Client(again.url) as client:
            client.get_run("p", run.id).stop().wait(timeout=60)
        again.stop()


@pytest.mark.parametrize("revoked", ["reader", "runner"])
def test_item7_revoking_a_token_ends_its_open_log_streams(tmp_path: Path, revoked: str) -> None:
    server = ServerProcess(tmp_path / "runs.sqlite3", auth=True)
    server.start()
    try:
        runner = create_token(server.db, "p", role="run")
        reader = create_token(server.db, "p", role="read")
        with asyncrun.Client(server.url, token=runner) as client:
            run = client.new_run("p", "command+job", spec={"command": _CHATTY})
            run.run()
        follower = reader if revoked == "reader" else runner
        seen = _follow_in_thread(server.url, "p", run.id, follower)
        wait_for(lambda: int(seen["lines"]) >= 3, "the follow to deliver lines")  # type: ignore[call-overload]
        token_id = follower.split("_")[1]
        done = cli("server", "token", "revoke", "--db", str(server.db), token_id)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: "error" in seen or "done" in seen, "the follow to end", timeout=90)
        assert isinstance(seen.get("error"), asyncrun.AuthError), seen
        assert "revoked" in str(seen["error"]) or "token" in str(seen["error"])
        # The same token is refused for new requests too.
        refused = httpx.get(
            f"{server.url}/api/v1/projects/p/runs/{run.id}",
            headers={"Authorization": f"Bearer {follower}"},
        )
        assert refused.status_code == 401
        with asyncrun.Client(server.url, token=runner if revoked == "reader" else reader) as c:
            if revoked == "reader":
                c.get_run("p", run.id).stop().wait(timeout=60)
        if revoked == "runner":  # no run token is left: stop the job on an open server
            server.stop()
            server = ServerProcess(server.db)
            server.start()
            with asyncrun.Client(server.url) as client:
                client.get_run("p", run.id).stop().wait(timeout=60)
    finally:
        server.stop()
