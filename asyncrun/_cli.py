"""The ``asyncrun`` command. Only ``server`` exists yet; the full CLI is a later issue."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import _config


@click.group()
@click.version_option(package_name="asyncrun")
def cli() -> None:
    """Run records: create, run, watch and export them."""


@cli.command()
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
def server(
    host: str,
    port: int,
    db: Path | None,
    max_body_bytes: int,
    stop_grace: float,
    max_log_lines: int,
    log_level: str,
) -> None:
    """Serve the HTTP API on HOST:PORT.

    Example: asyncrun server --host 127.0.0.1 --port 8765 --db runs.sqlite3
    """
    try:
        import uvicorn

        from .server._app import create_app
    except ImportError:
        raise click.ClickException(
            "the server needs the 'server' extra: pip install 'asyncrun[server]'"
        ) from None
    from .server._executor import LocalExecutor
    from .server._service import RunService
    from .server._store._sqlite import SQLiteStore

    db_path = (db or _config.home() / _config.DB_FILENAME).resolve()
    # Jobs reach this server on loopback when it listens on every address.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    executor = LocalExecutor(
        db_path,
        stop_grace=stop_grace,
        keep_log_lines=max_log_lines,
        endpoint=f"http://{local}:{port}",
    )
    service = RunService(SQLiteStore(db_path), executor)
    app = create_app(service, max_body_bytes=max_body_bytes)
    click.echo(f"asyncrun server listening on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")


def main() -> None:
    """Entry point of the ``asyncrun`` console script."""
    sys.exit(cli())
