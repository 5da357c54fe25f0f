"""The commands that read runs: ls, get, describe, logs, export, metrics, projects (over
``asyncrun.Client``)."""

from __future__ import annotations

import io
import re
import sys
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .. import LogLine, Run, State, _serde
from .._core.refs import short_id_length
from .._core.states import TERMINAL
from .._core.summary import MetricSummary
from ._app import (
    F,
    client_of,
    command_hint,
    interrupted_note,
    project_option,
    resolve_project,
    settings_of,
)
from ._output import (
    STATE_STYLES,
    UNBOUNDED_WIDTH,
    finite,
    local_time,
    number,
    one_line,
    state_text,
    table,
    write_json,
)
from ._resolve import complete_run_ids, resolve_run, resolve_runs
from ._runs import LogMarks, not_started_note, stream_logs
from ._views import (
    execution_starts,
    format_age,
    format_duration,
    run_duration,
    truncate,
    what_ran,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an ISO 8601 time (local if it has no offset) or a duration ago (``2h``)."""
    if value is None:
        return None
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor a duration such as 30m, 2h or 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _take(runs: Iterator[Run], limit: int) -> list[Run]:
    """The first ``limit`` runs, and one more to tell whether there were more (0: all)."""
    taken: list[Run] = []
    for run in runs:
        taken.append(run)
        if limit and len(taken) > limit:
            break
    return taken


@click.command("ls", short_help="List runs: a table, filters, --json.")
@project_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([state.value for state in State], case_sensitive=False),
    help="Runs in this state; repeat for any of several.",
)
@click.option("--kind", metavar="KIND", help="Runs of this kind.")
@click.option("--name", metavar="NAME", help="Runs with this name.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="LABEL",
    help="Runs with this label (repeat: with all of them).",
)
@click.option(
    "--since",
    metavar="TIME",
    callback=parse_when,
    help="Created at or after TIME (ISO 8601, or ago: 30m, 2h, 7d).",
)
@click.option("--before", metavar="TIME", callback=parse_when, help="Created before TIME.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Newest runs shown; 0 shows all.",
)
@click.option(
    "--wide",
    "-w",
    is_flag=True,
    help="Every column, full ids and messages, nothing cut (one line per run).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the full ids, one per line.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the runs as a JSON array of records (metrics summarised as in `get`).",
)
@click.pass_context
def ls_command(
    ctx: click.Context,
    project: str | None,
    states: tuple[str, ...],
    kind: str | None,
    name: str | None,
    labels: tuple[str, ...],
    since: datetime | None,
    before: datetime | None,
    limit: int,
    wide: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """List the project's runs, newest first.

    The table fits the terminal (80 columns off one): ids are cut to the fewest characters
    (8 or more) that tell the listed runs apart, and any command taking an ID accepts such a
    prefix; what ran and the message are cut to fit. --wide shows everything.

    \b
    Examples:
      asyncrun ls
      asyncrun ls --state RUNNING --state READY --label nightly
      asyncrun ls --wide
      asyncrun wait $(asyncrun ls -q --state RUNNING)
      asyncrun ls --since 2h --json | jq -r '.[].id'
    """
    target = resolve_project(ctx, project)
    client = client_of(ctx)
    page = min(limit + 1, 1000) if limit else 1000
    runs = _take(
        client.list_runs(
            target,
            state=states or None,
            kind=kind,
            name=name,
            label=labels or None,
            created_after=since,
            created_before=before,
            page_size=page,
        ),
        limit,
    )
    more = bool(limit) and len(runs) > limit
    runs = runs[:limit] if limit else runs
    consoles = settings_of(ctx).consoles
    if as_json:
        # Listed records carry each metric's summary (status.metric_summary), not its values.
        write_json([_serde.to_dict(run.record) for run in runs])
    elif quiet:
        for run in runs:
            click.echo(run.id)
    elif runs:
        out = consoles.out
        if wide:
            out.print(_wide_table(runs), width=UNBOUNDED_WIDTH)
        else:
            width = max(out.width if out.is_terminal else NARROW_WIDTH, NARROW_WIDTH)
            out.print(_narrow_table(runs, width), width=width, soft_wrap=True)
    else:
        consoles.err.print(f"no runs match in project {target!r}", style="dim")
    if more:
        consoles.err.print(
            f"showing the newest {limit} runs; more match (--limit 0 shows all)", style="dim"
        )


NARROW_WIDTH = 80
"""Columns of ``ls`` off a terminal, and its least on one."""
_GAP = 2
"""Spaces between two columns of the narrow table."""
_GAP_TEXT = " " * _GAP
_LEAST_WHAT = 12


def _name(run: Run) -> str:
    return "" if run.name in (None, run.id) else run.name


def _narrow_table(runs: list[Run], width: int) -> Text:
    """ID, STATE, AGE, DURATION, WHAT (its name, else what ran), MESSAGE, within ``width``.

    Laid out here rather than by rich, so that the widths are exactly those computed.
    """
    now = datetime.now(UTC)
    length = short_id_length([run.id for run in runs])
    rows = [
        [
            run.id[:length],
            str(run.status.state),
            format_age(run.metadata.created, now),
            format_duration(run_duration(run.status.transitions, now)),
            _name(run) or what_ran(run.kind, run.spec),
            one_line(run.status.message or ""),
        ]
        for run in runs
    ]
    headers = ["ID", "STATE", "AGE", "DURATION", "WHAT", "MESSAGE"]
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    rest = width - sum(widths) - _GAP * (len(headers) - 1)
    longest_what = max(len(headers[4]), *(len(row[4]) for row in rows))
    longest_message = max(len(headers[5]), *(len(row[5]) for row in rows))
    what_width = min(longest_what, max(_LEAST_WHAT, rest - longest_message))
    widths += [what_width, max(min(rest - what_width, longest_message), len(headers[5]))]
    lines = Text(_GAP_TEXT.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines.stylize("bold")
    lines.append("\n" + "─" * (sum(widths) + _GAP * (len(widths) - 1)))
    for row in rows:
        cells = [*row[:4], truncate(row[4], widths[4]), truncate(row[5], widths[5])]
        line = Text()
        for index, (cell, cell_width) in enumerate(zip(cells, widths, strict=True)):
            if index:
                line.append(_GAP_TEXT)
            padded = cell.ljust(cell_width) if index < len(cells) - 1 else cell
            line.append(padded, style=STATE_STYLES.get(State(cell), "") if index == 1 else "")
        line.rstrip()
        lines.append("\n")
        lines.append_text(line)
    return lines


def _wide_table(runs: list[Run]) -> Table:
    """Every column, nothing cut."""
    now = datetime.now(UTC)
    result = table(
        "ID", "KIND", "STATE", "CREATED", "DURATION", "NAME", "LABELS", "WHAT", "MESSAGE"
    )
    for column in result.columns:
        column.no_wrap = True
    for run in runs:
        result.add_row(
            run.id,
            run.kind,
            state_text(run.status.state),
            local_time(run.metadata.created),
            format_duration(run_duration(run.status.transitions, now)),
            _name(run),
            ",".join(run.metadata.labels),
            what_ran(run.kind, run.spec),
            one_line(run.status.message or ""),
        )
    return result


def _id_argument(f: F) -> F:
    """The ``ID`` argument of a command on one run, completed from the project's runs."""
    return click.argument("run_id", metavar="ID", shell_complete=complete_run_ids)(f)


@click.command("get", short_help="Print a run as YAML (or --json), metrics summarised.")
@_id_argument
@project_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option(
    "--full-metrics",
    is_flag=True,
    help="Print every value of every metric (by default each list of values is summarised "
    "as count, last, min and max).",
)
@click.pass_context
def get_command(
    ctx: click.Context, run_id: str, project: str | None, as_json: bool, full_metrics: bool
) -> None:
    """Print a run's record as YAML (the format of `asyncrun export`).

    ID is the run's id, the start of it, PROJECT/ID or its store:// key. A metric holding a
    list of values is shown as {count, last, min, max}; --full-metrics prints the values
    (as `asyncrun export` writes them).

    \b
    Examples:
      asyncrun get 3f2a9c0e
      asyncrun get demo/3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b
      asyncrun -p demo get ID --json | jq .status.state
      asyncrun get ID --full-metrics --json | jq .status.metrics.loss
    """
    run = resolve_run(ctx, run_id, project, metrics=full_metrics)
    data = _serde.to_dict(run.record)
    if not full_metrics:  # status.metric_summary says what the values would
        data["status"].pop("metrics", None)
    if as_json:
        write_json(data)
        return
    stream = io.StringIO()
    _serde._yaml().dump(data, stream)
    text = stream.getvalue()
    out = settings_of(ctx).consoles.out
    if out.is_terminal and not out.no_color:
        from rich.syntax import Syntax  # loads pygments: only for a terminal

        out.print(Syntax(text, "yaml", background_color="default", word_wrap=True))
    else:
        sys.stdout.write(text)


DESCRIBE_LOG_LINES = 10


def _what_label(spec: dict[str, Any]) -> str:
    """What :func:`what_ran` shows of this spec: its command, its handler, or its kind."""
    if spec.get("command"):
        return "command"
    return "handler" if spec.get("handler") else "kind"


@click.command("describe", short_help="Show one run at a glance: state, what ran, metrics, logs.")
@_id_argument
@project_option
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(min=0),
    default=DESCRIBE_LOG_LINES,
    show_default=True,
    help="Last log lines shown.",
)
@click.pass_context
def describe_command(ctx: click.Context, run_id: str, project: str | None, lines: int) -> None:
    """Show one run at a glance: its state and message, how long it ran, what ran (command
    or handler), its labels, a summary of each metric and its last log lines.

    \b
    Examples:
      asyncrun describe 3f2a9c0e
      asyncrun -p demo describe ID -n 30
    """
    run = resolve_run(ctx, run_id, project)
    out = settings_of(ctx).consoles.out
    now = datetime.now(UTC)
    status = run.status
    starts = execution_starts(status.transitions)
    ended = next((t.time for t in status.transitions if t.state in TERMINAL), None)
    fields = Text()
    state = state_text(status.state)
    if status.message and status.message.casefold() != status.state.casefold():
        state.append(f"  {one_line(status.message)}")
    executions = f" ({len(starts)} execution{'s' if len(starts) != 1 else ''})" if starts else ""
    for key, value in (
        ("project", run.project),
        ("kind", run.kind),
        ("name", _name(run) or "-"),
        ("state", state),
        ("created", local_time(run.metadata.created)),
        ("started", local_time(starts[0]) if starts else "-"),
        ("ended", local_time(ended) if ended and status.state in TERMINAL else "-"),
        ("duration", format_duration(run_duration(status.transitions, now)) + executions),
        (_what_label(run.spec), what_ran(run.kind, run.spec)),
        ("labels", ", ".join(run.metadata.labels) or "-"),
        ("key", run.key),
    ):
        fields.append(f"\n  {key + ':':<10} ", style="bold")
        fields.append(value)
    out.print(Text(f"run {run.id}", style="bold"), fields, sep="", soft_wrap=True)
    out.print()
    if run.metric_summary:
        out.print(Text("metrics", style="bold"))
        out.print(Padding(_metrics_table(run.metric_summary), (0, 0, 0, 2), expand=False))
    else:
        out.print(Text("metrics: none", style="bold"))
    if lines:
        tail: deque[LogLine] = deque(maxlen=lines)
        count = 0
        for line in run.logs():
            tail.append(line)
            count += 1
        out.print()
        if not tail:
            out.print(Text("logs: none", style="bold"))
            return
        heading = Text(f"last {len(tail)} of {count} log lines", style="bold")
        heading.append(f"  (all: {command_hint(run.project, 'logs', run.id)})", style="dim")
        out.print(heading)
        sys.stdout.flush()
        for line in tail:
            text = Text("  " + line.text)
            if line.stream == "stderr":
                text.stylize("red")
            out.print(text, soft_wrap=True)


