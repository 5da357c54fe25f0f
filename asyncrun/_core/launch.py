"""How a job is launched: its folder, interpreter, user and environment, decided at start.

A job's environment is **built, never inherited** from whichever process happens to run the
agent: a small documented base (:data:`BASE_ENV`), then variables the operator passes through
by name, then the run's ``spec.env``, then asyncrun's own variables (which nothing overrides).

The launch is decided when ``run()`` or ``resume()`` is called and stored with the execution:

- on the embedded backend, from the process that called ``run()``: its working folder, its
  interpreter, its umask and its values of the base variables;
- on a server, from the server's configuration: a folder of the run's own inside the jobs
  folder, the server's interpreter and its values of the base and pass-through variables.

Records show :func:`public` of it (``status.launch``): the base values and the names, never the
values, of pass-through variables, which may be secrets.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

STATUS_KEY: Final = "launch"
"""The status key where a run shows how its latest execution was launched."""
BASE_ENV: Final = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""Variables every job gets from the launching side, if set there (and every ``LC_*``)."""
_BASE_PREFIX: Final = "LC_"
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
"""PATH of a job when the launching side has none."""


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The base variables of ``environ`` (:data:`BASE_ENV` and ``LC_*``)."""
    env = {
        name: value
        for name, value in environ.items()
        if name in BASE_ENV or name.startswith(_BASE_PREFIX)
    }
    env.setdefault("PATH", DEFAULT_PATH)
    return env


@attrs.frozen
class Launch:
    """What one execution starts with, decided when it was asked for.

    Attributes:
        python: The interpreter of ``python+job`` runs.
        env: Base variables (see :func:`base_env`).
        passed: Variables the operator passes through by name (values never shown).
        umask: File mode mask of the job.
        cwd: The default working folder; ``None`` on a server: the run's folder in
            ``jobs_dir``.
        jobs_dir: A server's jobs folder (``None`` on the embedded backend).
        endpoint: URL jobs use to reach the server, with a token of role ``token_role``;
            ``None`` on the embedded backend, whose jobs open the database itself.
        token_role: Role of the job's own token.
        isolate: Run the job as an unprivileged user of its own.
    """

    python: str
    env: Mapping[str, str]
    passed: Mapping[str, str] = attrs.Factory(dict)
    umask: int = 0o022
    cwd: str | None = None
    jobs_dir: str | None = None
    endpoint: str | None = None
    token_role: str = "write"
    isolate: bool = False


def capture(
    environ: Mapping[str, str],
    python: str,
    *,
    passthrough: Iterable[str] = (),
    **config: Any,
) -> Launch:
    """A :class:`Launch` from the launching side's environment and configuration.

    Args:
        environ: The launching side's environment.
        python: Its interpreter.
        passthrough: Names of variables the operator passes to every job (those unset in
            ``environ`` are left out).
        **config: The other fields of :class:`Launch`.
    """
    passed = {name: environ[name] for name in passthrough if name in environ}
    return Launch(python, base_env(environ), passed, **config)


def job_cwd(launch: Launch, spec_cwd: str | None, run_dir: str | None) -> str:
    """The folder a job starts in: ``spec.cwd`` (relative to the default), else the default.

    The default is the launching side's folder (embedded) or the run's folder (server).
    """
    default = launch.cwd or run_dir or "/"
    if not spec_cwd:
        return default
    return posixpath.normpath(posixpath.join(default, spec_cwd))


def job_env(launch: Launch, spec_env: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """A job's environment: base, then pass-through, then ``spec.env``, then asyncrun's own."""
    return {**launch.env, **launch.passed, **spec_env, **own}


def public(launch: Launch, cwd: str, user: str | None = None) -> dict[str, Any]:
    """What a run record shows of its launch (``status.launch``)."""
    shown: dict[str, Any] = {"cwd": cwd, "python": launch.python, "env": dict(launch.env)}
    if launch.passed:
        shown["env_passed"] = sorted(launch.passed)  # names only: values may be secrets
    if user is not None:
        shown["user"] = user
    return shown


def to_data(launch: Launch) -> dict[str, Any]:
    """``launch`` as JSON-able data, for the store."""
    return attrs.asdict(launch)


def from_data(data: Mapping[str, Any]) -> Launch:
    """The :class:`Launch` stored as ``data`` (unknown keys ignored)."""
    fields = {f.name for f in attrs.fields(Launch)}
    return Launch(**{key: value for key, value in data.items() if key in fields})
