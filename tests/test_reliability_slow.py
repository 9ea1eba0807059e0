"""Slow and stuck clients: slowloris headers, byte-by-byte handshakes, silent connections, idle keep-alive
connections and clients that never read are closed within the vendor-derived bounds, take no more than
their share of memory and descriptors, and do not starve a steady client. Wall time: about 10 s.

Bounds (time_scale 0.01, every scaled I/O timeout at least 1 s): the client header timeout (nginx's
`client_header_timeout`, 60 s scaled) for the handshake and the request headers, `idle_timeout` (15 s
scaled) once the handshake is done, both plus the sweeper's granularity.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from simulator.dataplane.addons.timeouts import CLIENT_HEADER_TIMEOUT
from simulator.model.config import io_timeout
from simulator.harness.running import RunningLab
from simulator.tools.soak import Footprint, SteadyClient, backend_traffic, record_of, settle, slow_clients, start_reliability_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    running = start_reliability_lab(tmp_path_factory.mktemp("reliability-slow"))
    yield running
    running.stop()


def test_the_header_timeout_is_nginx_default_scaled_with_the_io_floor(lab: RunningLab) -> None:
    addon = lab.lab.master.addons.get("idletimeouts")
    assert CLIENT_HEADER_TIMEOUT == 60
    assert addon.client_header_timeout == io_timeout(60, lab.config.time_scale) == 1.0


def dribble_headers_until_closed(s: ssl.SSLSocket, lines: int) -> float | None:
    """Send a header line every 50 ms (each byte would reset the idle timeout alone) until the listener
    closes, then close: when it closed (time.time()), or None if it never did within `lines` lines."""
    s.settimeout(0.05)
    closed_at = None
    for i in range(lines):
        try:
            s.sendall(b"X-%d: y\r\n" % i)
            if s.recv(100) == b"":
                closed_at = time.time()
                break
        except TimeoutError:
            continue
        except OSError:
            closed_at = time.time()
            break
    s.close()
    return closed_at


def test_slowloris_is_cut_at_the_header_timeout_not_kept_alive_by_each_byte(lab: RunningLab) -> None:
    started = time.time()
    s = lab.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way"))),
                                      server_hostname="localhost")
    local = s.getsockname()[1]
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    closed_at = dribble_headers_until_closed(s, 100)
    assert closed_at is not None and 1.0 <= closed_at - started < 2.5
    record = record_of(lab, local, since=started)
    assert record["closed_by"] == "client_header_timeout" and record["requests"] == 0


def test_slowloris_on_a_keep_alive_connection_gets_idle_plus_header_timeout(lab: RunningLab) -> None:
    """After an answer, a silent client is idle (closed at idle_timeout); one that starts a request gets
    idle_timeout to start it and the header timeout to finish: slowloris is cut there."""
    started = time.time()
    s = lab.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way"))),
                                      server_hostname="localhost")
    local = s.getsockname()[1]
    s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    answered = time.time()
    s.sendall(b"GET /second HTTP/1.1\r\n")
    closed_at = dribble_headers_until_closed(s, 200)
    idle = io_timeout(lab.listener("aliyun-one-way").active.spec.idle_timeout, lab.config.time_scale)
    header = io_timeout(CLIENT_HEADER_TIMEOUT, lab.config.time_scale)
    assert closed_at is not None and idle + header <= closed_at - answered < idle + header + 1.5
    record = record_of(lab, local, since=started)
    assert record["closed_by"] == "client_header_timeout" and record["requests"] == 1


def test_every_kind_of_slow_client_is_closed_in_bounds_beside_a_steady_client(lab: RunningLab) -> None:
    lab.get("aliyun-one-way", "/warm")
    baseline = settle(lab, Footprint.now(lab))
    result = slow_clients(lab, count=6)
    assert result.failures == []
    assert result.inputs == 30
    assert result.details["closed_by"] == {"client_header_timeout": 18, "idle_timeout": 12}
    # 64 pipelined 1 MiB requests each, never read: the listener fetched a few, not 64 MiB a client.
    assert result.details["never_read_fetched_per_client"] <= 8
    after = settle(lab, baseline)
    rss_growth, fd_growth = after.growth(baseline)
    assert fd_growth <= 2, (baseline, after)  # beyond idle upstream keep-alive connections (bounded by the pool)
    assert rss_growth < 64, (baseline, after)  # MiB: the responses fetched for the never-readers, freed since


def test_many_slow_clients_do_not_starve_a_steady_one(lab: RunningLab) -> None:
    port = lab.port("tencent-one-way")
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def loris() -> None:
        while not stop.is_set():
            try:
                s = lab.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
                sockets.append(s)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    s.sendall(b"X-Loris: 1\r\n")
                    time.sleep(0.2)
            except OSError:
                continue

    threads = [threading.Thread(target=loris, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    steady = SteadyClient(port, lab.ssl_context(), per_connection=2)
    steady.start()
    time.sleep(3)
    steady.stop()
    stop.set()
    for t in threads:
        t.join(5)
    for s in sockets:
        s.close()
    summary = steady.summary()
    assert steady.failures == [] and steady.ok >= 30, summary
    assert summary["p99_ms"] < 1000, summary
    assert backend_traffic(lab) >= 0  # (the lorises never completed a request)
