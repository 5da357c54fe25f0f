"""Settings read from the environment, in one place.

| variable | meaning | default |
|---|---|---|
| ``ASYNCRUN_ENDPOINT`` | URL of an ``asyncrun server`` | unset: the embedded backend |
| ``ASYNCRUN_TOKEN`` | bearer token sent to the server | unset |
| ``ASYNCRUN_TOKEN_FILE`` | file holding the token, re-read when the server refuses it | unset |
| ``ASYNCRUN_HOME`` | folder of the embedded backend's database | the user data dir |
| ``ASYNCRUN_CONTEXT`` | folder where ``export()`` writes | the working directory |
| ``ASYNCRUN_TIMEOUT`` | seconds allowed for one HTTP request | 30 |
| ``ASYNCRUN_EXIT_FLUSH_TIMEOUT`` | seconds the final metric flush may take at close/exit | 10 |
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DB_FILENAME = "asyncrun.sqlite3"


def endpoint() -> str | None:
    """The configured server URL, or ``None`` for the embedded backend."""
    return os.environ.get("ASYNCRUN_ENDPOINT") or None


def token_file() -> Path | None:
    """The file ``ASYNCRUN_TOKEN_FILE`` names, if set (it holds the token)."""
    path = os.environ.get("ASYNCRUN_TOKEN_FILE")
    return Path(path) if path else None


def token() -> str | None:
    """The bearer token: ``ASYNCRUN_TOKEN_FILE``'s content, else ``ASYNCRUN_TOKEN``, if any.

    Read again whenever the server answers 401, so a rotated token is picked up without a
    restart.
    """
    path = token_file()
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None  # a file being replaced; the request goes without and fails 401
    return os.environ.get("ASYNCRUN_TOKEN") or None


def home() -> Path:
    """The folder holding the embedded backend's database."""
    configured = os.environ.get("ASYNCRUN_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("asyncrun"))


def context() -> Path:
    """The folder ``export()`` writes to."""
    return Path(os.environ.get("ASYNCRUN_CONTEXT") or Path.cwd())


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = default if raw is None else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def timeout() -> float:
    """Seconds allowed for one HTTP request."""
    return _seconds("ASYNCRUN_TIMEOUT", 30.0)


def exit_flush_timeout() -> float:
    """Seconds the final metric flush may take when a client closes or the process exits."""
    return _seconds("ASYNCRUN_EXIT_FLUSH_TIMEOUT", 10.0)
