"""The ``asyncrun`` command, driven as a user drives it: ``python -m asyncrun`` in a subprocess,
against a real ``asyncrun server`` on a free loopback port and against the embedded default.

Output is captured through pipes (no TTY), so it must be plain: no colour, no live display.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import JOBS_DIR, ServerProcess, free_port, wait_for
from ruamel.yaml import YAML

import asyncrun

ESCAPE = "\x1b["
COLOUR = re.compile(r"\x1b\[(?:3[0-9]|9[0-7]|38;)")
"""A foreground colour escape (bold and the like are not colour)."""


def plain_env(**extra: str) -> dict[str, str]:
    """The test process's environment without asyncrun's or the terminal's settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ASYNCRUN_")
        and name not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
        and name not in ("COLUMNS", "LINES")
    }
    return {**env, **extra}


@dataclass
class Cli:
    """The real command, with a backend's environment and a project of its own."""

    backend: str
    env: dict[str, str]
    project: str = field(default_factory=lambda: f"cli-{os.urandom(6).hex()}")

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "asyncrun", "-p", self.project, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a command that must succeed; its stdout."""
        done = self(*args, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert ESCAPE not in done.stdout + done.stderr
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "asyncrun", "-p", self.project, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def client(self) -> asyncrun.Client:
        """A client of the Python API on the same backend."""
        if "ASYNCRUN_ENDPOINT" in self.env:
            return asyncrun.Client(self.env["ASYNCRUN_ENDPOINT"])
        return asyncrun.Client(home=self.env["ASYNCRUN_HOME"])

    def record(self, run_id: str) -> dict[str, Any]:
        return dict(json.loads(self.ok("get", run_id, "--json")))


def backend_env(request: pytest.FixtureRequest, name: str) -> dict[str, str]:
    if name == "embedded":  # the default: no endpoint, a database under ASYNCRUN_HOME
        return plain_env(ASYNCRUN_HOME=str(request.getfixturevalue("embedded_home")))
    server: ServerProcess = request.getfixturevalue("server")
    return plain_env(ASYNCRUN_ENDPOINT=server.url)


@pytest.fixture(params=["embedded", "http"])
def cli(request: pytest.FixtureRequest) -> Cli:
    return Cli(request.param, backend_env(request, request.param))


@pytest.fixture
def embedded_cli(request: pytest.FixtureRequest) -> Cli:
    """The command on the embedded default only: for what does not depend on the backend."""
    return Cli("embedded", backend_env(request, "embedded"))


@pytest.fixture(scope="module", params=["embedded", "http"])
def trained(request: pytest.FixtureRequest) -> tuple[Cli, str]:
    """A python+job run started from the command line, COMPLETED, with metrics."""
    cli = Cli(request.param, backend_env(request, request.param))
    done = cli(
        "run", "python+job",
        "--set", "handler=_cli_jobs:train",
        "--set", f"cwd={JOBS_DIR}",
        "--set", "parameters.epochs=6",
        "--set", "parameters.lr=0.5",
        "--name", "trainer", "--label", "cli", "--label", "nightly",
        "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), done.stdout
    note, final = done.stderr.splitlines()  # no terminal: one note, no live display
    assert note.startswith(f"waiting for run {run_id} to end (now ")
    assert note.endswith("; Ctrl-C stops waiting, the run goes on")
    assert final == f"run {run_id}: COMPLETED"
    return cli, run_id


def yaml_load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def test_follow_streams_the_logs_and_exits_with_the_outcome(cli: Cli) -> None:
    done = cli("run", "command+job", "--follow", "--", "sh", "-c", "echo out; echo err >&2")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["err", "out"]
    assert done.stderr.splitlines()[-1].endswith(": COMPLETED")

    done = cli("run", "command+job", "--follow", "--", "sh", "-c", "echo before; exit 3")
    assert done.returncode == 1
    assert done.stdout == "before\n"
    assert done.stderr.splitlines()[-1].endswith(": ERROR: the process exited with code 3")
    assert ESCAPE not in done.stdout + done.stderr


def test_a_python_job_from_set_flags(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    record = yaml_load(cli.ok("get", run_id))
    assert record["status"]["state"] == "COMPLETED"
    assert record["name"] == "trainer"
    assert record["metadata"]["labels"] == ["cli", "nightly"]
    parameters = record["spec"]["parameters"]
    assert parameters == {"epochs": 6, "lr": 0.5}  # --set values are YAML: int and float
    assert type(parameters["epochs"]) is int
    assert record["status"]["results"]["epochs"] == 6
    assert cli.record(run_id)["status"]["state"] == "COMPLETED"

    lines = cli.ok("logs", run_id).splitlines()
    assert lines[0] == "epoch 0 loss 0.5000"
    assert len(lines) == 6
    stamped = cli.ok("logs", run_id, "-t", "--offset", "5").splitlines()
    assert len(stamped) == 1
    assert stamped[0].endswith(" epoch 5 loss 0.0156")


def test_ls_filters_and_json(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    out = cli.ok("ls", "--wide").splitlines()
    assert out[0].split() == [
        "ID", "KIND", "STATE", "CREATED", "DURATION", "NAME", "LABELS", "WHAT", "MESSAGE"
    ]  # fmt: skip
    row = next(line for line in out if line.startswith(run_id))
    assert row.split()[1:3] == ["python+job", "COMPLETED"]
    assert re.search(r" trainer +cli,nightly +_cli_jobs:train epochs=6 lr=0\.5 *$", row)

    listed = json.loads(cli.ok("ls", "--json", "--label", "cli", "--state", "completed"))
    assert [r["id"] for r in listed] == [run_id]
    assert json.loads(cli.ok("ls", "--json", "--state", "ERROR")) == []
    assert json.loads(cli.ok("ls", "--json", "--since", "1h", "--kind", "python+job"))
    assert json.loads(cli.ok("ls", "--json", "--before", "2000-01-01T00:00:00")) == []
    empty = cli("ls", "--kind", "command+job")
    assert empty.returncode == 0
    assert empty.stdout == ""
    assert "no runs match" in empty.stderr


def test_metrics_table_json_and_plot(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    rows = {line.split()[0]: line.split()[1:] for line in cli.ok("metrics", run_id).splitlines()}
    assert rows["METRIC"] == ["VALUES", "LAST", "MIN", "MAX"]
    assert rows["loss"] == ["6", "0.015625", "0.015625", "0.5"]
    assert rows["accuracy"] == ["single", "0.9", "0.9", "0.9"]
    assert rows["gappy"] == ["4", "4", "1", "4"]  # NaN left out of min and max

    metrics = json.loads(cli.ok("metrics", run_id, "--json"))
    assert metrics["loss"][0] == 0.5
    assert len(metrics["loss"]) == 6
    assert metrics["gappy"][1] == "NaN"

    chart = cli.ok("metrics", run_id, "--plot", "loss", "--height", "12").splitlines()
    assert chart[0] == "loss  6 values"
    assert len(chart) == 13
    assert all(len(line) <= 80 for line in chart)
    assert chart[1].lstrip().startswith("┌")
    assert chart[-2].lstrip().startswith("└")
    assert chart[2].startswith("0.50┤")  # the first value is the top of the y axis
    assert chart[-1].split() == ["1", "2", "3", "4", "5", "6"]  # one tick per step
    narrow = cli.ok("metrics", run_id, "--plot", "gappy", "--width", "40").splitlines()
    assert max(len(line) for line in narrow) <= 40

    single = cli("metrics", run_id, "--plot", "accuracy")
    assert single.returncode == 1
    assert single.stderr == (
        f"error: metric 'accuracy' of run {run_id} is a single value (0.9): nothing to plot\n"
    )
    missing = cli("metrics", run_id, "--plot", "nope")
    assert missing.returncode == 1
    assert "it has: accuracy, gappy, loss" in missing.stderr


def test_run_files_set_flags_and_the_words_after_dashdash(
    embedded_cli: Cli, tmp_path: Path
) -> None:
    cli = embedded_cli
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(
        "kind: command+job\nname: greeter\nlabels: [from-file]\n"
        "spec:\n  command: [echo, from the file]\n  env: {GREETING: hi}\n"
    )
    run_id = cli.ok("run", "-f", str(spec_file), "--wait").strip()
    assert cli.ok("logs", run_id) == "from the file\n"
    record = cli.record(run_id)
    assert record["name"] == "greeter"
    assert record["metadata"]["labels"] == ["from-file"]

    run_id = cli.ok("run", "-f", str(spec_file), "--set", "command=[echo, set]", "--wait").strip()
    assert cli.ok("logs", run_id) == "set\n"
    assert cli.record(run_id)["spec"]["env"] == {"GREETING": "hi"}

    out = cli.ok("run", "command+job", "-f", str(spec_file), "--follow", "--", "echo", "-n", "x")
    assert out == "x\n"

    # An exported run is a template too: a new run with the same spec.
    exported = cli.ok("export", run_id, "-o", str(tmp_path / "out")).strip()
    again = cli.ok("run", "-f", exported, "--wait").strip()
    assert again != run_id
    assert cli.ok("logs", again) == "set\n"

    mismatch = cli("run", "python+job", "-f", str(spec_file))
    assert mismatch.returncode == 2
    assert "differs from the kind" in mismatch.stderr


def test_export_then_apply_creates_or_updates(cli: Cli, tmp_path: Path) -> None:
    run_id = cli.ok("run", "command+job", "--wait", "--", "true").splitlines()[0]
    path = Path(cli.ok("export", run_id, "-o", str(tmp_path / "exported")).strip())
    assert path == tmp_path / "exported" / f"runs-{run_id}.yaml"
    record = yaml_load(path.read_text())
    assert record["id"] == run_id
    assert record["status"]["state"] == "COMPLETED"

    path.write_text(path.read_text().replace("- 'true'", "- 'false'").replace("- true", "- false"))
    out = cli.ok("apply", "-f", str(path))
    assert out.startswith(f"updated run {run_id} in project {cli.project} (revision ")
    stored = cli.record(run_id)
    assert stored["spec"]["command"] == ["false"]
    assert stored["status"]["state"] == "COMPLETED"  # an update never changes the state

    assert "is unchanged" in cli.ok("apply", "-f", str(path))  # the same file again: no change
    path.write_text(path.read_text().replace("- 'false'", "- 'true'").replace("- false", "- true"))
    stale = cli("apply", "-f", str(path))  # the file's revision is behind the stored one now
    assert stale.returncode == 1
    assert "changed since" in stale.stderr
    assert "--force" in stale.stderr
    assert len(stale.stderr.splitlines()) == 1
    assert cli.ok("apply", "-f", str(path), "--force").startswith("updated run")

    copy = tmp_path / "copy.yaml"
    copy.write_text(path.read_text().replace(run_id, "copied-run"))
    assert cli.ok("apply", "-f", str(copy)) == f"created run copied-run in project {cli.project}\n"
    assert cli.record("copied-run")["status"]["state"] == "CREATED"

    elsewhere = cli("-p", "another-project", "apply", "-f", str(copy))
    assert elsewhere.returncode == 2
    assert f"holds a run of project '{cli.project}'" in elsewhere.stderr


def test_stop_resume_and_a_wait_that_times_out(cli: Cli) -> None:
    run_id = cli.ok("run", "command+job", "--", "sleep", "30").strip()
    started = time.monotonic()
    late = cli("wait", run_id, "--timeout", "0.5")
    assert late.returncode == 124
    assert late.stderr.splitlines()[0].startswith(f"waiting for run {run_id} to end (now ")
    assert late.stderr.splitlines()[1].startswith(
        f"error: run {run_id} did not finish within 0.5 s"
    )
    assert time.monotonic() - started < 15

    assert cli.ok("stop", "--wait", run_id) == f"run {run_id}: STOPPED\n"
    again = cli("stop", run_id)
    assert again.returncode == 1
    assert again.stderr.startswith("error: cannot stop a run in state STOPPED")
    resumed = cli.ok("resume", run_id)
    assert resumed.startswith(f"run {run_id}: ")
    assert "STOPPED" not in resumed
    assert cli.ok("stop", run_id, "--wait") == f"run {run_id}: STOPPED\n"
    waited = cli("wait", run_id)
    assert waited.returncode == 1
    assert waited.stdout == f"run {run_id}: STOPPED\n"


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 30) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, seen
            seen += chunk
    return seen


@pytest.mark.parametrize("stop", [True, False], ids=["stop-on-interrupt", "no-terminal"])
def test_ctrl_c_while_following(cli: Cli, stop: bool) -> None:
    flag = ("--stop-on-interrupt",) if stop else ()
    command = ("sh", "-c", "echo started; sleep 30")
    proc = cli.popen("run", "command+job", "--follow", *flag, "--", *command)
    try:
        read_until(proc, b"started\n")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    run_id = err.decode().split()[1]
    if stop:
        assert err.decode().splitlines()[-1] == f"run {run_id}: STOPPED"
        assert cli.record(run_id)["status"]["state"] == "STOPPED"
    else:  # no terminal to ask on, no flag: the run goes on
        assert f"run {run_id} keeps running; stop it with: asyncrun -p {cli.project} stop" in (
            err.decode()
        )
        assert cli.record(run_id)["status"]["state"] == "RUNNING"
        cli.ok("stop", "--wait", run_id)


@pytest.fixture
def many_runs(cli: Cli) -> tuple[Cli, list[str], list[str]]:
    """40 runs started through the Python API: 37 that complete, 3 that fail."""
    with cli.client() as client:
        good = [
            client.new_run(cli.project, "command+job", spec={"command": ["true"]}).run().id
            for _ in range(37)
        ]
        bad = [
            client.new_run(cli.project, "command+job", spec={"command": ["false"]}).run().id
            for _ in range(3)
        ]
    return cli, good, bad


def test_wait_for_many_prints_the_counts_per_state(
    many_runs: tuple[Cli, list[str], list[str]],
) -> None:
    cli, good, bad = many_runs
    done = cli("wait", *good, *bad, "--timeout", "60")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["STATE", "RUNS"]
    assert [line.split() for line in lines[2:4]] == [["COMPLETED", "37"], ["ERROR", "3"]]
    assert lines[5].split() == ["total", "40"]
    assert lines[6] == ""
    assert lines[7].split() == ["ID", "STATE", "MESSAGE"]
    failures = {line.split()[0]: line.split()[1:] for line in lines[9:]}
    assert {run_id: row[0] for run_id, row in failures.items()} == dict.fromkeys(bad, "ERROR")
    assert all(" ".join(row[1:]) == "the process exited with code 1" for row in failures.values())
    assert re.fullmatch(  # no terminal: a note if there is anything to wait for, no display
        r"(waiting for 40 runs to end \(now [A-Z 0-9 ]+\); "
        r"Ctrl-C stops waiting, the runs go on\n)?",
        done.stderr,
    )

    assert cli.ok("wait", *good) == (
        "STATE       RUNS\n────────────────\nCOMPLETED     37\n────────────────\ntotal         37\n"
    )


def test_the_live_display_when_stderr_is_a_terminal(cli: Cli) -> None:
    with cli.client() as client:
        ids = [
            client.new_run(cli.project, "command+job", spec={"command": ["sleep", "1.5"]}).run().id
            for _ in range(5)
        ]
    # FORCE_COLOR makes rich treat the pipes as a terminal: live display and colours on.
    done = cli("wait", *ids, env={"FORCE_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "waiting for 5 runs" in done.stderr
    assert "finished" in done.stderr
    assert COLOUR.search(done.stdout)  # COMPLETED in green
    assert re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).splitlines()[2].split() == ["COMPLETED", "5"]


def test_errors_are_one_line_with_an_exit_code(cli: Cli) -> None:
    missing = cli("get", "no-such-run")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: no run 'no-such-run' in project '{cli.project}' (")
    assert "name it with -p PROJECT" in missing.stderr
    assert missing.stdout == ""

    debug = cli("--debug", "get", "no-such-run")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == missing.stderr.strip()

    invalid = cli("run", "command+job", "--set", "command=echo")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("error: invalid spec for command+job: spec.command must be")
    assert len(invalid.stderr.splitlines()) == 1


def test_usage_errors_exit_2_with_one_line(embedded_cli: Cli) -> None:
    for args in (
        ("run",),
        ("run", "command+job", "--set", "no-equals-sign"),
        ("run", "command+job", "--timeout", "3", "--", "true"),
        ("ls", "--state", "BOGUS"),
        ("ls", "--since", "yesterday"),
        ("wait",),
        ("frobnicate",),
    ):
        usage = embedded_cli(*args)
        assert usage.returncode == 2, args
        assert usage.stderr.startswith("error: "), (args, usage.stderr)
        assert len(usage.stderr.splitlines()) == 1, (args, usage.stderr)
        assert "--help" in usage.stderr


def test_an_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "asyncrun", "--endpoint", url, "--request-timeout", "1", "ls"],
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach the asyncrun server at {url}")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("trained", ["embedded"], indirect=True)  # the same on every backend
def test_colour_only_on_a_terminal_and_never_with_no_color(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    assert ESCAPE not in cli.ok("ls") + cli.ok("get", run_id) + cli.ok("metrics", run_id)
    forced = cli("ls", env={"FORCE_COLOR": "1"})
    assert COLOUR.search(forced.stdout)
    for args in (("ls",), ("get", run_id), ("metrics", run_id, "--plot", "loss")):
        no_color = cli(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert no_color.returncode == 0
        assert not COLOUR.search(no_color.stdout + no_color.stderr), args


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("cli-auth") / "runs.sqlite3", auth=True)
    server.start()
    yield server
    server.stop()


def test_tokens_from_the_option_the_environment_or_a_file(
    secured: ServerProcess, tmp_path: Path
) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "asyncrun", "server", "token", "create", "--db", str(secured.db),
         "--project", "tokened", "--role", "run"],
        capture_output=True, text=True, timeout=60, env=plain_env(), check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    cli = Cli("http", plain_env(ASYNCRUN_ENDPOINT=secured.url), project="tokened")

    refused = cli("ls")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {secured.url} needs a token: pass --token TOKEN, ")
    assert "ASYNCRUN_TOKEN_FILE" in refused.stderr
    assert "token=" not in refused.stderr  # Python's advice, not the command line's
    assert len(refused.stderr.splitlines()) == 1
    wrong = cli("--token", "art_0123456789abcdef_wrongwrongwrong", "ls")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith(f"error: {secured.url} refused the token from --token")
    assert "wrongwrong" not in wrong.stdout + wrong.stderr

    cli.ok("--token", token, "ls")
    run_id = cli.ok("run", "command+job", "--wait", "--", "true", env={"ASYNCRUN_TOKEN": token})
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    listed = cli.ok("ls", "--json", env={"ASYNCRUN_TOKEN_FILE": str(token_file)})
    assert [r["id"] for r in json.loads(listed)] == [run_id.strip()]


# --- issue 14: ids, ls, describe, rm, projects ------------------------------------------------


def test_prefixes_and_printed_forms_name_a_run_everywhere(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    key = f"store://{cli.project}/run/python+job/{run_id}"
    for ref in (run_id[:8], run_id[:12], f"{cli.project}/{run_id}", f"{cli.project}/{run_id[:9]}",
                key):  # fmt: skip
        assert cli.record(ref)["id"] == run_id, ref
    assert cli.ok("logs", run_id[:8]).splitlines()[0] == "epoch 0 loss 0.5000"
    assert cli.ok("metrics", run_id[:8]).startswith("METRIC")
    assert cli.ok("wait", run_id[:8]) == f"run {run_id}: COMPLETED\n"
    assert cli.ok("describe", key).startswith(f"run {run_id}")
    # A key names its project: no -p is needed (nor may one disagree).
    bare = subprocess.run(
        [sys.executable, "-m", "asyncrun", "get", key, "--json"],
        capture_output=True, text=True, timeout=60, env=cli.env, check=False,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["id"] == run_id
    clash = Cli(cli.backend, cli.env, project="elsewhere")("get", key)
    assert clash.returncode == 2
    assert "-p says 'elsewhere'" in clash.stderr
    wrong_kind = cli("get", f"store://{cli.project}/run/command+job/{run_id}")
    assert wrong_kind.returncode == 1
    assert "is a python+job run, not command+job" in wrong_kind.stderr


def test_an_ambiguous_prefix_lists_the_runs_it_starts(cli: Cli) -> None:
    with cli.client() as client:
        for suffix in ("a1", "a2", "b1"):
            client.new_run(
                cli.project, "command+job", id=f"dup-{suffix}", spec={"command": ["true"]}
            )
    assert cli.record("dup-b")["id"] == "dup-b1"
    ambiguous = cli("get", "dup-a")
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.startswith(f"error: 'dup-a' starts 2 runs in project '{cli.project}': ")
    assert "dup-a1 (CREATED, " in ambiguous.stderr
    assert "dup-a2 (CREATED, " in ambiguous.stderr
    assert "give more of the id" in ambiguous.stderr
    assert len(ambiguous.stderr.splitlines()) == 1
    nothing_done = cli("rm", "dup-b1", "dup-a")  # every id resolves before anything is done
    assert nothing_done.returncode == 1
    assert cli.record("dup-b1")["id"] == "dup-b1"


def test_a_run_of_another_project_is_hinted(embedded_cli: Cli) -> None:
    cli = embedded_cli
    run_id = cli.ok("run", "command+job", "--", "true").strip()
    lost = Cli(cli.backend, cli.env)  # a project of its own
    missing = lost("get", run_id[:10])
    assert missing.returncode == 1
    assert missing.stderr == (
        f"error: no run {run_id[:10]!r} in project {lost.project!r} (a run starting "
        f"{run_id[:10]!r} is in project {cli.project!r}: add -p {cli.project})\n"
    )
    unknown = lost("get", "no-such-run")
    assert "name it with -p PROJECT" in unknown.stderr


def test_ls_fits_80_columns_with_short_ids_duration_and_message(cli: Cli) -> None:
    ok_id = cli.ok("run", "command+job", "--wait", "--", "true").strip()
    failing = cli("run", "command+job", "--wait", "--", "sh", "-c", f"echo {'x' * 200}; exit 3")
    assert failing.returncode == 1
    ids = [ok_id, failing.stdout.strip()]
    with cli.client() as client:
        client.new_run(cli.project, "command+job", id="a-long-custom-run-identifier-0001",
                       spec={"command": ["echo", "y" * 300]}, labels=["x" * 50])  # fmt: skip
    lines = cli.ok("ls").splitlines()
    assert lines[0].split() == ["ID", "STATE", "AGE", "DURATION", "WHAT", "MESSAGE"]
    assert all(len(line) <= 80 for line in lines), lines
    rows = {line.split()[0]: line for line in lines[2:]}
    assert len(rows) == 3
    short = {run_id: next(s for s in rows if run_id.startswith(s)) for run_id in ids}
    assert all(8 <= len(s) <= 12 for s in short.values())
    completed = rows[short[ids[0]]].split()
    assert completed[1] == "COMPLETED"
    assert re.fullmatch(r"\d+(\.\d)?s", completed[3])
    assert completed[4] == "true"
    failed = rows[short[ids[1]]]
    assert "ERROR" in failed
    assert failed.endswith("the process exited with code 3")
    custom = rows["a-long-c"]
    assert (custom.split()[1], custom.split()[3]) == ("CREATED", "-")
    assert "echo yyy" in custom
    assert custom.endswith("…")  # the long command is cut

    wide = cli.ok("ls", "--wide").splitlines()
    assert wide[0].split() == [
        "ID", "KIND", "STATE", "CREATED", "DURATION", "NAME", "LABELS", "WHAT", "MESSAGE"
    ]  # fmt: skip
    assert any(line.startswith(ids[0] + " ") for line in wide)
    assert any("y" * 300 in line for line in wide)
    assert sorted(cli.ok("ls", "-q").split()) == sorted([*ids, "a-long-custom-run-identifier-0001"])


def test_ls_json_and_get_summarise_metrics(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    summary = {
        "accuracy": {"count": 1, "last": 0.9, "min": 0.9, "max": 0.9, "single": True},
        "gappy": {"count": 4, "last": 4.0, "min": 1.0, "max": 4.0},
        "loss": {"count": 6, "last": 0.015625, "min": 0.015625, "max": 0.5},
    }
    (listed,) = [r for r in json.loads(cli.ok("ls", "--json")) if r["id"] == run_id]
    assert listed["status"]["metric_summary"] == summary
    assert "metrics" not in listed["status"]  # summaries, never the values
    assert cli.record(run_id)["status"]["metric_summary"] == summary
    got = yaml_load(cli.ok("get", run_id))["status"]
    assert got["metric_summary"] == summary
    assert "metrics" not in got
    full = json.loads(cli.ok("get", run_id, "--json", "--full-metrics"))
    assert full["status"]["metrics"]["loss"][0] == 0.5
    assert len(full["status"]["metrics"]["loss"]) == 6
    assert yaml_load(cli.ok("get", run_id, "--full-metrics"))["status"]["metrics"]["gappy"][1] == (
        "NaN"
    )


def test_describe_shows_a_run_at_a_glance(trained: tuple[Cli, str]) -> None:
    cli, run_id = trained
    out = cli.ok("describe", run_id[:8])
    lines = out.splitlines()
    assert lines[0] == f"run {run_id}"
    fields = {}
    for line in lines[1:]:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    assert fields["project"] == cli.project
    assert fields["kind"] == "python+job"
    assert fields["name"] == "trainer"
    assert fields["state"] == "COMPLETED"
    assert re.fullmatch(r"\d+(\.\d)?s \(1 execution\)", fields["duration"])
    assert fields["handler"] == "_cli_jobs:train epochs=6 lr=0.5"
    assert fields["labels"] == "cli, nightly"
    assert fields["key"] == f"store://{cli.project}/run/python+job/{run_id}"
    metrics = out.split("\nmetrics\n", 1)[1]
    assert metrics.splitlines()[0].split() == ["METRIC", "VALUES", "LAST", "MIN", "MAX"]
    assert "loss" in metrics
    logs = out.split("last 6 of 6 log lines", 1)[1].splitlines()
    assert logs[1].strip() == "epoch 0 loss 0.5000"
    assert logs[-1].strip() == "epoch 5 loss 0.0156"


def test_describe_keeps_only_the_last_ten_log_lines(embedded_cli: Cli) -> None:
    cli = embedded_cli
    run_id = cli.ok("run", "command+job", "--wait", "--", "seq", "1", "25").strip()
    out = cli.ok("describe", run_id)
    assert "metrics: none" in out
    assert "  command:   seq 1 25\n" in out
    assert "  name:      -\n" in out
    tail = out.split("last 10 of 25 log lines", 1)[1].splitlines()
    assert [line.strip() for line in tail[1:]] == [str(n) for n in range(16, 26)]


def test_rm_deletes_runs_and_refuses_running_ones_without_force(cli: Cli) -> None:
    done = cli.ok("run", "command+job", "--wait", "--", "true").strip()
    running = cli.ok("run", "command+job", "--", "sleep", "60").strip()
    assert cli.ok("rm", done[:8]) == f"deleted run {done}\n"
    gone = cli("get", done)
    assert gone.returncode == 1
    assert "no run" in gone.stderr

    refused = cli("rm", running)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: run {running} has not ended")
    assert "--force" in refused.stderr
    assert cli.record(running)["status"]["state"] in ("READY", "PENDING", "RUNNING")
    assert cli.ok("rm", "--force", running) == f"deleted run {running}\n"
    assert cli("get", running).returncode == 1
    help_text = cli.ok("rm", "--help")
    assert "no confirmation" in help_text.lower()


def test_projects_lists_the_embedded_database_projects(embedded_cli: Cli) -> None:
    cli = embedded_cli
    cli.ok("run", "command+job", "--", "true")
    cli.ok("run", "command+job", "--", "true")
    rows = {line.split()[0]: line.split() for line in cli.ok("projects").splitlines()}
    assert rows["PROJECT"][:2] == ["PROJECT", "RUNS"]
    assert rows[cli.project][1] == "2"
    names = cli.ok("projects", "-q").split()
    assert cli.project in names


def test_projects_over_http_lists_them(request: pytest.FixtureRequest) -> None:
    cli = Cli("http", backend_env(request, "http"))
    with cli.client() as client:
        client.new_run(cli.project, "test+record")
    done = cli("projects", "-q")
    assert done.returncode == 0, done.stderr
    assert cli.project in done.stdout.split()


# --- issue 14: usage, errors, logs, completion, logging ---------------------------------------


def bare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command without the test project's -p."""
    return subprocess.run(
        [sys.executable, "-m", "asyncrun", *args],
        capture_output=True, text=True, timeout=60, env=env or plain_env(), check=False,
    )  # fmt: skip


