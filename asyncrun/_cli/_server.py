"""``asyncrun server``: serve the HTTP API, and manage the server's access tokens."""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._core.auth import (
    READ,
    ROLE_HELP,
    ROLES,
    RUN,
    WRITE,
    Grant,
    check_grant,
    make_token,
    secret_hash,
)
from .._core.dburl import is_postgres, redacted
from .._core.errors import AsyncRunError, ValidationError
from ..server._procs import DEFAULT_UIDS

if TYPE_CHECKING:
    from ..server import Blocking
    from ..server._store._tokens import TokenInfo


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class _Database(click.ParamType):  # type: ignore[type-arg]
    """A SQLite file's path, or a PostgreSQL URL (kept as the string it is)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path) or is_postgres(value):
            return value
        if not str(value):
            self.fail("give a file or a postgresql:// URL", param, ctx)
        return Path(value)


_DATABASE = _Database()


def _shown(db: Path | str) -> str:
    """How a database is named in messages: a URL without its password."""
    return redacted(db) if isinstance(db, str) else str(db)


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--db",
    type=_DATABASE,
    default=None,
    envvar="ASYNCRUN_DB",
    help="SQLite database file, or PostgreSQL URL postgresql://USER:PASSWORD@HOST:PORT/DB "
    "for several replicas (created and migrated if needed). Default: asyncrun.sqlite3 under "
    "ASYNCRUN_HOME. Also ASYNCRUN_DB.",
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
    help="Serve without tokens: anyone who can connect, every local user included, may read "
    "and change every run and execute commands as the server's user. Only allowed on a "
    "loopback address.",
)
@click.option(
    "--jobs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder where each run works in a folder of its own (its default working folder). "
    "Default: 'jobs' beside the database.",
)
@click.option(
    "--job-env",
    "job_env",
    multiple=True,
    metavar="NAME",
    help="Pass this variable of the server's environment to every job (repeatable). Jobs get "
    "only PATH, HOME, LANG, LC_*, TZ and TMPDIR otherwise, plus their spec.env.",
)
@click.option(
    "--job-token-role",
    type=click.Choice([WRITE, RUN]),
    default=WRITE,
    show_default=True,
    help="Role of the token each job gets for its project: 'run' lets jobs start runs.",
)
@click.option(
    "--isolate-jobs",
    is_flag=True,
    help="Run each execution as an unprivileged user of its own (needs root): jobs cannot "
    "read the database, other jobs' environments or tokens, nor signal the server or "
    "other jobs.",
)
@click.option(
    "--job-uids",
    default=f"{DEFAULT_UIDS[0]}-{DEFAULT_UIDS[1]}",
    show_default=True,
    metavar="LOW-HIGH",
    help="The uid range of isolated jobs (with --isolate-jobs).",
)
@click.option(
    "--public-url",
    default=None,
    help="The URL jobs use to reach this server. Default: from --host, --port and TLS.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where jobs run: 'local' processes of this machine, or 'ray' jobs on a Ray cluster "
    "(with --ray-address; see the Ray guide).",
)
@click.option(
    "--ray-address",
    default=None,
    envvar="ASYNCRUN_RAY_ADDRESS",
    metavar="URL",
    help="The Ray head's dashboard, http://HOST:8265 (with --executor ray). Also "
    "ASYNCRUN_RAY_ADDRESS.",
)
@click.option(
    "--ray-python",
    default=None,
    metavar="PATH",
    help="The interpreter, on the Ray cluster, that runs each job's launcher (asyncrun "
    "installed). Default: this server's interpreter's path.",
)
@click.option(
    "--ray-lost-after",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds the Ray head may be unreachable before open runs end in ERROR (lost).",
)
@click.option(
    "--ray-working-dir",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of this machine every Ray job gets as its working folder (uploaded to the "
    "head once per content, as Ray's runtime_env working_dir): the code jobs import.",
)
@click.option(
    "--ray-entrypoint-cpus",
    default=None,
    type=click.FloatRange(min=0),
    help="CPUs Ray reserves for each job's entrypoint (default: Ray's, 0). A job waits "
    "PENDING until a node has them.",
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
    db: Path | str | None,
    max_body_bytes: int,
    stop_grace: float,
    max_log_lines: int,
    log_level: str,
    no_auth: bool,
    jobs_dir: Path | None,
    job_env: tuple[str, ...],
    job_token_role: str,
    isolate_jobs: bool,
    job_uids: str,
    public_url: str | None,
    executor: str,
    ray_address: str | None,
    ray_python: str | None,
    ray_lost_after: float,
    ray_entrypoint_cpus: float | None,
    ray_working_dir: Path | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Serve the HTTP API on HOST:PORT; every request needs a token unless --no-auth.

    \b
    Example:
      asyncrun server token create --db runs.sqlite3 --project demo --role run
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
    if isolate_jobs and os.geteuid() != 0:
        raise click.UsageError(
            "--isolate-jobs runs each job as a user of its own, which needs root: start the "
            "server as root, or without --isolate-jobs (jobs then run as your user)"
        )
    if executor == "ray" and not ray_address:
        raise click.UsageError("--executor ray needs --ray-address http://HOST:8265")
    if executor == "ray" and isolate_jobs:
        raise click.UsageError("--isolate-jobs is for local jobs; Ray runs jobs as its own user")
    uids = _uid_range(job_uids)
    listener = _bind(host, port)  # before anything says "listening": a taken port fails here
    try:
        from ..server._serve import serve
    except ImportError:
        raise click.ClickException(
            "the server needs the 'server' extra: pip install 'asyncrun[server]'"
        ) from None
    from ..server import db_path as resolve_db
    from ..server import open_service

    database: Path | str = db if isinstance(db, str) else resolve_db(db)
    shown = _shown(database)
    scheme = "https" if ssl_certfile else "http"
    try:
        service = open_service(
            database,
            stop_grace=stop_grace,
            keep_log_lines=max_log_lines,
            endpoint=public_url or job_endpoint(scheme, host, port),
            jobs_dir=jobs_dir,
            job_env=job_env,
            job_token_role=job_token_role,
            isolate=isolate_jobs,
            job_uids=uids,
            executor=executor,
            ray_address=ray_address,
            ray_python=ray_python,
            ray_lost_after=ray_lost_after,
            ray_entrypoint_cpus=ray_entrypoint_cpus,
            ray_working_dir=ray_working_dir,
        )
    except AsyncRunError as exc:  # the database cannot be reached: say which, never how
        raise click.ClickException(str(exc)) from None
    if isolate_jobs and isinstance(database, Path):
        # Isolated jobs must reach their folders under it; every file in it stays 0600.
        os.chmod(database.parent, 0o711)
    click.echo(f"asyncrun server listening on {scheme}://{_host_in_url(host)}:{port}", err=True)
    _warn_about_power(no_auth, isolate_jobs, host, port)
    if isinstance(database, str) and public_url is None:
        click.echo(
            "note: on PostgreSQL, give the replicas' common URL with --public-url: without it, "
            "jobs report to this replica only, and lose it if it stops",
            err=True,
        )
    if not no_auth:
        tokens = _user_tokens(_store(database, create=True)[0])
        click.echo(
            f"authentication is on: {len(tokens)} token(s) in {shown}; create one with "
            f"`asyncrun server token create --db {shown} --project NAME --role run`",
            err=True,
        )
        upgraded = sum(info.upgraded for info in tokens)
        if upgraded:
            click.echo(
                f"note: {upgraded} write token(s) from before the 'run' role now have it, so "
                "they can still start runs; give holders who should not a new --role write "
                "token and revoke the old one",
                err=True,
            )
    serve(
        service,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        auth=not no_auth,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        sockets=[listener],
    )


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (uvicorn listens on it).

    Raises:
        click.ClickException: if the address cannot be had, saying why and what to do.
    """
    where = f"{_host_in_url(host)}:{port}"
    # As uvicorn binds: IPv6 for an address with a colon, else IPv4 (localhost: 127.0.0.1).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections of a
    # socket that says it is TCP; with Nagle on, every answer waited 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"cannot listen on {where}: the port is in use (another asyncrun server?); "
                "stop what holds it or choose another --port"
            ) from None
        raise click.ClickException(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


def _uid_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        uids = int(low), int(high)
    except ValueError:
        uids = (0, -1)
    if not 1000 <= uids[0] <= uids[1] < 2**31:
        raise click.BadParameter(
            f"must be LOW-HIGH, two uids from 1000 up, e.g. 61184-65519; got {text!r}",
            param_hint="--job-uids",
        )
    return uids


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def job_endpoint(scheme: str, host: str, port: int) -> str:
    """The URL jobs use to reach a server bound to ``host``:``port``.

    A server bound to every address is reached on loopback; an IPv6 address is bracketed.
    """
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"{scheme}://{_host_in_url(local)}:{port}"


def _warn_about_power(no_auth: bool, isolate: bool, host: str, port: int) -> None:
    user = pwd.getpwuid(os.geteuid()).pw_name
    if no_auth:
        click.echo(
            f"authentication is OFF (--no-auth): anyone who can connect to {host}:{port}, "
            f"every local user included, may read and change every run and run commands as "
            f"{user!r}",
            err=True,
        )
    if os.geteuid() == 0 and not isolate:
        click.echo(
            "warning: this server runs as root without --isolate-jobs: every job runs as root, "
            "so a token that may start runs can do anything on this machine",
            err=True,
        )


_DB_OPTION = click.option(
    "--db",
    type=_DATABASE,
    default=None,
    envvar="ASYNCRUN_DB",
    help="The server's database (as given to `asyncrun server --db`: a SQLite file or a "
    "PostgreSQL URL). Default: asyncrun.sqlite3 under ASYNCRUN_HOME. Also ASYNCRUN_DB.",
)


def _user_tokens(call: Blocking) -> list[TokenInfo]:
    """The tokens made by ``token create`` (not the jobs' own); closes the store."""
    try:
        return [info for info in call(call.store.tokens) if info.run is None]
    finally:
        call.close()


def _store(db: Path | str | None, *, create: bool = False) -> tuple[Blocking, str]:
    """The server's database and how to show it; a missing file is an error unless ``create``.

    Raises:
        click.ClickException: if the file does not exist and may not be created, naming
            the path looked at; if a PostgreSQL database cannot be reached.
    """
    from ..server import Blocking, db_path, open_store

    if isinstance(db, str):
        try:
            return Blocking(open_store(db)), _shown(db)
        except AsyncRunError as exc:
            raise click.ClickException(str(exc)) from None
    path = db_path(db)
    if not create and not path.exists():
        given = f"--db {db}" if db is not None else "the default database (no --db)"
        raise click.ClickException(
            f"no database at {path} ({given}): give the server's database with --db "
            "(relative paths start from the current folder), or start the server on it first"
        )
    return Blocking(open_store(path)), str(path)


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
    help="; ".join(f"{role}: {what}" for role, what in ROLE_HELP.items()) + ".",
)
@click.option("--description", default=None, help="A note shown by `token list`.")
@click.option(
    "--create",
    "create_db",
    is_flag=True,
    help="Make the database if it does not exist yet (before the server's first start).",
)
def token_create(
    db: Path | str | None,
    projects: tuple[str, ...],
    role: str,
    description: str | None,
    create_db: bool,
) -> None:
    """Create a token; it is printed once, alone on the last line of stdout.

    Only its SHA-256 is stored: keep the printed token somewhere safe, and give it to the
    client side with --token, ASYNCRUN_TOKEN_FILE (a file holding it) or ASYNCRUN_TOKEN. A
    --db that does not exist is an error (a typo must not start an empty database), unless
    --create.

    \b
    Example:
      asyncrun server token create --db runs.sqlite3 --create --project demo --role run \\
          | tail -1 > demo.token
      ASYNCRUN_TOKEN_FILE=demo.token asyncrun --endpoint http://127.0.0.1:8765 -p demo ls
    """
    try:
        role, allowed = check_grant(role, list(projects))
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    call, _ = _store(db, create=create_db)
    token_id, token = make_token(secrets.token_bytes(40))
    grant = Grant(token_id, role, allowed)
    call(call.store.add_token, grant, secret_hash(token), description=description)
    call.close()
    click.echo(f"token {token_id}: {role} on {', '.join(sorted(allowed))} (shown only once)")
    click.echo(token)


