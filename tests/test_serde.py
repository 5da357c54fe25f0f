"""Round trips of run records through JSON and YAML, property-based, plus strict rejection.

The strategy below builds arbitrary *valid* records: every field the record has, every state,
timezone-aware times with any fixed offset, free-form ``spec`` and the unknown keys that
``Metadata`` and ``Status`` keep in ``extra``. A record must come back equal, and its JSON bytes
must not change (equality alone would miss ``-0.0`` becoming ``0.0`` or ``1.0`` becoming ``1``).
"""

from __future__ import annotations

import copy
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import asyncrun
from asyncrun import _serde, kinds
from asyncrun._core.records import (
    MAX_LABEL_LENGTH,
    Metadata,
    Run,
    State,
    Status,
    Transition,
    new_run,
)
from asyncrun._core.summary import summarize

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_CONTROL = "".join(map(chr, range(0x20))) + "".join(map(chr, range(0x7F, 0xA0)))  # C0, C1
_YAML_BROKEN = ""  # every character round-trips through YAML (U+0085 once did not)

# --- strategies ---------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=_YAML_BROKEN))
NO_CONTROL = st.characters(exclude_categories=("Cs",), exclude_characters=_CONTROL + _YAML_BROKEN)
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", fullmatch=True)
KINDS = st.from_regex(r"[a-z0-9][a-z0-9+._-]{0,63}", fullmatch=True)
LABELS = st.text(NO_CONTROL, min_size=1, max_size=MAX_LABEL_LENGTH)
DISPLAY_NAMES = st.none() | st.text(NO_CONTROL, min_size=1)
OPTIONAL_NO_CONTROL = st.none() | st.text(NO_CONTROL)
OPTIONAL_TEXT = st.none() | TEXT

_DAY = timedelta(hours=24)
# datetime.timezone accepts any offset strictly between -24h and +24h, to the microsecond.
# Offsets shorter than one second (but not zero) are left out: CPython 3.11's fromisoformat
# reads "+00:00:00.000001" back as UTC, a stdlib bug no serializer built on it can avoid.
OFFSETS = st.just(UTC) | st.timedeltas(
    min_value=-_DAY + timedelta(microseconds=1), max_value=_DAY - timedelta(microseconds=1)
).filter(lambda offset: not timedelta(0) < abs(offset) < timedelta(seconds=1)).map(timezone)
AWARE_TIMES = st.datetimes(timezones=OFFSETS)

FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
INT64 = st.integers(INT64_MIN, INT64_MAX)
JSON_SCALARS = st.none() | st.booleans() | INT64 | FINITE_FLOATS | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(TEXT, JSON_VALUES, max_size=5)

METRIC_NUMBERS = FINITE_FLOATS | INT64
# Metric keys obey log_metric's rule (1-250 characters, no control characters).
METRIC_KEYS = st.text(NO_CONTROL, min_size=1, max_size=250)
METRICS = st.dictionaries(
    METRIC_KEYS, METRIC_NUMBERS | st.lists(METRIC_NUMBERS, max_size=5), max_size=5
)


