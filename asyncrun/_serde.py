"""The one converter between run records and JSON / YAML.

A single private :class:`cattrs.Converter` is configured here; nothing else in the package
turns records into dicts. Structuring is strict: a wrong type is a
:class:`~asyncrun._core.errors.ValidationError` naming the field, never a silent coercion.
"""

from __future__ import annotations

import io
import sys
from datetime import date, datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
from cattrs.v import format_exception
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from ._core.errors import CorruptRecord, MalformedRequest, PayloadTooLarge, ValidationError
from ._core.metrics import (
    Number,
    check_key,
    decode_number,
    decode_value,
    encode_number,
    encode_value,
)
from ._core.records import (
    LogLine,
    Metadata,
    Run,
    State,
    Status,
    Transition,
    check_names,
    validate,
)
from ._core.summary import MetricSummary, metrics_loaded

T = TypeVar("T")

_RUN_ORDER: Final = ("kind", "id", "key", "project", "name", "metadata", "spec", "status", "user")

converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(tp: type[T], *, allow: tuple[type, ...] = ()) -> Any:
    accepted = (tp, *allow)

    def hook(value: Any, _: Any) -> Any:
        if (isinstance(value, bool) and tp is not bool) or not isinstance(value, accepted):
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return value

    return hook


converter.register_structure_hook(str, _strict(str))
converter.register_structure_hook(int, _strict(int))
converter.register_structure_hook(bool, _strict(bool))
converter.register_structure_hook(float, _strict(float, allow=(int,)))


def _structure_any(value: Any, _: Any) -> Any:
    return value


converter.register_structure_hook(Any, _structure_any)


def _structure_dict_any(value: Any, _: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"expected an object with string keys, got {type(value).__name__}")
    return value


converter.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_dict_any)


def _is_list_type(tp: Any) -> bool:
    return getattr(tp, "__origin__", None) is list


def _structure_list(value: Any, tp: Any) -> list[Any]:
    # cattrs would turn any iterable (even a string) into a list; a record wants a real list.
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    (item_type,) = tp.__args__
    return [converter.structure(item, item_type) for item in value]


converter.register_structure_hook_func(_is_list_type, _structure_list)


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if parsed.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no timezone offset")
    return parsed


converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(datetime, datetime.isoformat)
converter.register_unstructure_hook(State, lambda state: state.value)


def _structure_state(value: Any, _: Any) -> State:
    if not isinstance(value, str):
        raise TypeError(f"expected a state name, got {type(value).__name__}")
    return State(value)  # ValueError names the bad state


converter.register_structure_hook(State, _structure_state)


def _decode_metric(key: str, value: Any) -> Any:
    # Metrics in a record obey the same rules as log_metric: a number or a flat list of numbers.
    try:
        check_key(key)
        return decode_value(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"status.metrics[{key!r}]: {exc}") from None


def _optional_number(raw: Any) -> Number | None:
    return None if raw is None else decode_number(raw)


_SUMMARY_KEYS: Final = frozenset({"count", "last", "min", "max"})


def _structure_summary(raw: Any, _: Any) -> MetricSummary:
    if not isinstance(raw, dict) or not _SUMMARY_KEYS <= raw.keys() <= {*_SUMMARY_KEYS, "single"}:
        raise TypeError(
            f"a metric summary is an object with count, last, min, max (and single); got {raw!r}"
        )
    count = raw.get("count")
    if type(count) is not int or count < 0:
        raise TypeError(f"a metric summary's count is a non-negative integer, got {count!r}")
    single = raw.get("single", False)
    if not isinstance(single, bool):
        raise TypeError(f"a metric summary's single is true or false, got {single!r}")
    last, low, high = (_optional_number(raw.get(field)) for field in ("last", "min", "max"))
    return MetricSummary(count, last, low, high, single)


def _unstructure_summary(summary: MetricSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"count": summary.count}
    for field, value in (("last", summary.last), ("min", summary.min), ("max", summary.max)):
        out[field] = None if value is None else encode_number(value)
    if summary.single:
        out["single"] = True
    return out


converter.register_structure_hook(MetricSummary, _structure_summary)
converter.register_unstructure_hook(MetricSummary, _unstructure_summary)


