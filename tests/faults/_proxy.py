"""A real TCP fault-injection proxy for HTTP/1.1 on loopback, for fault tests.

:class:`FaultProxy` listens on a free ``127.0.0.1`` port and forwards to an upstream
``host:port`` (typically a real ``asyncrun server``). It runs its own asyncio event loop in a
background thread, on raw non-blocking sockets, so it works under whatever event loop (or
none) the test uses, and it owns every socket it opens: ``stop()`` closes them all and joins
the thread.

Where faults are placed: per request, not per connection
--------------------------------------------------------
HTTP/1.1 keeps connections alive: one client connection carries many requests in turn. A fault
decided per connection would only ever hit the first request of a connection (httpx reuses its
pooled connection for every later batch), and a fault such as "reset after forwarding" would
not say *which* request the server had applied. So the proxy parses HTTP/1.1 message
boundaries on both sides:

* a request is its head (up to ``\\r\\n\\r\\n``) plus a body framed by ``Content-Length`` or
  ``Transfer-Encoding: chunked`` (what the asyncrun client sends: ``Content-Length``);
* a response is its head plus a body framed by ``Content-Length``, ``chunked``, or the close of
  the connection (none for ``HEAD``, 1xx, 204 and 304).

Each complete request is then given one :class:`Fault`, drawn from a seeded
``random.Random`` (after an optional script of fixed faults), only if the plan's ``matches``
accepts its method and target (others are always forwarded untouched):

``DROP``
    close the client connection without forwarding: the server never saw the request.
``RESET_AFTER_FORWARD``
    forward the request, read the upstream's *whole* response (so the server has applied it
    and answered), then reset the client connection (``SO_LINGER`` 0, so an RST, not a FIN):
    the server applied the request and the client cannot know. The exactly-once case.
``DELAY``
    wait a random time in ``plan.delay`` before forwarding, then forward normally.
``TRUNCATE``
    forward, read the whole response, send the client only its first half, then close.
``STATUS_503`` / ``STATUS_429``
    answer ``HTTP/1.1 503`` / ``429`` with ``Retry-After: plan.retry_after`` itself, without
    forwarding; the connection stays alive (the request was read whole, so the stream is in
    sync).

Responses of requests without a fault are relayed as they arrive (a streamed body stays
streamed); the proxy never retries anything itself. One upstream connection is kept per client
connection and replaced when the upstream closed it (an idle timeout, a restarted server):
when the upstream cannot be reached the client connection is reset (``upstream_refused``), and
when the upstream dies before its response is complete, likewise (``upstream_lost``).

Counters (:meth:`FaultProxy.count`, :meth:`FaultProxy.counts`) say how many times each fault
was really applied (a ``RESET_AFTER_FORWARD`` whose upstream was down counts as
``upstream_refused``, not as a reset), plus ``forwarded`` (relayed whole, no fault),
``upstream_refused``, ``upstream_lost`` and ``client_gone``. :meth:`FaultProxy.records` keeps
every request: its connection, method, target, body, arrival time (``time.monotonic()``),
fault, outcome and the upstream's response.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

_HEAD_LIMIT: Final = 64 * 1024
_RECV: Final = 64 * 1024
_KEEP_BODY: Final = 1024 * 1024
"""Upstream response bodies up to this size are kept in the records."""


class Fault(enum.StrEnum):
    """What the proxy does to one request."""

    NONE = "none"
    DROP = "drop"
    RESET_AFTER_FORWARD = "reset_after_forward"
    DELAY = "delay"
    TRUNCATE = "truncate"
    STATUS_503 = "status_503"
    STATUS_429 = "status_429"


INJECTED: Final = tuple(fault for fault in Fault if fault is not Fault.NONE)

# Outcomes counted besides the injected faults.
FORWARDED: Final = "forwarded"
UPSTREAM_REFUSED: Final = "upstream_refused"
UPSTREAM_LOST: Final = "upstream_lost"
CLIENT_GONE: Final = "client_gone"


def every_request(method: str, target: str) -> bool:
    """The default ``FaultPlan.matches``: every request may get a fault."""
    return True


def metric_batches(method: str, target: str) -> bool:
    """Only metric batches (``PATCH .../runs/{id}/status``) may get a fault."""
    return method == "PATCH" and target.split("?", 1)[0].endswith("/status")


@dataclass(frozen=True)
class FaultPlan:
    """Which faults the proxy injects.

    Attributes:
        rates: Probability of each fault per matching request (their sum at most 1).
        script: Faults for the first matching requests, in order, before ``rates`` apply;
            ``None`` in the script means "draw from ``rates``".
        delay: Range of a ``DELAY`` fault, in seconds.
        retry_after: The ``Retry-After`` header of injected 503 and 429 answers (``None``:
            no header).
        matches: ``(method, target) -> bool``: which requests may get a fault at all.
    """

    rates: Mapping[Fault, float] = field(default_factory=dict)
    script: Sequence[Fault | None] = ()
    delay: tuple[float, float] = (0.05, 0.25)
    retry_after: str | None = "0"
    matches: Callable[[str, str], bool] = every_request

    def __post_init__(self) -> None:
        if any(fault not in INJECTED or rate < 0 for fault, rate in self.rates.items()):
            raise ValueError(f"bad fault rates: {dict(self.rates)!r}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates must add up to at most 1")


@dataclass
class RequestRecord:
    """One request the proxy received, and what became of it.

    Attributes:
        index: Order of arrival (0-based) over the whole proxy.
        connection: Which client connection carried it (0-based, in order of accept).
        method: The request method.
        target: The request target (path and query).
        body: The request body (de-chunked).
        received: ``time.monotonic()`` when the request had been read whole.
        fault: The fault drawn for it.
        outcome: ``forwarded``, the fault's name once applied, ``upstream_refused``,
            ``upstream_lost``, ``client_gone``, or ``pending``.
        status: The status of the upstream's response, or of the injected answer.
        response_body: The upstream's whole response body (when read whole and not huge).
    """

    index: int
    connection: int
    method: str
    target: str
    body: bytes
    received: float
    fault: Fault
    outcome: str = "pending"
    status: int | None = None
    response_body: bytes | None = None

    def json(self) -> object:
        """The request body as JSON."""
        return json.loads(self.body)

    def response_json(self) -> object:
        """The upstream's response body as JSON (``None`` if the proxy has none)."""
        return None if self.response_body is None else json.loads(self.response_body)


