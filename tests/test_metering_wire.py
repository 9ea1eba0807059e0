"""Proof that the meter is exact: real TLS over loopback, against counted clients and the kernel.

Each test serves real connections with `LoopbackServer` (mitmproxy's TLSLayer call pattern), and checks
  * `wire` per direction == the client's raw socket byte counts == the LB socket's TCP_INFO counts;
  * `wire == handshake + record_overhead + payload + closure` per direction;
  * each category against what the client knows independently (bytes it sent before its handshake
    completed, plaintext it sent/received, the records it split from its own raw stream) and against
    each cipher's record construction (`records.expected_overhead`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from OpenSSL import SSL
from test_metering_harness import (
    CountingClient,
    EchoApp,
    LoopbackServer,
    assert_invariant,
    assert_wire_matches,
    client_context,
    pki,
    server_context,
)

from helpers import wait_for

from simulator.metering import billing
from simulator.metering.records import APPLICATION_DATA, close_notify_size, expected_overhead

pytestmark = pytest.mark.usefixtures("message_callback")  # every test with the C and the Python callback

CBC = ("-SHA", "-SHA256", "-SHA384")


def is_cbc(cipher: str) -> bool:
    return cipher.endswith(CBC) and "GCM" not in cipher and "CHACHA" not in cipher


def tls13_ticket_bytes(c: CountingClient, handshake_out: int) -> int:
    """LB handshake bytes the client received after its own handshake completed (NewSessionTickets).

    The boundary must fall on a record boundary of the client's raw stream, right after hs_received.
    """
    extra = handshake_out - c.hs_received
    acc = 0
    for r in c.in_records.records:
        if r.offset < c.hs_received:
            continue
        if acc == extra:
            break
        acc += r.size
    assert acc == extra, "LB handshake bytes do not end on a record boundary of the client's stream"
    return extra


def writes_overhead(version: str, cipher: str, writes: list[int]) -> int:
    """Expected record overhead of these SSL_write sizes (each under one record)."""
    total = 0
    for n in writes:
        total += expected_overhead(version, cipher, n)
        if version == "TLSv1" and is_cbc(cipher):
            total += expected_overhead(version, cipher, 0)  # OpenSSL's empty fragment before each write
    return total


CASES = [
    ("TLSv1", "ECDHE-RSA-AES128-SHA"),
    ("TLSv1.1", "ECDHE-RSA-AES256-SHA"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLSv1.2", "ECDHE-RSA-AES128-SHA"),
    ("TLSv1.2", "AES256-SHA256"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
]


@pytest.mark.parametrize(("version", "cipher"), CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_every_version_and_cipher_is_exact(version: str, cipher: str) -> None:
    tls13 = version == "TLSv1.3"
    kw = {"tls13_ciphers": cipher} if tls13 else {"ciphers": cipher}
    bodies, replies = [0, 100, 1000], [2, 500, 3000]
    with LoopbackServer(server_context(**kw)) as srv:
        c = CountingClient(srv.address, client_context(versions=(version, version), **kw))
        c.handshake()
        requests = []
        for body, reply in zip(bodies, replies):
            before = c.plain_sent
            c.request(b"b" * body, reply)
            requests.append(c.plain_sent - before)
        c.close()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert (t["tls_version"], t["cipher"]) == (version, cipher) == (c.version, c.cipher)
    assert t["handshake_complete"] and t["resumed"] is False and t["requests"] == 3
    i, o = t["client_to_lb"], t["lb_to_client"]
    # handshake: everything the client sent until its handshake completed; the LB's flight too, plus
    # (TLS 1.3) the NewSessionTickets that follow it.
    assert i["handshake"] == c.hs_sent
    tickets = tls13_ticket_bytes(c, o["handshake"]) if tls13 else 0
    assert o["handshake"] == c.hs_received + tickets
    assert (tickets > 0) == tls13
    # payload: the plaintext each side handed to TLS
    assert i["payload"] == c.plain_sent == served.app_received
    assert o["payload"] == c.plain_received
    # closure: the client's close_notify, its last record; the LB sends none (mitmproxy never does)
    assert i["closure"] == close_notify_size(version, cipher) == c.out_records.records[-1].size
    assert o["closure"] == 0
    # record overhead: exactly what each cipher's construction adds to each record
    assert i["record_overhead"] == writes_overhead(version, cipher, requests)
    response_sizes = [len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n) + n for n in replies]
    assert o["record_overhead"] == writes_overhead(version, cipher, response_sizes)
    # the client's own split of the raw streams sees the same application-data records
    if not tls13:
        visible = [r for r in c.in_records.records if r.content_type == APPLICATION_DATA]
        assert t["records"]["lb_to_client"]["application_data"] == len(visible)
        sent = [r for r in c.out_records.records if r.content_type == APPLICATION_DATA]
        assert t["records"]["client_to_lb"]["application_data"] == len(sent)


def test_aead_overhead_per_record_matches_vendor_figures() -> None:
    """vendor-facts §4: TLS 1.3 AEAD 22 B; TLS 1.2 AES-GCM 29 B; ChaCha20 21 B; AES-CBC-SHA1 45-57 B."""
    assert expected_overhead("TLSv1.3", "TLS_AES_128_GCM_SHA256", 100) == 22
    assert expected_overhead("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", 100) == 22
    assert expected_overhead("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", 100) == 29
    assert expected_overhead("TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305", 100) == 21
    cbc = {expected_overhead("TLSv1.2", "ECDHE-RSA-AES128-SHA", n, encrypt_then_mac=etm)
           for n in range(64) for etm in (True, False)}
    # The construction gives 42..57 (IV 16 + MAC 20 + padding 1..16); §4's 45..57 is the observed part.
    assert min(cbc) == 42 and max(cbc) == 57


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_keep_alive_100_requests(version: str) -> None:
    with LoopbackServer(server_context()) as srv:
        c = CountingClient(srv.address, client_context(versions=(version, version)))
        c.handshake()
        for n in range(100):
            assert c.request(b"q" * n, 10 + n).endswith(b"o" * (10 + n))
        c.close()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert t["requests"] == 100
    per_record = expected_overhead(version, c.cipher, 0)
    for d in ("client_to_lb", "lb_to_client"):
        assert t["records"][d]["application_data"] == 100
        assert t[d]["record_overhead"] == 100 * per_record
    assert t["client_to_lb"]["payload"] == c.plain_sent
    assert t["lb_to_client"]["payload"] == c.plain_received


@pytest.mark.parametrize(("version", "cipher"), [("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
                                                 ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
                                                 ("TLSv1.2", "ECDHE-RSA-AES128-SHA")])
def test_one_mib_bodies_span_many_records_both_ways(version: str, cipher: str) -> None:
    kw = {"tls13_ciphers": cipher} if version == "TLSv1.3" else {"ciphers": cipher}
    mib = 1 << 20
    with LoopbackServer(server_context(**kw)) as srv:
        c = CountingClient(srv.address, client_context(versions=(version, version), **kw))
        c.handshake()
        reply = c.request(os.urandom(mib), mib)
        assert reply.endswith(b"o" * 1000) and len(reply) > mib
        c.close()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    for d, plain in (("client_to_lb", c.plain_sent), ("lb_to_client", c.plain_received)):
        v, n = t[d], t["records"][d]["application_data"]
        assert v["payload"] == plain
        assert n >= mib // 16384
        if is_cbc(cipher):  # padding varies per record: within the construction's bounds
            assert 42 * n <= v["record_overhead"] <= 57 * n
        else:
            assert v["record_overhead"] == n * expected_overhead(version, cipher, 0)


def test_http2_sized_frames_are_just_bytes() -> None:
    """An h2 preface, SETTINGS and 16 KiB DATA frames (9-byte header + payload, so frames straddle
    records): the meter counts TLS plaintext whatever the protocol inside."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64"
    data_frame = (16384).to_bytes(3, "big") + b"\x00\x01\x00\x00\x00\x01" + b"d" * 16384
    stream = preface + settings + data_frame * 8
    with LoopbackServer(server_context(), app=EchoApp) as srv:
        c = CountingClient(srv.address, client_context(versions=("TLSv1.3", "TLSv1.3")))
        c.handshake()
        c.send(stream)
        assert c.read(len(stream)) == stream
        c.close()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    for d in ("client_to_lb", "lb_to_client"):
        assert t[d]["payload"] == len(stream)
        assert t[d]["record_overhead"] == 22 * t["records"][d]["application_data"]


