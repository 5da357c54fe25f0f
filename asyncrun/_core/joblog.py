"""What a job's launcher sends the server: tagged log lines and its end, in numbered batches.

Pure: the launcher (``asyncrun._launcher``) feeds bytes and passes the time in; the server
parses the same wire form (``POST .../runs/{id}/logs:append``).

**Lines.** Output is split at ``\\n`` (a ``\\r`` before it is dropped) and decoded as UTF-8,
undecodable bytes replaced. A line longer than :data:`~asyncrun._core.logs.MAX_LINE_BYTES` is
cut into pieces of at most that many bytes, never inside a UTF-8 character: the agent of
local jobs cuts the same way, so a run's log reads the same on every executor.

**Batches.** Each batch carries its writer (one per execution) and a sequence number 1, 2, 3...
A retried batch carries the same number and contents: the server applies it once, ignores a
duplicate and refuses a gap (``409 sequence_gap``), as it does for metric batches. The last
batch carries the job's end (:class:`JobEnd`): once it is acknowledged, every line is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .errors import ValidationError
from .logs import MAX_LINE_BYTES
from .records import State

STREAMS: Final = ("stdout", "stderr")
MAX_BATCH_LINES: Final = 5000
"""Lines one batch carries at most."""
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Bytes of text one batch carries at most (well under the server's body limit of 8 MiB)."""
MAX_TEXT_CHARS: Final = MAX_LINE_BYTES
"""Characters of one line the server accepts (a cut line holds at most that many bytes)."""
FLUSH_SECONDS: Final = 0.2
"""Longest a line waits in the launcher before its batch is sent."""
END_STATES: Final = (State.COMPLETED, State.ERROR)
_WRITER_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_US: Final = 2**63 - 1

Line = tuple[str, int, str]
"""``(stream, time_us, text)``."""


def cut_point(data: bytes, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``) at most ``limit`` bytes in.

    Never inside a UTF-8 character: a continuation byte (``10xxxxxx``) at the cut moves the
    cut back to its character's first byte (at most 3 bytes back; invalid UTF-8 is cut at
    ``limit``).
    """
    for cut in range(limit, max(limit - 4, 0), -1):
        if data[cut] & 0xC0 != 0x80:
            return cut
    return limit


@attrs.define
class LineSplitter:
    """Turns one stream's bytes into lines, as they come.

    Attributes:
        limit: Bytes of one line at most (longer ones are cut).
    """

    limit: int = MAX_LINE_BYTES
    _rest: bytes = b""

    def feed(self, data: bytes, *, final: bool = False) -> list[str]:
        """The complete lines ``data`` ends (all that is left, if ``final``)."""
        data = self._rest + data
        parts = data.split(b"\n")
        rest = parts.pop()
        if final and rest:
            parts.append(rest)
            rest = b""
        lines: list[bytes] = []
        for part in parts:
            lines.extend(self._cut(part))
        while len(rest) > self.limit:  # an endless line is cut, never buffered forever
            cut = cut_point(rest, self.limit)
            lines.append(rest[:cut])
            rest = rest[cut:]
        self._rest = rest
        return [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]

    def _cut(self, line: bytes) -> list[bytes]:
        pieces = []
        while len(line) > self.limit:
            cut = cut_point(line, self.limit)
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)
        return pieces


@attrs.frozen
class JobEnd:
    """How the job ended, as its kind reads it in the launcher.

    Attributes:
        exit_code: The command's exit code (negative: killed by that signal).
        state: ``COMPLETED`` or ``ERROR``.
        message: The run's message (``None`` for none).
        status: Status keys the kind adds (``exit_code``, ``results``...).
    """

    exit_code: int
    state: State
    message: str | None = None
    status: Mapping[str, Any] = attrs.field(factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """As JSON-able data."""
        return {
            "exit_code": self.exit_code,
            "state": str(self.state),
            "message": self.message,
            "status": dict(self.status),
        }

    @classmethod
    def from_wire(cls, data: Any) -> JobEnd:
        """Parse and validate.

        Raises:
            ValidationError: naming the field that is wrong.
        """
        if not isinstance(data, dict) or not set(data) <= {
            "exit_code",
            "state",
            "message",
            "status",
        }:
            raise _bad("end", 'end is {"exit_code": int, "state": str, "message", "status"}')
        code = data.get("exit_code")
        if type(code) is not int or not -(2**31) <= code < 2**31:
            raise _bad("end.exit_code", "end.exit_code must be an integer")
        try:
            state = State(str(data.get("state")))
        except ValueError:
            state = None
        if state not in END_STATES:
            raise _bad("end.state", "end.state must be COMPLETED or ERROR")
        message = data.get("message")
        if message is not None and not isinstance(message, str):
            raise _bad("end.message", "end.message must be a string or null")
        status = data.get("status") or {}
        if not isinstance(status, dict):
            raise _bad("end.status", "end.status must be an object")
        return cls(code, state, message, status)


@attrs.frozen
class LogBatch:
    """One numbered batch of a job's lines (and, last, its end).

    Attributes:
        writer: The execution's writer id.
        seq: 1, 2, 3... per writer; a retry carries the same number and contents.
        lines: ``(stream, time_us, text)`` in order.
        end: How the job ended (only in the last batch).
    """

    writer: str
    seq: int
    lines: list[Line]
    end: JobEnd | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON body of ``POST .../runs/{id}/logs:append``."""
        body: dict[str, Any] = {
            "writer": self.writer,
            "seq": self.seq,
            "lines": [list(line) for line in self.lines],
        }
        if self.end is not None:
            body["end"] = self.end.to_wire()
        return body

    @classmethod
    def from_wire(cls, data: Any) -> LogBatch:
        """Parse and validate a body.

        Raises:
            ValidationError: naming the field or line that is wrong.
        """
        if (
            not isinstance(data, dict)
            or not {"writer", "seq", "lines"} <= set(data)
            or not set(data) <= {"writer", "seq", "lines", "end"}
        ):
            raise _bad(
                "body",
                'a log batch is {"writer": str, "seq": int, '
                '"lines": [[stream, time_us, text], ...], "end"?: {...}}',
            )
        writer, seq, raw = data["writer"], data["seq"], data["lines"]
        if not isinstance(writer, str) or not _WRITER_RE.fullmatch(writer):
            raise _bad("writer", "writer must be 1-64 letters, digits, '_', '.' or '-'")
        if type(seq) is not int or not 1 <= seq < 2**63:
            raise _bad("seq", "seq must be a positive integer")
        if not isinstance(raw, list) or len(raw) > MAX_BATCH_LINES:
            raise _bad("lines", f"lines must be a list of at most {MAX_BATCH_LINES} lines")
        lines: list[Line] = []
        for index, line in enumerate(raw):
            if (
                not isinstance(line, list)
                or len(line) != 3
                or line[0] not in STREAMS
                or type(line[1]) is not int
                or not 0 <= line[1] <= _MAX_US
                or not isinstance(line[2], str)
                or len(line[2]) > MAX_TEXT_CHARS
            ):
                raise _bad(
                    f"lines[{index}]",
                    "a line is [stream, time_us, text]: stream stdout or stderr, time_us an "
                    f"integer >= 0, text a string of at most {MAX_TEXT_CHARS} characters",
                )
            lines.append((line[0], line[1], line[2]))
        end = None if data.get("end") is None else JobEnd.from_wire(data["end"])
        return cls(writer, seq, lines, end)