def _extra_keys(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    known = {field.name for field in attrs.fields(cls)}
    return st.dictionaries(TEXT.filter(lambda key: key not in known), JSON_VALUES, max_size=4)


TRANSITIONS = st.builds(
    Transition, state=st.sampled_from(State), time=AWARE_TIMES, message=OPTIONAL_TEXT
)


@st.composite
def run_records(
    draw: st.DrawFn,
    projects: st.SearchStrategy[str] = NAMES,
    ids: st.SearchStrategy[str] = NAMES,
) -> Run:
    """An arbitrary valid run record."""
    project = draw(projects)
    metadata = Metadata(
        project=project,
        name=draw(DISPLAY_NAMES),
        description=draw(OPTIONAL_TEXT),
        labels=draw(st.lists(LABELS, max_size=5)),
        created=draw(st.none() | AWARE_TIMES),
        created_by=draw(OPTIONAL_NO_CONTROL),
        updated=draw(st.none() | AWARE_TIMES),
        updated_by=draw(OPTIONAL_NO_CONTROL),
        relationships=draw(st.lists(JSON_OBJECTS, max_size=3)),
        revision=draw(INT64),
        extra=draw(_extra_keys(Metadata)),
    )
    status = Status(
        state=draw(st.sampled_from(State)),
        message=draw(OPTIONAL_TEXT),
        transitions=draw(st.lists(TRANSITIONS, max_size=4)),
        metrics=draw(METRICS),
        extra=draw(_extra_keys(Status)),
    )
    return Run(
        kind=draw(KINDS),
        id=draw(ids),
        project=project,
        metadata=metadata,
        name=draw(DISPLAY_NAMES),
        spec=draw(JSON_OBJECTS),
        status=status,
        user=draw(OPTIONAL_NO_CONTROL),
    )


def _sample() -> Run:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    return new_run(project="p", kind="test+record", id="r1", now=when, labels=["a"], spec={"x": 1})


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(run=run_records())
@example(run=_sample())
def test_json_and_yaml_round_trip_exactly(run: Run) -> None:
    payload = _serde.dumps(run)
    from_json = _serde.run_from_json(payload)
    assert from_json == run
    assert _serde.dumps(from_json) == payload

    text = _serde.to_yaml(run)
    from_yaml = _serde.from_yaml(text)
    assert from_yaml == run
    assert _serde.dumps(from_yaml) == payload
    assert _serde.to_yaml(from_yaml) == text


@given(run=run_records())
@settings(max_examples=50, deadline=None)
def test_round_trip_keeps_offsets_and_types(run: Run) -> None:
    # Equality of aware datetimes ignores the offset and 1 == 1.0 == True: check them directly.
    back = _serde.from_yaml(_serde.to_yaml(run))
    times = [run.metadata.created, run.metadata.updated, *(t.time for t in run.status.transitions)]
    back_times = [
        back.metadata.created,
        back.metadata.updated,
        *(t.time for t in back.status.transitions),
    ]
    assert [(t, t and t.utcoffset()) for t in back_times] == [
        (t, t and t.utcoffset()) for t in times
    ]
    assert repr(back.spec) == repr(run.spec)
    assert repr(back.status.metrics) == repr(run.status.metrics)
    assert back.status.state is run.status.state
    assert all(isinstance(t.state, State) for t in back.status.transitions)


SPECIAL_NUMBERS: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "neg_zero": -0.0,
    "subnormal": 1e-310,
    "smallest": 5e-324,
    "largest": 1.7976931348623157e308,
    "int64_max": INT64_MAX,
    "int64_min": INT64_MIN,
    "zero_int": 0,
    "one_float": 1.0,
    "series": [math.nan, -math.inf, math.inf, -0.0, 1e-310, INT64_MAX, INT64_MIN, 0.1],
}


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_number, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return repr(a) == repr(b)  # tells -0.0 from 0.0 and 1 from 1.0


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_special_metric_values_round_trip_exactly(fmt: str) -> None:
    run = _sample()
    run.status.metrics = copy.deepcopy(SPECIAL_NUMBERS)
    if fmt == "json":
        payload = _serde.dumps(run)
        raw = _serde.loads(payload)["status"]["metrics"]
        assert (raw["nan"], raw["inf"], raw["-inf"]) == ("NaN", "Infinity", "-Infinity")
        assert None not in raw.values()  # never null
        assert None not in raw["series"]
        back = _serde.run_from_json(payload)
    else:
        back = _serde.from_yaml(_serde.to_yaml(run))
    assert back.status.metrics.keys() == SPECIAL_NUMBERS.keys()
    for key, value in SPECIAL_NUMBERS.items():
        assert _same_number(back.status.metrics[key], value), (key, back.status.metrics[key])
    # And once more from the decoded record: the encoding is stable.
    assert _serde.dumps(back) == _serde.dumps(run)


