"""The commands that read runs: ls, get, logs, export, metrics (over ``asyncrun.Client``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.text import Text

from .. import (
    Run,
    State,
    _serde,
)
from ._app import (
    EXIT_INTERRUPTED,
    client_of,
    project_option,
    resolve_project,
    settings_of,
)
from ._output import finite, local_time, number, state_text, table, write_json
from ._runs import not_started_note, stream_logs

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
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON array of records.")
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
    as_json: bool,
) -> None:
    """List the project's runs, newest first.

    \b
    Examples:
      asyncrun ls
      asyncrun ls --state RUNNING --state READY --label nightly
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
        write_json([_serde.to_dict(run.record) for run in runs])
    elif runs:
        rows = table("ID", "KIND", "STATE", "CREATED", "NAME", "LABELS")
        for run in runs:
            rows.add_row(
                run.id,
                run.kind,
                state_text(run.status.state),
                local_time(run.metadata.created),
                "" if run.name in (None, run.id) else run.name,
                ",".join(run.metadata.labels),
            )
        consoles.out.print(rows)
    else:
        consoles.err.print(f"no runs match in project {target!r}", style="dim")
    if more:
        consoles.err.print(
            f"showing the newest {limit} runs; more match (--limit 0 shows all)", style="dim"
        )


@click.command("get", short_help="Print a run as YAML (or --json).")
@click.argument("run_id", metavar="ID")
@project_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.pass_context
def get_command(ctx: click.Context, run_id: str, project: str | None, as_json: bool) -> None:
    """Print a run's record as YAML (the format of `asyncrun export`).

    \b
    Examples:
      asyncrun get 3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b
      asyncrun -p demo get ID --json | jq .status.state
    """
    run = client_of(ctx).get_run(resolve_project(ctx, project), run_id)
    if as_json:
        write_json(_serde.to_dict(run.record))
        return
    text = _serde.to_yaml(run.record)
    out = settings_of(ctx).consoles.out
    if out.is_terminal and not out.no_color:
        from rich.syntax import Syntax  # loads pygments: only for a terminal

        out.print(Syntax(text, "yaml", background_color="default", word_wrap=True))
    else:
        sys.stdout.write(text)


@click.command("logs", short_help="Print a run's logs; -f follows them.")
@click.argument("run_id", metavar="ID")
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
@click.pass_context
def logs_command(
    ctx: click.Context,
    run_id: str,
    project: str | None,
    follow: bool,
    offset: int,
    tail: int | None,
    timestamps: bool,
) -> None:
    """Print a run's log lines (stdout and stderr of its job, in order).

    \b
    Examples:
      asyncrun logs ID
      asyncrun logs -f ID          # until the run ends; Ctrl-C leaves the run running
      asyncrun logs ID -t --offset 100 | less
      asyncrun logs -f --tail 100 ID
    """
    run = client_of(ctx).get_run(resolve_project(ctx, project), run_id)
    if follow and run.status.state is State.CREATED:
        settings_of(ctx).consoles.err.print(not_started_note(run), style="dim")
    try:
        stream_logs(run, follow=follow, offset=offset, tail=tail, timestamps=timestamps)
    except KeyboardInterrupt:
        ctx.exit(EXIT_INTERRUPTED)


# --- wait, stop, resume ---------------------------------------------------------------------


@click.command("export", short_help="Write runs to YAML files.")
@click.argument("run_ids", metavar="ID...", nargs=-1, required=True)
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
    """Write runs as YAML files (runs-<ID>.yaml) and print their paths.

    \b
    Examples:
      asyncrun export ID
      asyncrun export ID1 ID2 -o backup/
    """
    target = resolve_project(ctx, project)
    client = client_of(ctx, context=directory)
    for run_id in dict.fromkeys(run_ids):
        click.echo(client.get_run(target, run_id).export())


@click.command("metrics", short_help="Show a run's metrics; --plot KEY draws one.")
@click.argument("run_id", metavar="ID")
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
    run = client_of(ctx).get_run(resolve_project(ctx, project), run_id)
    consoles = settings_of(ctx).consoles
    metrics = run.metrics
    if as_json:
        write_json(_serde.to_dict(run.record)["status"]["metrics"])
    elif plot_key is not None:
        _plot(ctx, run, plot_key, width, height)
    elif not metrics:
        consoles.err.print(f"run {run.id} has no metrics", style="dim")
    else:
        rows = table("METRIC", "VALUES", "LAST", "MIN", "MAX")
        for column in rows.columns[1:]:
            column.justify = "right"
        for key in sorted(metrics):
            value = metrics[key]
            if isinstance(value, list):
                count, last, usable = str(len(value)), value[-1] if value else None, finite(value)
            else:
                count, last, usable = "single", value, finite([value])
            rows.add_row(
                key,
                count,
                "-" if last is None else number(last),
                number(min(usable)) if usable else "-",
                number(max(usable)) if usable else "-",
            )
        consoles.out.print(rows)


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
