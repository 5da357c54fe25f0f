"""Run records: plain attrs values, with no I/O and no serialization methods.

Serialization lives in :mod:`asyncrun._serde`. ``spec`` is kept as a plain mapping so keys a
kind does not know survive untouched; ``Metadata`` and ``Status`` keep unknown keys in ``extra``.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from .summary import MetricSummary

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9+._-]{0,63}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters (C1 includes NEL and CSI, a terminal escape introducer)."""
MAX_LABEL_LENGTH = 255


class State(enum.StrEnum):
    """The states of a run (DESIGN.md section 4)."""

    CREATED = "CREATED"
    BUILT = "BUILT"
    READY = "READY"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    STOP = "STOP"
    STOPPED = "STOPPED"
    DELETING = "DELETING"
    DELETED = "DELETED"


@attrs.define
class Transition:
    """One recorded state change of a run."""

    state: State
    time: datetime
    message: str | None = None


@attrs.define
class LogLine:
    """One line a run wrote, with its position in the run's log.

    Attributes:
        offset: Position of the line in the run's log, from 0, never reused (a resumed run
            continues after the last line of the previous execution).
        stream: ``"stdout"`` or ``"stderr"``.
        time: When the line was read from the process.
        text: The line, without its newline.

    Treat it as read-only. It is not a frozen class because a log stream builds millions of
    them and a frozen attrs ``__init__`` costs three times as much.
    """

    offset: int
    stream: str
    time: datetime
    text: str


@attrs.frozen
class Project:
    """A project that has runs.

    Attributes:
        name: The project's name.
        runs: How many runs it has.
        newest: When its newest run was created.
    """

    name: str
    runs: int
    newest: datetime


@attrs.define
class Metadata:
    """Descriptive metadata of a run; ``revision`` drives optimistic concurrency."""

    project: str
    name: str | None = None
    description: str | None = None
    labels: list[str] = attrs.Factory(list)
    created: datetime | None = None
    created_by: str | None = None
    updated: datetime | None = None
    updated_by: str | None = None
    relationships: list[dict[str, Any]] = attrs.Factory(list)
    revision: int = 0
    extra: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class Status:
    """What the backend knows of a run: its state, history, metrics and kind outputs.

    ``metrics`` is the specification's full dict. ``metric_summary`` describes each key in
    constant size; records in lists and watches carry only the summary (``metrics`` is then
    empty: see :func:`asyncrun._core.summary.metrics_loaded`). The summary is derived from the
    metrics, so it takes no part in comparing records.
    """

    state: State = State.CREATED
    message: str | None = None
    transitions: list[Transition] = attrs.Factory(list)
    metrics: dict[str, Any] = attrs.Factory(dict)
    metric_summary: dict[str, MetricSummary] = attrs.field(factory=dict, eq=False)
    extra: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class Run:
    """A run record: the "Run object" of the specification, without behaviour."""

    kind: str
    id: str
    project: str
    metadata: Metadata
    name: str | None = None
    spec: dict[str, Any] = attrs.Factory(dict)
    status: Status = attrs.Factory(Status)
    user: str | None = None

    @property
    def key(self) -> str:
        """The run's store key, ``store://<project>/run/<kind>/<id>``."""
        return f"store://{self.project}/run/{self.kind}/{self.id}"


def check_name(what: str, value: object) -> str:
    """Validate a project name or run id (no path separators, no leading dot)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} must be 1-128 characters of letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def check_kind(value: object) -> str:
    """Validate a kind name such as ``python+job``."""
    if not isinstance(value, str) or not _KIND_RE.fullmatch(value):
        raise ValueError(
            "kind must be 1-64 lowercase letters, digits or '+._-', such as 'python+job'; "
            f"got {value!r}"
        )
    return value


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean python+job?)"`` for the known name closest to a mistyped one, or ``""``.

    Args:
        word: What was typed.
        known: The names it should have been one of.
    """
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_label(value: object) -> str:
    """Validate one label: a non-empty string without control characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"a label must be a string of 1-{MAX_LABEL_LENGTH} characters; got {value!r}"
        )
    if CONTROL_RE.search(value):
        raise ValueError(f"a label must not contain control characters; got {value!r}")
    return value


def check_time(what: str, value: datetime | None) -> None:
    """Refuse naive datetimes: every time in a record is timezone-aware."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (use datetime.now(timezone.utc))")


def check_names(run: Run) -> Run:
    """Check the names that become keys and file names: kind, id and project.

    ``export()`` writes ``runs-<id>.yaml``: an id such as ``../../x`` would leave the folder.

    Returns:
        The same run, so the call can be chained.
    """
    check_kind(run.kind)
    check_name("id", run.id)
    check_name("project", run.project)
    return run


def validate(run: Run) -> Run:
    """Check the invariants of a run record, raising ``ValueError`` with what is wrong.

    Returns:
        The same run, so the call can be chained.
    """
    check_names(run)
    if run.metadata.project != run.project:
        raise ValueError(
            f"metadata.project ({run.metadata.project!r}) must equal project ({run.project!r})"
        )
    for field, value in (("name", run.name), ("metadata.name", run.metadata.name)):
        if value is not None and (not value or CONTROL_RE.search(value)):
            raise ValueError(
                f"{field} must be a non-empty string without control characters; got {value!r}"
            )
    for field, value in (
        ("user", run.user),
        ("metadata.created_by", run.metadata.created_by),
        ("metadata.updated_by", run.metadata.updated_by),
    ):
        if value is not None and CONTROL_RE.search(value):
            raise ValueError(f"{field} must not contain control characters; got {value!r}")
    for label in run.metadata.labels:
        check_label(label)
    check_time("metadata.created", run.metadata.created)
    check_time("metadata.updated", run.metadata.updated)
    for transition in run.status.transitions:
        check_time("status.transitions[].time", transition.time)
    return run


def new_run(
    *,
    project: str,
    kind: str,
    id: str,
    now: datetime,
    name: str | None = None,
    spec: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    description: str | None = None,
    user: str | None = None,
) -> Run:
    """Build a fresh, unsaved run record in state CREATED.

    Args:
        project: Project the run belongs to.
        kind: The run's kind, e.g. ``python+job``.
        id: The run id (chosen by the caller so that a retried create is safe).
        now: The creation time (timezone-aware).
        name: Optional display name; defaults to the id.
        spec: Kind-specific specification, kept whole.
        labels: Labels to filter runs by.
        description: Free text.
        user: The user the run belongs to.

    Returns:
        A validated :class:`Run`.
    """
    metadata = Metadata(
        project=project,
        name=name or id,
        description=description,
        labels=list(labels or []),
        created=now,
        created_by=user,
        updated=now,
        updated_by=user,
    )
    status = Status(state=State.CREATED, transitions=[Transition(State.CREATED, now)])
    return validate(
        Run(
            kind=kind,
            id=id,
            project=project,
            name=name or id,
            metadata=metadata,
            spec=dict(spec or {}),
            status=status,
            user=user,
        )
    )
