"""Metric semantics (DESIGN.md section 5) as pure code, used by both the client and the server.

A call becomes one or more operations ``(key, mode, value)``. :func:`step` says what one
operation does to a key, given only the key's *shape* (absent, a list, or a single number); the
dict model :func:`apply` and the server's append-only store are both driven by it, so they can
never disagree.

| call | mode |
|---|---|
| ``log_metric(k, v)`` | APPEND: a list; appends (a single number becomes ``[old, v]``) |
| ``log_metric(k, v, overwrite=True)`` | REPLACE: the key becomes ``list(v)`` |
| ``log_metric(k, v, single_value=True)`` | SINGLE: ``v`` if the key is absent, else unchanged |
| ``log_metric(k, v, single_value=True, overwrite=True)`` | SET: the key becomes ``v`` |
| ``log_metrics({k: v})`` | MERGE: as given if absent, else appends like APPEND |
| ``log_metrics({k: v}, overwrite=True)`` | SET |
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, TypeVar

import attrs

from .errors import ValidationError
from .records import CONTROL_RE

Number: TypeAlias = "int | float"
Value: TypeAlias = "int | float | list[int | float]"
MetricType: TypeAlias = "float | int | Sequence[float | int] | Any"
"""What ``log_metric`` accepts: a number or a flat sequence of numbers; numpy scalars and 1-d
arrays too (hence ``Any``: numpy is never imported to name its types)."""

MAX_KEY_LENGTH: Final = 250


class Mode(enum.IntEnum):
    """What an operation does to its key (see the module's table)."""

    APPEND = 1
    REPLACE = 2
    SINGLE = 3
    SET = 4
    MERGE = 5


def mode_of(*, overwrite: bool, single_value: bool) -> Mode:
    """The mode of a ``log_metric`` call."""
    if single_value:
        return Mode.SET if overwrite else Mode.SINGLE
    return Mode.REPLACE if overwrite else Mode.APPEND


def check_key(key: object) -> str:
    """Validate a metric key.

    Raises:
        TypeError: if the key is not a string.
        ValueError: if it is empty, longer than 250 characters or has control characters.
    """
    if not isinstance(key, str):
        raise TypeError(f"a metric key must be a str, got {type(key).__name__}: {key!r}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"metric key {key!r} must be 1 to {MAX_KEY_LENGTH} characters long")
    if CONTROL_RE.search(key):
        raise ValueError(f"metric key {key!r} must not contain control characters")
    return key


INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1


def check_int(key: str, value: int) -> int:
    """Refuse ints that JSON and the store cannot carry exactly (outside int64)."""
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(
            f"metric {key!r}: {value} is outside the 64-bit integer range; log it as a float"
        )
    return value


def _number(key: str, value: object) -> Number:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int:
        return check_int(key, value)  # type: ignore[arg-type]
    if kind.__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        item = value.item()  # a numpy scalar (or 0-d array) as the Python number it holds
        if type(item).__module__ != "numpy":
            return _number(key, item)
        return _wide_numpy(key, value)  # longdouble and clongdouble: no Python type holds them
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"metric {key!r}: a value must be an int or a float (or a list of them), "
            f"got {kind.__name__}: {value!r}"
        )
    if isinstance(value, float):
        return float(value)
    return check_int(key, int(value))  # an int subclass


def _wide_numpy(key: str, value: Any) -> float:
    """A numpy ``longdouble`` as the nearest float; ``clongdouble`` and the like refused.

    ``float()`` rounds a long double to the nearest float64, as ``tolist()`` does for the
    other numpy floats; a finite value beyond float64's range is refused, not made infinite.
    """
    dtype_kind = getattr(getattr(value, "dtype", None), "kind", None)
    if dtype_kind == "f":
        number = float(value)
        if math.isinf(number) and value != number:
            raise ValueError(
                f"metric {key!r}: {value!r} is beyond the range of a float (float64); "
                "scale it or log its logarithm"
            )
        return number
    what = "a complex number" if dtype_kind == "c" else type(value).__name__
    raise TypeError(
        f"metric {key!r}: a value must be an int or a float (or a list of them), "
        f"got {what} ({type(value).__name__}: {value!r}); log its real and imaginary parts "
        "as two metrics"
    )


def check_value(key: str, value: object) -> Value:
    """Validate and normalise a metric value: a number, or a flat list of numbers.

    numpy scalars and 1-d arrays are accepted (numpy is never imported here). A numpy
    ``longdouble`` becomes the nearest float (what the store keeps; extended precision is
    lost); complex numbers, numpy's included, are refused.

    Raises:
        TypeError: naming the key, for bool, str, None, dict, nested lists and the like.
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]  # the hot path: no further checks
    if kind is int:
        return check_int(key, value)  # type: ignore[arg-type]
    if kind.__module__ == "numpy" and getattr(value, "ndim", None) == 1:
        value = value.tolist()  # type: ignore[attr-defined]
    if isinstance(value, list | tuple):
        return [_number(key, item) for item in value]
    return _number(key, value)


@attrs.frozen
class Op:
    """One metric operation: what a call asks of one key."""

    key: str
    mode: Mode
    value: Value


def ops_of_log_metric(key: str, value: object, overwrite: bool, single_value: bool) -> Op:
    """Validate a ``log_metric`` call into its operation (raises before anything is buffered)."""
    check_key(key)
    checked = check_value(key, value)
    if single_value and isinstance(checked, list):
        raise TypeError(f"metric {key!r}: single_value=True needs a single number, got a list")
    return Op(key, mode_of(overwrite=overwrite, single_value=single_value), checked)


def ops_of_log_metrics(metrics: Mapping[str, object], overwrite: bool) -> list[Op]:
    """Validate a ``log_metrics`` call into its operations, all or none."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of key -> value, got {type(metrics).__name__}")
    mode = Mode.SET if overwrite else Mode.MERGE
    return [Op(check_key(key), mode, check_value(key, value)) for key, value in metrics.items()]