class _Closed(Exception):
    """The peer closed the connection, or broke the HTTP framing."""


class _Stream:
    """A buffered reader/writer over a non-blocking socket owned by the proxy's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.buf = bytearray()

    async def _fill(self) -> None:
        try:
            data = await self.loop.sock_recv(self.sock, _RECV)
        except OSError as exc:
            raise _Closed(str(exc)) from exc
        if not data:
            raise _Closed("end of stream")
        self.buf += data

    async def read_head(self) -> bytes | None:
        """A message head up to and including its blank line; ``None`` at a clean end."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > _HEAD_LIMIT:
                raise _Closed("message head too long")
            try:
                await self._fill()
            except _Closed:
                if not self.buf:
                    return None
                raise

    async def read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _HEAD_LIMIT:
                raise _Closed("line too long")
            await self._fill()
        line = bytes(self.buf[: end + 2])
        del self.buf[: end + 2]
        return line

    async def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one); ``b""`` at the end of the stream."""
        if not self.buf:
            try:
                await self._fill()
            except _Closed:
                return b""
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data

    async def send(self, data: bytes) -> None:
        try:
            await self.loop.sock_sendall(self.sock, data)
        except OSError as exc:
            raise _Closed(str(exc)) from exc

    def reusable(self) -> bool:
        """Whether the peer has neither closed the connection nor sent anything unasked."""
        if self.buf or self.sock.fileno() < 0:
            return False
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)  # b"" is the end of stream
        except BlockingIOError:
            return True  # nothing to read: still open
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with an RST (``SO_LINGER`` 0) rather than a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Sink = Callable[[bytes, bytes], Awaitable[None]]
"""Receives each piece of a body: ``(raw bytes as framed on the wire, decoded data)``."""


def _parse_head(head: bytes) -> tuple[list[str], dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return first, headers


def _framing(headers: dict[str, str]) -> tuple[str, int]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _Closed("bad Content-Length") from None
        return "length", length
    return "eof", 0


async def _relay_body(stream: _Stream, kind: str, length: int, sink: Sink) -> None:
    """Read one body framed as ``kind``, piece by piece, into ``sink``."""
    if kind == "length":
        while length:
            data = await stream.read_some(min(length, _RECV))
            if not data:
                raise _Closed("body cut short")
            length -= len(data)
            await sink(data, data)
    elif kind == "chunked":
        while True:
            line = await stream.read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Closed("bad chunk size") from None
            if size == 0:
                raw = line
                while (trailer := await stream.read_line()) != b"\r\n":
                    raw += trailer
                await sink(raw + b"\r\n", b"")
                return
            await sink(line, b"")
            left = size
            while left:
                data = await stream.read_some(min(left, _RECV))
                if not data:
                    raise _Closed("chunk cut short")
                left -= len(data)
                await sink(data, data)
            end = await stream.read_line()
            if end != b"\r\n":
                raise _Closed("bad chunk end")
            await sink(end, b"")
    elif kind == "eof":
        while data := await stream.read_some(_RECV):
            await sink(data, data)


class _Collect:
    """A sink that keeps the raw bytes and the decoded data (the data up to a bound)."""

    def __init__(self, keep: int = _KEEP_BODY) -> None:
        self.raw = bytearray()
        self.data = bytearray()
        self.keep = keep
        self.too_big = False

    async def __call__(self, raw: bytes, data: bytes) -> None:
        self.raw += raw
        if len(self.data) + len(data) > self.keep:
            self.too_big = True
        else:
            self.data += data

    def kept(self) -> bytes | None:
        return None if self.too_big else bytes(self.data)


@dataclass
class _Conn:
    """One client connection and the upstream connection serving it."""

    loop: asyncio.AbstractEventLoop
    number: int
    client: _Stream
    upstream: _Stream | None = None


_REASONS: Final = {503: "Service Unavailable", 429: "Too Many Requests"}


class FaultProxy:
    """A fault-injecting HTTP/1.1 proxy on loopback (see the module's docstring).

    Use it as a context manager (``with FaultProxy(port) as proxy:``), or call ``start()`` and
    ``stop()``. ``plan`` may be replaced at any time, from any thread.

    Args:
        upstream_port: The port to forward to; several (replicas): each new upstream
            connection goes to the next one that accepts it, in turn.
        upstream_host: The host to forward to.
        plan: The faults to inject (none by default).
        seed: Seed of the random draws (faults and delays).
    """

    def __init__(
        self,
        upstream_port: int | Sequence[int],
        upstream_host: str = "127.0.0.1",
        *,
        plan: FaultPlan | None = None,
        seed: int = 0,
    ) -> None:
        ports = [upstream_port] if isinstance(upstream_port, int) else list(upstream_port)
        self.upstreams = [(upstream_host, port) for port in ports]
        self.upstream = self.upstreams[0]
        self._next_upstream = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._plan = plan or FaultPlan()
        self._script_used = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._records: list[RequestRecord] = []
        self._connections = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: dict[asyncio.Task[None], socket.socket] = {}
        self._failures: list[BaseException] = []

    # -- public ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: where clients should connect."""
        return f"http://{self.host}:{self.port}"

    @property
    def plan(self) -> FaultPlan:
        """The faults injected from now on (setting it restarts its script)."""
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._script_used = 0

    def count(self, name: str) -> int:
        """How many times ``name`` (a :class:`Fault` or an outcome) happened."""
        with self._lock:
            return self._counts[str(name)]

    def counts(self) -> dict[str, int]:
        """Every counter, as a plain dict (a snapshot)."""
        with self._lock:
            return dict(self._counts)

    def records(self) -> list[RequestRecord]:
        """Every request received so far, in order of arrival (a snapshot of the list)."""
        with self._lock:
            return list(self._records)

    def start(self) -> FaultProxy:
        """Start listening; returns once the port is known."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name=f"fault-proxy->{self.upstream[1]}"
        )
        self._thread.start()
        ready.wait(10)
        if not self.port:
            self._thread.join(10)
            self._thread = None
            raise RuntimeError("the fault proxy did not start") from (
                self._failures[0] if self._failures else None
            )
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and join the thread.

        Raises:
            RuntimeError: if the proxy itself failed (a bug of the proxy, not a fault).
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the fault proxy's thread did not stop")
        if self._failures:
            raise RuntimeError(f"the fault proxy failed: {self._failures[0]!r}") from (
                self._failures[0]
            )

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------------------

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:
            self._failures.append(exc)
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            listener.listen(128)
            listener.setblocking(False)
            self.port = listener.getsockname()[1]
            ready.set()
            accepting = asyncio.create_task(self._accept(loop, listener))
            await self._stop.wait()
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
        finally:
            listener.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sock in self._tasks.values():  # tasks cancelled before their first step
                sock.close()
            self._tasks.clear()

    async def _accept(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                number = self._connections
                self._connections += 1
            task = asyncio.create_task(self._connection(loop, number, sock))
            self._tasks[task] = sock
            task.add_done_callback(self._connection_done)

    def _connection_done(self, task: asyncio.Task[None]) -> None:
        sock = self._tasks.pop(task, None)
        if sock is not None:
            sock.close()  # no-op if the connection closed it already
        if not task.cancelled() and task.exception() is not None:
            self._failures.append(task.exception())  # type: ignore[arg-type]

    def _draw(self, method: str, target: str) -> tuple[Fault, float]:
        with self._lock:
            plan = self._plan
            if not plan.matches(method, target):
                return Fault.NONE, 0.0
            fault: Fault | None = None
            if self._script_used < len(plan.script):
                fault = plan.script[self._script_used]
                self._script_used += 1
            if fault is None:
                fault = Fault.NONE
                draw = self._rng.random()
                for candidate in INJECTED:
                    draw -= plan.rates.get(candidate, 0.0)
                    if draw < 0:
                        fault = candidate
                        break
            delay = self._rng.uniform(*plan.delay) if fault is Fault.DELAY else 0.0
            return fault, delay

    def _done(self, record: RequestRecord, outcome: str) -> None:
        outcome = str(outcome)  # a Fault is counted under its plain name
        with self._lock:
            if record.outcome != "pending":  # a correction: the client left at the very end
                self._counts[record.outcome] -= 1
            record.outcome = outcome
            self._counts[outcome] += 1

    async def _connection(
        self, loop: asyncio.AbstractEventLoop, number: int, sock: socket.socket
    ) -> None:
        conn = _Conn(loop, number, _Stream(loop, sock))
        reset = False
        try:
            while True:
                keep_alive, reset = await self._one_request(conn)
                if not keep_alive:
                    return
        except _Closed:
            reset = True
        finally:
            if conn.upstream is not None:
                conn.upstream.close()
            if reset:
                conn.client.reset()
            else:
                conn.client.close()

    async def _one_request(self, conn: _Conn) -> tuple[bool, bool]:
        """Serve one request: ``(keep the connection alive, reset it)``."""
        client = conn.client
        head = await client.read_head()
        if head is None:
            return False, False
        (method, target, *_), headers = _parse_head(head)
        kind, length = _framing(headers)
        if kind == "eof":
            kind = "none"  # a request without a framed body has none
        body = _Collect(keep=1 << 62)
        if kind != "none":
            await _relay_body(client, kind, length, body)
        fault, delay = self._draw(method, target)
        record = RequestRecord(
            index=0,
            connection=conn.number,
            method=method,
            target=target,
            body=body.kept() or b"",
            received=time.monotonic(),
            fault=fault,
        )
        with self._lock:
            record.index = len(self._records)
            self._records.append(record)
        plan = self._plan

        if fault is Fault.DROP:
            self._done(record, fault)
            return False, False
        if fault in (Fault.STATUS_503, Fault.STATUS_429):
            record.status = 503 if fault is Fault.STATUS_503 else 429
            self._done(record, fault)  # counted before the client can see it
            canned = _canned(record.status, plan.retry_after)
            return await self._send_last(record, client, canned), False
        if fault is Fault.DELAY:
            await asyncio.sleep(delay)

        if conn.upstream is None or not conn.upstream.reusable():
            if conn.upstream is not None:
                conn.upstream.close()
            conn.upstream = await self._connect(conn.loop)
            if conn.upstream is None:
                self._done(record, UPSTREAM_REFUSED)
                return False, True
        try:
            try:
                await conn.upstream.send(head + bytes(body.raw))
            except _Closed as exc:
                raise _UpstreamLost from exc
            keep_alive, tail = await self._relay_response(method, headers, record, conn)
        except _UpstreamLost:
            self._done(record, UPSTREAM_LOST)
            return False, True
        except _ClientGone:
            self._done(record, CLIENT_GONE)
            return False, True
        if fault is Fault.RESET_AFTER_FORWARD:
            self._done(record, fault)
            return False, True
        if fault is Fault.TRUNCATE:
            self._done(record, fault)
            return False, False
        self._done(record, FORWARDED if fault is Fault.NONE else fault)
        return await self._send_last(record, client, tail) and keep_alive, False

    async def _send_last(self, record: RequestRecord, client: _Stream, data: bytes) -> bool:
        """Send the last bytes of a response, already counted; ``False`` if the client left.

        Counting first means a test that has its response sees the counters up to date.
        """
        try:
            await client.send(data)
        except _Closed:
            self._done(record, CLIENT_GONE)
            return False
        return True

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Stream | None:
        # Like a load balancer in front of replicas: each new upstream connection goes to the
        # next upstream in turn, skipping those that refuse it.
        for _ in range(len(self.upstreams)):
            with self._lock:
                address = self.upstreams[self._next_upstream % len(self.upstreams)]
                self._next_upstream += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(5):
                    await loop.sock_connect(sock, address)
            except (OSError, TimeoutError):
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _Stream(loop, sock)
        return None

    async def _relay_response(
        self,
        method: str,
        request_headers: dict[str, str],
        record: RequestRecord,
        conn: _Conn,
    ) -> tuple[bool, bytes]:
        """Read the upstream's response and deliver it as the record's fault says.

        Returns:
            Whether both connections may carry another request, and the last bytes of the
            response, held back so that the request is counted before the client has it all.

        Raises:
            _UpstreamLost: if the upstream closed before its response was complete.
            _ClientGone: if the client went away.
        """
        fault = record.fault
        client, upstream = conn.client, conn.upstream
        assert upstream is not None
        relay = fault in (Fault.NONE, Fault.DELAY)
        whole = bytearray()
        held = bytearray()  # relayed: everything but the last piece is sent as it comes

        async def deliver(raw: bytes) -> None:
            if not relay:
                whole.extend(raw)
                return
            if held:
                try:
                    await client.send(bytes(held))
                except _Closed as exc:
                    raise _ClientGone from exc
            held[:] = raw

        while True:
            try:
                head = await upstream.read_head()
            except _Closed:
                head = None
            if head is None:
                raise _UpstreamLost
            (_, status_text, *_), headers = _parse_head(head)
            status = int(status_text)
            await deliver(head)
            if 100 <= status < 200 and status != 101:
                continue  # an interim response: the final one follows
            break
        record.status = status
        kind, length = _framing(headers)
        if method == "HEAD" or status in (204, 304) or status < 200:
            kind = "none"
        body = _Collect()
        if kind != "none":

            async def sink(raw: bytes, data: bytes) -> None:
                await body(raw, data)
                await deliver(raw)

            try:
                await _relay_body(upstream, kind, length, sink)
            except _Closed as exc:
                raise _UpstreamLost from exc
        record.response_body = body.kept()
        if fault is Fault.TRUNCATE:
            try:
                await client.send(bytes(whole[: len(whole) // 2]))
            except _Closed as exc:
                raise _ClientGone from exc
        closing = "close" in headers.get("connection", "").lower()
        closing = closing or "close" in request_headers.get("connection", "").lower()
        return kind != "eof" and not closing, bytes(held)


class _UpstreamLost(Exception):
    """The upstream closed before its response was complete."""


class _ClientGone(Exception):
    """The client closed its connection before the response was delivered."""


def _canned(status: int, retry_after: str | None) -> bytes:
    body = json.dumps(
        {
            "code": "rate_limited" if status == 429 else "unavailable",
            "message": f"HTTP {status} injected by the fault proxy",
            "detail": None,
        }
    ).encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@contextlib.contextmanager
def fault_proxy(
    upstream_port: int, *, plan: FaultPlan | None = None, seed: int = 0
) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` to ``127.0.0.1:upstream_port``, stopped on exit."""
    with FaultProxy(upstream_port, plan=plan, seed=seed) as proxy:
        yield proxy
