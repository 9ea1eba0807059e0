"""The TLS probe client: byte counts, errors and alerts, server verification, HTTP, enumeration helpers."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import recv_exact

from simulator.policies import POLICIES, resolve_policy
from simulator.policies.context import build_server_context
from simulator.policies.testing import TLSTestServer
from simulator.policies.probe import ProbeResult, certificate_fingerprint, cipher_preference, enumerate_tls, probe

HOST = "127.0.0.1"
GET = b"GET /x HTTP/1.1\r\nHost: lb.example.com\r\n\r\n"
RSA = trustme.KeyType.RSA


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=RSA)


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("lb.example.com", key_type=RSA)


@pytest.fixture(scope="module")
def server(leaf: trustme.LeafCert) -> Iterator[TLSTestServer]:
    chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    ctx = build_server_context(POLICIES["tls_cipher_policy_1_2_strict_with_1_3"], chain, key)
    with TLSTestServer(ctx) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_records(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        request.getfixturevalue("server").drain()


@contextlib.contextmanager
def raw_server(handler) -> Iterator[tuple[int, list]]:
    """A plain TCP server running `handler(sock, notes)` for each connection."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.1)
    notes: list = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            with sock:
                handler(sock, notes)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1], notes
    finally:
        stop.set()
        t.join(2)
        listener.close()


def test_bytes_and_alert_against_a_scripted_server() -> None:
    def handler(sock: socket.socket, notes: list) -> None:
        header = recv_exact(sock, 5)
        body = recv_exact(sock, int.from_bytes(header[3:5], "big"))
        notes.append(len(header) + len(body))
        sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28")  # fatal alert: handshake failure

    with raw_server(handler) as (port, notes):
        r = probe(HOST, port, version="TLSv1.2")
    assert not r.ok and r.alert == "handshake failure"
    assert r.bytes_sent == notes[0] and r.bytes_received == 7


def test_bytes_counted_on_the_socket_match_a_relay(server: TLSTestServer) -> None:
    """A counting TCP relay between probe and server sees exactly the bytes the probe reports."""
    counts = {"up": 0, "down": 0}

    def pump(src: socket.socket, dst: socket.socket, key: str) -> None:
        while data := src.recv(65536):
            counts[key] += len(data)
            dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def handler(client: socket.socket, notes: list) -> None:
        upstream = socket.create_connection((HOST, server.port))
        t = threading.Thread(target=pump, args=(upstream, client, "down"))
        t.start()
        pump(client, upstream, "up")
        t.join(5)
        upstream.close()

    with raw_server(handler) as (port, _):
        for kw in ({"version": "TLSv1.2"}, {"version": "TLSv1.3", "http_request": GET}):
            counts.update(up=0, down=0)
            r = probe(HOST, port, **kw)
            time.sleep(0.05)
            assert r.ok and (r.bytes_sent, r.bytes_received) == (counts["up"], counts["down"]), kw
            assert r.bytes_received > sum(len(c.public_bytes(serialization.Encoding.DER)) for c in r.server_chain)


def test_an_impossible_offer_fails_before_connecting() -> None:
    def handler(sock: socket.socket, notes: list) -> None:
        notes.append("connected")

    with raw_server(handler) as (port, notes):
        r = probe(HOST, port, version="TLSv1", ciphers="AES128-GCM-SHA256")  # a TLS 1.2-only suite
        time.sleep(0.2)
    assert not r.ok and r.error.startswith("client:") and r.bytes_sent == 0 and notes == []


def test_connection_refused_and_timeout() -> None:
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    r = probe(HOST, port)
    assert not r.ok and r.error.startswith("connect:")

    def silent(sock: socket.socket, notes: list) -> None:
        time.sleep(0.8)

    with raw_server(silent) as (port, _):
        started = time.monotonic()
        r = probe(HOST, port, timeout=0.3)
        elapsed = time.monotonic() - started
    assert r.error == "timed out" and elapsed < 0.7 and r.bytes_sent > 0