def test_special_metric_values_survive_json_then_yaml() -> None:
    run = _sample()
    run.status.metrics = copy.deepcopy(SPECIAL_NUMBERS)
    back = _serde.from_yaml(_serde.to_yaml(_serde.run_from_json(_serde.dumps(run))))
    for key, value in SPECIAL_NUMBERS.items():
        assert _same_number(back.status.metrics[key], value), key


@pytest.mark.parametrize("where", ["description", "spec"])
def test_yaml_keeps_next_line_character(where: str) -> None:
    # Free text may hold NEL (labels, names and keys may not: it is a C1 control character).
    run = _sample()
    if where == "description":
        run.metadata.description = "a\x85b"
    else:
        run.spec = {"text": "a\x85b"}
    assert _serde.run_from_json(_serde.dumps(run)) == run  # JSON is fine
    assert _serde.from_yaml(_serde.to_yaml(run)) == run


# --- end to end: export() then load_run() through a real client ---------------------------------


@pytest.mark.anyio
@settings(
    max_examples=25,
    deadline=None,
    # The client, project and tmp_path fixtures are shared by the examples on purpose: each
    # example uses a fresh run id and its own file names, so examples cannot see each other.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Drawn outside the event loop on purpose: data.draw() inside an anyio test can raise
# hypothesis' StopTest (a BaseException) through the runner task and kill it.
@given(drawn=run_records(projects=st.just("placeholder"), ids=st.just("placeholder")))
async def test_export_load_round_trip_through_a_client(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path, drawn: Run
) -> None:
    record = attrs.evolve(
        drawn,
        # A registered kind would have its spec checked: keep to records any spec may have.
        kind="test+record" if kinds.get(drawn.kind) else drawn.kind,
        id=uuid.uuid4().hex,
        project=project,
        metadata=attrs.evolve(drawn.metadata, project=project),
    )
    source = tmp_path / f"in-{record.id}.yaml"
    source.write_text(_serde.to_yaml(record), encoding="utf-8")

    loaded = await client.load_run(source)
    assert loaded.record == record
    await loaded.save()
    stored = loaded.record
    # The server owns the revision, the update time and the state machine: every created run
    # starts CREATED with one transition; everything else must be exactly what was sent.
    assert stored.metadata.revision == 1
    assert stored.metadata.updated is not None
    assert stored.status.state is State.CREATED
    assert [t.state for t in stored.status.transitions] == [State.CREATED]
    expected_status = attrs.evolve(
        record.status,
        state=State.CREATED,
        message=None,
        transitions=stored.status.transitions,
        metric_summary=summarize(record.status.metrics),
    )
    expected = attrs.evolve(
        record,
        metadata=attrs.evolve(
            record.metadata,
            created=record.metadata.created or stored.metadata.created,
            updated=stored.metadata.updated,
            revision=1,
        ),
        status=expected_status,
    )
    assert stored == expected
    assert _serde.dumps(stored) == _serde.dumps(expected)

    fetched = await client.get_run(project, record.id)
    assert fetched == loaded
    exported = await fetched.export()
    back = await client.load_run(exported)
    assert back == fetched
    assert _serde.dumps(back.record) == _serde.dumps(fetched.record)


@pytest.mark.anyio
async def test_special_metric_values_survive_a_client_round_trip(
    client: asyncrun.AsyncClient, project: str, tmp_path: Path
) -> None:
    record = attrs.evolve(
        _sample(), project=project, metadata=attrs.evolve(_sample().metadata, project=project)
    )
    record.status.metrics = copy.deepcopy(SPECIAL_NUMBERS)
    source = tmp_path / "special.yaml"
    source.write_text(_serde.to_yaml(record), encoding="utf-8")
    run = await (await client.load_run(source)).save()
    fetched = await client.get_run(project, run.id)
    back = await client.load_run(await fetched.export())
    for got in (run, fetched, back):
        assert got.status.metrics.keys() == SPECIAL_NUMBERS.keys()
        for key, value in SPECIAL_NUMBERS.items():
            assert _same_number(got.status.metrics[key], value), (key, got.status.metrics[key])


# --- strict structuring: wrong input is a ValidationError naming the field ----------------------


def _valid_dict() -> dict[str, Any]:
    return _serde.to_dict(_sample())


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def test_valid_dict_is_accepted() -> None:
    # The base of the rejection cases below must itself be valid, or they prove nothing.
    assert _serde.from_dict(_valid_dict()) == _sample()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("id",), 1, "run.id"),
        (("kind",), 7, "run.kind"),
        (("project",), 3, "run.project"),
        (("name",), 1, "run.name"),
        (("user",), ["u"], "run.user"),
        (("metadata", "labels"), "a,b", "run.metadata.labels"),
        (("metadata", "labels"), [1], "run.metadata.labels"),
        (("metadata", "description"), 1.5, "run.metadata.description"),
        (("metadata", "revision"), "2", "run.metadata.revision"),
        (("metadata", "revision"), True, "run.metadata.revision"),
        (("metadata", "revision"), 2.0, "run.metadata.revision"),
        (("metadata", "relationships"), {"a": 1}, "run.metadata.relationships"),
        (("metadata", "created"), "2024-01-01T00:00:00", "run.metadata.created"),
        (("metadata", "updated"), "2024-01-01T00:00:00.5", "run.metadata.updated"),
        (("metadata", "created"), "yesterday", "run.metadata.created"),
        (("metadata", "created"), 1700000000, "run.metadata.created"),
        (("status", "transitions", 0, "time"), "2024-01-01T00:00:00", "run.status.transitions"),
        (("spec",), ["not", "a", "dict"], "run.spec"),
        (("spec",), "text", "run.spec"),
        (("status", "state"), "NOPE", "run.status.state"),
        (("status", "state"), "created", "run.status.state"),
        (("status", "state"), 1, "run.status.state"),
        (("status", "transitions", 0, "state"), "NOPE", "run.status.transitions"),
        (("status", "transitions"), {"state": "CREATED"}, "run.status.transitions"),
        (("status", "message"), 0, "run.status.message"),
        (("metadata",), [], "run.metadata"),
        (("status",), "CREATED", "run.status"),
        (("bogus",), 1, "bogus"),
        (("Kind",), "python+job", "Kind"),
        (("metadata", "project"), "other", "metadata.project"),
        (("id",), "../etc", "id"),
        (("id",), "", "id"),
        (("project",), "a/b", "project"),
        (("kind",), "Python+Job", "kind"),
        (("name",), "", "name"),
        (("name",), "tab\there", "name"),
        (("metadata", "labels"), [""], "label"),
        (("metadata", "labels"), ["x" * (MAX_LABEL_LENGTH + 1)], "label"),
        (("metadata", "labels"), ["nul\x00"], "label"),
    ],
)
def test_from_dict_rejects_with_the_field_named(
    path: tuple[str | int, ...], value: Any, named: str
) -> None:
    data = _valid_dict()
    _set(data, path, value)
    with pytest.raises(asyncrun.ValidationError) as info:
        _serde.from_dict(data)
    assert type(info.value) is asyncrun.ValidationError
    assert info.value.code == "validation_error"
    assert named in info.value.message, info.value.message