@pytest.mark.parametrize("args", [(), ("server", "token")], ids=["asyncrun", "server-token"])
def test_a_bare_group_prints_its_help_formatted(args: tuple[str, ...]) -> None:
    done = bare(*args)
    assert done.returncode == 2  # click's own behaviour for a group called with nothing
    lines = done.stderr.splitlines()
    assert lines[0] == f"Usage: asyncrun {' '.join((*args, ''))}[OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines
    assert "error:" not in done.stderr
    assert len(lines) > 10


def test_an_endpoint_without_a_scheme_suggests_http() -> None:
    for done in (
        bare("--endpoint", "localhost:8765", "ls"),
        bare("ls", env=plain_env(ASYNCRUN_ENDPOINT="localhost:8765")),
    ):
        assert done.returncode == 2
        assert "did you mean http://localhost:8765?" in done.stderr
        assert len(done.stderr.splitlines()) == 1
    ftp = bare("--endpoint", "ftp://host:8765", "ls")
    assert "did you mean http://host:8765?" in ftp.stderr


def test_a_server_on_a_taken_port_fails_before_saying_it_listens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = bare("server", "--no-auth", "--port", port, "--db", str(tmp_path / "x.sqlite3"))
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another asyncrun "
        "server?); stop what holds it or choose another --port\n"
    )


