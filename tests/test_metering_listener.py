"""The meter inside the live listener (the lab's mitmproxy, the session `lab` fixture): the connection
log's `traffic` equals what a counting client put on and took off the wire, and shows up in
`GET /v1/traffic` and `lbsim report traffic --api`."""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import time
from typing import Any

import pytest
from OpenSSL import SSL
from helpers import read_response
from test_metering_harness import CountingClient, assert_invariant

from simulator.metering import billing
from simulator.metering import cli as mcli


def record_of(lab: Any, listener: str, client: CountingClient, timeout: float = 5.0) -> dict[str, Any]:
    """The connection-log record of this client's connection (matched by its local port)."""
    port = client.local_port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in reversed(lab.connections(listener)):
            if r["client"].endswith(f":{port}"):
                return r
        time.sleep(0.02)
    raise AssertionError(f"no connection record for client port {port}")


def connect(lab: Any, listener: str, cert: bool = False) -> CountingClient:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.load_verify_locations(lab.ca_file)
    if cert:
        ctx.use_certificate_chain_file(lab.files["client-valid"])
        ctx.use_privatekey_file(lab.files["client-valid-key"])
    c = CountingClient(("127.0.0.1", lab.port(listener)), ctx, sni=b"localhost")
    c.local_port = c.sock.getsockname()[1]  # type: ignore[attr-defined]
    return c


@pytest.mark.parametrize("listener", ["aliyun-one-way", "tencent-one-way", "aliyun-mutual"])
def test_listener_traffic_equals_the_clients_bytes(lab: Any, listener: str) -> None:
    c = connect(lab, listener, cert="mutual" in listener)
    c.handshake()
    for _ in range(3):
        c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert c.read_response().startswith(b"HTTP/1.1 200")
    c.close()
    rec = record_of(lab, listener, c)
    t = rec["traffic"]
    assert_invariant(t)
    assert (t["client_to_lb"]["wire"], t["lb_to_client"]["wire"]) == (c.sent, c.received)
    assert (t["client_to_lb"]["payload"], t["lb_to_client"]["payload"]) == (c.plain_sent, c.plain_received)
    assert t["client_to_lb"]["handshake"] == c.hs_sent
    if t["tls_version"] != "TLSv1.3":
        assert t["lb_to_client"]["handshake"] == c.hs_received
    assert t["requests"] == 3 and t["unsent_bytes"] == 0
    assert rec["billed"] == billing.billed(rec["billing_model"], rec)


def test_rejected_client_gets_the_counted_alert(lab: Any) -> None:
    """No client certificate on a mutual listener: the LB's alert is counted and reaches the client.
    The client's request, sent after its side of the TLS 1.3 handshake completed, arrives after the LB
    failed it: mitmproxy discards it without bio_write, so the meter sees it only if the listener
    reports it (`meter.received_unread`)."""
    c = connect(lab, "aliyun-mutual")
    c.handshake()
    c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    with pytest.raises((SSL.Error, ConnectionError)):
        c.read(1)
    c.abort()
    t = record_of(lab, "aliyun-mutual", c)["traffic"]
    assert_invariant(t)
    assert t["handshake_complete"] is False and t["unsent_bytes"] == 0
    assert t["lb_to_client"]["wire"] == t["lb_to_client"]["handshake"] == c.received
    assert c.hs_sent <= t["client_to_lb"]["wire"] <= c.sent


def test_traffic_api_and_report(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    c = connect(lab, "aliyun-one-way")
    c.handshake()
    c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    c.read_response()
    c.close()
    record_of(lab, "aliyun-one-way", c)
    status, body = lab.api("GET", "/v1/traffic")
    assert status == 200
    port = lab.port("aliyun-one-way")
    mine = [s for s in body["listeners"] if s["listener_port"] == port]
    assert mine and mine[0]["connections"] >= 1 and mine[0]["billing_model"] == "aliyun-slb"
    p = argparse.ArgumentParser(prog="lbsim")
    mcli.register(p.add_subparsers())
    args = p.parse_args(["report", "traffic", "--api", lab.api_url, "--token", lab.config.api.token or ""])
    assert args.func(args) == 0
    assert any(line.split()[:1] == [str(port)] for line in capsys.readouterr().out.splitlines())


def _lb_side(lab: Any, client_port: int) -> tuple[Any, Any]:
    """The live listener-side socket and meter of the client connection from `client_port`."""

    async def find() -> tuple[Any, Any]:
        connections = lab.lab.master.addons.get("proxyserver").connections
        for client_id, state in lab.lab.registry.clients.items():
            if state.peer[1] == client_port and client_id in connections:
                handler = connections[client_id]
                io = handler.transports[handler.client]
                return io.writer.get_extra_info("socket"), state.ssl_conn.meter
        raise LookupError(client_port)

    return lab.call(find())


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_listener_wire_equals_the_kernels_count_of_its_own_socket(lab: Any, version: str) -> None:
    """TCP_INFO bytes_received / bytes_acked of the LB's socket equal the meter's wire counts, exactly."""
    from simulator.metering import tcpinfo

    client = ssl.create_default_context(cafile=lab.ca_file)
    client.load_cert_chain(lab.files["client-valid"], lab.files["client-valid-key"])
    client.minimum_version = client.maximum_version = getattr(ssl.TLSVersion, version.replace(".", "_"))
    with client.wrap_socket(socket.create_connection(("127.0.0.1", lab.port("aliyun-mutual"))), server_hostname="localhost") as s:
        for i in range(5):
            s.sendall(f"GET /k{i}?size={1000 * i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            read_response(s)
        time.sleep(0.1)  # let the last ACKs land
        sock, meter = _lb_side(lab, s.getsockname()[1])
        kernel = lab.call(asyncio.to_thread(tcpinfo.read_settled, sock))
        counted = meter.to_dict()
        assert kernel.payload_received == counted["client_to_lb"]["wire"]
        assert kernel.payload_acked == counted["lb_to_client"]["wire"]
        assert counted["requests"] == 5
