"""The commands that start and change runs: run, wait, stop, resume, rm, apply.

Each is a thin layer over the sync client (``asyncrun.Client``).
"""

from __future__ import annotations

import bisect
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
from rich.text import Text

from .. import (
    AsyncRunError,
    InvalidTransition,
    NotFound,
    RevisionConflict,
    Run,
    State,
    ValidationError,
    WaitTimeout,
    kinds,
)
from .._core.launch import STATUS_KEY
from .._core.records import Run as RunRecord
from .._core.records import did_you_mean
from .._core.states import TERMINAL
from ._app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    CliError,
    client_of,
    command_hint,
    interrupted,
    interrupted_note,
    print_error,
    project_given,
    project_option,
    resolve_project,
    settings_of,
)
from ._output import local_time, one_line, state_text
from ._resolve import complete_run_ids, resolve_runs
from ._spec import RunTemplate, assign, parse_assignments, read_template
from ._waiting import Outcome, count_line, many_runs_view, one_run_view, summary_view, wait_many

ARGV_KEY = "asyncrun.argv"
STOP_WAIT_SECONDS = 60.0
"""How long ``run --follow`` waits for a run it stopped on Ctrl-C to end."""


def _final_line(run: Run) -> Text:
    """``run ID: STATE: message``."""
    line = Text(f"run {run.id}: ")
    line.append_text(state_text(run.status.state))
    message = run.status.message
    if message and message.casefold() != run.status.state.casefold():  # not "STOPPED: stopped"
        line.append(f": {one_line(message)}")
    return line


def _exit_code(run: Run) -> int:
    return EXIT_OK if run.status.state is State.COMPLETED else EXIT_FAILED


@dataclass
class LogMarks:
    """How ``logs`` marks what is not the job's text: its streams and its executions.

    Attributes:
        color: Colour stderr lines red (a terminal with colour on).
        prefix: Prefix each line with its stream (``[out] ``, ``[err] ``).
        annotate_stdout: Print execution boundaries on stdout (a terminal, or with
            ``prefix``); else on stderr, so stdout stays exactly what the job wrote.
    """

    color: bool = False
    prefix: bool = False
    annotate_stdout: bool = False


def _boundary(number: int, total: int, start: datetime) -> str:
    return f"── execution {number} of {total}, started {local_time(start)} ──"


def stream_logs(
    run: Run,
    *,
    follow: bool,
    offset: int = 0,
    tail: int | None = None,
    timestamps: bool = False,
    marks: LogMarks | None = None,
) -> None:
    """Write the run's log lines to stdout, flushing each one while following.

    With ``marks``, stderr lines are marked, and a line tells where each execution begins
    once the run was resumed (from the run's transitions: each execution follows a move to
    READY, and every line of it was read after that).

    Raises:
        KeyboardInterrupt: on Ctrl-C, even when closing the log stream failed because of it.
    """
    out = sys.stdout
    starts = sorted(t.time for t in run.status.transitions if t.state is State.READY)
    current = 0  # the execution of the last line printed (0: none yet)
    try:
        for line in run.logs(follow=follow, offset=offset, tail=tail):
            if marks is not None and len(starts) > 1:
                execution = bisect.bisect_right(starts, line.time) or 1
                if execution != current:
                    note = _boundary(execution, len(starts), starts[execution - 1])
                    if marks.annotate_stdout:
                        out.write(f"\x1b[2m{note}\x1b[0m\n" if marks.color else note + "\n")
                    else:
                        out.flush()
                        sys.stderr.write(note + "\n")
                        sys.stderr.flush()
                    current = execution
            if timestamps:
                out.write(line.time.astimezone().isoformat(timespec="milliseconds") + " ")
            error = line.stream == "stderr"
            if marks is not None and marks.prefix:
                out.write("[err] " if error else "[out] ")
            if marks is not None and marks.color and error:
                out.write(f"\x1b[31m{line.text}\x1b[0m\n")
            else:
                out.write(line.text + "\n")
            if follow:
                out.flush()
    except RuntimeError as exc:
        if interrupted(exc):
            raise KeyboardInterrupt from exc
        raise
    out.flush()


