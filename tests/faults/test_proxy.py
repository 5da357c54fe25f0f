"""The fault proxy itself: faults land on the request they were drawn for, nothing leaks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest
from conftest import ServerProcess

from ._proxy import FORWARDED, Fault, FaultPlan, FaultProxy


def test_faults_are_placed_per_request_on_a_kept_alive_connection(
    fault_proxy: FaultProxy,
) -> None:
    fault_proxy.plan = FaultPlan(
        script=[Fault.NONE, Fault.STATUS_503, Fault.NONE, Fault.STATUS_429, Fault.DELAY]
    )
    with httpx.Client(base_url=fault_proxy.url) as http:
        responses = [http.get("/healthz") for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 503, 200, 429, 200, 200]
    assert responses[1].headers["retry-after"] == "0"
    assert responses[3].json()["code"] == "rate_limited"
    records = fault_proxy.records()
    assert {r.connection for r in records} == {0}  # one kept-alive connection carried all
    assert [r.fault for r in records] == [
        Fault.NONE, Fault.STATUS_503, Fault.NONE, Fault.STATUS_429, Fault.DELAY, Fault.NONE,
    ]  # fmt: skip
    assert [r.status for r in records] == [200, 503, 200, 429, 200, 200]
    assert fault_proxy.counts() == {FORWARDED: 3, "status_503": 1, "status_429": 1, "delay": 1}


@pytest.mark.parametrize(
    ("fault", "forwarded"),
    [(Fault.DROP, False), (Fault.RESET_AFTER_FORWARD, True), (Fault.TRUNCATE, True)],
)
def test_broken_connections_fail_the_request_and_the_next_one_reconnects(
    fault_proxy: FaultProxy, fault: Fault, forwarded: bool
) -> None:
    fault_proxy.plan = FaultPlan(script=[Fault.NONE, fault])
    with httpx.Client(base_url=fault_proxy.url) as http:
        assert http.get("/healthz").status_code == 200
        with pytest.raises(httpx.TransportError):
            http.get("/healthz")
        assert http.get("/healthz").json() == {"status": "ok"}
    first, broken, last = fault_proxy.records()
    assert broken.outcome == fault
    assert fault_proxy.count(fault) == 1
    # DROP never reached the server; the others had its whole answer, the client did not.
    assert (broken.status, broken.response_body) == (
        (200, b'{"status":"ok"}') if forwarded else (None, None)
    )
    assert first.connection == broken.connection != last.connection


def test_stop_closes_open_connections_and_leaves_no_thread(fault_server: ServerProcess) -> None:
    proxy = FaultProxy(fault_server.port, plan=FaultPlan(script=[Fault.DELAY], delay=(60, 60)))
    proxy.start()
    idle = socket.create_connection((proxy.host, proxy.port))
    busy = socket.create_connection((proxy.host, proxy.port))
    with idle, busy:
        busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")  # held 60 s
        deadline = time.monotonic() + 10
        while not proxy.records() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.records()[0].fault is Fault.DELAY
        stopping = time.monotonic()
        proxy.stop()
        assert time.monotonic() - stopping < 10  # the delay was cancelled, not awaited
        for sock in (idle, busy):
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""
    assert not [t for t in threading.enumerate() if t.name.startswith("fault-proxy")]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proxy.url}/healthz")