# -- semantics -------------------------------------------------------------------------------


class Shape(enum.Enum):
    """What a key holds."""

    LIST = "list"
    SINGLE = "single"


@attrs.frozen
class Effect:
    """What one operation does to a key's stored values.

    Attributes:
        shape: The key's shape afterwards (``None``: unchanged and absent).
        extend: Values appended to the key's list (the list is kept).
        reset: The key's whole new list, replacing what it held (``None``: kept).
        single: The key's new single value (when ``shape`` is SINGLE and it changed).
        ignored: The operation left the key unchanged (SINGLE on a key that has a value).
    """

    shape: Shape | None
    extend: Sequence[Number] = ()
    reset: list[Number] | None = None
    single: Number | None = None
    ignored: bool = False


def _as_list(value: Value) -> list[Number]:
    return list(value) if isinstance(value, list) else [value]


def step(shape: Shape | None, single: Number | None, op: Op) -> Effect:
    """The effect of ``op`` on a key of ``shape`` (holding ``single`` when SINGLE)."""
    mode, value = op.mode, op.value
    if mode is Mode.SINGLE:
        if shape is not None:
            return Effect(shape, ignored=True)
        mode = Mode.SET
    if mode is Mode.SET:
        if isinstance(value, list):
            return Effect(Shape.LIST, reset=list(value))
        return Effect(Shape.SINGLE, single=value)
    if mode is Mode.REPLACE:
        return Effect(Shape.LIST, reset=_as_list(value))
    # APPEND and MERGE differ only on an absent key.
    if shape is None:
        if mode is Mode.MERGE and not isinstance(value, list):
            return Effect(Shape.SINGLE, single=value)
        return Effect(Shape.LIST, reset=_as_list(value))
    if shape is Shape.SINGLE:
        assert single is not None
        return Effect(Shape.LIST, reset=[single, *_as_list(value)])
    return Effect(Shape.LIST, extend=_as_list(value))


def apply(metrics: dict[str, Any], op: Op) -> bool:
    """Apply ``op`` to a plain metrics dict (the reference model). Returns ``False`` if ignored."""
    current: Any = metrics.get(op.key)
    if op.key not in metrics:
        shape = None
    else:
        shape = Shape.LIST if isinstance(current, list) else Shape.SINGLE
    effect = step(shape, None if isinstance(current, list) else current, op)
    if effect.ignored:
        return False
    if effect.reset is not None:
        metrics[op.key] = effect.reset
    elif effect.shape is Shape.SINGLE:
        metrics[op.key] = effect.single
    else:
        metrics[op.key] = [*current, *effect.extend]
    return True


def apply_all(metrics: dict[str, Any], ops: Iterable[Op]) -> list[str]:
    """Apply operations in order; returns the keys of ignored operations."""
    return [op.key for op in ops if not apply(metrics, op)]


