"""The meter inside the live listener (the lab's mitmproxy, the session `lab` fixture): the connection
log's `traffic` equals what a counting client put on and took off the wire, and shows up in
`GET /v1/traffic` and `lbsim report traffic --api`."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import socket
import ssl
import time
from typing import Any

import pytest
from mitmproxy.proxy.tunnel import TunnelLayer
from OpenSSL import SSL
from helpers import read_response
from test_metering_harness import VERSIONS, CountingClient, assert_invariant
from test_metering_wire import tls13_ticket_bytes

from simulator.metering import billing
from simulator.metering import cli as mcli


def record_of(lab: Any, listener: str | int, client: CountingClient, timeout: float = 5.0) -> dict[str, Any]:
    """The connection-log record of this client's connection: its local port, and not before it opened
    (ports are reused in a long session; `connect` notes both)."""
    return lab.record_of(client, listener, timeout=timeout)


# The proof of exactness, through the real listener: (listener, version, client certificate,
# resume, requests, body bytes each way). Every case is one connection, counted byte by byte by the client.
EXACT = {
    "tls1.0": ("aliyun-one-way", "TLSv1", False, False, 3, 0),
    "tls1.1": ("aliyun-one-way", "TLSv1.1", False, False, 3, 0),
    "tls1.2": ("aliyun-one-way", "TLSv1.2", False, False, 3, 0),
    "tls1.3": ("tencent-one-way", "TLSv1.3", False, False, 3, 0),
    "resumed-tls1.2": ("aliyun-one-way", "TLSv1.2", False, True, 1, 0),
    "resumed-tls1.3": ("tencent-one-way", "TLSv1.3", False, True, 1, 0),
    "mutual-tls1.2": ("aliyun-mutual", "TLSv1.2", True, False, 1, 0),
    "mutual-tls1.3": ("aliyun-mutual", "TLSv1.3", True, False, 1, 0),
    "keep-alive-100": ("aliyun-one-way", "TLSv1.2", False, False, 100, 0),
    "1MiB-both-ways": ("tencent-one-way", "TLSv1.3", False, False, 1, 1 << 20),
}


def client_context(lab: Any, version: str | None = None, cert: bool = False,
                   alpn: list[bytes] | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.load_verify_locations(lab.ca_file)
    if version:
        ctx.set_min_proto_version(VERSIONS[version])
        ctx.set_max_proto_version(VERSIONS[version])
        if version in ("TLSv1", "TLSv1.1"):  # OpenSSL 3 needs security level 0 for SHA-1 signatures
            ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if cert:
        ctx.use_certificate_chain_file(lab.files["client-valid"])
        ctx.use_privatekey_file(lab.files["client-valid-key"])
    if alpn:
        ctx.set_alpn_protos(alpn)
    return ctx


def connect(lab: Any, listener: str | int, cert: bool = False, ctx: SSL.Context | None = None,
            session: Any = None) -> CountingClient:
    opened = time.time()
    c = CountingClient(("127.0.0.1", lab.port(listener)), ctx or client_context(lab, cert=cert), sni=b"localhost",
                       session=session)
    c.local_port, c.opened = c.sock.getsockname()[1], opened  # type: ignore[attr-defined]
    return c


def assert_exact(rec: dict[str, Any], c: CountingClient) -> dict[str, Any]:
    """The LB's record against the client's own counts: wire exactly, and every category it can know."""
    t = rec["traffic"]
    assert_invariant(t)
    i, o = t["client_to_lb"], t["lb_to_client"]
    assert (i["wire"], o["wire"]) == (c.sent, c.received)
    assert (i["payload"], o["payload"]) == (c.plain_sent, c.plain_received)
    assert i["handshake"] == c.hs_sent
    tickets = tls13_ticket_bytes(c, o["handshake"]) if t["tls_version"] == "TLSv1.3" else 0
    assert o["handshake"] == c.hs_received + tickets
    assert i["closure"] == c.out_records.records[-1].size and o["closure"] == 0  # the client's close_notify
    assert t["unsent_bytes"] == 0 and t["handshake_complete"] is True
    assert rec["billed"] == billing.billed(rec["billing_model"], rec)
    return t


def read_some(c: CountingClient) -> bytes:
    """Whatever plaintext the next record(s) carry, counted as received."""
    while True:
        try:
            data = c.conn.recv(65535)
        except SSL.WantReadError:
            c._flush()
            if not c._pull():
                raise ConnectionError("the LB closed") from None
            continue
        c.plain_received += len(data)
        return data


@pytest.mark.parametrize("case", EXACT)
def test_listener_wire_equals_the_clients_raw_socket_counts(lab: Any, case: str) -> None:
    listener, version, cert, resume, requests, body = EXACT[case]
    ctx = client_context(lab, version, cert)
    session = None
    if resume:  # a full handshake first, for its session (TLS 1.3: the ticket comes with the response)
        first = connect(lab, listener, ctx=ctx)
        first.handshake()
        first.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first.read_response()
        session = first.session()
        first.close()
    c = connect(lab, listener, ctx=ctx, session=session)
    c.handshake()
    for n in range(requests):
        head = f"POST /k{n}?size={body} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {body}\r\n\r\n"
        c.send(head.encode() + b"x" * body)
        assert c.read_response().startswith(b"HTTP/1.1 200")
    c.close()
    t = assert_exact(record_of(lab, listener, c), c)
    assert (t["tls_version"], t["resumed"], t["requests"]) == (version, resume, requests)
    if body:  # a body spans many records (16 KiB plaintext at most each): all of them were counted
        records = t["records"]
        assert min(records["client_to_lb"]["application_data"], records["lb_to_client"]["application_data"]) >= 64


@pytest.mark.parametrize("listener, version", [("aliyun-one-way", "TLSv1.2"), ("tencent-one-way", "TLSv1.3")])
def test_an_answer_is_sealed_as_nginx_seals_it_one_record_per_16_KiB(lab: Any, listener: str, version: str) -> None:
    """mitmproxy hands an answer's head and body to TLS as two writes; the listener seals them together, as
    nginx's 16 KiB TLS buffer does: a small answer is one record, a big one as few as 16 KiB records take."""
    c = connect(lab, listener, ctx=client_context(lab, version))
    c.handshake()
    answers = []
    for size in (0, 100, 2000, 40000):
        before = c.plain_received
        c.send(f"GET /sealed?size={size} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert c.read_response().startswith(b"HTTP/1.1 200")
        answers.append(c.plain_received - before)
    c.close()
    t = assert_exact(record_of(lab, listener, c), c)
    assert answers[-1] > 40000
    # -(-n // 16384): the records n bytes of plaintext need at 16 KiB each (3 for the 40,000-byte body)
    assert t["records"]["lb_to_client"]["application_data"] == sum(-(-n // 16384) for n in answers) == 6


# mitmproxy 12.2's TunnelLayer.event_to_child, which ListenerTLSLayer.event_to_child follows (and seals writes in).
MITMPROXY_TUNNEL_EVENT_TO_CHILD = "119a33642637d4207f26313a1088030a99e1b6e6e18318d0a7dec706d4633a63"


def test_mitmproxys_tunnel_event_to_child_is_still_the_one_the_listener_follows() -> None:
    # When this fails, mitmproxy changed how its tunnel hands events to the layer above: carry the change over
    # to ListenerTLSLayer.event_to_child (simulator/dataplane/addons/tls.py), then record the new digest here.
    source = inspect.getsource(TunnelLayer.event_to_child)
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_TUNNEL_EVENT_TO_CHILD, source


def test_http2_streams_through_mitmproxy_are_exact_and_counted_as_requests(lab: Any) -> None:
    """ALPN h2: mitmproxy's HTTP/2 layer serves 3 concurrent streams on one connection."""
    import h2.config
    import h2.connection
    import h2.events

    c = connect(lab, "tencent-one-way", ctx=client_context(lab, "TLSv1.3", alpn=[b"h2"]))
    c.handshake()
    assert c.conn.get_alpn_proto_negotiated() == b"h2"
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h.initiate_connection()
    for stream in (1, 3, 5):
        h.send_headers(stream, [(":method", "GET"), (":path", f"/h2?size={20000 + stream}"), (":scheme", "https"),
                                (":authority", "localhost")], end_stream=True)
    c.send(h.data_to_send())
    ended: set[int] = set()
    while len(ended) < 3:
        for event in h.receive_data(read_some(c)):
            if isinstance(event, h2.events.DataReceived):
                h.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        if h.data_to_send():
            c.send(h.data_to_send())
    c.close()  # close_notify without a GOAWAY: mitmproxy would close first, and the close_notify hit a reset
    rec = record_of(lab, "tencent-one-way", c)
    t = assert_exact(rec, c)
    assert rec["alpn"] == "h2" and t["requests"] == rec["requests"] == 3


@pytest.mark.parametrize("listener, version", [("aliyun-one-way", "TLSv1.2"), ("tencent-one-way", "TLSv1.3")])
def test_client_gone_mid_handshake_is_exact(lab: Any, listener: str, version: str) -> None:
    """The client sends its ClientHello, takes the LB's flight and leaves without a word."""
    c = connect(lab, listener, ctx=client_context(lab, version))
    with pytest.raises(SSL.WantReadError):
        c.conn.do_handshake()
    c._flush()  # the ClientHello goes out
    first = c.sock.recv(1)  # the LB's flight has started: wait for it, then leave
    c.received += len(first)
    c.in_records.feed(first)
    time.sleep(0.05)
    c.abort()
    t = record_of(lab, listener, c)["traffic"]
    assert_invariant(t)
    assert t["handshake_complete"] is False and t["unsent_bytes"] == 0
    assert t["client_to_lb"]["wire"] == t["client_to_lb"]["handshake"] == c.sent
    assert t["lb_to_client"]["wire"] == t["lb_to_client"]["handshake"] == c.received > 1000  # with the certificate


def test_rejected_client_gets_the_counted_alert(lab: Any) -> None:
    """No client certificate on a mutual listener: the LB's alert is counted and reaches the client.
    The client's request, sent after its side of the TLS 1.3 handshake completed, arrives after the LB
    failed it: mitmproxy discards it without bio_write, so the meter sees it only if the listener
    reports it (`meter.received_unread`, from the kernel's count of the socket), and then exactly."""
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
    assert c.sent > c.hs_sent  # the request did go out after the client's handshake
    assert t["client_to_lb"]["wire"] == c.sent


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


def test_a_listeners_billing_model_overrides_its_profile(lab: Any) -> None:
    """`billing_model: aws-alb` on an aliyun-slb listener (created through the API, parsed like a config
    file's): its records are billed both ways with LCUs, where aliyun-slb bills outbound payload only."""
    status, view = lab.api("POST", "/v1/listeners", {
        "port": 0, "profile": "aliyun-slb", "billing_model": "aws-alb", "server_certificate": "lab-rsa",
        "backend_servers": ["web-1"], "health_check": {"enabled": False}, "activation_delay": 0, "start": True})
    assert status == 202, view
    port = view["port"]
    try:
        deadline = time.monotonic() + 10
        while lab.api("GET", f"/v1/listeners/{port}")[1]["status"] != "running":
            assert time.monotonic() < deadline, "the new listener never ran"
            time.sleep(0.05)
        c = connect(lab, port)
        c.handshake()
        c.send(b"POST /bill?size=3000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
        assert c.read_response().startswith(b"HTTP/1.1 200")
        c.close()
        rec = record_of(lab, port, c)
        t = assert_exact(rec, c)
        assert (rec["profile"], rec["billing_model"], rec["billed"]["model"]) == ("aliyun-slb", "aws-alb", "aws-alb")
        payload = (t["client_to_lb"]["payload"], t["lb_to_client"]["payload"])
        assert (rec["billed"]["billed_client_to_lb"], rec["billed"]["billed_lb_to_client"]) == payload
        assert rec["billed"] != billing.billed("aliyun-slb", rec)  # the profile's model would bill less
        status, body = lab.api("GET", "/v1/traffic?connections=1")
        assert status == 200
        logged = [r for r in body["connections"] if r["client"] == rec["client"] and r["listener_port"] == port]
        assert [r["billed"] for r in logged] == [rec["billed"]]
        s = next(s for s in body["listeners"] if s["listener_port"] == port)
        assert (s["profile"], s["billing_model"]) == ("aliyun-slb", "aws-alb")
        assert s["billed_in"] >= payload[0] > 0  # inbound is billed: aliyun-slb's model would show 0
        lcu = s["lcu"]
        assert lcu is not None and lcu["lcu"] == lcu["dimensions"][lcu["billed_dimension"]]["lcu"] > 0
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


def test_a_metered_listener_connection_runs_no_info_callback_and_knows_its_alert_as_a_plain_one_does() -> None:
    from simulator.policies.testing import handshake_in_memory
    from OpenSSL import SSL
    from test_metering_harness import client_context, server_context

    from simulator.dataplane.addons.tls import MeteredListenerConnection, PlainConnection
    from simulator.policies import context

    calls: list[int] = []
    ctx = server_context(versions=("TLSv1.2", "TLSv1.3"))
    ctx.set_info_callback(lambda conn, where, ret: calls.append(where) or context._record_alert(conn, where, ret))
    seen = {}
    for kind in (PlainConnection, MeteredListenerConnection):
        calls.clear()
        server = kind(ctx)
        server.set_accept_state()
        client = SSL.Connection(client_context(versions=("TLSv1.1", "TLSv1.1")))  # refused: protocol_version
        client.set_connect_state()
        with pytest.raises(SSL.Error):
            handshake_in_memory(client, server, rounds=3)
        seen[kind] = (len(calls), server.lbsim_alert_sent)
    plain_calls, plain_alert = seen[PlainConnection]
    assert plain_calls > 0 and plain_alert == (2, 70, "protocol version")
    assert seen[MeteredListenerConnection] == (0, plain_alert)  # the same alert, from the meter's callback