def test_a_taken_id_gets_command_line_advice(cli: Cli) -> None:
    cli.ok("run", "command+job", "--id", f"{cli.project}-x", "--", "true")
    again = cli("run", "command+job", "--id", f"{cli.project}-x", "--", "true")
    assert again.returncode == 1
    assert again.stderr.startswith(
        f"error: run '{cli.project}-x' already exists in project '{cli.project}' (choose "
        "another --id, or leave --id out"
    )
    assert "save(" not in again.stderr


def test_token_commands_never_make_a_database_by_surprise(tmp_path: Path) -> None:
    os.chdir(tmp_path)  # a relative --db, as typed from the wrong folder
    missing = bare("server", "token", "create", "--db", "runs.sqlite3", "--project", "demo")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: no database at {tmp_path / 'runs.sqlite3'} (")
    assert not (tmp_path / "runs.sqlite3").exists()
    for args in (("list",), ("revoke", "0123456789abcdef")):
        done = bare("server", "token", *args, "--db", "runs.sqlite3")
        assert done.returncode == 1
        assert "no database at" in done.stderr
    assert not (tmp_path / "runs.sqlite3").exists()
    empty = bare("server", "token", "list", env=plain_env(ASYNCRUN_HOME=str(tmp_path / "h")))
    assert empty.returncode == 1
    assert f"no database at {tmp_path / 'h' / 'asyncrun.sqlite3'} (the default" in empty.stderr

    made = bare("server", "token", "create", "--db", "runs.sqlite3", "--create", "--project", "d")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1].startswith("art_")
    listed = bare("server", "token", "list", "--db", "runs.sqlite3")
    assert listed.stdout.count("\n") == 1
    token_id = listed.stdout.split()[0]
    assert bare("server", "token", "revoke", "--db", "runs.sqlite3", token_id).returncode == 0
    none = bare("server", "token", "list", "--db", "runs.sqlite3")
    assert none.returncode == 0
    assert none.stdout == ""
    assert none.stderr.startswith(f"no tokens in {tmp_path / 'runs.sqlite3'}; create one with")