def _register_open_record(cls: type[Any], *, metrics: bool = False) -> None:
    """Metadata and Status keep keys they do not know in ``extra``, so they survive a round trip."""
    known = frozenset(a.name for a in attrs.fields(cls)) - {"extra"}
    structure = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)
    unstructure = make_dict_unstructure_fn(cls, converter)

    def structure_hook(value: Any, _: Any) -> Any:
        value = _structure_dict_any(value, None)
        inner = {k: v for k, v in value.items() if k in known}
        if metrics and "metrics" in inner:
            inner["metrics"] = {
                k: _decode_metric(k, v)
                for k, v in _structure_dict_any(inner["metrics"], None).items()
            }
        record = structure(inner, cls)
        record.extra = {k: v for k, v in value.items() if k not in known}
        return record

    def unstructure_hook(record: Any) -> dict[str, Any]:
        out = unstructure(record)
        extra = out.pop("extra")
        if metrics:
            if metrics_loaded(record.metrics, record.metric_summary):
                out["metrics"] = {k: encode_value(v) for k, v in out["metrics"].items()}
            else:  # a summary-only record (from a list or a watch) does not claim metrics
                del out["metrics"]
            if not out["metric_summary"]:
                del out["metric_summary"]  # records built locally, and files, stay as they were
        for k, v in extra.items():
            out.setdefault(k, v)
        return out

    converter.register_structure_hook(cls, structure_hook)
    converter.register_unstructure_hook(cls, unstructure_hook)


_register_open_record(Metadata)
_register_open_record(Status, metrics=True)
converter.register_structure_hook(Transition, make_dict_structure_fn(Transition, converter))

_structure_run = make_dict_structure_fn(Run, converter, _cattrs_forbid_extra_keys=True)
_unstructure_run = make_dict_unstructure_fn(Run, converter)


def _run_structure_hook(value: Any, _: Any) -> Run:
    value = _structure_dict_any(value, None)
    # ``key`` is derived from kind, project and id; accept it but never trust it.
    if not isinstance(value.get("key", ""), str):
        raise TypeError("key is read-only (derived from project, kind and id): send a string")
    return _structure_run({k: v for k, v in value.items() if k != "key"}, Run)


def _run_unstructure_hook(run: Run) -> dict[str, Any]:
    out = _unstructure_run(run)
    out["key"] = run.key
    return {k: out[k] for k in _RUN_ORDER}


converter.register_structure_hook(Run, _run_structure_hook)
converter.register_unstructure_hook(Run, _run_unstructure_hook)


def _format_leaf(exc: BaseException, type_: Any) -> str:
    # Our hooks raise with messages that say what is wrong; keep them, and cattrs's for others.
    if isinstance(exc, ValueError | TypeError) and str(exc) and type_ is not None:
        return str(exc)
    return format_exception(exc, type_)


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="run", format_exception=_format_leaf))
    return str(exc)


def to_dict(run: Run) -> dict[str, Any]:
    """Turn a run into plain JSON-able data, keys in the record's stable order."""
    return converter.unstructure(run)  # type: ignore[no-any-return]


def from_dict(data: Any) -> Run:
    """Build a validated run from plain data.

    Raises:
        ValidationError: naming every field that is missing or has the wrong type.
    """
    check_data(data)
    try:
        return _share(validate(converter.structure(data, Run)))
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise ValidationError(f"invalid run record: {_describe(exc)}") from None


def _share(run: Run) -> Run:
    """Let the parts of a parsed record that repeat share one object.

    A client holding thousands of runs otherwise keeps thousands of copies of the same
    project, kind and label strings, the id three times per run (id, name, metadata.name) and
    equal times twice (a transition and ``updated``): about a fifth of a completed run.
    """
    run.project = run.metadata.project = sys.intern(run.project)
    run.kind = sys.intern(run.kind)
    metadata = run.metadata
    if run.name == run.id:
        run.name = run.id
    if metadata.name == run.name:
        metadata.name = run.name
    metadata.labels = [sys.intern(label) for label in metadata.labels]
    times: dict[datetime, datetime] = {}
    for transition in run.status.transitions:
        transition.time = times.setdefault(transition.time, transition.time)
    if metadata.updated is not None:
        metadata.updated = times.get(metadata.updated, metadata.updated)
    if metadata.created is not None:
        metadata.created = times.get(metadata.created, metadata.created)
    return run


def dumps(data: Any) -> bytes:
    """Encode plain data (or a run) as JSON bytes."""
    if isinstance(data, Run):
        data = to_dict(data)
    return orjson.dumps(data)


