"""Parts of the ``asyncrun`` command checked in-process: ``--set`` values, the wait display's
rendering with many runs, the chart, and that every command's help has an example."""

from __future__ import annotations

import io
import math
from collections import Counter
from importlib.metadata import entry_points
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from asyncrun import State
from asyncrun._cli import cli, main
from asyncrun._cli._chart import render_chart, x_ticks
from asyncrun._cli._spec import assign, parse_assignment, parse_value
from asyncrun._cli._waiting import Outcome, progress_view, summary_view


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", 0.1),
        ("10", 10),
        ("-3", -3),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ("~", None),
        ("yes", "yes"),  # YAML 1.2: not a bool
        ("pkg.mod:train", "pkg.mod:train"),
        ('"12"', "12"),
        ("'true'", "true"),
        ("[echo, hi]", ["echo", "hi"]),
        ("{a: 1, b: [x]}", {"a": 1, "b": ["x"]}),
        ("a: b", "a: b"),  # only a flow mapping is a mapping
        ("- x", "- x"),
        ("#hashtag", "#hashtag"),
        ("2024-01-01", "2024-01-01"),  # no dates: JSON has none
        ("[2024-01-01]", "[2024-01-01]"),
        ("", ""),
        ("  spaced out ", "spaced out"),
        ("12:30", "12:30"),
    ],
)
def test_set_values_are_yaml_scalars(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", str(2**64)])
def test_set_refuses_numbers_json_cannot_carry(text: str) -> None:
    with pytest.raises(click.BadParameter, match="quote it"):
        parse_value(text)


def test_set_dotted_keys_nest() -> None:
    spec: dict[str, Any] = {"parameters": {"epochs": 3}, "cwd": "/x"}
    for item in ("parameters.lr=0.1", "env.A=1", "parameters.epochs=4", "command=[a, b]"):
        assign(spec, *parse_assignment(item))
    assert spec == {
        "parameters": {"epochs": 4, "lr": 0.1},
        "cwd": "/x",
        "env": {"A": 1},
        "command": ["a", "b"],
    }
    with pytest.raises(click.BadParameter, match=r"cwd holds '/x', not a mapping"):
        assign(spec, *parse_assignment("cwd.deeper=1"))
    for bad in ("novalue", "=1", "a..b=1", ".a=1"):
        with pytest.raises(click.BadParameter, match="not KEY=VALUE"):
            parse_assignment(bad)
    assert parse_assignment("msg=a=b") == (["msg"], "a=b")


def render(renderable: Any, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines())


def test_the_live_display_with_many_runs() -> None:
    counts = Counter(
        {
            State.READY: 50,
            State.RUNNING: 200,
            State.COMPLETED: 700,
            State.ERROR: 45,
            State.STOPPED: 5,
        }
    )
    text = render(progress_view(counts, 1000, 75.0))
    first, second = text.splitlines()
    assert "waiting for 1000 runs" in first
    assert "750/1000 finished" in first
    assert first.endswith("1:15")
    assert second == "READY 50  RUNNING 200  COMPLETED 700  ERROR 45  STOPPED 5"


def test_the_final_summary_with_many_runs() -> None:
    states = {f"run-{i:04d}": State.COMPLETED for i in range(970)}
    states |= {f"bad-{i:02d}": State.ERROR for i in range(25)}
    states |= {f"slow-{i}": State.RUNNING for i in range(5)}
    outcome = Outcome(
        states=states,
        messages={f"bad-{i:02d}": "the process exited with code 1" for i in range(25)},
        timed_out=[f"slow-{i}" for i in range(5)],
    )
    lines = render(summary_view(outcome)).splitlines()
    assert lines[:6] == [
        "STATE       RUNS",
        "────────────────",
        "RUNNING        5",
        "COMPLETED    970",
        "ERROR         25",
        "────────────────",
    ]
    assert lines[6] == "total       1000"
    assert lines[8].split() == ["ID", "STATE", "MESSAGE"]
    assert lines[10].split() == ["bad-00", "ERROR", "the", "process", "exited", "with", "code", "1"]
    assert len(lines) == 10 + 20 + 1  # 20 failures listed, then the rest counted
    assert lines[-1] == "... and 10 more"
    assert not outcome.all_completed
    assert outcome.counts()[State.COMPLETED] == 970


def test_the_chart_is_plain_text_without_colour() -> None:
    values = [1 / (step + 1) for step in range(50)] + [math.nan]
    chart = render_chart(values, width=60, height=10, color=False).splitlines()
    assert len(chart) == 10
    assert max(len(line) for line in chart) <= 60
    assert "\x1b" not in "".join(chart)
    assert chart[-1].split() == ["1", "10", "20", "30", "40", "50"]
    assert "\x1b[" in render_chart(values, width=60, height=10, color=True)
    assert x_ticks(1) == [1]
    assert x_ticks(7) == [1, 2, 3, 4, 5, 6, 7]
    assert x_ticks(12) == [2, 4, 6, 8, 10, 12]
    assert x_ticks(1000) == [1, 200, 400, 600, 800, 1000]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", commands(cli), ids=lambda p: " ".join(p) or "asyncrun")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "asyncrun " in result.output.split("Example", 1)[1]


def test_the_console_script_is_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "asyncrun"]
    assert script.load() is main


