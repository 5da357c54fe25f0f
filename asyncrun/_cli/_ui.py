"""``asyncrun ui``: the web dashboard on the embedded backend, on loopback, behind a token.

Why a token and not ``--no-auth`` on loopback: a loopback port is open to every user of the
machine (and a web page can make a browser send requests to it), while the embedded backend's
database is a file only its owner can read. So the command makes a token of its own, 256 random
bits that live only in this process (never written to the database: it dies with the command),
prints it on the terminal, and the dashboard's sign-in form takes it. The token is never put
in a URL (no ``?token=``, no fragment): a URL lands in browser history, in the process list of
the browser being started, and in logs.
"""

from __future__ import annotations

import secrets
import socket
import threading
import webbrowser
from pathlib import Path

import click

from .._core.auth import ALL_PROJECTS, READ, RUN, Grant, make_token, secret_hash
from ._app import settings_of

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@click.command("ui")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 (default: a free one).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The SQLite database to show. Default: the embedded backend's, under ASYNCRUN_HOME.",
)
@click.option(
    "--read-only", is_flag=True, help="Give the dashboard a read token: no stop or resume."
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser; only print the address.")
@click.pass_context
def ui_command(
    ctx: click.Context, port: int, db: Path | None, read_only: bool, no_browser: bool
) -> None:
    """Open the web dashboard on the embedded backend, on 127.0.0.1 only, until Ctrl-C.

    It shows the runs of the embedded backend (the database under ASYNCRUN_HOME, or --db),
    as `asyncrun server` shows its own at /. The command makes a token that lives only as
    long as it runs and prints it alone on the last line of stdout: paste it into the
    dashboard's sign-in form (other users of this machine can reach a loopback port too).

    With --endpoint (or ASYNCRUN_ENDPOINT) it opens the dashboard of that server instead;
    sign in with your token for it.

    \b
    Example:
      asyncrun ui
      asyncrun ui --port 8770 --no-browser --read-only
    """
    endpoint = settings_of(ctx).endpoint
    if endpoint is not None:
        url = endpoint.rstrip("/") + "/"
        click.echo(f"the dashboard of {endpoint}: {url}", err=True)
        if not no_browser:
            webbrowser.open(url)
        return
    try:
        from ..server._serve import serve
    except ImportError:
        raise click.ClickException(
            "the dashboard needs the 'server' extra: pip install 'asyncrun[server]'"
        ) from None
    from ..server import db_path as resolve_db
    from ..server import open_service

    db_path = resolve_db(db)
    token_id, token = make_token(secrets.token_bytes(40))
    grant = Grant(token_id, READ if read_only else RUN, frozenset({ALL_PROJECTS}))
    # Jobs started from the dashboard are embedded ones: they write to the database directly.
    # The one token accepted is the dashboard's, which is not in the database.
    service = open_service(db_path, session_token=(grant, secret_hash(token)))
    port = port or _free_port()
    url = f"http://{HOST}:{port}/"
    click.echo(f"asyncrun dashboard of {db_path}: {url}", err=True)
    click.echo(
        f"sign in with this {grant.role} token (it works until this command ends; Ctrl-C):",
        err=True,
    )
    click.echo(token)
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, [url]).start()
    serve(service, host=HOST, port=port, max_body_bytes=8 * 1024 * 1024, auth=True)
