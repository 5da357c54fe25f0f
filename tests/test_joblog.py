"""The launcher's pure rules (asyncrun._core.joblog): cutting lines, batching, the wire form."""

from __future__ import annotations

from typing import Any

import pytest

from asyncrun._core.errors import ValidationError
from asyncrun._core.joblog import Batcher, JobEnd, LineSplitter, LogBatch, cut_point
from asyncrun._core.records import State


def test_lines_are_split_on_newlines_and_a_carriage_return_before_one_goes() -> None:
    split = LineSplitter()
    assert split.feed(b"one\r\ntw") == ["one"]
    assert split.feed(b"o\nthree") == ["two"]
    assert split.feed(b"", final=True) == ["three"]
    assert split.feed(b"", final=True) == []


def test_a_long_line_is_cut_never_inside_a_utf8_character() -> None:
    split = LineSplitter(limit=10)
    text = "aaaaaaaa" + "é" * 5  # 8 + 10 bytes: a cut at byte 10 would split an é
    lines = split.feed(text.encode() + b"\n")
    assert "".join(lines) == text
    assert all(len(line.encode()) <= 10 for line in lines)
    assert lines[0] == "aaaaaaaaé"  # 10 bytes exactly
    # An endless line (no newline yet) is cut as it comes, never buffered whole.
    assert split.feed(("é" * 20).encode()) == ["é" * 5] * 3
    assert split.feed(b"", final=True) == ["é" * 5]


def test_cut_point_moves_back_to_a_character_start() -> None:
    data = "ab€".encode()  # € is 3 bytes: a, b, e2 82 ac
    assert cut_point(data + b"x", 3) == 2
    assert cut_point(b"\x80" * 8, 4) == 4  # not UTF-8: cut at the limit


def test_undecodable_bytes_are_replaced() -> None:
    assert LineSplitter().feed(b"a\xffb\n") == ["a\ufffdb"]


def test_batches_are_numbered_bounded_and_the_end_comes_last() -> None:
    batcher = Batcher("w", flush_seconds=1.0, max_lines=3, max_bytes=100)
    assert not batcher.due(0.0)
    batcher.add("stdout", 1, ["a", "b"], now=10.0)
    assert not batcher.due(10.5)
    assert batcher.due(11.0)  # the oldest line waited long enough
    batcher.add("stderr", 2, ["c", "d"], now=10.6)
    assert batcher.due(10.6)  # full: 4 lines > 3
    end = JobEnd(0, State.COMPLETED, None, {"exit_code": 0})
    first = batcher.take(end)
    assert (first.seq, first.lines, first.end) == (1, [("stdout", 1, "a"), ("stdout", 1, "b"),
                                                        ("stderr", 2, "c")], None)  # fmt: skip
    last = batcher.take(end)
    assert (last.seq, last.lines, last.end) == (2, [("stderr", 2, "d")], end)
    alone = batcher.take(end)  # nothing pending: the end alone
    assert (alone.seq, alone.lines, alone.end) == (3, [], end)


def test_a_batch_stops_before_the_line_that_crosses_its_bytes() -> None:
    batcher = Batcher("w", max_bytes=10)
    batcher.add("stdout", 1, ["x" * 6, "y" * 6, "z" * 20], now=0.0)
    assert [len(b.lines) for b in (batcher.take(), batcher.take(), batcher.take())] == [1, 1, 1]


def test_the_wire_form_round_trips() -> None:
    batch = LogBatch("w-1", 4, [("stdout", 5, "hi")], JobEnd(3, State.ERROR, "boom", {"x": 1}))
    assert LogBatch.from_wire(batch.to_wire()) == batch


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"writer": "w", "seq": 1}, "body"),
        ({"writer": "w", "seq": 1, "lines": [], "more": 1}, "body"),
        ({"writer": "w/x", "seq": 1, "lines": []}, "writer"),
        ({"writer": "w", "seq": 0, "lines": []}, "seq"),
        ({"writer": "w", "seq": True, "lines": []}, "seq"),
        ({"writer": "w", "seq": 1, "lines": {}}, "lines"),
        ({"writer": "w", "seq": 1, "lines": [["stdin", 1, "x"]]}, "lines[0]"),
        ({"writer": "w", "seq": 1, "lines": [["stdout", -1, "x"]]}, "lines[0]"),
        ({"writer": "w", "seq": 1, "lines": [["stdout", 1, 2]]}, "lines[0]"),
        ({"writer": "w", "seq": 1, "lines": [["stdout", 1, "x" * 70000]]}, "lines[0]"),
        ({"writer": "w", "seq": 1, "lines": [], "end": {"exit_code": "0"}}, "end.exit_code"),
        ({"writer": "w", "seq": 1, "lines": [], "end": {"exit_code": 0}}, "end.state"),
        (
            {"writer": "w", "seq": 1, "lines": [], "end": {"exit_code": 0, "state": "RUNNING"}},
            "end.state",
        ),
    ],
)
def test_bad_batches_name_their_field(body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        LogBatch.from_wire(body)
    assert raised.value.detail == {"field": field}
