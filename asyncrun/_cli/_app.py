"""The root ``asyncrun`` group: global options, the client, and how errors reach the user."""

from __future__ import annotations

import logging
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

from .. import AsyncRunError, Client
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


class OrderedGroup(click.Group):
    """A group listing its commands in the order they were added (the order of a workflow)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


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
@click.option("--debug", is_flag=True, help="Show tracebacks and the client's debug log.")
@click.version_option(package_name="asyncrun")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint: str | None,
    token: str | None,
    project: str,
    request_timeout: float | None,
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

    Exit codes: 0 success; 1 an error, or a run that did not end COMPLETED; 2 a bad command
    line; 124 a wait that timed out; 130 interrupted (Ctrl-C).
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
    if settings.debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger = logging.getLogger("asyncrun")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


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


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``asyncrun`` console script and of ``python -m asyncrun``.

    Errors are one line on stderr, ``error: <message>``, with a non-zero exit code; the
    traceback only with ``--debug``.
    """
    settings = Settings()
    try:
        code = cli.main(
            args=list(args) if args is not None else None,
            standalone_mode=False,
            obj=settings,
        )
    except click.UsageError as exc:
        hint = None
        if exc.ctx is not None:
            hint = f"see '{exc.ctx.command_path} --help'"
        print_error(exc.format_message(), hint)
        sys.exit(exc.exit_code)
    except click.Abort:  # Ctrl-C (click has already ended the line) or an aborted prompt
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        print_error(exc.format_message())
        sys.exit(exc.exit_code)
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
