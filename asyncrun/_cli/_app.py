"""The root ``asyncrun`` group: global options, the client, and how errors reach the user."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console
from rich.text import Text

from .. import AlreadyExists, AsyncRunError, AuthError, Client, Forbidden, Run, _config
from ._output import Consoles, one_line

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
"""An error, or a run that ended in another state than COMPLETED."""
EXIT_USAGE = 2
"""Bad command line (click's own code)."""
EXIT_TIMEOUT = 124
"""A wait ran out of time (the code of GNU ``timeout``)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it)."""

DEFAULT_PROJECT = "default"


@dataclass
class Settings:
    """What the root group's options say, shared by every command of one invocation."""

    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)  # never shown
    project: str = DEFAULT_PROJECT
    project_on_command_line: bool = False
    request_timeout: float | None = None
    debug: bool = False
    consoles: Consoles = field(default_factory=Consoles)
    client: Client | None = None


class CliError(click.ClickException):
    """An error of a command, with a hint of what to do (printed dim, in brackets)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class OrderedGroup(click.Group):
    """A group listing its commands in the order they were added (the order of a workflow)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


_URL = re.compile(r"^https?://", re.IGNORECASE)


def check_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback of ``--endpoint``: an http:// or https:// URL, or nothing.

    Raises:
        click.BadParameter: for anything else, suggesting the URL meant.
    """
    if not value:
        return None
    if _URL.match(value):
        return value
    _, sep, rest = value.partition("://")
    if sep:
        raise click.BadParameter(
            f"{value!r} is not an http:// or https:// URL (did you mean http://{rest}?)"
        )
    raise click.BadParameter(f"{value!r} has no scheme: did you mean http://{value}?")


CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


@click.group(cls=OrderedGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--endpoint",
    envvar="ASYNCRUN_ENDPOINT",
    show_envvar=True,
    metavar="URL",
    callback=check_endpoint,
    help="URL of an `asyncrun server`. Unset: the embedded backend (a SQLite file under "
    "ASYNCRUN_HOME; nothing to start).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Bearer token for the server. Default: the content of ASYNCRUN_TOKEN_FILE, else "
    "ASYNCRUN_TOKEN (prefer those: a command line is visible to other users).",
)
@click.option(
    "--project",
    "-p",
    envvar="ASYNCRUN_PROJECT",
    show_envvar=True,
    default=DEFAULT_PROJECT,
    show_default=True,
    metavar="NAME",
    help="Project of the runs the commands address.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Seconds allowed for one HTTP request, retries included. Default: ASYNCRUN_TIMEOUT or 30.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log what the client does (state changes, retries) on stderr.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and the client's debug log.")
@click.version_option(package_name="asyncrun")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint: str | None,
    token: str | None,
    project: str,
    request_timeout: float | None,
    verbose: bool,
    debug: bool,
) -> None:
    """Run records: start runs, follow their logs, wait for them, export them.

    Talks to the embedded backend by default, or to an `asyncrun server` given by --endpoint
    or ASYNCRUN_ENDPOINT. A run is addressed by its ID within --project.

    \b
    Examples:
      asyncrun run command+job --follow -- echo hello
      asyncrun run python+job --set handler=train:main --set cwd=$PWD \\
          --set parameters.lr=0.1 --wait
      asyncrun ls --state RUNNING
      asyncrun --endpoint http://127.0.0.1:8765 -p demo wait ID1 ID2 ID3 --timeout 600

    ID: a run's id, the start of it (8 characters are usually enough, as `ls` shows them),
    PROJECT/ID, or its store:// key.

    Exit codes: 0 success; 1 an error, or a run that did not end COMPLETED; 2 a bad command
    line; 124 a wait that timed out; 130 interrupted (Ctrl-C).

    \b
    Shell completion of commands, options and run ids (or zsh, fish):
      eval "$(asyncrun completion bash)"
    """
    settings = ctx.ensure_object(Settings)
    settings.endpoint = endpoint or None
    settings.token = token or None
    settings.project = project
    settings.project_on_command_line = (
        ctx.get_parameter_source("project") is ParameterSource.COMMANDLINE
    )
    settings.request_timeout = request_timeout
    settings.debug = settings.debug or debug
    if settings.debug or verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger = logging.getLogger("asyncrun")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if settings.debug else logging.INFO)


def settings_of(ctx: click.Context) -> Settings:
    """The invocation's settings (made by the root group)."""
    return ctx.find_root().ensure_object(Settings)


def project_option(f: F) -> F:
    """``--project`` on a command: overrides the root group's ``--project``."""
    option = click.option(
        "--project",
        "-p",
        default=None,
        metavar="NAME",
        help="Project of the run (default: the global --project, ASYNCRUN_PROJECT, or "
        f"{DEFAULT_PROJECT!r}).",
    )
    return option(f)


def resolve_project(ctx: click.Context, value: str | None) -> str:
    """The project a command addresses: its own ``--project``, else the root group's."""
    return value if value is not None else settings_of(ctx).project


def project_given(ctx: click.Context, value: str | None) -> bool:
    """Whether a project was named on the command line (at the command or the root group)."""
    return value is not None or settings_of(ctx).project_on_command_line


def client_of(ctx: click.Context, *, context: Path | None = None) -> Client:
    """The invocation's client, opened on first use and closed when the command ends.

    Args:
        ctx: Any context of the invocation.
        context: Folder ``export()`` writes to (default: ASYNCRUN_CONTEXT or the working
            directory).
    """
    settings = settings_of(ctx)
    if settings.client is None:
        kwargs: dict[str, Any] = {}
        if settings.request_timeout is not None:
            kwargs["timeout"] = settings.request_timeout
        if context is not None:
            kwargs["context"] = context
        client = Client(settings.endpoint, settings.token, **kwargs)
        settings.client = ctx.find_root().with_resource(client)
    return settings.client