# --- run ------------------------------------------------------------------------------------


class ArgvCommand(click.Command):
    """A command that keeps the words after ``--`` apart: they become ``spec.command``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[ARGV_KEY] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND...]"]


def _interrupted(ctx: click.Context, run: Run, stop: bool) -> NoReturn:
    """Ctrl-C while following or waiting: stop the run if asked or confirmed, exit 130."""
    err = settings_of(ctx).consoles.err
    if not stop and sys.stdin.isatty():
        try:
            stop = click.confirm(f"\nStop run {run.id}?", default=False, err=True)
        except click.Abort:  # a second Ctrl-C at the question: leave it running
            stop = False
    if stop:
        try:
            run.stop()
            err.print(f"stopping run {run.id} ...")
            run.wait(log_info=False, timeout=STOP_WAIT_SECONDS)
        except InvalidTransition:
            run.refresh()  # it ended on its own meanwhile
        except (AsyncRunError, KeyboardInterrupt):
            pass  # the stop was asked for; the final line shows how far it got
        err.print(_final_line(run))
    else:
        hint = command_hint(run.project, "stop", run.id)
        err.print(f"run {run.id} keeps running; stop it with: {hint}", soft_wrap=True)
    ctx.exit(EXIT_INTERRUPTED)


def check_runnable(kind: str, spec: dict[str, Any]) -> None:
    """Refuse an unknown kind or an invalid spec before anything is created.

    Raises:
        click.UsageError: for an unknown kind, naming the closest known one.
        click.ClickException: saying what is wrong in the spec.
    """
    try:
        known = kinds.get(kind)
    except kinds.KindLoadError as exc:
        raise click.ClickException(str(exc)) from None
    if known is None:
        names = kinds.names()
        raise click.UsageError(
            f"unknown kind {kind!r}{did_you_mean(kind, names)}; the kinds are: {', '.join(names)}"
        )
    try:
        known.validate(spec)
    except ValueError as exc:  # exit 1, as when the backend refuses it
        raise click.ClickException(f"invalid spec for {kind}: {exc}") from None


def not_started_note(run: Run) -> str:
    """What ``wait`` and ``logs -f`` say at once about a run nothing has started."""
    return (
        f"run {run.id} is CREATED: nothing has started it yet (start it with run() from "
        "Python; `asyncrun run` creates runs and starts them); waiting for it to start and "
        "end (Ctrl-C to give up)"
    )


def _merge_labels(*groups: list[str] | tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(label for group in groups for label in group))


@click.command(
    "run", cls=ArgvCommand, short_help="Start a run from flags, a YAML file or -- COMMAND."
)
@click.argument("kind", required=False)
@project_option
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_assignments,
    help="Set a spec field; repeat it. VALUE is read as YAML (0.1, true, null, [a, b]); "
    "a dotted KEY nests (parameters.lr=0.1).",
)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML run file: kind, spec, name, labels, description, project (or a file written "
    "by `asyncrun export`: it starts a new run with the same spec). Flags override it.",
)
@click.option("--name", metavar="NAME", help="Display name (default: the id).")
@click.option(
    "--id", "run_id", metavar="ID", help="The run's id (default: a new UUID); must be new."
)
@click.option("--label", "labels", multiple=True, metavar="LABEL", help="A label; repeat it.")
@click.option("--description", metavar="TEXT", help="Free text.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end; exit 0 if COMPLETED.")
@click.option(
    "--follow", is_flag=True, help="Stream the run's logs until it ends; exit 0 if COMPLETED."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="With --wait: give up after this long (exit 124; the run goes on).",
)
@click.option(
    "--stop-on-interrupt",
    is_flag=True,
    help="On Ctrl-C during --wait or --follow, stop the run without asking.",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    kind: str | None,
    project: str | None,
    assignments: list[tuple[list[str], Any]],
    file: Path | None,
    name: str | None,
    run_id: str | None,
    labels: tuple[str, ...],
    description: str | None,
    wait_: bool,
    follow: bool,
    timeout: float | None,
    stop_on_interrupt: bool,
) -> None:
    """Create a run of KIND and start it; print its id (or its logs with --follow).

    The spec comes from --set flags, from a YAML file (-f), and for command+job from the
    words after `--`, which become spec.command. On Ctrl-C during --wait or --follow the run
    is stopped if you confirm (or pass --stop-on-interrupt), and the exit code is 130.

    \b
    Kinds:
      python+job   spec: handler "module:function", parameters, env, cwd
      command+job  spec: command [argv...], env, cwd
    \b
    Examples:
      asyncrun run command+job --follow -- echo hello
      asyncrun run python+job --set handler=train:main --set cwd=$PWD \\
          --set parameters.lr=0.1 --set parameters.epochs=10 --label nightly --wait
      asyncrun run -f run.yaml --set parameters.lr=0.2
      ID=$(asyncrun run command+job -- sleep 60)
    """
    settings = settings_of(ctx)
    template = read_template(file) if file is not None else RunTemplate()
    if kind is not None and template.kind is not None and kind != template.kind:
        raise click.UsageError(f"KIND {kind!r} differs from the kind in {file}: {template.kind!r}")
    kind = kind or template.kind
    if kind is None:
        raise click.UsageError("give the run's KIND (python+job, command+job) or a run file (-f)")
    if timeout is not None and (follow or not wait_):
        raise click.UsageError("--timeout goes with --wait (without --follow)")
    spec = template.spec
    for path, value in assignments:
        assign(spec, path, value)
    argv: list[str] | None = ctx.meta.get(ARGV_KEY)
    if argv is not None:
        if not argv:
            raise click.UsageError("nothing after '--': give the command, as in -- echo hi")
        spec["command"] = argv
    check_runnable(kind, spec)  # a typo must not leave a CREATED run behind
    if project_given(ctx, project):
        target = resolve_project(ctx, project)
    else:
        target = template.project or settings.project
    client = client_of(ctx)
    run = client.new_run(
        target,
        kind,
        spec=spec,
        name=name or template.name,
        id=run_id,
        labels=_merge_labels(template.labels, labels),
        description=description if description is not None else template.description,
        user=template.user,
    )
    try:
        run.run()
    except ValidationError:
        # The backend refused to start it (a kind this command does not know of, say): the
        # run was only created to be started, so it goes.
        with contextlib.suppress(AsyncRunError):
            run.delete()
        raise
    err = settings.consoles.err
    if not (wait_ or follow):
        click.echo(run.id)
        if err.is_terminal:
            hint = command_hint(run.project, "logs", "-f", run.id)
            # soft_wrap: a narrow terminal must not cut the command to paste in two
            err.print(
                f"started {kind} run {run.id}; follow it with: {hint}", style="dim", soft_wrap=True
            )
        return
    try:
        if follow:
            err.print(
                f"run {run.id} started ({kind}, project {run.project})", style="dim", soft_wrap=True
            )
            stream_logs(run, follow=True, marks=log_marks(ctx))
            run.wait(log_info=False)
        else:
            click.echo(run.id)
            outcome = wait_for(ctx, [run], timeout)
            if outcome.timed_out:
                raise WaitTimeout(run.id)
    except KeyboardInterrupt:
        _interrupted(ctx, run, stop_on_interrupt)
    except WaitTimeout:
        print_error(f"run {run.id} did not finish within {timeout:g} s (it goes on)")
        ctx.exit(EXIT_TIMEOUT)
    err.print(_final_line(run), soft_wrap=True)
    ctx.exit(_exit_code(run))


def log_marks(ctx: click.Context, *, streams: bool = False) -> LogMarks:
    """How log lines are marked on this invocation's stdout (see :class:`LogMarks`)."""
    out = settings_of(ctx).consoles.out
    terminal = out.is_terminal
    color = terminal and not out.no_color and out.color_system is not None
    return LogMarks(
        color=color,
        prefix=streams or (terminal and not color),
        annotate_stdout=terminal or streams,
    )


