"""Where the database is and how store, executor and service are put together: in one place.

The embedded client, ``asyncrun server``, ``asyncrun ui`` and ``asyncrun server token`` all
open their backend through :func:`open_service` or :func:`open_store`, and find the default
database through :func:`default_db_path`, so they agree on which file that is.

The heavy modules are imported when a function is called, so ``import asyncrun.server`` stays
cheap for the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _config
from .._core.auth import WRITE, Grant
from .._core.dburl import is_postgres
from ._procs import DEFAULT_UIDS

if TYPE_CHECKING:
    from ._service import RunService
    from ._store._sqlstore import SQLStore


def default_db_path(home: str | Path | None = None) -> Path:
    """The embedded backend's database file (absolute; it may not exist yet).

    Args:
        home: The folder holding it; defaults to ``ASYNCRUN_HOME`` or the user data folder.
    """
    folder = Path(home) if home is not None else _config.home()
    return (folder / _config.DB_FILENAME).resolve()


def db_path(db: str | Path | None = None) -> Path:
    """``db`` made absolute, or :func:`default_db_path` when ``None``."""
    return Path(db).resolve() if db is not None else default_db_path()


def open_store(db: str | Path | None = None) -> SQLStore:
    """Open (creating and migrating if needed) the store in ``db`` or the default database.

    Its methods are async; synchronous code calls them through :class:`Blocking`.

    Args:
        db: A SQLite file, or a PostgreSQL URL (``postgresql://user:password@host:port/db``).

    Raises:
        StoreUnavailable: if a PostgreSQL database cannot be reached (the message shows the
            URL without its password).
    """
    if is_postgres(db):
        from ._store._postgres import open_postgres

        return open_postgres(str(db))
    from ._store._sqlite import open_sqlite

    return open_sqlite(db_path(db))


def open_service(
    db: str | Path | None = None,
    *,
    stop_grace: float = 10.0,
    keep_log_lines: int = 100_000,
    endpoint: str | None = None,
    jobs_dir: Path | None = None,
    job_env: Sequence[str] = (),
    job_token_role: str = WRITE,
    isolate: bool = False,
    job_uids: tuple[int, int] = DEFAULT_UIDS,
    session_token: tuple[Grant, bytes] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_python: str | None = None,
    ray_lost_after: float = 60.0,
    ray_entrypoint_cpus: float | None = None,
    ray_working_dir: Path | None = None,
) -> RunService:
    """The service on the store in ``db`` (default: :func:`default_db_path`), with jobs.

    Jobs run through the database's agent (a detached process that outlives the caller). On
    PostgreSQL, several services (server replicas) share the database, each with its agent.

    Args:
        db: The database file, or a PostgreSQL URL (a server's only: with ``endpoint``);
            created and migrated if needed.
        stop_grace: Seconds between SIGTERM and SIGKILL when a run is stopped.
        keep_log_lines: Lines of log kept per run (the newest).
        endpoint: URL jobs use to reach a server; ``None`` for the embedded backend, whose
            jobs open the database itself and start where the caller of ``run()`` is.
        jobs_dir: A server's jobs folder (with ``endpoint``); default ``jobs`` next to ``db``
            (on PostgreSQL: under ``ASYNCRUN_HOME``). Its agent's lock is there too.
        job_env: Names of the server's environment variables passed to every job.
        job_token_role: Role of the token each job of a server gets.
        isolate: Run each execution as an unprivileged user of its own (needs root).
        job_uids: The uid range isolated jobs use.
        session_token: ``(grant, secret digest)`` of the only token the service accepts,
            instead of the stored ones (``asyncrun ui``'s, which is never stored).
        executor: ``local`` (the agent's processes) or ``ray`` (a Ray cluster, through the
            Ray agent: a server's only, with ``endpoint`` and ``ray_address``).
        ray_address: The Ray head's dashboard address, ``http://HOST:8265``.
        ray_python: The interpreter the cluster runs the launcher with (default: this one).
        ray_lost_after: Seconds the Ray head may be unreachable before open runs end as lost.
        ray_entrypoint_cpus: CPUs Ray reserves for each job's entrypoint (``None``: Ray's 0).
        ray_working_dir: A folder every Ray job gets as its working folder (uploaded).

    Returns:
        The service; ``aclose()`` releases the store.

    Raises:
        ValueError: for a PostgreSQL URL without ``endpoint`` (the embedded backend is SQLite).
        StoreUnavailable: if a PostgreSQL database cannot be reached.
    """
    from ._executor import LocalExecutor, RayAgentExecutor
    from ._service import RunService

    if executor not in ("local", "ray"):
        raise ValueError(f"the executor is 'local' or 'ray', not {executor!r}")
    if executor == "ray" and (endpoint is None or not ray_address):
        raise ValueError("the Ray executor is a server's (an endpoint) and needs a Ray address")

    if is_postgres(db):
        if endpoint is None:
            raise ValueError(
                "a PostgreSQL database is served by `asyncrun server --db URL`; the embedded "
                "backend keeps its runs in a SQLite file"
            )
        store = open_store(db)
        jobs_dir = (jobs_dir or _config.home() / "jobs").resolve()
        jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        url: str | None = str(db)
        path: Path | None = None
        lock: Path | None = jobs_dir / "agent.lock"
    else:
        path = db_path(db)
        store = open_store(path)  # first: it creates the database's folder, private
        if endpoint is not None:
            jobs_dir = (jobs_dir or path.with_name("jobs")).resolve()
        url = lock = None
    options: dict[str, Any] = {
        "stop_grace": stop_grace,
        "keep_log_lines": keep_log_lines,
        "endpoint": endpoint,
        "jobs_dir": jobs_dir,
        "job_env": job_env,
        "job_token_role": job_token_role,
        "isolate": isolate,
        "job_uids": job_uids,
    }
    jobs: LocalExecutor
    if executor == "ray":
        assert jobs_dir is not None
        assert ray_address is not None
        jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        jobs = RayAgentExecutor(
            path,
            url=url,
            lock=jobs_dir / "ray-agent.lock",
            ray_address=ray_address,
            python=ray_python,
            lost_after=ray_lost_after,
            entrypoint_cpus=ray_entrypoint_cpus,
            working_dir=ray_working_dir,
            **options,
        )
    else:
        jobs = LocalExecutor(path, url=url, lock=lock, **options)
    return RunService(store, jobs, session_token=session_token)