def test_plain_http_server_is_not_tls() -> None:
    def http(sock: socket.socket, notes: list) -> None:
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with raw_server(http) as (port, _):
        r = probe(HOST, port)
    assert not r.ok and r.version is None and r.error and r.alert is None


def test_server_verification(server: TLSTestServer, ca: trustme.CA, leaf: trustme.LeafCert, tmp_path) -> None:
    good = probe(HOST, server.port, ca_pem=ca.cert_pem.bytes())
    assert good.ok and good.verify_error is None
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    assert probe(HOST, server.port, cafile=str(cafile)).ok
    server.drain()

    bad = probe(HOST, server.port, ca_pem=trustme.CA(key_type=RSA).cert_pem.bytes())
    assert not bad.ok and bad.verify_error == "unable to get local issuer certificate (depth 0)"
    assert "certificate verify failed" in bad.error
    # the server hears our alert, and calls it what it is
    assert server.next_record().status == "Failed:ServerCertRejected"

    r = probe(HOST, server.port)  # no CA: no verification, but the chain and fingerprint are reported
    leaf_cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    assert r.server_fingerprint_sha256 == certificate_fingerprint(leaf_cert)
    assert r.server_names == ["lb.example.com"] and "trustme" in r.server_subject


def test_http_request_and_response(server: TLSTestServer) -> None:
    r = probe(HOST, server.port, http_request=GET, alpn=["http/1.1"])
    assert r.ok and r.http_response.startswith(b"HTTP/1.1 200 OK\r\n")
    body = json.loads(r.http_response.split(b"\r\n\r\n", 1)[1])
    assert body["version"] == r.version == "TLSv1.3" and body["cipher"] == r.cipher and body["alpn"] == "http/1.1"
    assert r.group  # a key exchange group was negotiated (x25519, or X25519MLKEM768 unless pinned)


def test_to_dict_is_json(server: TLSTestServer) -> None:
    d = probe(HOST, server.port, http_request=GET).to_dict()
    again = json.loads(json.dumps(d))
    assert again["ok"] and again["http_response_bytes"] > 0 and again["server_chain"]
    assert set(again) >= {"version", "cipher", "alpn", "resumed", "error", "alert", "verify_error", "bytes_sent", "bytes_received"}
    assert again["local_port"] and again["local_port"] != server.port
    assert ProbeResult().to_dict()["ok"] is False


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        probe(HOST, 1, version="SSLv3")


def test_enumerate_passes_client_credentials(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    client_ca = trustme.CA(key_type=RSA)
    client = client_ca.issue_cert("client@example.com", key_type=RSA)
    policy = resolve_policy("aliyun-slb", {"versions": ["TLSv1.2", "TLSv1.3"], "ciphers": ["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_256_GCM_SHA384"]})
    ctx = build_server_context(
        policy, chain, key, client_ca=[x509.load_pem_x509_certificate(client_ca.cert_pem.bytes())], verify_client="on"
    )
    creds = {"client_cert_pem": client.cert_chain_pems[0].bytes(), "client_key_pem": client.private_key_pem.bytes()}
    with TLSTestServer(ctx) as s:
        assert enumerate_tls(HOST, s.port, **creds) == policy.negotiable("RSA")
        assert enumerate_tls(HOST, s.port) == {}  # refused without a certificate


def test_cipher_preference_reveals_who_chooses() -> None:
    suites = ["A", "B", "C", "D"]
    rank = {"C": 0, "A": 1, "D": 2, "B": 3}
    server_pref = cipher_preference(lambda names: ProbeResult(ok=True, cipher=min(names, key=rank.get)), suites)
    assert server_pref == ["C", "A", "D", "B"]
    client_pref = cipher_preference(lambda names: ProbeResult(ok=True, cipher=names[0]), suites)
    assert client_pref == list(reversed(suites))  # a server honouring the client's order shows up reversed
    assert cipher_preference(lambda names: ProbeResult(ok=False), suites) == suites