def wait_for(
    ctx: click.Context,
    runs: Sequence[Run],
    timeout: float | None,
    *,
    doing: str = "waiting for",
    note: str | None = None,
) -> Outcome:
    """Wait for runs to end, showing it: a live line (one run) or a live count per state
    (several) on a terminal, else a one-line note when the wait starts.

    Args:
        ctx: The command's context.
        runs: The runs (read beforehand); each is refreshed as it ends.
        timeout: Seconds to wait at most, for all of them together.
        doing: What the live line says is going on.
        note: What the note off a terminal says (default: what is waited for and how to stop
            waiting); printed only if some run has not ended yet.

    Returns:
        The last state of each run, by id, and which did not end in time.

    Raises:
        KeyboardInterrupt: on Ctrl-C.
    """
    consoles = settings_of(ctx).consoles
    pending = [run for run in runs if run.status.state not in TERMINAL]
    live = consoles.err if consoles.err.is_terminal else None
    if pending and live is None:
        if note is None:
            if len(runs) == 1:
                what = f"run {runs[0].id} to end (now {runs[0].status.state})"
            else:
                counts = Outcome({r.id: r.status.state for r in runs}, {}, []).counts()
                what = f"{len(runs)} runs to end (now {count_line(counts)})"
            note = f"waiting for {what}; Ctrl-C stops waiting, the runs go on"
            if len(runs) == 1:
                note = note.replace("the runs go", "the run goes")
        consoles.err.print(note, style="dim", soft_wrap=True, highlight=False)
    names = {run.id: run for run in runs}
    if len(runs) == 1:
        (only,) = runs

        def view(states: Any, messages: Any, elapsed: float) -> Any:
            return one_run_view(only.id, states[only.id], messages.get(only.id), elapsed, doing)

        return wait_many(client_of(ctx), names, timeout, live, view)
    return wait_many(client_of(ctx), names, timeout, live, many_runs_view)