@token.command("list")
@_DB_OPTION
def token_list(db: Path | str | None) -> None:
    """List tokens (ids, roles, projects; never the secrets).

    \b
    Example:
      asyncrun server token list --db runs.sqlite3
    """
    call, path = _store(db)
    tokens = _user_tokens(call)
    if not tokens:
        click.echo(
            f"no tokens in {path}; create one with `asyncrun server token create "
            f"--db {path} --project NAME --role run`",
            err=True,
        )
        return
    for info in tokens:
        created = datetime.fromtimestamp(info.created_us / 1e6, UTC).isoformat(timespec="seconds")
        projects = ",".join(sorted(info.grant.projects))
        note = info.description or ""
        if info.upgraded:
            note = f"{note} (a write token from before the run role: given it)".strip()
        click.echo(f"{info.grant.token_id}  {info.grant.role:5}  {projects}  {created}  {note}")


@token.command("revoke")
@_DB_OPTION
@click.argument("token_id")
def token_revoke(db: Path | str | None, token_id: str) -> None:
    """Revoke a token by its id (the part after ``art_``); it stops working at once.

    \b
    Example:
      asyncrun server token revoke --db runs.sqlite3 0123456789abcdef
    """
    call = _store(db)[0]
    try:
        if not call(call.store.revoke_token, token_id):
            raise click.ClickException(f"no token with id {token_id!r}")
    finally:
        call.close()
    click.echo(f"token {token_id} revoked")
