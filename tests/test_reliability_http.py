"""Malformed HTTP after the handshake: a clear 4xx or a closed connection, logged, and nothing reaches a
backend that nginx (the vendors' layer 7) would not pass on. HTTP/1 on an aliyun listener, HTTP/2 frame
abuse on the tencent listener with http2 on. Wall time: about 5 s.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from simulator.tools import fuzz
from simulator.dataplane.addons.limits import MAX_PIPELINED
from simulator.harness.running import RunningLab
from simulator.tools.soak import (Result, SteadyClient, backend_traffic, check_h2_case, check_http1_case, exchange, h2_context,
                            h2_exchange, malformed_http, record_of, start_reliability_lab, status_of)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    running = start_reliability_lab(tmp_path_factory.mktemp("reliability-http"))
    yield running
    running.stop()


@pytest.mark.parametrize("case", fuzz.HTTP1_CASES, ids=lambda c: c.name)
def test_http1_case(lab: RunningLab, case: fuzz.HttpCase) -> None:
    result = Result("http")
    check_http1_case(lab, "aliyun-one-way", case, result)
    assert result.failures == []


@pytest.mark.parametrize("case", fuzz.H2_CASES, ids=lambda c: c.name)
def test_http2_case(lab: RunningLab, case: fuzz.H2Case) -> None:
    result = Result("http")
    check_h2_case(lab, "tencent-one-way", case, result)
    assert result.failures == []


def test_refusals_carry_the_vendor_page_and_the_reason_is_logged(lab: RunningLab) -> None:
    started = time.time()
    response, ended, local = exchange(lab.port("aliyun-one-way"), lab.ssl_context(),
                                      b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert status_of(response) == 400 and b"400 Request Header Or Cookie Too Large" in response
    assert b"Server: Tengine" in response and b"Connection: close" in response
    record = record_of(lab, local, since=started)
    assert record["error"] == "a header line over 8192 bytes" and record["requests"] == 0
    started = time.time()
    response, _, local = exchange(lab.port("tencent-one-way"), lab.ssl_context(), b"get / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Server: stgw" in response and record_of(lab, local, since=started)["error"] == "invalid method b'get'"


def test_a_good_request_before_a_bad_one_is_answered(lab: RunningLab) -> None:
    before = backend_traffic(lab)
    response, _, _ = exchange(lab.port("aliyun-one-way"), lab.ssl_context(),
                              b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 400 Bad Request" in response
    assert backend_traffic(lab) - before == 1


def test_smuggling_attempts_never_reach_a_backend_as_a_second_request(lab: RunningLab) -> None:
    before = {b.name: dict(b.stats["by_path"]) for b in lab.lab.backends.values()}
    for case in [c for c in fuzz.HTTP1_CASES if "Content-Length" in c.name or "chunk" in c.name]:
        exchange(lab.port("aliyun-one-way"), lab.ssl_context(), case.data)
    after = {b.name: dict(b.stats["by_path"]) for b in lab.lab.backends.values()}
    assert after == before


def test_pipelining_more_than_a_mebibyte_behind_a_slow_request_closes(lab: RunningLab) -> None:
    started = time.time()
    s = lab.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way")), timeout=10),
                                      server_hostname="localhost")
    local = s.getsockname()[1]
    s.sendall(b"GET /slow?delay_ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    sent = 0
    with pytest.raises((OSError, ssl.SSLError)):
        while sent < 8 * MAX_PIPELINED:  # the listener must close before we get there
            s.sendall(b"GET /pipelined HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
            sent += 39_000
        s.recv(65536)
        raise AssertionError(f"sent {sent} pipelined bytes without being closed")
    s.close()
    assert "pipelined" in record_of(lab, local, since=started)["error"]


def test_http2_rapid_reset_does_not_make_backends_work(lab: RunningLab) -> None:
    case = next(c for c in fuzz.H2_CASES if c.streams)
    before = backend_traffic(lab)
    frames, _ = h2_exchange(lab.port("tencent-one-way"), h2_context(lab), case.frames)
    assert backend_traffic(lab) - before <= case.streams // 50


def test_every_case_at_once_on_tencent_beside_a_steady_client(lab: RunningLab) -> None:
    steady = SteadyClient(lab.port("aliyun-mutual"), lab.ssl_context("valid"), per_connection=3, interval=0.01)
    steady.start()
    result = malformed_http(lab, h1_listeners=("tencent-one-way",))
    steady.stop()
    assert result.failures == [] and result.inputs == len(fuzz.HTTP1_CASES) + len(fuzz.H2_CASES)
    assert steady.failures == [] and steady.ok > 10