# -- batching --------------------------------------------------------------------------------


def compact(ops: Iterable[Op]) -> list[Op]:
    """Fewer, larger operations with the same effect (see :func:`compact_items`)."""
    return compact_items((op.key, op.mode, op.value) for op in ops)


R = TypeVar("R")
_MERGEABLE: Final = (int(Mode.APPEND), int(Mode.MERGE))


def compact_items(items: Iterable[tuple[str, int, Value]]) -> list[Op]:
    """Fewer, larger operations with the same effect, from ``(key, mode, value)`` items.

    Operations on different keys commute, so they are grouped per key (first-seen order), and
    runs of APPEND or MERGE on one key become one operation with the values concatenated. A
    single MERGE of a scalar is kept as it is (on an absent key it sets a single number). Linear
    in the number of values; the given values are never modified.
    """
    return compact_per_run((None, key, mode, value) for key, mode, value in items).get(None, [])


def compact_per_run(items: Iterable[tuple[R, str, int, Value]]) -> dict[R, list[Op]]:
    """:func:`compact_items` of each run's items, from ``(run, key, mode, value)`` items.

    One pass over plain tuples, so the client's flusher groups and compacts a million buffered
    values without building an object per value.
    """
    per_run: dict[R, dict[str, list[list[Any]]]] = {}  # run -> key -> [[mode, value, owned]]
    last_run: R | None = None
    last_key = ""
    last: list[Any] = [0, None, False]
    for run, key, mode, value in items:
        # A loop logging one metric repeats (run, key, mode): extend the same list directly.
        if key is last_key and run is last_run and mode == last[0] and last[2]:
            if value.__class__ is list:
                last[1].extend(value)
            else:
                last[1].append(value)
            continue
        per_key = per_run.get(run)
        if per_key is None:
            per_key = per_run[run] = {}
        chain = per_key.get(key)
        if chain is None:
            chain = per_key[key] = []
        tail = chain[-1] if chain else None
        if tail is not None and tail[0] == mode and mode in _MERGEABLE:
            if not tail[2]:
                tail[1], tail[2] = _as_list(tail[1]), True  # a copy we may extend
            if value.__class__ is list:
                tail[1].extend(value)
            else:
                tail[1].append(value)
        else:
            tail = [mode, value, False]
            chain.append(tail)
        last_run, last_key, last = run, key, tail
    return {
        run: [
            Op(key, Mode(mode), value) for key, chain in per_key.items() for mode, value, _ in chain
        ]
        for run, per_key in per_run.items()
    }


def size(op: Op) -> int:
    """How many values an operation carries."""
    return len(op.value) if isinstance(op.value, list) else 1


def split(ops: Sequence[Op], max_values: int) -> list[list[Op]]:
    """Cut operations into batches of at most ``max_values`` values, keeping their effect.

    A long list is cut into pieces: APPEND and MERGE pieces append; the first piece of a
    REPLACE or list-SET resets the key, the later ones APPEND.
    """
    batches: list[list[Op]] = [[]]
    room = max_values
    for op in ops:
        if size(op) <= room or not isinstance(op.value, list):
            if size(op) > room and batches[-1]:
                batches.append([])
                room = max_values
            batches[-1].append(op)
            room -= size(op)
            continue
        values, mode = op.value, op.mode
        while values:
            if room == 0:
                batches.append([])
                room = max_values
            piece, values = values[:room], values[room:]
            batches[-1].append(Op(op.key, mode, piece))
            room -= len(piece)
            if mode in (Mode.REPLACE, Mode.SET):
                mode = Mode.APPEND
    return [batch for batch in batches if batch]


# -- the wire --------------------------------------------------------------------------------

_NONFINITE_OUT: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NONFINITE_IN: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_number(value: Number) -> Number | str:
    """A number as JSON can carry it (non-finite floats as ``"NaN"``, ``"Infinity"``...)."""
    if type(value) is float and not math.isfinite(value):
        return _NONFINITE_OUT[repr(value)]
    return value


def encode_value(value: Value) -> Any:
    """A metric value as JSON can carry it."""
    if isinstance(value, list):
        # One C-level sum instead of a check per value: finite unless some value is not (or
        # the sum overflows, which only costs the slow path).
        with contextlib.suppress(OverflowError):
            if math.isfinite(sum(value)):
                return value
        return [encode_number(v) for v in value]
    return encode_number(value)