@click.command("wait", short_help="Wait for runs to end, showing their states.")
@click.argument(
    "run_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_run_ids
)
@project_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Give up after this long (exit 124); the runs go on.",
)
@click.pass_context
def wait_command(
    ctx: click.Context, run_ids: tuple[str, ...], project: str | None, timeout: float | None
) -> None:
    """Wait until the runs have ended; exit 0 if all COMPLETED, 1 if not, 124 on timeout.

    On a terminal a live line shows the run's state (with several runs: a count of runs per
    state); otherwise one note on stderr says what is waited for. Ctrl-C stops waiting, not
    the runs. With several runs, a table of the final counts per state is printed at the
    end, followed by the runs that did not complete.

    \b
    Examples:
      asyncrun wait ID
      asyncrun wait ID1 ID2 ID3 --timeout 600
      asyncrun wait $(asyncrun ls -q --state RUNNING)
    """
    consoles = settings_of(ctx).consoles
    runs = resolve_runs(ctx, run_ids, project)
    idle = [run.id for run in runs if run.status.state is State.CREATED]
    if len(runs) == 1 and idle:
        consoles.err.print(not_started_note(runs[0]), style="dim", soft_wrap=True)
    elif idle:
        shown = ", ".join(idle[:5]) + (f" and {len(idle) - 5} more" if len(idle) > 5 else "")
        consoles.err.print(
            f"{len(idle)} of {len(runs)} runs are CREATED: nothing has started them yet "
            f"({shown}); waiting for them to start and end (Ctrl-C to give up)",
            style="dim",
            soft_wrap=True,
        )
    try:
        outcome = wait_for(ctx, runs, timeout)
    except KeyboardInterrupt:
        interrupted_note(ctx, runs, "waiting")
    if len(runs) == 1:
        (run,) = runs
        if outcome.timed_out:
            print_error(
                f"run {run.id} did not finish within {timeout:g} s "
                f"(last seen {outcome.states[run.id]}; it goes on)"
            )
            ctx.exit(EXIT_TIMEOUT)
        consoles.out.print(_final_line(run), soft_wrap=True)
        ctx.exit(_exit_code(run))
    consoles.out.print(summary_view(outcome))
    if outcome.timed_out:
        print_error(
            f"{len(outcome.timed_out)} of {len(runs)} runs did not finish within {timeout:g} s "
            "(they go on)"
        )
        ctx.exit(EXIT_TIMEOUT)
    ctx.exit(EXIT_OK if outcome.all_completed else EXIT_FAILED)