@attrs.define
class Batcher:
    """The launcher's outgoing lines: when a batch is due, and what it holds.

    Attributes:
        writer: The writer id of every batch.
        flush_seconds: Longest a line waits before a batch is due.
        max_lines: Lines of one batch at most.
        max_bytes: Bytes of text of one batch at most.
    """

    writer: str
    flush_seconds: float = FLUSH_SECONDS
    max_lines: int = MAX_BATCH_LINES
    max_bytes: int = MAX_BATCH_BYTES
    pending: list[Line] = attrs.Factory(list)
    next_seq: int = 1
    oldest: float | None = None
    _bytes: int = 0

    def add(self, stream: str, time_us: int, texts: list[str], now: float) -> None:
        """Queue lines of ``stream`` read at ``time_us`` (``now``: a monotonic clock)."""
        for text in texts:
            self.pending.append((stream, time_us, text))
            self._bytes += len(text.encode("utf-8", "replace"))
        if texts and self.oldest is None:
            self.oldest = now

    def due(self, now: float) -> bool:
        """Whether a batch should be sent now."""
        if not self.pending:
            return False
        full = len(self.pending) >= self.max_lines or self._bytes >= self.max_bytes
        return full or (self.oldest is not None and now - self.oldest >= self.flush_seconds)

    def take(self, end: JobEnd | None = None) -> LogBatch:
        """The next batch: the oldest pending lines within the bounds (``end`` once all sent).

        The batch is numbered now; send it until acknowledged, then take the next.
        """
        count = used = 0
        for _, _, text in self.pending[: self.max_lines]:
            size = len(text.encode("utf-8", "replace"))
            if count and used + size > self.max_bytes:
                break
            count += 1
            used += size
        lines, self.pending = self.pending[:count], self.pending[count:]
        self._bytes -= used
        self.oldest = None if not self.pending else self.oldest
        batch = LogBatch(self.writer, self.next_seq, lines, end if not self.pending else None)
        self.next_seq += 1
        return batch


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, detail={"field": field})
