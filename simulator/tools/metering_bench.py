"""What metering costs the TLS work of one connection: metered vs plain `SSL.Connection`, in one run.

    python -m simulator.tools.metering_bench [--connections 200] [--requests 2000] [--version TLSv1.3]

Client and server run in memory; only the server side (what the listener does: construct, bio_write,
do_handshake, recv, sendall, bio_read, and for metered connections finish + to_dict) is timed.
Metered and plain connections (and requests) alternate one by one, so noise from other work on the
machine hits both; medians are compared.
A third row times what the listener does with a connection's record at close when metering is on
(`to_dict`, `billing.billed`, the ledger, the longer JSON line of the connection log) against the same
record without `traffic` and `billed`.
This isolates the meter's own cost; `python -m simulator.tools.listener_bench` measures the whole
listener's CPU with metering on and off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from simulator.metering import billing
from simulator.metering.ledger import TrafficLedger
from simulator.metering.meter import MeteredConnection

# Reference listener costs on the 2-core lab machine (design notes): bare mitmdump reverse proxy.
MITMDUMP_NEW_CONN_PER_S = 132
MITMDUMP_KEEPALIVE_REQ_PER_S = 509

_encode_line = json.JSONEncoder(separators=(",", ":")).encode
_REQUEST = b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n"
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _contexts(version: str) -> tuple[SSL.Context, SSL.Context]:
    import trustme  # a dev dependency: the benchmark makes its own lab PKI

    d = Path(tempfile.mkdtemp(prefix="lbsim-bench-"))
    root = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = root.create_child_ca(key_type=trustme.KeyType.RSA).issue_cert("lb.test", key_type=trustme.KeyType.RSA)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "s.pem"))
    root.cert_pem.write_to_path(str(d / "ca.pem"))
    v = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}[version]
    server = SSL.Context(SSL.TLS_METHOD)
    server.use_certificate_chain_file(str(d / "s.pem"))
    server.use_privatekey_file(str(d / "s.pem"))
    server.set_session_id(b"bench")
    client = SSL.Context(SSL.TLS_METHOD)
    client.set_min_proto_version(v)
    client.set_max_proto_version(v)
    client.load_verify_locations(str(d / "ca.pem"))
    return server, client


class _Timer:
    def __init__(self) -> None:
        self.t = 0.0

    def run(self, fn: Any, *a: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a)
        finally:
            self.t += time.perf_counter() - t0


def _drain(src: SSL.Connection, timer: _Timer | None) -> bytes:
    out = bytearray()
    while True:
        try:
            out += timer.run(src.bio_read, 65535) if timer else src.bio_read(65535)
        except SSL.WantReadError:
            return bytes(out)


def _server_recv(s: SSL.Connection, timer: _Timer) -> bytes:
    out = bytearray()
    while True:
        try:
            out += timer.run(s.recv, 65535)
        except (SSL.WantReadError, SSL.ZeroReturnError):
            return bytes(out)


def _connect(sctx: SSL.Context, cctx: SSL.Context, metered: bool,
             timer: _Timer) -> tuple[SSL.Connection, SSL.Connection]:
    s = timer.run(MeteredConnection if metered else SSL.Connection, sctx)
    timer.run(s.set_accept_state)
    c = SSL.Connection(cctx)
    c.set_connect_state()
    done = False
    while not done:
        try:
            c.do_handshake()
        except SSL.WantReadError:
            pass
        data = _drain(c, None)
        if data:
            timer.run(s.bio_write, data)
        try:
            timer.run(s.do_handshake)
            done = True
        except SSL.WantReadError:
            pass
        data = _drain(s, timer)
        if data:
            c.bio_write(data)
    c.do_handshake()
    _exchange(s, c, timer)
    return s, c


def _exchange(s: SSL.Connection, c: SSL.Connection, timer: _Timer) -> None:
    c.sendall(_REQUEST)
    timer.run(s.bio_write, _drain(c, None))
    assert _server_recv(s, timer)
    _drain(s, timer)
    timer.run(s.sendall, _RESPONSE)
    data = _drain(s, timer)
    c.bio_write(data)
    while True:
        try:
            c.recv(65535)
        except SSL.WantReadError:
            break


def new_connection(sctx: SSL.Context, cctx: SSL.Context, metered: bool) -> float:
    """Server-side seconds of one connection: handshake, one request, the client's close_notify."""
    timer = _Timer()
    s, c = _connect(sctx, cctx, metered, timer)
    c.shutdown()
    timer.run(s.bio_write, _drain(c, None))
    _server_recv(s, timer)
    if metered:
        timer.run(s.meter.finish)
        timer.run(s.meter.to_dict)
    return timer.t