# --- issue 14: run references, listings, summaries ---------------------------------------------


def test_run_references_in_every_printed_form() -> None:
    from asyncrun import ValidationError
    from asyncrun._core.refs import RunRef, parse_run_ref

    assert parse_run_ref("80643d7e") == RunRef("80643d7e")
    assert parse_run_ref(" demo/80643d7e ") == RunRef("80643d7e", "demo")
    assert parse_run_ref("store://demo/run/python+job/80643d7e") == RunRef(
        "80643d7e", "demo", "python+job"
    )
    for bad in ("", "a/b/c", "store://demo/runs/x/y", "store://demo/run/x", "../x", "demo/"):
        with pytest.raises(ValidationError, match="names no run: give an ID, the start of one"):
            parse_run_ref(bad)


def test_prefixes_match_and_short_ids_stay_distinct() -> None:
    from asyncrun._core.refs import matching_ids, short_id_length

    ids = ["abc123", "abc124", "abd", "x"]
    assert matching_ids("abc", ids) == ["abc123", "abc124"]
    assert matching_ids("abd", ids) == ["abd"]
    assert matching_ids("abc123", [*ids, "abc1234"]) == ["abc123"]  # an exact id wins
    assert matching_ids("zz", ids) == []
    assert short_id_length(["0" * 32, "1" * 32]) == 8
    assert short_id_length(["0123456789ab" + "0" * 20, "0123456789ab" + "1" * 20]) == 13
    assert short_id_length(["run", "run-2"]) == 8
    assert short_id_length([]) == 8


def test_durations_sum_the_running_intervals() -> None:
    from datetime import UTC, datetime, timedelta

    from asyncrun import Transition
    from asyncrun._cli._views import execution_starts, format_duration, run_duration

    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def at(seconds: float, state: State) -> Transition:
        return Transition(state, t0 + timedelta(seconds=seconds))

    resumed = [  # newest first, as records keep them
        at(400, State.COMPLETED), at(300, State.RUNNING), at(299, State.READY),
        at(100, State.STOPPED), at(90, State.STOP), at(10, State.RUNNING), at(0, State.READY),
    ]  # fmt: skip
    assert run_duration(resumed, t0) == timedelta(seconds=180)
    assert execution_starts(resumed) == [t0 + timedelta(seconds=10), t0 + timedelta(seconds=300)]
    running = [at(10, State.RUNNING), at(0, State.READY)]
    assert run_duration(running, t0 + timedelta(seconds=70)) == timedelta(seconds=60)
    assert run_duration([at(0, State.CREATED)], t0) is None
    assert [format_duration(timedelta(seconds=s)) for s in (0.42, 12, 185, 7620, 273600)] == [
        "0.4s",
        "12s",
        "3m05s",
        "2h07m",
        "3d04h",
    ]
    assert format_duration(None) == "-"


def test_what_ran() -> None:
    from asyncrun._cli._views import truncate, what_ran

    assert what_ran("command+job", {"command": ["sh", "-c", "echo hi"]}) == "sh -c 'echo hi'"
    assert what_ran("python+job", {"handler": "m:f", "parameters": {"lr": 0.1}}) == "m:f lr=0.1"
    assert what_ran("python+job", {"handler": "m:f"}) == "m:f"
    assert what_ran("other+kind", {}) == "other+kind"
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("abcdefghijkl", 5) == "abcd…"


def test_the_servers_socket_says_it_is_tcp_so_asyncio_turns_nagle_off() -> None:
    # With proto 0, asyncio leaves Nagle on for accepted connections and every answer of
    # `asyncrun server` waited ~40 ms for a delayed ACK (found by nox -s bench_growth).
    import socket

    from asyncrun._cli._server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
