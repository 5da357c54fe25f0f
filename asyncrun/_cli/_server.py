"""``asyncrun server``: serve the HTTP API, and manage the server's access tokens."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import _config
from .._core.auth import READ, ROLES, Grant, check_grant, make_token, secret_hash
from .._core.errors import ValidationError

if TYPE_CHECKING:
    from ..server._store._sqlite import SQLiteStore


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite database file (created and migrated if needed). "
    "Default: asyncrun.sqlite3 under ASYNCRUN_HOME.",
)
@click.option(
    "--max-body-bytes",
    default=8 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Largest request body accepted; larger ones get a 413.",
)
@click.option(
    "--stop-grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between SIGTERM and SIGKILL when a run is stopped.",
)
@click.option(
    "--max-log-lines",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Log lines kept per run (the newest).",
)
@click.option("--log-level", default="warning", show_default=True, help="uvicorn log level.")
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without tokens: anyone who can connect may read and change every run. "
    "Only allowed on a loopback address.",
)
@click.option(
    "--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="TLS cert (PEM)."
)
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS key (PEM).")
@click.pass_context
def server(
    ctx: click.Context,
    host: str,
    port: int,
    db: Path | None,
    max_body_bytes: int,
    stop_grace: float,
    max_log_lines: int,
    log_level: str,
    no_auth: bool,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Serve the HTTP API on HOST:PORT; every request needs a token unless --no-auth.

    \b
    Example:
      asyncrun server token create --db runs.sqlite3 --project demo --role write
      asyncrun server --host 0.0.0.0 --port 8765 --db runs.sqlite3 \\
          --ssl-certfile cert.pem --ssl-keyfile key.pem
    """
    if ctx.invoked_subcommand is not None:
        return
    if no_auth and host not in _LOOPBACK:
        raise click.UsageError(
            f"--no-auth only binds to loopback (127.0.0.1, ::1, localhost), not {host!r}: "
            "create a token with `asyncrun server token create` instead"
        )
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise click.UsageError("TLS needs both --ssl-certfile and --ssl-keyfile")
    try:
        import uvicorn

        from ..server._app import create_app
    except ImportError:
        raise click.ClickException(
            "the server needs the 'server' extra: pip install 'asyncrun[server]'"
        ) from None
    from ..server._executor import LocalExecutor
    from ..server._service import RunService
    from ..server._store._sqlite import SQLiteStore

    db_path = (db or _config.home() / _config.DB_FILENAME).resolve()
    # Jobs reach this server on loopback when it listens on every address.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    executor = LocalExecutor(
        db_path,
        stop_grace=stop_grace,
        keep_log_lines=max_log_lines,
        endpoint=f"http://{local}:{port}",
    )
    store = SQLiteStore(db_path)
    service = RunService(store, executor)
    app = create_app(service, max_body_bytes=max_body_bytes, auth=not no_auth)
    scheme = "https" if ssl_certfile else "http"
    click.echo(f"asyncrun server listening on {scheme}://{host}:{port}", err=True)
    if no_auth:
        click.echo(
            f"authentication is OFF (--no-auth): anyone who can connect to {host}:{port} "
            "may read and change every run",
            err=True,
        )
    else:
        count = sum(info.run is None for info in store.tokens())
        click.echo(
            f"authentication is on: {count} token(s) in {db_path}; create one with "
            f"`asyncrun server token create --db {db_path} --project NAME --role write`",
            err=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


_DB_OPTION = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The server's SQLite database. Default: asyncrun.sqlite3 under ASYNCRUN_HOME.",
)


def _store(db: Path | None) -> SQLiteStore:
    from ..server._store._sqlite import SQLiteStore

    return SQLiteStore((db or _config.home() / _config.DB_FILENAME).resolve())


@server.group()
def token() -> None:
    """Create, list and revoke the server's access tokens.

    \b
    Example:
      asyncrun server token create --db runs.sqlite3 --project demo --role write
      asyncrun server token list --db runs.sqlite3
    """


@token.command("create")
@_DB_OPTION
@click.option(
    "--project",
    "projects",
    multiple=True,
    required=True,
    help="A project the token may use (repeat for several; '*' for every project).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default=READ,
    show_default=True,
    help="read: GET and waits; write: everything.",
)
@click.option("--description", default=None, help="A note shown by `token list`.")
def token_create(
    db: Path | None, projects: tuple[str, ...], role: str, description: str | None
) -> None:
    """Create a token; it is printed once, alone on the last line of stdout.

    Only its SHA-256 is stored: keep the printed token somewhere safe.

    \b
    Example:
      asyncrun server token create --db runs.sqlite3 --project demo --role write
    """
    try:
        role, allowed = check_grant(role, list(projects))
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    token_id, token = make_token(secrets.token_bytes(40))
    _store(db).add_token(
        Grant(token_id, role, allowed), secret_hash(token), description=description
    )
    click.echo(f"token {token_id}: {role} on {', '.join(sorted(allowed))} (shown only once)")
    click.echo(token)


@token.command("list")
@_DB_OPTION
def token_list(db: Path | None) -> None:
    """List tokens (ids, roles, projects; never the secrets).

    \b
    Example:
      asyncrun server token list --db runs.sqlite3
    """
    for info in _store(db).tokens():
        if info.run is None:  # a job's own token lives only as long as its run
            created = datetime.fromtimestamp(info.created_us / 1e6, UTC).isoformat(
                timespec="seconds"
            )
            projects = ",".join(sorted(info.grant.projects))
            note = info.description or ""
            click.echo(f"{info.grant.token_id}  {info.grant.role:5}  {projects}  {created}  {note}")


@token.command("revoke")
@_DB_OPTION
@click.argument("token_id")
def token_revoke(db: Path | None, token_id: str) -> None:
    """Revoke a token by its id (the part after ``art_``); it stops working at once.

    \b
    Example:
      asyncrun server token revoke --db runs.sqlite3 0123456789abcdef
    """
    if not _store(db).revoke_token(token_id):
        raise click.ClickException(f"no token with id {token_id!r}")
    click.echo(f"token {token_id} revoked")
