"""Run the DigitalHub SDK's flow against a real ``asyncrun server``, in both modes.

Usage (``nox -s digitalhub`` does it): ``python run_flows.py --asyncrun-python PY``, with this
interpreter's venv holding the pinned ``digitalhub`` and ``digitalhub-runtime-python``, and
``PY`` one whose venv holds asyncrun (``pip install -e .[server]``): the two never share a venv.

It starts ``asyncrun server`` on a free loopback port with a fresh database and a ``run`` token,
then runs ``sdk_flow.py`` once per mode, each in a process and a folder of its own (the SDK
keeps global state): the default mode with the token as ``DHCORE_ACCESS_TOKEN`` (Bearer), and
``local_execution=True`` with it as ``DHCORE_PASSWORD`` (Basic). Ends with ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOW_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"asyncrun server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"asyncrun server did not start:\n{log.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--asyncrun-python", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncrun-dhcore-") as tmp:
        root = Path(tmp)
        db = root / "server" / "runs.sqlite3"
        asyncrun = [args.asyncrun_python, "-m", "asyncrun"]
        made = subprocess.run(
            [*asyncrun, "server", "token", "create", "--db", str(db), "--create", "--role", "run",
             "--project", "demo", "--project", "demo-local"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = made.stdout.splitlines()[-1]
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = root / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [*asyncrun, "server", "--host", "127.0.0.1", "--port", str(port),
                 "--db", str(db), "--log-level", "info", "--stop-grace", "2"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        results: dict[str, bool] = {}
        try:
            _wait_healthy(url, server, log)
            base = {k: v for k, v in os.environ.items() if not k.startswith(("DHCORE_", "DH_"))}
            modes = {
                "remote": {"DHCORE_ACCESS_TOKEN": token, "FLOW_PROJECT": "demo"},
                "local": {
                    "DHCORE_USER": "alice",
                    "DHCORE_PASSWORD": token,
                    "FLOW_PROJECT": "demo-local",
                },
            }
            for mode, credentials in modes.items():
                folder = root / mode
                folder.mkdir()
                env = base | credentials | {"DHCORE_ENDPOINT": url, "HOME": str(folder)}
                print(f"--- the SDK's flow, mode {mode} ---", flush=True)
                done = subprocess.run(
                    [sys.executable, str(HERE / "sdk_flow.py"), mode],
                    cwd=folder,
                    env=env,
                    timeout=FLOW_TIMEOUT,
                    check=False,
                )
                results[mode] = done.returncode == 0
                print(f"--- mode {mode}: {'passed' if results[mode] else 'FAILED'} ---", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if not all(results.values()) or len(results) < len(modes):
                print(f"server log:\n{log.read_text()[-20000:]}")
    passed = sum(results.values())
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