def _one(srv: LoopbackServer, ctx: SSL.Context, session: object = None) -> tuple[CountingClient, dict]:
    c = CountingClient(srv.address, ctx, session=session)
    c.handshake()
    c.request(b"", 2)
    c.close()
    served = srv.result()
    assert_wire_matches(c, served)
    assert served.traffic["client_to_lb"]["handshake"] == c.hs_sent
    return c, served.traffic


def near(measured: int, reference: int, tolerance: float = 0.20) -> bool:
    return abs(measured - reference) <= tolerance * reference


def test_resumed_and_mutual_handshakes_and_vendor_sizes() -> None:
    """Full, resumed (tickets) and mutual handshakes; sizes near vendor-facts §4 (same 2-cert RSA chain)."""
    with LoopbackServer(server_context()) as srv, LoopbackServer(server_context(mutual=True)) as mtls:
        tls12 = client_context(versions=("TLSv1.2", "TLSv1.2"))
        c, full12 = _one(srv, tls12)
        assert full12["lb_to_client"]["handshake"] == c.hs_received
        c2, res12 = _one(srv, tls12, session=c.session())
        assert res12["resumed"] is True and full12["resumed"] is False
        assert res12["lb_to_client"]["handshake"] == c2.hs_received

        tls13 = client_context(versions=("TLSv1.3", "TLSv1.3"))  # X25519: lbsim pins classic groups
        c, full13 = _one(srv, tls13)
        assert tls13_ticket_bytes(c, full13["lb_to_client"]["handshake"]) > 0
        _, res13 = _one(srv, tls13, session=c.session())
        assert res13["resumed"] is True

        _, mutual13 = _one(mtls, client_context(versions=("TLSv1.3", "TLSv1.3"), cert=True))
        _, mutual12 = _one(mtls, client_context(versions=("TLSv1.2", "TLSv1.2"), cert=True))

    hs = {k: (v["client_to_lb"]["handshake"], v["lb_to_client"]["handshake"]) for k, v in
          {"full12": full12, "res12": res12, "full13": full13, "res13": res13,
           "mutual13": mutual13, "mutual12": mutual12}.items()}
    print("handshake bytes (client->LB, LB->client):", hs)
    assert near(hs["full12"][0], 278) and near(hs["full12"][1], 2459)
    assert near(hs["full13"][0], 328) and near(hs["full13"][1], 2886)
    assert hs["res12"][1] == 141 and near(hs["res12"][0], 568)
    assert near(hs["mutual13"][0] - hs["full13"][0], 1180)
    assert hs["mutual12"][0] - hs["full12"][0] > 1000
    assert hs["res12"][1] < hs["full12"][1] / 10 and hs["res13"][1] < hs["full13"][1] / 3