@pytest.mark.parametrize("missing", ["kind", "id", "project", "metadata"])
def test_from_dict_names_a_missing_required_field(missing: str) -> None:
    data = _valid_dict()
    del data[missing]
    with pytest.raises(asyncrun.ValidationError, match=rf"required field missing @ run\.{missing}"):
        _serde.from_dict(data)


def test_metadata_project_must_match_project() -> None:
    data = _valid_dict()
    data["metadata"]["project"] = "other"
    with pytest.raises(asyncrun.ValidationError) as info:
        _serde.from_dict(data)
    assert "metadata.project" in info.value.message
    assert "'other'" in info.value.message
    assert "'p'" in info.value.message


@pytest.mark.parametrize("data", [None, [], "run", 1, {1: "x"}])
def test_from_dict_rejects_what_is_not_an_object(data: Any) -> None:
    with pytest.raises(asyncrun.ValidationError):
        _serde.from_dict(data)


def test_key_is_derived_never_trusted() -> None:
    data = _valid_dict()
    data["key"] = "store://elsewhere/run/x/y"
    run = _serde.from_dict(data)
    assert run.key == "store://p/run/test+record/r1"
    assert _serde.to_dict(run)["key"] == run.key


def test_unknown_keys_of_metadata_and_status_are_kept_in_order() -> None:
    data = _valid_dict()
    data["metadata"]["zeta"] = {"nested": [1, 2.5, None]}
    data["status"]["outputs"] = ["a"]
    run = _serde.from_dict(data)
    assert run.metadata.extra == {"zeta": {"nested": [1, 2.5, None]}}
    assert run.status.extra == {"outputs": ["a"]}
    assert _serde.to_dict(run) == data