@click.command("logs", short_help="Print a run's logs; -f follows them.")
@_id_argument
@project_option
@click.option(
    "-f", "--follow", is_flag=True, help="Keep streaming new lines until the run has ended."
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, help="First line to print (from 0)."
)
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Print only the last N lines (with -f: then follow).",
)
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option(
    "-s",
    "--streams",
    is_flag=True,
    help="Prefix each line with its stream, [out] or [err] (also when piped).",
)
@click.pass_context
def logs_command(
    ctx: click.Context,
    run_id: str,
    project: str | None,
    follow: bool,
    offset: int,
    tail: int | None,
    timestamps: bool,
    streams: bool,
) -> None:
    """Print a run's log lines (stdout and stderr of its job, in order).

    On a terminal, stderr lines are red ([err]-prefixed when NO_COLOR is set), and a
    resumed run's log shows a line where each execution begins. Piped or redirected, stdout
    gets the job's lines only (the execution lines go to stderr), unless --streams.

    \b
    Examples:
      asyncrun logs ID
      asyncrun logs -f ID          # until the run ends; Ctrl-C leaves the run running
      asyncrun logs ID -t --offset 100 | less
      asyncrun logs -f --tail 100 ID
      asyncrun logs ID --streams | grep '^\\[err\\]'
    """
    run = resolve_run(ctx, run_id, project)
    consoles = settings_of(ctx).consoles
    out = consoles.out
    terminal = out.is_terminal
    color = terminal and not out.no_color and out.color_system is not None
    marks = LogMarks(
        color=color,
        prefix=streams or (terminal and not color),
        annotate_stdout=terminal or streams,
    )
    if follow and run.status.state is State.CREATED:
        consoles.err.print(not_started_note(run), style="dim", soft_wrap=True)
    try:
        stream_logs(
            run, follow=follow, offset=offset, tail=tail, timestamps=timestamps, marks=marks
        )
    except KeyboardInterrupt:
        interrupted_note(ctx, [run], "following its logs")