def test_logs_mark_stderr_and_where_each_execution_begins(cli: Cli) -> None:
    both = cli.ok("run", "command+job", "--wait", "--", "sh", "-c", "echo out; echo err >&2")
    run_id = both.strip()
    assert sorted(cli.ok("logs", run_id).splitlines()) == ["err", "out"]  # piped: as written
    assert sorted(cli.ok("logs", run_id, "--streams").splitlines()) == ["[err] err", "[out] out"]

    script = 'echo "start $$"; trap "echo bye >&2; exit 0" TERM; sleep 60 & wait'
    run_id = cli.ok("run", "command+job", "--", "sh", "-c", script).strip()
    wait_for(lambda: cli.ok("logs", run_id).startswith("start"), "the first execution's line")
    cli.ok("stop", "--wait", run_id)
    cli.ok("resume", run_id)
    wait_for(lambda: cli.ok("logs", run_id).count("start") == 2, "the second execution's line")
    cli.ok("stop", "--wait", run_id)
    done = cli("logs", run_id)
    assert [line.split()[0] for line in done.stdout.splitlines()] == [
        "start",
        "bye",
        "start",
        "bye",
    ]
    notes = done.stderr.splitlines()
    assert [note.split(",")[0] for note in notes] == [
        "── execution 1 of 2", "── execution 2 of 2"
    ]  # fmt: skip
    marked = cli.ok("logs", run_id, "-s").splitlines()
    assert [line.split(",")[0].split()[0:3] for line in marked] == [
        ["──", "execution", "1"], ["[out]", "start", marked[1].split()[2]], ["[err]", "bye"],
        ["──", "execution", "2"], ["[out]", "start", marked[4].split()[2]], ["[err]", "bye"],
    ]  # fmt: skip