def command_hint(project: str, *words: str) -> str:
    """How to type a follow-up command for a run of ``project``."""
    where = () if project == DEFAULT_PROJECT else ("-p", project)
    return " ".join(("asyncrun", *where, *words))


def interrupted_note(ctx: click.Context, runs: Sequence[Run], doing: str) -> NoReturn:
    """Ctrl-C during a wait or a follow: say that the runs go on and how to stop them; 130."""
    err = settings_of(ctx).consoles.err
    if len(runs) == 1:
        (run,) = runs
        what = f"run {run.id} goes on; stop it with: {command_hint(run.project, 'stop', run.id)}"
    else:
        project = runs[0].project if runs else DEFAULT_PROJECT
        ids = " ".join(run.id for run in runs) if len(runs) <= 3 else "ID..."
        what = f"the {len(runs)} runs go on; stop them with: {command_hint(project, 'stop', ids)}"
    err.print(("\n" if err.is_terminal else "") + f"stopped {doing}: {what}", soft_wrap=True)
    ctx.exit(EXIT_INTERRUPTED)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a Ctrl-C (``KeyboardInterrupt``) was being handled.

    The sync client's iterators close their async generator in a ``finally``; when Ctrl-C
    lands while the next item is still being fetched, that close can fail ("asynchronous
    generator is already running") and the failure replaces the ``KeyboardInterrupt``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__context__
    return False


def print_error(message: str, hint: str | None = None) -> None:
    """Print ``error: <message>`` as one line on stderr (``error:`` in red on a terminal)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    line = Text.assemble(("error:", "bold red"), " ", one_line(message))
    if hint:
        line.append(f" ({hint})", style="dim")
    console.print(line)


_NO_ARGS_IS_HELP: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {})
)
"""What click (8.2 on) raises for a group called with nothing: its help is the message."""

_TOKEN_SOURCES = "--token TOKEN, or set ASYNCRUN_TOKEN_FILE (a file holding it) or ASYNCRUN_TOKEN"


def _token_source(settings: Settings) -> str | None:
    if settings.token:
        return "--token"
    if _config.token():
        return "ASYNCRUN_TOKEN_FILE" if _config.token_file() else "ASYNCRUN_TOKEN"
    return None


def auth_advice(exc: AuthError, settings: Settings) -> tuple[str, str]:
    """What a refused token means on the command line, and what to do: (message, hint)."""
    where = settings.endpoint or "the server"
    if isinstance(exc, Forbidden):
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        project = detail.get("project", settings.project)
        return exc.message, f"use a token for {project!r} that may do this: pass {_TOKEN_SOURCES}"
    source = _token_source(settings)
    make = "the server's admin makes one with `asyncrun server token create`"
    if source is None:
        return f"{where} needs a token: pass {_TOKEN_SOURCES}", make
    return (
        f"{where} refused the token from {source} (unknown, revoked or mistyped)",
        f"check it, or get a new one: {make}",
    )


def duplicate_advice(exc: AlreadyExists) -> tuple[str, str]:
    """The command line's words for a run id that is taken: (message, hint)."""
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    run_id, project = detail.get("id"), detail.get("project")
    what = (
        f"run {run_id!r} already exists in project {project!r}"
        if run_id and project
        else exc.message.split(";")[0]
    )
    return (
        what,
        "choose another --id, or leave --id out for a new one; to change the stored run, "
        "`asyncrun export ID`, edit the file, then `asyncrun apply -f FILE`",
    )


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``asyncrun`` console script and of ``python -m asyncrun``.

    Errors are one line on stderr, ``error: <message>``, with a non-zero exit code; the
    traceback only with ``--debug``.
    """
    settings = Settings()
    try:
        code = cli.main(
            args=list(args) if args is not None else None,
            prog_name="asyncrun",
            standalone_mode=False,
            obj=settings,
        )
    except _NO_ARGS_IS_HELP as exc:  # a bare group: its help, as click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = None
        if exc.ctx is not None:
            hint = f"see '{exc.ctx.command_path} --help'"
        print_error(exc.format_message(), hint)
        sys.exit(exc.exit_code)
    except click.Abort:  # Ctrl-C (click has already ended the line) or an aborted prompt
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if settings.debug and isinstance(exc, CliError):
            traceback.print_exc()
        print_error(exc.format_message(), getattr(exc, "hint", None))
        sys.exit(exc.exit_code)
    except AuthError as exc:
        if settings.debug:
            traceback.print_exc()
        print_error(*auth_advice(exc, settings))
        sys.exit(EXIT_FAILED)
    except AlreadyExists as exc:
        if settings.debug:
            traceback.print_exc()
        print_error(*duplicate_advice(exc))
        sys.exit(EXIT_FAILED)
    except (AsyncRunError, OSError) as exc:
        if settings.debug:
            traceback.print_exc()
        print_error(str(exc) or type(exc).__name__)
        sys.exit(EXIT_FAILED)
    except Exception as exc:
        if interrupted(exc):
            sys.exit(EXIT_INTERRUPTED)
        if settings.debug:
            traceback.print_exc()
            print_error(f"{type(exc).__name__}: {exc}")
        else:
            print_error(
                f"unexpected {type(exc).__name__}: {exc}",
                "this is a bug; rerun with --debug to see the traceback",
            )
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
