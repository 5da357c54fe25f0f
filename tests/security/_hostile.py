"""A hostile job: tries every attack of issue 11 and prints what it got, as one JSON line.

Run with a plain interpreter (``python3 -c <this source>``): it imports nothing of asyncrun,
as an attacker's code would not. Its targets come in its environment (``spec.env``).
"""

import json
import os
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request

env = os.environ
found = {}


def attempt(name, action):
    try:
        found[name] = {"ok": True, "value": action()}
    except Exception as exc:
        found[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def read_db():
    with open(env["TARGET_DB"], "rb") as handle:
        return len(handle.read(100))


def mint_token():
    db = sqlite3.connect(env["TARGET_DB"])
    db.execute(
        "INSERT INTO tokens (id, hash, role, projects, created_us)"
        " VALUES ('ffffffffffffffff', x'00', 'write', '[\"*\"]', 0)"
    )
    db.commit()
    return "inserted"


def other_tokens():
    own = env.get("ASYNCRUN_TOKEN")
    tokens = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                for item in handle.read().split(b"\0"):
                    if item.startswith(b"ASYNCRUN_TOKEN=") and item[15:].decode() != own:
                        tokens.append(item[15:].decode())
        except OSError:
            pass
    return tokens


def request(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        env["ASYNCRUN_ENDPOINT"] + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def record(project, id_):
    return {
        "kind": "command+job",
        "id": id_,
        "project": project,
        "metadata": {"project": project},
        "spec": {"command": ["true"]},
    }


def write_other_project():
    codes = [
        request(
            "POST",
            f"/api/v1/projects/{env['OTHER_PROJECT']}/runs",
            env["ASYNCRUN_TOKEN"],
            record(env["OTHER_PROJECT"], "planted"),
        )
    ]
    for token in other_tokens():  # with whatever tokens it could find
        codes.append(
            request(
                "POST",
                f"/api/v1/projects/{env['OTHER_PROJECT']}/runs",
                token,
                record(env["OTHER_PROJECT"], "planted2"),
            )
        )
    return codes


def start_a_run():
    project = env["ASYNCRUN_RUN_PROJECT"]
    created = request(
        "POST",
        f"/api/v1/projects/{project}/runs",
        env["ASYNCRUN_TOKEN"],
        record(project, "spawned"),
    )
    path = f"/api/v1/projects/{project}/runs/spawned/run"
    started = request("POST", path, env["ASYNCRUN_TOKEN"], {})
    return [created, started]


def signal_pid(name):
    os.kill(int(env[name]), signal.SIGKILL)
    return "sent"


def read_environ(name):
    with open(f"/proc/{env[name]}/environ", "rb") as handle:
        return len(handle.read())


def leave_a_child():
    # A double fork into a new session: nothing of the job's group or parentage holds it.
    out = subprocess.run(
        ["sh", "-c", "( setsid sleep 300 >/dev/null 2>&1 & echo $! )"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


attempt("read_db", read_db)
attempt("mint_token", mint_token)
attempt("other_tokens", other_tokens)
attempt("write_other_project", write_other_project)
attempt("start_a_run", start_a_run)
attempt("read_server_environ", lambda: read_environ("SERVER_PID"))
attempt("read_other_job_environ", lambda: read_environ("OTHER_JOB_PID"))
attempt("kill_agent", lambda: signal_pid("AGENT_PID"))
attempt("kill_other_job", lambda: signal_pid("OTHER_JOB_PID"))
attempt("leave_a_child", leave_a_child)
print("HOSTILE " + json.dumps(found), flush=True)