def test_stop_wait_says_it_waits_for_the_grace_period(cli: Cli) -> None:
    run_id = cli.ok("run", "command+job", "--", "sleep", "60").strip()
    done = cli("stop", "--wait", run_id)
    assert done.returncode == 0
    assert done.stdout == f"run {run_id}: STOPPED\n"
    assert done.stderr == (
        f"waiting for run {run_id} to stop: SIGTERM was sent, SIGKILL follows after the "
        "server's grace period (asyncrun server --stop-grace, 10 s by default)\n"
    )


def test_the_follow_hint_is_never_cut_on_a_narrow_terminal(embedded_cli: Cli) -> None:
    done = embedded_cli(
        "run", "command+job", "--", "true", env={"FORCE_COLOR": "1", "COLUMNS": "40"}
    )
    run_id = done.stdout.strip()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr)
    assert f"follow it with: asyncrun -p {embedded_cli.project} logs -f {run_id}\n" in plain


def test_shell_completion_completes_run_ids(embedded_cli: Cli) -> None:
    run_id = embedded_cli.ok("run", "command+job", "--", "true").strip()
    env = {**embedded_cli.env, "_ASYNCRUN_COMPLETE": "bash_complete",
           "COMP_WORDS": f"asyncrun -p {embedded_cli.project} describe {run_id[:4]}",
           "COMP_CWORD": "4"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "asyncrun"], capture_output=True, text=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"plain,{run_id}"]
    script = embedded_cli.ok("completion", "bash")
    assert "_ASYNCRUN_COMPLETE=bash_complete" in script
    assert "asyncrun completion bash" in embedded_cli.ok("--help")


def test_the_example_prints_no_http_request_log(server: ServerProcess, tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "main_job.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120,
        env=plain_env(ASYNCRUN_ENDPOINT=server.url), cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "finished: COMPLETED" in done.stdout
    assert "HTTP Request" not in done.stdout + done.stderr
    assert "httpx" not in done.stdout + done.stderr


def test_applying_an_unchanged_export_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    run_id = cli.ok("run", "command+job", "--wait", "--", "true").splitlines()[0]
    path = cli.ok("export", run_id, "-o", str(tmp_path)).strip()
    revision = cli.record(run_id)["metadata"]["revision"]
    for _ in range(2):  # the same file twice: never a conflict with itself
        assert cli.ok("apply", "-f", path) == (
            f"run {run_id} in project {cli.project} is unchanged (revision {revision})\n"
        )
    assert cli.record(run_id)["metadata"]["revision"] == revision