_HYBRID_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_metering_harness import LoopbackServer, client_context, server_context
from test_metering_wire import _one
with LoopbackServer(server_context()) as srv:
    _, t = _one(srv, client_context(versions=("TLSv1.3", "TLSv1.3")))
print(json.dumps([t["client_to_lb"]["handshake"], t["lb_to_client"]["handshake"]]))
"""


def test_hybrid_post_quantum_key_share_costs_about_1_1_kb_each_way(tmp_path: Path) -> None:
    """Without lbsim's group pinning, OpenSSL 3.5 (inside cryptography) negotiates X25519MLKEM768 for
    TLS 1.3: measured in a child process with OpenSSL's own defaults, against the pinned X25519 here."""
    with LoopbackServer(server_context()) as srv:
        _, pinned = _one(srv, client_context(versions=("TLSv1.3", "TLSv1.3")))
    (tmp_path / "empty.cnf").write_text("")
    env = {**os.environ, "OPENSSL_CONF": str(tmp_path / "empty.cnf")}
    out = subprocess.run([sys.executable, "-c", _HYBRID_PROBE, str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    hybrid = json.loads(out.splitlines()[-1])
    for i, d in enumerate(("client_to_lb", "lb_to_client")):
        extra = hybrid[i] - pinned[d]["handshake"]
        print(d, "pinned", pinned[d]["handshake"], "hybrid", hybrid[i])
        assert 1000 < extra < 1300, (d, extra)  # ML-KEM-768: 1184 B public key / 1088 B ciphertext


# --- broken clients ---------------------------------------------------------------------------------

def test_client_disconnects_after_server_flight() -> None:
    """ClientHello sent, LB's flight received, then the client vanishes (TLS 1.2 and 1.3)."""
    for version in ("TLSv1.2", "TLSv1.3"):
        with LoopbackServer(server_context()) as srv:
            c = CountingClient(srv.address, client_context(versions=(version, version)))
            try:
                c.conn.do_handshake()
            except SSL.WantReadError:
                c._flush()
            time.sleep(0.05)
            c.abort()
            served = srv.result()
        t = served.traffic
        assert_wire_matches(c, served)
        assert t["handshake_complete"] is False and t["resumed"] is None
        assert t["client_to_lb"]["handshake"] == c.sent > 0
        assert t["lb_to_client"]["handshake"] == c.received > 1000
        assert t["client_to_lb"]["payload"] == t["lb_to_client"]["payload"] == 0


def test_client_disconnects_mid_record() -> None:
    """The client's second flight is cut in the middle of a record: a truncated handshake record."""
    with LoopbackServer(server_context()) as srv:
        c = CountingClient(srv.address, client_context(versions=("TLSv1.2", "TLSv1.2")))
        try:
            c.conn.do_handshake()
        except SSL.WantReadError:
            c._flush()
        while True:  # read the LB's flight until the client has its second flight ready
            assert c._pull()
            try:
                c.conn.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                flight = c.conn.bio_read(65535)
                break
            except SSL.WantReadError:
                continue
        c.send_raw(flight[: len(flight) // 2])
        time.sleep(0.05)
        c.abort()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert t["handshake_complete"] is False
    assert t["client_to_lb"] == {"wire": c.sent, "handshake": c.sent, "record_overhead": 0, "payload": 0,
                                 "closure": 0}


@pytest.mark.parametrize("how", ["close", "reset", "malformed"])
def test_client_gone_before_its_client_hello_is_whole_is_metered(lab, tmp_path: Path, how: str) -> None:
    """Through the real listener: mitmproxy creates the SSL.Connection (and so the meter) only once the
    ClientHello is whole, or never when it cannot parse it. The listener counts such a client from the
    kernel's TCP_INFO (after a reset, which closes the socket, from what mitmproxy buffered): its record
    has `traffic` and `billed`, and the ledger and its CSV count it."""
    conn = SSL.Connection(client_context(), None)
    conn.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    hello = conn.bio_read(65535)
    sent = hello[:100] if how != "malformed" else b"\x16\x03\x01\x00\x05hello-garbage" * 7  # 126 bytes
    since = len(lab.lab.ledger.records)  # ports are reused: only a record logged after this connection began
    s = socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way")))
    client_port = s.getsockname()[1]
    s.sendall(sent)
    time.sleep(0.1)
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

    record = wait_for(lambda: next((r for r in lab.lab.ledger.records[since:] if r["client"].endswith(f":{client_port}")
                                    and r["listener_port"] == lab.port("aliyun-one-way")), None), 5)
    t = record["traffic"]
    assert t["client_to_lb"] == {"wire": len(sent), "handshake": len(sent), "record_overhead": 0, "payload": 0, "closure": 0}
    assert t["lb_to_client"]["wire"] == 0 and t["handshake_complete"] is False
    assert record["tls_verify_status"] == ("Failed:MalformedClientHello" if how == "malformed" else "Failed:ConnectionClosed")
    assert record["billed"] == billing.billed(record["billing_model"], record)
    assert record["billed"]["wire_bytes"] == 0  # aliyun-slb bills outbound payload only; the row shows the wire
    ledger = lab.lab.ledger
    # This connection's row: the session lab's ledger holds every test's connections, and ports are reused.
    def ours(row: dict) -> bool:
        return row["client"] == record["client"] and row["time"] == record["time"] and \
            int(row["listener_port"]) == record["listener_port"]

    rows = [r for r in ledger.rows() if ours(r)]
    assert len(rows) == 1 and rows[0]["client_to_lb_wire"] == len(sent)
    ledger.write_csv(tmp_path / "traffic.csv")
    with open(tmp_path / "traffic.csv") as f:
        assert [int(r["client_to_lb_wire"]) for r in csv.DictReader(f) if ours(r)] == [len(sent)]


@pytest.mark.parametrize("send_alert", ["pending", "bio_read", None])
def test_failed_handshake_alert_is_counted_only_when_sent(send_alert: str | None) -> None:
    """The client offers only TLS 1.0; the listener requires 1.2: OpenSSL queues a protocol_version
    alert that mitmproxy would drop. `pending_alert` holds it; it is counted once handed out, whether
    written and reported with `sent_alert` or drained with `bio_read` (the listener addon's way)."""
    with LoopbackServer(server_context(versions=("TLSv1.2", "TLSv1.3")), send_alert=send_alert) as srv:
        c = CountingClient(srv.address, client_context(versions=("TLSv1", "TLSv1")))
        with pytest.raises((SSL.Error, ConnectionError)):
            c.handshake()
        c.abort()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert t["handshake_complete"] is False and "unsupported protocol" in t["handshake_error"]
    assert t["client_to_lb"]["handshake"] == c.sent
    if send_alert:
        assert c.in_records.records[0].content_type == 21 and c.received == 7  # a plaintext alert: 5 + 2
        assert t["lb_to_client"] == {"wire": 7, "handshake": 7, "record_overhead": 0, "payload": 0, "closure": 0}
        assert t["unsent_bytes"] == 0 and served.conn.pending_alert == b""
        with pytest.raises(SSL.WantReadError):
            served.conn.bio_read(65535)  # handed out once only
    else:
        alert = served.conn.pending_alert
        assert len(alert) == 7 and alert[0] == 21
        assert t["lb_to_client"]["wire"] == 0 and t["unsent_bytes"] == 7


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_forged_record_after_handshake_is_closure(version: str) -> None:
    """A record that fails authentication ends the connection: the record and the LB's fatal alert
    (bad_record_mac) are closure bytes, not payload or overhead."""
    with LoopbackServer(server_context()) as srv:
        c = CountingClient(srv.address, client_context(versions=(version, version)))
        c.handshake()
        c.request(b"x", 2)
        forged = bytes([23, 3, 3, 0, 40]) + os.urandom(40)
        c.send_raw(forged)
        c.abort()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert t["client_to_lb"]["closure"] == len(forged)
    alert = close_notify_size(version, c.cipher)  # any alert has a close_notify's size
    assert t["lb_to_client"]["closure"] == alert == c.in_records.records[-1].size
    assert t["client_to_lb"]["payload"] == c.plain_sent


def test_bytes_after_close_notify_are_closure() -> None:
    with LoopbackServer(server_context()) as srv:
        c = CountingClient(srv.address, client_context(versions=("TLSv1.3", "TLSv1.3")))
        c.handshake()
        c.request(b"x", 2)
        c.conn.shutdown()
        close_notify = c.conn.bio_read(65535)
        c.send_raw(close_notify + b"\x17\x03\x03\x00\x05trail")  # one segment: the LB reads it all
        c.abort()
        served = srv.result()
    t = served.traffic
    assert_wire_matches(c, served)
    assert t["client_to_lb"]["closure"] == 24 + 10


# --- an independent client: openssl s_client (system OpenSSL 3.0, X25519) ----------------------------

def _s_client(address: tuple[str, int], args: list[str], lines: list[bytes]) -> str:
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % address, "-CAfile", str(pki().ca),
           "-servername", "lb.test", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin and proc.stdout
    out = b""
    os.set_blocking(proc.stdout.fileno(), False)
    for line in lines:
        proc.stdin.write(line)
        proc.stdin.flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait for the answer before the next command
            chunk = proc.stdout.read() or b""
            out += chunk
            if (b"KEYUPDATE" in out if line == b"K\n" else out.endswith(b"ooooo")):
                break
            time.sleep(0.01)
    proc.stdin.close()
    os.set_blocking(proc.stdout.fileno(), True)
    out += proc.stdout.read()
    proc.wait(timeout=10)
    return out.decode(errors="replace")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
def test_openssl_s_client_handshake_counts_and_key_update() -> None:
    """s_client reports its own handshake byte counts: TLS 1.2 equal the meter's handshake bytes both ways;
    TLS 1.3 equal them up to the LB's NewSessionTickets (sent after s_client's handshake completed).
    A TLS 1.3 KeyUpdate (s_client's `K`) and the LB's KeyUpdate answer are handshake bytes."""
    request = b"GET / HTTP/1.1\r\nHost: lb.test\r\nX-Response-Bytes: 5\r\n\r\n"
    with LoopbackServer(server_context()) as srv:
        out12 = _s_client(srv.address, ["-tls1_2"], [request])
        t12 = srv.result()
        out13 = _s_client(srv.address, ["-tls1_3"], [request])
        t13 = srv.result()
        outk = _s_client(srv.address, ["-tls1_3"], [b"K\n", request])
        tk = srv.result()
    for out, served in ((out12, t12), (out13, t13), (outk, tk)):
        assert served.tcp is None or (served.tcp.payload_received == served.traffic["client_to_lb"]["wire"])
        assert_invariant(served.traffic)
        assert served.traffic["lb_to_client"]["payload"] == len(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nooooo")
        assert served.traffic["client_to_lb"]["payload"] == len(request)
    read12, written12 = map(int, re.search(r"handshake has read (\d+) bytes and written (\d+)", out12).groups())
    assert (t12.traffic["client_to_lb"]["handshake"], t12.traffic["lb_to_client"]["handshake"]) == (written12, read12)
    read13, written13 = map(int, re.search(r"handshake has read (\d+) bytes and written (\d+)", out13).groups())
    assert t13.traffic["client_to_lb"]["handshake"] == written13
    assert t13.traffic["lb_to_client"]["handshake"] > read13
    print("s_client handshake bytes (client->LB / LB->client): TLS1.2", written12, read12,
          "TLS1.3", written13, t13.traffic["lb_to_client"]["handshake"])
    assert near(written13, 328) and near(t13.traffic["lb_to_client"]["handshake"], 2886)
    assert "KEYUPDATE" in outk
    key_update = 27  # 5 header + 4 handshake header + 1 + 1 inner type + 16 tag
    assert tk.traffic["client_to_lb"]["handshake"] == written13 + key_update
    assert tk.traffic["records"]["lb_to_client"]["total"] == t13.traffic["records"]["lb_to_client"]["total"] + 1
    assert tk.traffic["lb_to_client"]["record_overhead"] == 22 == t13.traffic["lb_to_client"]["record_overhead"]