def loads(payload: bytes | str) -> Any:
    """Decode JSON bytes into plain data.

    Raises:
        MalformedRequest: if the payload is not valid UTF-8 JSON.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


def run_from_json(payload: bytes | str) -> Run:
    """Decode and validate a run from JSON."""
    return from_dict(loads(payload))


def run_from_stored(payload: bytes) -> Run:
    """Decode a run the store wrote itself: it was validated before it was written.

    Typed structuring still builds the record; only the checks that guard against foreign
    input (nesting depth, field rules) are skipped, except the names: kind, id and project
    become file names (``export()`` writes ``runs-<id>.yaml``), so a store changed behind
    asyncrun's back must not smuggle a path in.

    Raises:
        CorruptRecord: if the stored record's kind, id or project is not a valid name.
    """
    run = converter.structure(orjson.loads(payload), Run)
    try:
        check_names(run)
    except ValueError as exc:
        raise CorruptRecord(
            f"a stored run record is corrupt ({exc}): the store was changed outside asyncrun; "
            "restore the database from a backup",
            detail={"kind": run.kind, "id": run.id, "project": run.project},
        ) from None
    return _share(run)


# Characters a YAML reader may take for line breaks or that plain and single-quoted styles
# cannot carry: a string holding one is written double-quoted, where they are escaped.
_YAML_UNSAFE = frozenset("\x85\u2028\u2029\ufeff") | frozenset(map(chr, range(0x20))) - {"\n"}


def _represent_str(representer: Any, data: str) -> Any:
    style = '"' if any(ch in _YAML_UNSAFE for ch in data) else None
    return representer.represent_scalar("tag:yaml.org,2002:str", data, style=style)


MAX_DEPTH: Final = 64
"""Deepest nesting of lists and objects accepted in a record (orjson writes at most 254)."""


_SCALARS: Final = (str, bool, type(None), datetime, date)
_INT64: Final = (-(2**63), 2**63 - 1)


def check_data(data: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse data a record cannot carry through JSON unchanged (iteratively: no recursion).

    Accepted: objects with string keys, lists, strings, booleans, null, integers within 64
    bits, finite floats, and times (written as ISO 8601 strings), nested at most ``limit``
    levels. Anything else (NaN, bytes, sets, huge integers...) would be lost or fail later.

    Raises:
        ValidationError: naming the limit or the path of the first bad value.
    """
    if not isinstance(data, dict | list):
        return
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > limit:
            raise ValidationError(
                f"the record is nested deeper than {limit} levels; flatten it",
                detail={"limit": limit},
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            kind = type(child)
            if kind is float:
                if child - child == 0:  # finite: inf - inf and nan - nan are nan
                    continue
            elif kind is int:
                if _INT64[0] <= child <= _INT64[1]:
                    continue
            elif kind is dict or kind is list:
                if kind is dict and not all(type(k) is str for k in child):
                    raise _bad(path, key, "an object's keys must be strings")
                stack.append((child, depth + 1, _at(path, key)))
                continue
            elif isinstance(child, _SCALARS):
                continue
            raise _bad(path, key, f"JSON cannot carry {kind.__name__} {child!r:.60}")


def _at(path: str, key: object) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


def _bad(path: str, key: object, why: str) -> ValidationError:
    where = _at(path, key)
    return ValidationError(f"{where}: {why}", detail={"field": where})


MAX_RUN_FILE_BYTES: Final = 8 * 1024 * 1024
"""Largest run file (YAML) :func:`from_yaml` and ``load_run`` read: 8 MiB.

The pure-Python YAML parser takes seconds per megabyte and about ten times the file's size in
memory, so a bigger file is refused before it is parsed. 8 MiB of YAML is about 5 MB of JSON,
within what a server accepts in one request (8 MiB by default), so any file under the limit
can be saved. What makes a run file big is a long metric list under ``status.metrics``.
"""


def check_run_file_size(size: int, where: str, *, at_least: bool = False) -> None:
    """Refuse a run file larger than :data:`MAX_RUN_FILE_BYTES`.

    Args:
        size: The file's size in bytes (or how much of it was read, with ``at_least``).
        where: What to call the file in the message (its path).
        at_least: The file holds ``size`` bytes or more (it was not read to its end).

    Raises:
        PayloadTooLarge: naming the limit and what to do.
    """
    if size > MAX_RUN_FILE_BYTES:
        what = f"more than {MAX_RUN_FILE_BYTES}" if at_least else f"{size}"
        raise PayloadTooLarge(
            f"{where} holds {what} bytes; a run file may hold at most {MAX_RUN_FILE_BYTES} "
            "bytes (8 MiB, asyncrun._serde.MAX_RUN_FILE_BYTES): remove what makes it big "
            "(long lists under status.metrics, large spec values) and load it again",
            detail={"limit": MAX_RUN_FILE_BYTES, "size": None if at_least else size},
        )


_JSON_TAGS: Final = frozenset(
    {"!"}
    | {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
)
"""Explicit YAML tags a run file may use: those of the types JSON has (``!`` is a string)."""


class _JSONConstructor(SafeConstructor):
    """The safe constructor, with timestamps left as the strings they were written as."""


# A value such as 2024-01-02 would otherwise come back as a date, and as a string only once
# saved: the record would change on its way through the backend.
_JSONConstructor.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _JSONConstructor
    yaml.default_flow_style = False
    # Keep the record's stable key order (ruamel types this attribute as None).
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.allow_unicode = True
    yaml.width = 4096
    yaml.representer.add_representer(str, _represent_str)  # after the options: it builds one
    # Never write anchors: a file must read back with load_run, which refuses aliases.
    yaml.representer.ignore_aliases = lambda data: True
    return yaml


def to_yaml(run: Run) -> str:
    """Render a run as YAML, keys in a stable order, numbers that read back exactly."""
    data = to_dict(run)
    data["status"].pop("metric_summary", None)  # derived from the metrics: not part of a file
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def from_yaml(text: str, where: str = "the run file") -> Run:
    """Parse and validate a run from YAML: only what JSON can carry comes out.

    Every value is a string, a number, a boolean, null, a list or a mapping, so a loaded
    record saves unchanged. Implicit timestamps (``2024-01-02``, ``2024-01-02 03:04:05``) load
    as the plain strings they were written as, which is what a save would make of them.
    Explicit tags other than those of JSON's types (``!!str``, ``!!int``, ``!!float``,
    ``!!bool``, ``!!null``, ``!!map``, ``!!seq``) are refused, ``!!timestamp``, ``!!binary``,
    ``!!set`` and custom ``!tags`` included: asyncrun does not guess what they should become.
    Aliases are refused too, and the text may hold at most :data:`MAX_RUN_FILE_BYTES`.

    Args:
        text: The YAML text.
        where: What to call the text in error messages (a path).

    Raises:
        PayloadTooLarge: if the text is longer than :data:`MAX_RUN_FILE_BYTES` bytes.
        ValidationError: if the text is not YAML, uses a refused tag or is not a valid run.
    """
    if len(text) * 4 > MAX_RUN_FILE_BYTES:  # a character is at most 4 bytes of UTF-8
        check_run_file_size(len(text.encode("utf-8", "surrogatepass")), where)
    try:
        _check_yaml_events(text)
        data = _yaml().load(text)
    except YAMLError as exc:
        raise ValidationError(f"not a valid YAML document: {exc}") from None
    return from_dict(data)


def _check_yaml_events(text: str) -> None:
    # Before anything is built: aliases can expand a few hundred bytes into millions of
    # values ("billion laughs"), and ruamel's composer recurses once per nesting level.
    depth = 0
    for event in _yaml().parse(text):
        if isinstance(event, ScalarEvent | MappingStartEvent | SequenceStartEvent) and (
            event.tag is not None and str(event.tag) not in _JSON_TAGS
        ):
            raise ValidationError(
                f"line {event.start_mark.line + 1}: the file uses the YAML tag "
                f"{_short_tag(str(event.tag))}, which asyncrun does not read: write the value "
                "as a plain string, number, boolean, null, list or mapping",
                detail={"line": event.start_mark.line + 1},
            )
        if isinstance(event, AliasEvent):
            raise ValidationError(
                "the file uses YAML aliases (*name), which asyncrun does not expand: "
                "write the values out"
            )
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH + 1:  # the record itself is one level
                raise ValidationError(
                    f"the record is nested deeper than {MAX_DEPTH} levels; flatten it",
                    detail={"limit": MAX_DEPTH},
                )
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            depth -= 1


def _short_tag(tag: str) -> str:
    core = "tag:yaml.org,2002:"
    return "!!" + tag[len(core) :] if tag.startswith(core) else tag


def log_line_to_dict(line: LogLine) -> dict[str, Any]:
    """A log line as data for :func:`dumps` (hand-written: the hot path of log streaming).

    The time stays a ``datetime``: orjson writes it as ISO 8601 in C, four times faster
    than ``datetime.isoformat``.
    """
    return {"offset": line.offset, "stream": line.stream, "time": line.time, "text": line.text}


def log_line_from_dict(data: Any) -> LogLine:
    """Parse a log line made by :func:`log_line_to_dict` and decoded from JSON.

    Raises:
        ValidationError: if the data is not a log line.
    """
    try:
        offset, stream, time, text = data["offset"], data["stream"], data["time"], data["text"]
        if type(offset) is int and type(stream) is str and type(text) is str:
            parsed = datetime.fromisoformat(time)
            if parsed.tzinfo is not None:
                return LogLine(offset, stream, parsed, text)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"invalid log line: {exc}") from None
    raise ValidationError(f"invalid log line: {str(data)[:200]}")


def log_lines_from_ndjson(lines: list[bytes]) -> tuple[list[LogLine], dict[str, Any] | None]:
    """Parse complete NDJSON lines of a log stream in one decoder call.

    Blank lines are heartbeats; ``{"end": true, ...}`` marks the end of the stream (with an
    ``error`` if the server ended it early, e.g. because the token was revoked).

    Returns:
        The log lines before the end marker, and the end marker if it was among them.

    Raises:
        ValidationError: if a line is not JSON or not a log line.
    """
    items = loads(b"[" + b",".join(line for line in lines if line.strip()) + b"]")
    batch: list[LogLine] = []
    for item in items:
        if isinstance(item, dict) and "end" in item:
            return batch, item
        batch.append(log_line_from_dict(item))
    return batch, None