@pytest.mark.parametrize(
    "text", ["kind: [unclosed\n", "- a\n- b\n", "!!python/object:os.system {}\n"]
)
def test_from_yaml_rejects_bad_documents(text: str) -> None:
    with pytest.raises(asyncrun.ValidationError):
        _serde.from_yaml(text)


@pytest.mark.parametrize("payload", [b"{", b"\xff\xfe", b"", b"[1,]"])
def test_run_from_json_rejects_bad_json_as_malformed(payload: bytes) -> None:
    with pytest.raises(asyncrun.MalformedRequest):
        _serde.run_from_json(payload)


def test_log_stream_lines_parse_in_one_call_with_heartbeats_and_end() -> None:
    first = _serde.dumps(
        _serde.log_line_to_dict(
            asyncrun.LogLine(0, "stdout", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "a")
        )
    )
    assert b'"time":"2026-01-02T03:04:05.000006+00:00"' in first
    lines, ended = _serde.log_lines_from_ndjson([first, b"", b"  ", first])
    assert [line.text for line in lines] == ["a", "a"]
    assert not ended
    assert lines[0].time == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    lines, ended = _serde.log_lines_from_ndjson([first, b'{"end": true}', first])
    assert len(lines) == 1
    assert ended


@pytest.mark.parametrize(
    "line",
    [
        b'{"offset": "1", "stream": "stdout", "time": "2026-01-01T00:00:00+00:00", "text": ""}',
        b'{"offset": 1, "stream": "stdout", "time": "2026-01-01T00:00:00", "text": ""}',
        b'{"offset": 1, "stream": "stdout", "time": 5, "text": ""}',
        b'{"offset": 1}',
        b"[1]",
        b"7",
    ],
)
def test_a_bad_log_stream_line_is_a_validation_error(line: bytes) -> None:
    with pytest.raises(asyncrun.ValidationError, match="invalid log line"):
        _serde.log_lines_from_ndjson([line])


def test_parsed_records_share_repeated_strings_and_times() -> None:
    # B7: a client holding many runs keeps one copy of what they repeat.
    data = {
        "kind": "command+job",
        "id": "r1",
        "project": "shared",
        "name": "r1",
        "metadata": {"project": "shared", "name": "r1", "labels": ["nightly"],
                     "updated": "2026-01-01T00:00:01+00:00"},
        "status": {"transitions": [
            {"state": "COMPLETED", "time": "2026-01-01T00:00:01+00:00"},
            {"state": "CREATED", "time": "2026-01-01T00:00:01+00:00"},
        ]},
    }  # fmt: skip
    a, b = _serde.from_dict(data), _serde.from_dict(copy.deepcopy(data))
    assert a == b
    assert a.project is b.project
    assert a.kind is b.kind
    assert a.metadata.labels[0] is b.metadata.labels[0]
    assert a.name is a.id
    assert a.metadata.name is a.id
    first, second = a.status.transitions
    assert first.time is second.time
    assert a.metadata.updated is first.time