def _act(
    ctx: click.Context,
    project: str | None,
    run_ids: tuple[str, ...],
    action: str,
    *,
    wait: bool = False,
) -> None:
    """Apply ``stop`` or ``resume`` to each run, report each, exit 1 if any failed.

    With ``wait``, wait for the runs to end before reporting them.
    """
    out = settings_of(ctx).consoles.out
    done: list[Run] = []
    failed = False
    for run in resolve_runs(ctx, run_ids, project):
        try:
            getattr(run, action)()
        except AsyncRunError as exc:
            print_error(str(exc))
            failed = True
            continue
        done.append(run)
        if not wait:
            out.print(_final_line(run), soft_wrap=True)
    if wait and done:
        which = f"run {done[0].id}" if len(done) == 1 else f"{len(done)} runs"
        note = (
            f"waiting for {which} to stop: SIGTERM was sent, SIGKILL follows after the "
            "server's grace period (asyncrun server --stop-grace, 10 s by default)"
        )
        try:
            wait_for(ctx, done, None, doing="stopping", note=note)
        except KeyboardInterrupt:
            settings_of(ctx).consoles.err.print(
                f"\nstopped waiting: the server goes on stopping {which} (SIGKILL after its "
                "grace period)",
                soft_wrap=True,
            )
            ctx.exit(EXIT_INTERRUPTED)
        for run in done:
            out.print(_final_line(run), soft_wrap=True)
    if failed:
        ctx.exit(EXIT_FAILED)


_IDS = click.argument(
    "run_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_run_ids
)


@click.command("stop", short_help="Stop runs.")
@_IDS
@project_option
@click.option(
    "--wait",
    "wait_",
    is_flag=True,
    help="Wait until the runs have ended (STOPPED), saying so while the job's grace period runs.",
)
@click.pass_context
def stop_command(
    ctx: click.Context, run_ids: tuple[str, ...], project: str | None, wait_: bool
) -> None:
    """Stop runs: SIGTERM to the job, SIGKILL after the server's grace period; STOPPED.

    Prints each run's state (STOP until the job has ended; STOPPED with --wait).

    \b
    Examples:
      asyncrun stop ID
      asyncrun stop --wait ID1 ID2
    """
    _act(ctx, project, run_ids, "stop", wait=wait_)


@click.command("resume", short_help="Start stopped runs again.")
@_IDS
@project_option
@click.pass_context
def resume_command(ctx: click.Context, run_ids: tuple[str, ...], project: str | None) -> None:
    """Start STOPPED runs again (new executions; their logs follow the old lines, and
    `asyncrun logs` shows where each execution begins).

    \b
    Examples:
      asyncrun resume ID
      asyncrun resume ID && asyncrun logs -f ID
    """
    _act(ctx, project, run_ids, "resume")


_ACTIVE = frozenset({State.BUILT, State.READY, State.PENDING, State.RUNNING, State.STOP})
"""States of a run whose job may be running: ``rm`` refuses them without --force."""