@click.command("export", short_help="Write runs to YAML files.")
@click.argument(
    "run_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_run_ids
)
@project_option
@click.option(
    "-o",
    "--output",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write to, created if needed. Default: ASYNCRUN_CONTEXT or the working "
    "directory.",
)
@click.pass_context
def export_command(
    ctx: click.Context, run_ids: tuple[str, ...], project: str | None, directory: Path | None
) -> None:
    """Write runs as YAML files (runs-<ID>.yaml, every metric value included) and print
    their paths.

    \b
    Examples:
      asyncrun export ID
      asyncrun export ID1 ID2 -o backup/
    """
    client_of(ctx, context=directory)
    for run in resolve_runs(ctx, run_ids, project, metrics=True):
        click.echo(run.export())


@click.command("metrics", short_help="Show a run's metrics; --plot KEY draws one.")
@_id_argument
@project_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--plot", "plot_key", metavar="KEY", help="Draw metric KEY's values as a chart.")
@click.option(
    "--width",
    type=click.IntRange(min=20),
    help="Chart width in columns. Default: the terminal's (at most 120), else 80.",
)
@click.option(
    "--height", type=click.IntRange(min=5), default=15, show_default=True, help="Chart rows."
)
@click.pass_context
def metrics_command(
    ctx: click.Context,
    run_id: str,
    project: str | None,
    as_json: bool,
    plot_key: str | None,
    width: int | None,
    height: int,
) -> None:
    """Show a run's metrics: count, last, min and max of each (or draw one with --plot).

    \b
    Examples:
      asyncrun metrics ID
      asyncrun metrics ID --plot loss
      asyncrun metrics ID --json | jq .loss
    """
    # The table needs only each key's summary; the values are read for --json and --plot.
    run = resolve_run(ctx, run_id, project, metrics=as_json or plot_key is not None)
    consoles = settings_of(ctx).consoles
    if as_json:
        write_json(_serde.to_dict(run.record)["status"]["metrics"])
    elif plot_key is not None:
        _plot(ctx, run, plot_key, width, height)
    elif not run.metric_summary:
        consoles.err.print(f"run {run.id} has no metrics", style="dim")
    else:
        consoles.out.print(_metrics_table(run.metric_summary))


