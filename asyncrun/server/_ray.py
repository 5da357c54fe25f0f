"""The engine of the Ray executor: Ray's Jobs REST API, spoken with a sync httpx client.

asyncrun never imports ``ray``: a Ray cluster is driven through the HTTP API its head's
dashboard serves (port 8265 by default), the same one ``ray job submit`` uses. Everything here
is synchronous and bounded (a timeout on every request, a size bound on every answer), so the
agent's ``selectors`` loop can call it between two looks at its store.

What Ray 2.60's API does, measured against a real head (``tests/ray``), and what follows here:

- ``POST /api/jobs/`` with a ``submission_id`` Ray already has answers **500** with a Python
  traceback that says ``Job with submission_id ... already exists``. :meth:`RayJobs.submit`
  recognises that answer and returns ``False``: submitting again after a lost answer is safe.
- ``GET``/``DELETE /api/jobs/{id}``, ``POST .../stop`` and ``GET .../logs`` answer **404** with
  ``Job ... does not exist`` for an id Ray does not know (never submitted, deleted, or forgotten
  by a head that restarted without persistent storage). Here that is ``None``/``False``, never
  an error: a job missing while asyncrun believes it open is *lost* (:func:`to_outcome`).
- ``POST .../stop`` answers ``{"stopped": bool}``: whether a supervisor was still there to
  stop. Stopping is asynchronous: the job's processes get SIGTERM, then SIGKILL after
  ``RAY_JOB_STOP_WAIT_TIME_S`` seconds (3 by default), read from the environment of the job's
  supervisor, which ``runtime_env["env_vars"]`` sets: :func:`with_stop_grace` sets it per job.
  Only then does the status become ``STOPPED`` (with no exit code). A stop is repeat-safe.
- A job still ``PENDING`` because the cluster lacks the resources it asked for does **not** end
  on a stop (the answer still says ``stopped: true``): Ray leaves it ``PENDING`` until its
  supervisor can start (and then stops it) or its start times out (the head's
  ``RAY_JOB_START_TIMEOUT_SECONDS``, 900 s by default, then ``FAILED``). An executor that stops
  a job Ray reports ``PENDING`` should record the run stopped itself, not wait for Ray.
- A runtime_env Ray cannot set up is accepted by ``POST`` (200) and fails the job afterwards
  (``FAILED``, ``error_type`` ``JOB_SUPERVISOR_ACTOR_START_FAILURE``); a key Ray does not know
  is ignored.
- ``DELETE`` of a job that is not terminal answers 500 (``non-terminal state``): it is refused
  here as a :class:`RayError`.
- ``GET /api/jobs/`` lists every job the head knows, submitted ones (with a ``submission_id``)
  and plain drivers (``ray.init`` scripts, without one). Finished jobs stay until deleted, so a
  long-lived engine should delete the jobs whose end it has recorded to keep that answer small.
- A failed job's ``message`` carries up to 20,000 characters of its last logs; it is trimmed
  here to :data:`MAX_MESSAGE` characters, keeping its start (what failed) and its end (the
  traceback).
- ``runtime_env["working_dir"]`` must be a URI for a remote head: a local path would be read on
  the head's machine. :meth:`RayJobs.upload_dir` zips a local folder and uploads it through
  ``PUT /api/packages/gcs/{name}`` (after a ``GET`` that tells whether the head already has it),
  returning the ``gcs://`` URI to put there. The head keeps a package only while a job uses it
  or for a while after the upload (``RAY_RUNTIME_ENV_URI_PIN_EXPIRATION_S``, 10 minutes by
  default): submit the job right after the upload.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import attrs
import httpx
import orjson

from .._core.errors import AsyncRunError, TransportError, ValidationError
from .._core.records import State
from ..kinds import Outcome

MAX_BODY: Final = 16 * 1024 * 1024
"""Bytes of one answer read at most; a larger one is refused, never buffered whole."""
MAX_MESSAGE: Final = 2000
"""Characters of Ray's status message kept in a :class:`JobInfo`."""
MAX_PACKAGE: Final = 100 * 1024 * 1024
"""Bytes of a zipped working folder uploaded at most (Ray's own bound is its gRPC limit)."""
STOP_WAIT_VAR: Final = "RAY_JOB_STOP_WAIT_TIME_S"
"""The variable of a job's supervisor that sets the seconds between SIGTERM and SIGKILL."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Ids go into URL paths, log file names and actor names on the head: keep to a safe alphabet.
_ALREADY_EXISTS = "already exists"
_NOT_TERMINAL = "non-terminal state"
_SKIP_DIRS: Final = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".ruff_cache"})

LOST_MESSAGE: Final = (
    "the Ray job was lost: the cluster no longer knows it (the head restarted or the job "
    "was deleted); start a new run"
)


class RayError(AsyncRunError):
    """The Ray head answered something this engine cannot use (a refusal, a bad body)."""

    code = "ray_error"
    status_code = 502


class RayUnavailable(TransportError):
    """The Ray head cannot be reached, timed out, or answered 5xx: try again later."""

    code = "ray_unavailable"
    status_code = 503


@attrs.frozen
class JobInfo:
    """What Ray says of one submitted job, at the moment it was asked.

    Attributes:
        submission_id: The id the job was submitted with.
        status: Ray's status: ``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED`` or
            ``STOPPED`` (kept as Ray's string, so that a status a later Ray adds is seen).
        message: Ray's message, trimmed to :data:`MAX_MESSAGE` characters.
        error_type: Ray's classification of a failure (``JOB_ENTRYPOINT_COMMAND_ERROR``, ...).
        start_time: When Ray accepted the job.
        end_time: When the job reached a terminal status.
        exit_code: The entrypoint's exit code, once it exited by itself (``None`` while it
            runs, and for a stopped job or one that never started).
        metadata: The metadata the job was submitted with.
    """

    submission_id: str
    status: str
    message: str | None = None
    error_type: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def terminal(self) -> bool:
        """Whether Ray will not change this job's status any more."""
        return self.status in _TERMINAL

    def outcome(self, open: bool = True) -> Outcome | None:
        """This status as asyncrun's (see :func:`to_outcome`)."""
        return to_outcome(self.status, open, exit_code=self.exit_code, message=self.message)

    @classmethod
    def from_ray(cls, data: Any) -> JobInfo:
        """Read one job of Ray's answer (a ``JobDetails`` object).

        Raises:
            RayError: if it is not shaped as Ray documents it.
        """
        if not isinstance(data, dict):
            raise RayError(f"Ray answered a job that is not an object: {type(data).__name__}")
        submission_id = data.get("submission_id")
        status = data.get("status")
        if not isinstance(submission_id, str) or not isinstance(status, str):
            raise RayError("Ray answered a job without a submission_id or status")
        message = _optional(data, "message", str)
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise RayError(f"Ray answered job {submission_id!r} with metadata not of strings")
        return cls(
            submission_id=submission_id,
            status=status,
            message=None if message is None else trim(message, MAX_MESSAGE),
            error_type=_optional(data, "error_type", str),
            start_time=_ms_time(_optional(data, "start_time", int)),
            end_time=_ms_time(_optional(data, "end_time", int)),
            exit_code=_optional(data, "driver_exit_code", int),
            metadata=metadata,
        )


_TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def to_outcome(
    ray_status: str | None,
    open: bool,
    *,
    exit_code: int | None = None,
    message: str | None = None,
) -> Outcome | None:
    """Map Ray's status of a job onto asyncrun's state of the run it executes.

    ``PENDING`` and ``RUNNING`` map to the same states; ``SUCCEEDED`` to ``COMPLETED``;
    ``FAILED`` to ``ERROR`` with Ray's message; ``STOPPED`` to ``STOPPED``. The exit code, when
    Ray reports one, is put in the outcome's status as ``exit_code``, as a local run's is.

    Args:
        ray_status: Ray's status, or ``None`` when Ray does not know the job (404, or absent
            from the list).
        open: Whether asyncrun believes the run still open (started, not yet terminal).
        exit_code: Ray's ``driver_exit_code``, if any.
        message: Ray's message, if any.

    Returns:
        The outcome, or ``None`` for nothing to record: a job missing that asyncrun does not
        believe open, or a status this engine does not know (a later Ray's; waiting is safer
        than guessing an end).
    """
    status: dict[str, Any] = {} if exit_code is None else {"exit_code": exit_code}
    match ray_status:
        case None:
            return Outcome(State.ERROR, LOST_MESSAGE, status) if open else None
        case "PENDING":
            return Outcome(State.PENDING, message, status)
        case "RUNNING":
            return Outcome(State.RUNNING, None, status)
        case "SUCCEEDED":
            return Outcome(State.COMPLETED, None, status)
        case "FAILED":
            if message:
                return Outcome(State.ERROR, message, status)
            if exit_code is not None:
                return Outcome(State.ERROR, f"the Ray job exited with code {exit_code}", status)
            return Outcome(State.ERROR, "the Ray job failed", status)
        case "STOPPED":
            return Outcome(State.STOPPED, "stopped", status)
        case _:
            return None