@click.command("rm", short_help="Delete runs (their records, logs and metrics).")
@_IDS
@project_option
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Also delete runs that have not ended: their jobs are killed.",
)
@click.pass_context
def rm_command(
    ctx: click.Context, run_ids: tuple[str, ...], project: str | None, force: bool
) -> None:
    """Delete runs: their records, logs and metrics; prints each full id deleted.

    No confirmation is asked, as with `kubectl delete`, `docker rm` or `mlflow runs
    delete`: what you name goes. Every ID is resolved first, so an unknown or ambiguous
    one deletes nothing. A run that has not ended (its job may be running) is refused
    unless --force, which kills its job. Export a run first to keep a copy.

    \b
    Examples:
      asyncrun rm 3f2a9c0e
      asyncrun export ID -o backup/ && asyncrun rm ID
      asyncrun rm --force $(asyncrun ls -q --state RUNNING --label scratch)
    """
    runs = resolve_runs(ctx, run_ids, project)
    if not force:
        active = [run for run in runs if run.status.state in _ACTIVE]
        if active:
            first = active[0]
            others = f" (and {len(active) - 1} more)" if len(active) > 1 else ""
            raise CliError(
                f"run {first.id} has not ended ({first.status.state}){others}: nothing was deleted",
                hint=f"stop it first ({command_hint(first.project, 'stop', '--wait', first.id)})"
                ", or pass --force to kill its job and delete it",
            )
    out = settings_of(ctx).consoles.out
    for run in runs:
        with contextlib.suppress(NotFound):  # deleted meanwhile: gone all the same
            run.delete()
        out.print(f"deleted run {run.id}", soft_wrap=True, highlight=False)


# --- export, apply --------------------------------------------------------------------------


def _owned(record: RunRecord) -> tuple[Any, ...]:
    """What an update may change in a record (see ``RunService.update``): its name, spec,
    user, metadata but for its times and revision, and status keys but the launch's."""
    metadata = attrs.evolve(record.metadata, created=None, updated=None, revision=0)
    extra = {key: value for key, value in record.status.extra.items() if key != STATUS_KEY}
    return record.kind, record.name, record.spec, record.user, metadata, extra


@click.command("apply", short_help="Create or update runs from exported files.")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A run file written by `asyncrun export`; repeat for several.",
)
@project_option
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite the stored run even if it changed since the file was exported.",
)
@click.pass_context
def apply_command(
    ctx: click.Context, files: tuple[Path, ...], project: str | None, force: bool
) -> None:
    """Create a run from an exported file, or update the run with the file's id.

    The run's id and project come from the file. A created run starts CREATED; an update
    changes what is yours in a record (name, metadata, spec, user), never its state; a file
    that changes none of it is left alone (applying it again is no conflict). An update
    refuses to overwrite a run that changed since the file was exported (its revision moved
    on), unless --force.

    \b
    Examples:
      asyncrun export ID && $EDITOR runs-ID.yaml && asyncrun apply -f runs-ID.yaml
      asyncrun --endpoint http://server:8765 apply -f backup/runs-*.yaml
    """
    client = client_of(ctx)
    out = settings_of(ctx).consoles.out
    for path in files:
        run = client.load_run(path)
        if project_given(ctx, project) and resolve_project(ctx, project) != run.project:
            raise click.UsageError(
                f"{path} holds a run of project {run.project!r}, "
                f"not {resolve_project(ctx, project)!r}"
            )
        try:
            current = client.get_run(run.project, run.id)
        except NotFound:
            run.save()
            out.print(f"created run {run.id} in project {run.project}")
            continue
        if _owned(run.record) == _owned(current.record):
            out.print(
                f"run {run.id} in project {run.project} is unchanged "
                f"(revision {current.metadata.revision})",
                soft_wrap=True,
                highlight=False,
            )
            continue
        if force:
            run.metadata.revision = current.metadata.revision
        try:
            run.save(update=True)
        except RevisionConflict:
            raise click.ClickException(
                f"run {run.id} changed since {path} was exported (revision "
                f"{run.metadata.revision}, now {current.metadata.revision}): export it again "
                "and re-apply your change, or pass --force to overwrite it"
            ) from None
        out.print(
            f"updated run {run.id} in project {run.project} (revision {run.metadata.revision})"
        )


# --- metrics --------------------------------------------------------------------------------