def _metrics_table(summaries: dict[str, MetricSummary]) -> Table:
    """Count, last, min and max of each metric, by key (NaN left out of min and max)."""
    rows = table("METRIC", "VALUES", "LAST", "MIN", "MAX")
    for column in rows.columns[1:]:
        column.justify = "right"
    for key, summary in sorted(summaries.items()):
        rows.add_row(
            key,
            "single" if summary.single else str(summary.count),
            *("-" if v is None else number(v) for v in (summary.last, summary.min, summary.max)),
        )
    return rows


def _plot(ctx: click.Context, run: Run, key: str, width: int | None, height: int) -> None:
    from ._chart import render_chart

    metrics = run.metrics
    if key not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        raise click.ClickException(f"run {run.id} has no metric {key!r} (it has: {known})")
    values = metrics[key]
    if not isinstance(values, list):
        raise click.ClickException(
            f"metric {key!r} of run {run.id} is a single value ({number(values)}): nothing to plot"
        )
    if not finite(values):
        raise click.ClickException(f"metric {key!r} of run {run.id} has no finite value to plot")
    out = settings_of(ctx).consoles.out
    if width is None:
        width = min(out.width, 120) if out.is_terminal else 80
    color = out.is_terminal and not out.no_color
    title = Text(key, style="bold")
    title.append(f"  {len(values)} values", style="dim")
    out.print(title)
    sys.stdout.write(render_chart(values, width=width, height=height, color=color) + "\n")
    sys.stdout.flush()


@click.command("projects", short_help="List the projects (embedded backend).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the names, one per line.")
@click.pass_context
def projects_command(ctx: click.Context, quiet: bool) -> None:
    """List the projects that have runs, with how many and when the newest was created.

    Against a server, the projects your token covers.

    \b
    Examples:
      asyncrun projects
      for p in $(asyncrun projects -q); do asyncrun -p $p ls --state RUNNING; done
    """
    settings = settings_of(ctx)
    found = client_of(ctx).projects()
    if not found:
        where = settings.endpoint or "the embedded backend"
        settings.consoles.err.print(
            f"no projects yet on {where} (none your token covers has runs): "
            "`asyncrun run` makes one",
            style="dim",
            soft_wrap=True,
        )
        return
    if quiet:
        for info in found:
            click.echo(info.name)
        return
    rows = table("PROJECT", "RUNS", "NEWEST")
    rows.columns[1].justify = "right"
    for info in found:
        rows.add_row(info.name, str(info.runs), local_time(info.newest))
    settings.consoles.out.print(rows)