def with_stop_grace(runtime_env: Mapping[str, Any] | None, grace: float) -> dict[str, Any]:
    """A copy of ``runtime_env`` whose job gets ``grace`` seconds between SIGTERM and SIGKILL.

    Ray reads the grace as whole seconds (``int()`` of the variable), so it is rounded up.

    Raises:
        ValidationError: if ``grace`` is negative or not finite, or ``env_vars`` is not a map.
    """
    if not math.isfinite(grace) or grace < 0:
        raise ValidationError(f"the stop grace must be a finite number >= 0, not {grace!r}")
    env = dict(runtime_env or {})
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, Mapping):
        raise ValidationError("runtime_env['env_vars'] must map names to strings")
    env["env_vars"] = {**env_vars, STOP_WAIT_VAR: str(math.ceil(grace))}
    return env


def trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: its start and its end, with a marker between.

    The end is kept larger: Ray puts a failed job's last logs (its traceback) there.
    """
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text)} characters, cut to {limit} ...]\n"
    keep = max(limit - len(marker), 0)
    head = keep // 4
    return text[:head] + marker + text[len(text) - (keep - head) :]


class RayJobs:
    """A client of one Ray head's Jobs API.

    Args:
        address: The dashboard's address, ``http://host:8265`` (``host:8265`` means http), with
            a path when a proxy serves it under one. A user and password in it are sent as
            basic authentication and never appear in a message.
        timeout: Seconds any request may take (connect, each read, each write).
        client: An httpx client to send requests with (its settings are used, but ``timeout``
            is set on every request; the caller closes it). By default one is made that
            ignores the environment's proxy variables: the head is addressed directly.
        token: A Ray authentication token (``RAY_AUTH_MODE=token`` clusters), sent as a bearer.
        max_body: Bytes of one answer read at most.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        token: str | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        url = httpx.URL(address if "://" in address else f"http://{address}")
        if url.scheme not in ("http", "https") or not url.host:
            raise ValidationError(
                f"a Ray address is http(s)://host:port, not {_redact(url)!r}",
                detail={"field": "address"},
            )
        auth = (url.username, url.password) if url.username or url.password else None
        self._base = str(url.copy_with(username=None, password=None, query=None, fragment=None))
        self._base = self._base.rstrip("/")
        self.address = self._base
        """The address without credentials: safe to show."""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._max_body = max_body
        self._owned = client is None
        self._client = client or httpx.Client(trust_env=False, follow_redirects=False)
        self._timeout = timeout
        self._auth = auth  # per request, so that a caller's client gets it too

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API -------------------------------------------------------------------------------

    def version(self) -> str:
        """The head's Ray version (``GET /api/version``): a cheap check that it answers."""
        _, body = self._request("GET", "/api/version")
        data = _json(body)
        version = data.get("ray_version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise RayError("Ray's /api/version answer has no ray_version")
        return version

    def submit(
        self,
        submission_id: str,
        entrypoint: str,
        *,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
    ) -> bool:
        """Submit a job under ``submission_id``; repeat-safe.

        Returns:
            ``True`` if Ray accepted a new job, ``False`` if it already had one with that id
            (whatever its entrypoint: the id is the identity).

        Raises:
            ValidationError: if ``submission_id`` is not of the safe alphabet.
            RayError: if Ray refused the job (a malformed runtime_env, say).
            RayUnavailable: if the head could not be reached.
        """
        _check_id(submission_id)
        request: dict[str, Any] = {"submission_id": submission_id, "entrypoint": entrypoint}
        if runtime_env is not None:
            request["runtime_env"] = dict(runtime_env)
        if metadata is not None:
            request["metadata"] = dict(metadata)
        if entrypoint_num_cpus is not None:
            request["entrypoint_num_cpus"] = entrypoint_num_cpus
        status, body = self._request(
            "POST", "/api/jobs/", json=request, ok=(200,), passthrough=(400, 500)
        )
        if status == 200:
            return True
        text = body.decode(errors="replace")
        # Ray says "already exists" in a traceback (500 from the head, relaying its agent's 400).
        if f"submission_id {submission_id} {_ALREADY_EXISTS}" in text:
            return False
        if status == 400:
            raise RayError(f"Ray refused job {submission_id!r}: {_last_line(text)}")
        raise RayUnavailable(
            f"the Ray head at {self.address} failed to submit job {submission_id!r}: "
            f"{_last_line(text)}"
        )

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop a job: SIGTERM now, SIGKILL after the job's grace; repeat-safe.

        The job's status becomes ``STOPPED`` only once its processes ended (up to the grace
        later).

        Returns:
            Whether Ray had a running supervisor to stop (``False`` for a job that already
            ended, or that Ray does not know).
        """
        _check_id(submission_id)
        status, body = self._request("POST", f"/api/jobs/{submission_id}/stop", passthrough=(404,))
        if status == 404:
            return False
        data = _json(body)
        stopped = data.get("stopped") if isinstance(data, dict) else None
        if not isinstance(stopped, bool):
            raise RayError("Ray's stop answer has no 'stopped'")
        return stopped

    def status(self, submission_id: str) -> JobInfo | None:
        """One job's status, or ``None`` if Ray does not know it (404)."""
        _check_id(submission_id)
        status, body = self._request("GET", f"/api/jobs/{submission_id}", passthrough=(404,))
        return None if status == 404 else JobInfo.from_ray(_json(body))

    def statuses(self) -> dict[str, JobInfo]:
        """Every submitted job the head knows, by submission id, in one request.

        Drivers not submitted as jobs (no submission id) are left out.
        """
        _, body = self._request("GET", "/api/jobs/")
        data = _json(body)
        if not isinstance(data, list):
            raise RayError("Ray's job list is not a list")
        jobs = (JobInfo.from_ray(item) for item in data if _submitted(item))
        return {job.submission_id: job for job in jobs}

    def delete(self, submission_id: str) -> bool:
        """Delete a terminal job's record (and logs) from the head; repeat-safe.

        Returns:
            ``True`` if Ray deleted it, ``False`` if it did not know it.

        Raises:
            RayError: if the job is not terminal yet (Ray refuses: stop it first).
        """
        _check_id(submission_id)
        status, body = self._request("DELETE", f"/api/jobs/{submission_id}", passthrough=(404, 500))
        if status == 404:
            return False
        if status == 500:
            text = body.decode(errors="replace")
            if _NOT_TERMINAL in text:
                raise RayError(f"Ray job {submission_id!r} is not terminal: it cannot be deleted")
            raise RayUnavailable(
                f"the Ray head at {self.address} failed to delete job {submission_id!r}: "
                f"{_last_line(text)}"
            )
        data = _json(body)
        return isinstance(data, dict) and data.get("deleted") is True

    def logs(self, submission_id: str) -> str | None:
        """Everything the job's entrypoint wrote (stdout and stderr together), or ``None``.

        Ray sends the whole log in one answer: one above ``max_body`` is refused.
        """
        _check_id(submission_id)
        status, body = self._request("GET", f"/api/jobs/{submission_id}/logs", passthrough=(404,))
        if status == 404:
            return None
        data = _json(body)
        logs = data.get("logs") if isinstance(data, dict) else None
        if not isinstance(logs, str):
            raise RayError("Ray's logs answer has no 'logs'")
        return logs

    def upload_dir(self, path: Path, *, max_bytes: int = MAX_PACKAGE) -> str:
        """Upload a local folder as a package; return the URI for ``runtime_env`` (working_dir).

        The zip is made deterministically (sorted names, fixed times), so its digest names
        the content: a folder the head already has is not sent again. ``.git``,
        ``__pycache__`` and virtual environments are left out; symbolic links are not followed.

        Raises:
            ValidationError: if ``path`` is not a folder, or zips to more than ``max_bytes``.
        """
        data = _zip_dir(path, max_bytes)
        name = f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"
        status, _ = self._request("GET", f"/api/packages/gcs/{name}", passthrough=(404,))
        if status == 404:
            self._request(
                "PUT",
                f"/api/packages/gcs/{name}",
                content=data,
                headers={"Content-Type": "application/zip"},
            )
        return f"gcs://{name}"

    # -- transport -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        passthrough: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        """Send one request; return its status and body (bounded) when ok or passed through.

        Raises:
            RayUnavailable: on a connection error, a timeout, or a 5xx not passed through.
            RayError: on another status, or a body larger than the bound.
        """
        headers = {**self._headers, **kwargs.pop("headers", {})}
        what = f"{method} {path}"
        try:
            with self._client.stream(
                method,
                self._base + path,
                headers=headers,
                timeout=self._timeout,
                auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            ) as response:
                status = response.status_code
                body = self._read(response, what)
        except httpx.TimeoutException as exc:
            raise RayUnavailable(
                f"the Ray head at {self.address} did not answer {what} within "
                f"{self._timeout:g} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            # The message of a connection error names no URL, but say only its kind anyway.
            raise RayUnavailable(
                f"cannot reach the Ray head at {self.address} ({type(exc).__name__}: "
                f"{_scrub(str(exc))})"
            ) from None
        if status in ok or status in passthrough:
            return status, body
        text = _last_line(body.decode(errors="replace"))
        if status >= 500:
            raise RayUnavailable(
                f"the Ray head at {self.address} answered {status} to {what}: {text}"
            )
        raise RayError(
            f"the Ray head at {self.address} answered {status} to {what}: {text}",
            detail={"status": status},
        )

    def _read(self, response: httpx.Response, what: str) -> bytes:
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise RayError(f"Ray's answer to {what} is {length} bytes, over {self._max_body}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_body:
                raise RayError(f"Ray's answer to {what} is over {self._max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _check_id(submission_id: str) -> None:
    if not isinstance(submission_id, str) or not _ID.fullmatch(submission_id):
        raise ValidationError(
            f"a Ray submission id is 1 to 128 letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit, not {submission_id!r}",
            detail={"field": "submission_id"},
        )


def _submitted(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("submission_id"), str)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RayError(f"Ray answered something that is not JSON: {body[:80]!r}") from None


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    # bool is an int to Python, never to Ray.
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RayError(f"Ray answered a job whose {key!r} is a {type(value).__name__}")
    return value


def _ms_time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _last_line(text: str) -> str:
    """The line of a Python traceback (Ray's error bodies) that says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() not in ("", ".")]
    return trim(lines[-1] if lines else "(no body)", 300)


def _redact(url: httpx.URL) -> str:
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


def _scrub(text: str) -> str:
    # Whatever looks like credentials in a URL goes, should a transport error quote one.
    return trim(re.sub(r"//[^/@\s]*@", "//", text), 300)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _zip_dir(root: Path, max_bytes: int) -> bytes:
    if not root.is_dir():
        raise ValidationError(f"{root} is not a folder", detail={"field": "working_dir"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in _walk(root):
            info = os.lstat(file)
            if not stat.S_ISREG(info.st_mode):
                continue  # links, sockets, fifos: nothing a job needs from its folder
            entry = zipfile.ZipInfo(file.relative_to(root).as_posix(), (1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = (stat.S_IFREG | (info.st_mode & 0o777)) << 16
            archive.writestr(entry, file.read_bytes())
            if buffer.tell() > max_bytes:
                raise ValidationError(
                    f"{root} zips to more than {max_bytes} bytes: too large to upload to Ray",
                    detail={"field": "working_dir"},
                )
    if buffer.tell() > max_bytes:
        raise ValidationError(f"{root} zips to more than {max_bytes} bytes")
    return buffer.getvalue()