def decode_number(raw: Any) -> Number:
    """The inverse of :func:`encode_number`.

    Raises:
        TypeError: if ``raw`` is not a number or one of the non-finite names.
    """
    kind = type(raw)
    if kind is float:
        return raw  # type: ignore[no-any-return]
    if kind is int:
        if not INT_MIN <= raw <= INT_MAX:
            raise TypeError(f"{raw} is outside the 64-bit integer range")
        return raw  # type: ignore[no-any-return]
    if kind is str and raw in _NONFINITE_IN:
        return _NONFINITE_IN[raw]
    raise TypeError(f"expected a number, got {kind.__name__}: {raw!r}")


def decode_value(raw: Any) -> Value:
    """The inverse of :func:`encode_value`."""
    if type(raw) is list:
        if set(map(type, raw)) <= _FLOAT:  # the common case, checked in C
            return raw
        return [decode_number(item) for item in raw]
    return decode_number(raw)


_FLOAT: Final = frozenset({float})


def op_to_wire(op: Op) -> list[Any]:
    """``[key, mode, value]``: the compact form sent in a batch."""
    return [op.key, int(op.mode), encode_value(op.value)]


def op_from_wire(raw: Any) -> Op:
    """Parse and validate one operation of a batch.

    Raises:
        ValueError: naming what is wrong (the server answers 422).
    """
    if type(raw) is not list or len(raw) != 3:
        raise ValueError(f"an operation is [key, mode, value], got {raw!r:.80}")
    key, mode, value = raw
    try:
        checked_key = check_key(key)
        checked_mode = Mode(mode) if type(mode) is int else None
        if checked_mode is None:
            raise ValueError(f"mode must be one of {[int(m) for m in Mode]}, got {mode!r}")
        decoded = decode_value(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if checked_mode in (Mode.SINGLE,) and isinstance(decoded, list):
        raise ValueError(f"metric {key!r}: single_value needs a single number")
    return Op(checked_key, checked_mode, decoded)


MAX_BATCH_OPS: Final = 100_000
MAX_BATCH_VALUES: Final = 1_000_000
_WRITER_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@attrs.frozen
class Batch:
    """Metric operations of one writer for one run, numbered for exactly-once delivery.

    Attributes:
        writer: Identifies the buffer that sent it (one per client).
        seq: 1, 2, 3... per writer and run; a retry carries the same number and contents.
        ops: The operations, in call order (per key).
    """

    writer: str
    seq: int
    ops: list[Op]

    def to_wire(self) -> dict[str, Any]:
        """The JSON body of ``PATCH .../runs/{id}/status``."""
        return {"writer": self.writer, "seq": self.seq, "ops": [op_to_wire(op) for op in self.ops]}

    @classmethod
    def from_wire(cls, data: Any) -> Batch:
        """Parse and validate a batch body.

        Raises:
            ValidationError: naming the field or operation that is wrong.
        """
        if not isinstance(data, dict) or set(data) != {"writer", "seq", "ops"}:
            raise ValidationError(
                'a metric batch is {"writer": str, "seq": int, "ops": [[key, mode, value], ...]}',
                detail={"field": "body"},
            )
        writer, seq, raw_ops = data["writer"], data["seq"], data["ops"]
        if not isinstance(writer, str) or not _WRITER_RE.fullmatch(writer):
            raise ValidationError("writer must be 1-64 letters, digits, '_', '.' or '-'",
                                  detail={"field": "writer"})  # fmt: skip
        if type(seq) is not int or not 1 <= seq < 2**63:
            raise ValidationError("seq must be a positive integer", detail={"field": "seq"})
        if not isinstance(raw_ops, list) or len(raw_ops) > MAX_BATCH_OPS:
            raise ValidationError(f"ops must be a list of at most {MAX_BATCH_OPS} operations",
                                  detail={"field": "ops"})  # fmt: skip
        ops = []
        values = 0
        for index, raw in enumerate(raw_ops):
            try:
                op = op_from_wire(raw)
            except ValueError as exc:
                raise ValidationError(str(exc), detail={"field": f"ops[{index}]"}) from None
            values += size(op)
            ops.append(op)
        if values > MAX_BATCH_VALUES:
            raise ValidationError(f"a batch carries at most {MAX_BATCH_VALUES} values; split it",
                                  detail={"field": "ops"})  # fmt: skip
        return cls(writer, seq, ops)