# The fields `addons/connlog.py` logs for every connection, metered or not.
_BASE_RECORD = {
    "time": "2026-01-01T00:00:00.000Z", "client": "127.0.0.1:50000", "listener": "bench", "listener_port": 443,
    "profile": "aliyun-slb", "billing_model": "aliyun-slb", "sni": "lb.test", "tls_protocol": "TLSv1.3",
    "tls_cipher": "TLS_AES_256_GCM_SHA384", "alpn": "http/1.1", "tls_handshake_latency": 0.004, "resumed": False,
    "tls_verify_status": "Success", "client_cert_subject": None, "client_cert_serial": None,
    "client_cert_validity": None, "requests": 1, "duration": 0.02, "closed_by": None, "error": None,
}


def record_work(meter: Any, ledger: TrafficLedger) -> float:
    """Seconds to close the books of one connection as the connection log does, with `meter` (metering on)
    or without (None): the record, the ledger, the JSON line."""
    t0 = time.perf_counter()
    record = dict(_BASE_RECORD)
    if meter is not None:
        meter.finish()
        record["traffic"] = meter.to_dict()
        record["billed"] = billing.billed(record["billing_model"], record)
    line = _encode_line(record)  # once, for the log and for the ledger, as the connection log does
    ledger.add(record, record.get("billed"), line)
    return time.perf_counter() - t0


def run(connections: int = 200, requests: int = 2000, version: str = "TLSv1.3") -> dict[str, Any]:
    """Medians of per-connection and per-request server-side times, metered and plain interleaved one
    by one (alternating which goes first), so that noise from other work on the machine hits both."""
    sctx, cctx = _contexts(version)
    samples: dict[str, dict[bool, list[float]]] = {"new_connection": {True: [], False: []},
                                                   "keep_alive_request": {True: [], False: []}}
    for i in range(connections):
        for metered in ((False, True) if i % 2 else (True, False)):
            samples["new_connection"][metered].append(new_connection(sctx, cctx, metered))
    pairs = {m: _connect(sctx, cctx, m, _Timer()) for m in (False, True)}
    samples["connection_record"] = {True: [], False: []}
    ledgers = {True: TrafficLedger(), False: TrafficLedger()}  # they grow as the listener's does
    for i in range(connections):
        for metered in ((False, True) if i % 2 else (True, False)):
            meter = pairs[True][0].meter if metered else None
            samples["connection_record"][metered].append(record_work(meter, ledgers[metered]))
    for i in range(requests):
        for metered in ((False, True) if i % 2 else (True, False)):
            timer = _Timer()
            _exchange(*pairs[metered], timer)
            samples["keep_alive_request"][metered].append(timer.t)
    listener_cost = {"new_connection": 1 / MITMDUMP_NEW_CONN_PER_S,
                     "keep_alive_request": 1 / MITMDUMP_KEEPALIVE_REQ_PER_S,
                     "connection_record": 1 / MITMDUMP_NEW_CONN_PER_S}
    out: dict[str, Any] = {"version": version}
    for k, v in samples.items():
        plain, metered = statistics.median(v[False]), statistics.median(v[True])
        added = metered - plain
        out[k] = {"plain_us": round(plain * 1e6, 1), "metered_us": round(metered * 1e6, 1),
                  "added_us": round(added * 1e6, 1), "tls_ratio": round(metered / plain, 3),
                  "share_of_mitmdump_cost_pct": round(100 * added / listener_cost[k], 2)}
    return out


_PER = {"new_connection": "new connection", "keep_alive_request": "keep-alive request",
        "connection_record": "new connection"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--version", choices=["TLSv1.2", "TLSv1.3"], default="TLSv1.3")
    a = p.parse_args(argv)
    r = run(a.connections, a.requests, a.version)
    print(f"{r['version']}: the listener's server-side work, metered vs plain (medians, interleaved)")
    for k in ("new_connection", "keep_alive_request", "connection_record"):
        x = r[k]
        print(f"  {k:20s} plain {x['plain_us']:8.1f} us  metered {x['metered_us']:8.1f} us  "
              f"added {x['added_us']:6.1f} us  ratio {x['tls_ratio']:.3f}  "
              f"= {x['share_of_mitmdump_cost_pct']:.2f}% of a mitmdump {_PER[k]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
