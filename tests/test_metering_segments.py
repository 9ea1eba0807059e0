"""Segmentation and partial reads change nothing: properties of the meter and the record splitter.

The client's bytes reach the LB in arbitrary chunks (records straddle bio_write calls), the LB drains
with arbitrary bio_read sizes and reads plaintext with arbitrary recv sizes; after every operation the
live counters keep the invariant, and at the end every category equals the client's own truth.
"""

from __future__ import annotations

import functools
import itertools
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from test_metering_harness import assert_invariant, client_context, server_context

from simulator.metering import ConnectionMeter, MeteredConnection, native
from simulator.metering.records import HEADER_LEN, RecordStream, close_notify_size, expected_overhead


pytestmark = pytest.mark.usefixtures("message_callback")


def record(m: ConnectionMeter, write: bool, content_type: int, length: int, kind: str) -> None:
    """OpenSSL announces a record header to the meter's message callback."""
    native.call(kind, int(write), 256, bytes([content_type, 3, 3, length >> 8, length & 255]), m.c)


@functools.cache
def contexts(version: str) -> tuple[SSL.Context, SSL.Context]:
    return server_context(), client_context(versions=(version, version))


class Lab:
    """A metered LB and a plain client in memory; the test decides how bytes are cut."""

    def __init__(self, version: str, chunks: list[int], reads: list[int], recv_sizes: list[int]) -> None:
        sctx, cctx = contexts(version)
        self.lb = MeteredConnection(sctx)
        self.lb.set_accept_state()
        self.client = SSL.Connection(cctx)
        self.client.set_connect_state()
        self.chunks, self.reads, self.recv_sizes = (itertools.cycle(x) for x in (chunks, reads, recv_sizes))
        self.to_lb = bytearray()
        self.from_lb = bytearray()   # every byte the LB handed out, for independent splitting
        self.sent = self.received = 0
        self.client_hs_sent: int | None = None
        self.plain_to_lb = bytearray()
        self.plain_to_client = bytearray()
        self.done = False
        self.closed = False

    def check(self) -> None:
        assert_invariant(self.lb.meter.to_dict())

    def client_out(self) -> None:
        while True:
            try:
                data = self.client.bio_read(65535)
            except SSL.WantReadError:
                return
            self.to_lb += data
            self.sent += len(data)

    def lb_out(self) -> None:
        while True:
            try:
                data = self.lb.bio_read(next(self.reads))
            except SSL.WantReadError:
                return
            self.check()
            self.received += len(data)
            self.from_lb += data
            self.client.bio_write(data)

    def deliver(self) -> None:
        """Hand the client's pending bytes to the LB, chunk by chunk, like TCP segments."""
        while self.to_lb and not self.closed:
            n = next(self.chunks)
            chunk, self.to_lb[:n] = bytes(self.to_lb[:n]), b""
            self.lb.bio_write(chunk)
            self.check()
            if not self.done:
                try:
                    self.lb.do_handshake()
                    self.done = True
                except SSL.WantReadError:
                    pass
                self.check()
            if self.done:
                self.lb_recv()
            self.lb_out()

    def lb_recv(self) -> None:
        while True:
            try:
                self.plain_to_lb += self.lb.recv(next(self.recv_sizes))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.closed = True
                break
            finally:
                self.check()

    def handshake(self) -> None:
        while True:
            try:
                self.client.do_handshake()
                break
            except SSL.WantReadError:
                self.client_out()
                self.deliver()
        self.client_out()
        self.client_hs_sent = self.sent
        self.deliver()

    def client_send(self, data: bytes) -> None:
        self.client.sendall(data)
        self.client_out()
        self.deliver()

    def lb_send(self, data: bytes) -> None:
        self.lb.sendall(data)
        self.check()
        self.lb_out()
        while True:
            try:
                self.plain_to_client += self.client.recv(65535)
            except SSL.WantReadError:
                break
        self.client_out()  # TLS 1.3 clients may answer nothing, but drain anyway
        self.deliver()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(["TLSv1.2", "TLSv1.3"]),
       chunks=st.lists(st.integers(1, 3000), min_size=1, max_size=20),
       reads=st.lists(st.integers(1, 70000), min_size=1, max_size=20),
       recv_sizes=st.lists(st.integers(1, 70000), min_size=1, max_size=20),
       messages=st.lists(st.integers(0, 40000), min_size=1, max_size=4))
def test_segmentation_and_read_sizes_change_nothing(version: str, chunks: list[int], reads: list[int],
                                                     recv_sizes: list[int], messages: list[int]) -> None:
    lab = Lab(version, chunks, reads, recv_sizes)
    lab.handshake()
    for n in messages:
        lab.client_send(b"c" * n + b"!")
        lab.lb_send(b"s" * n + b"!")
    lab.client.shutdown()
    lab.client_out()
    lab.deliver()
    lab.lb.meter.finish()
    t = lab.lb.meter.to_dict()
    i, o = t["client_to_lb"], t["lb_to_client"]
    assert lab.closed
    assert i["wire"] == lab.sent and o["wire"] == lab.received
    assert i["handshake"] == lab.client_hs_sent
    assert i["payload"] == len(lab.plain_to_lb) == sum(messages) + len(messages)
    assert o["payload"] == len(lab.plain_to_client) == sum(messages) + len(messages)
    cipher = lab.lb.get_cipher_name()
    assert i["closure"] == close_notify_size(version, cipher)
    per_record = expected_overhead(version, cipher, 0)
    for d in ("client_to_lb", "lb_to_client"):
        assert t[d]["record_overhead"] == per_record * t["records"][d]["application_data"]


def test_partial_recv_and_peek_count_decrypted_bytes() -> None:
    """recv(10) leaves decrypted bytes inside OpenSSL: they are payload already; MSG_PEEK counts once."""
    lab = Lab("TLSv1.3", [65535], [65535], [65535])
    lab.handshake()
    lab.client.sendall(b"p" * 1000)
    lab.client_out()
    lab.lb.bio_write(bytes(lab.to_lb))
    lab.to_lb.clear()
    assert lab.lb.recv(10, socket.MSG_PEEK) == b"p" * 10
    t = lab.lb.meter.to_dict()["client_to_lb"]
    assert t["payload"] == 1000 and t["record_overhead"] == 22
    assert lab.lb.recv(10) == b"p" * 10
    assert lab.lb.meter.to_dict()["client_to_lb"]["payload"] == 1000
    buf = bytearray(2000)
    assert lab.lb.recv_into(buf) == 990
    t = lab.lb.meter.to_dict()["client_to_lb"]
    assert t["payload"] == 1000 and t["record_overhead"] == 22
    assert_invariant(lab.lb.meter.to_dict())


def test_send_and_write_count_plaintext() -> None:
    lab = Lab("TLSv1.2", [65535], [65535], [65535])
    lab.handshake()
    assert lab.lb.send(b"a" * 100) == 100
    assert lab.lb.write(memoryview(b"b" * 50)) == 50
    assert lab.lb.sendall(bytearray(b"c" * 20000)) == 20000
    lab.lb_out()
    o = lab.lb.meter.to_dict()["lb_to_client"]
    assert o["payload"] == 20150 and o["wire"] == lab.received
    assert o["record_overhead"] == 4 * expected_overhead("TLSv1.2", lab.lb.get_cipher_name(), 0)


def test_drains_settled_late_and_after_the_connection_is_gone() -> None:
    """`bio_read` is not wrapped: drains are settled from what OpenSSL still holds, whenever the meter is read
    (and every few operations). Settled after 50 responses and a partial drain at the end, the split is the
    same as the client's own count; once the connection is freed the meter keeps what it last settled (no
    finalizer reads the BIO: in a garbage cycle OpenSSL may have freed it first, a segfault seen at exit)."""
    import gc

    lab = Lab("TLSv1.2", [65535], [65535], [65535])
    lab.handshake()
    lab.check()
    lab.check = lambda: None  # type: ignore[method-assign]  # no reads of the meter from here on
    for i in range(50):
        lab.client_send(b"GET / HTTP/1.1\r\n\r\n")
        lab.lb_send(b"x" * (i * 37))
    assert len(lab.lb.meter.out_queue) <= 17  # settled every few operations, not kept per response
    lab.lb.sendall(b"y" * 1000)
    head = lab.lb.bio_read(600)  # 600 of the record's 1,029 bytes leave; the rest stays in OpenSSL
    meter = lab.lb.meter
    payload_sent = len(lab.plain_to_client)
    t = meter.to_dict()  # the listener reads its meter while the connection lives (the connection log)
    del lab.lb
    gc.collect()
    assert meter.to_dict() == t
    o = t["lb_to_client"]
    overhead = expected_overhead("TLSv1.2", t["cipher"], 0)
    assert o["wire"] == lab.received + len(head) and t["unsent_bytes"] == 1000 + overhead - 600
    # Within one operation's output, a partial drain takes the record overhead first (as `_take` always did).
    assert payload_sent == 37 * sum(range(50)) and t["records"]["lb_to_client"]["application_data"] == 50
    assert o["record_overhead"] == 50 * overhead and o["payload"] == payload_sent + 600 - overhead
    assert o["wire"] == o["handshake"] + o["record_overhead"] + o["payload"] + o["closure"]


# --- the bookkeeping on its own -------------------------------------------------------------------

def test_partial_drains_keep_the_invariant(message_callback: str) -> None:
    m = ConnectionMeter()
    record(m, True, 22, 95, message_callback)  # a 100-byte handshake record
    m._flush_out()
    m.handshake_complete = True
    record(m, True, 23, 45, message_callback)  # a 50-byte application record carrying 30 bytes
    m.out_plain_acc = 30
    m._flush_out()
    for n in (7, 93, 1, 40, 9):
        m._drained(n)
        o = m.outbound()
        assert o["wire"] == o["handshake"] + o["record_overhead"] + o["payload"] + o["closure"]
    assert m.outbound() == {"wire": 150, "handshake": 100, "record_overhead": 20, "payload": 30, "closure": 0}
    assert m.out_unannounced == 0


def test_sent_alert_beyond_what_was_held_is_flagged(message_callback: str) -> None:
    m = ConnectionMeter()
    record(m, True, 21, 2, message_callback)
    m._flush_out()
    m._hold(7)
    m.out_held_bytes = b"\x15\x03\x03\x00\x02\x02\x46"  # what MeteredConnection._hold_unsent keeps
    assert m.to_dict()["unsent_bytes"] == 7
    m.sent_alert(9)
    assert m.outbound() == {"wire": 9, "handshake": 9, "record_overhead": 0, "payload": 0, "closure": 0}
    assert m.out_unannounced == 2 and m.to_dict()["unsent_bytes"] == 0 and m.out_held_bytes == b""


def test_truncated_application_record_becomes_closure_at_finish(message_callback: str) -> None:
    m = ConnectionMeter()
    m.handshake_complete = True
    m.in_wire = 30
    record(m, False, 23, 100, message_callback)  # header read, 25 of 100 body bytes arrived, then the client vanished
    assert m.inbound()["record_overhead"] == 30      # live: provisional
    m.finish()
    assert m.inbound() == {"wire": 30, "handshake": 0, "record_overhead": 0, "payload": 0, "closure": 30}


@st.composite
def record_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]], list[int]]:
    recs = draw(st.lists(st.tuples(st.sampled_from([20, 21, 22, 23]), st.integers(0, 3000)), max_size=12))
    data = b"".join(bytes([t, 3, 3, n >> 8, n & 255]) + b"\0" * n for t, n in recs)
    cuts = draw(st.lists(st.integers(1, 400), min_size=1, max_size=30))
    return data, recs, cuts


@given(record_streams())
def test_record_stream_splits_any_chunking(case: tuple[bytes, list[tuple[int, int]], list[int]]) -> None:
    data, recs, cuts = case
    rs = RecordStream()
    pos = 0
    for n in itertools.cycle(cuts):
        if pos >= len(data):
            break
        rs.feed(data[pos:pos + n])
        pos += n
    assert [(r.content_type, r.length) for r in rs.records] == recs
    assert rs.complete and rs.total == len(data)
    assert sum(r.size for r in rs.records) == len(data)
    assert all(r.offset + HEADER_LEN + r.length <= len(data) for r in rs.records)


def test_tls12_renegotiation_attempt_is_handshake_and_its_answer_classified_by_type() -> None:
    """A client renegotiates after the handshake: its (encrypted) ClientHello is handshake. The LB answers
    inside recv(): OpenSSL 3.5 refuses with a no_renegotiation alert (closure); an LB that accepted would
    send handshake records. Expected categories come from the record types of the LB's raw bytes."""
    lab = Lab("TLSv1.2", [65535], [65535], [65535])
    lab.handshake()
    lab.client_send(b"a" * 10)
    before = lab.lb.meter.to_dict()
    sent0, received0 = lab.sent, lab.received
    lab.client.renegotiate()
    try:
        lab.client.do_handshake()
    except SSL.WantReadError:
        pass
    lab.client_out()
    lab.deliver()
    t = lab.lb.meter.to_dict()
    assert_invariant(t)
    assert t["client_to_lb"]["handshake"] - before["client_to_lb"]["handshake"] == lab.sent - sent0 > 0
    expected = {"handshake": 0, "closure": 0}
    for r in RecordStream().feed(bytes(lab.from_lb[received0:])):
        expected["closure" if r.content_type == 21 else "handshake"] += r.size
    grew = {c: t["lb_to_client"][c] - before["lb_to_client"][c] for c in expected}
    assert grew == expected and sum(expected.values()) == lab.received - received0 > 0
    assert t["lb_to_client"]["payload"] == before["lb_to_client"]["payload"]


def test_received_unread_bytes_follow_the_phase() -> None:
    before = ConnectionMeter()
    before.received_unread(50)  # a client's bytes after its handshake failed, discarded by mitmproxy
    assert before.inbound() == {"wire": 50, "handshake": 50, "record_overhead": 0, "payload": 0, "closure": 0}
    after = ConnectionMeter()
    after.handshake_complete = True
    after.received_unread(10)  # after completion: closure (nothing will ever decrypt them)
    assert after.inbound() == {"wire": 10, "handshake": 0, "record_overhead": 0, "payload": 0, "closure": 10}


def test_the_callback_keeps_the_last_alert_written_not_those_read(message_callback: str) -> None:
    m = ConnectionMeter()
    assert m.alert_sent is None
    native.call(message_callback, 0, 21, b"\x02\x28", m.c)  # a handshake_failure the client sent
    assert m.alert_sent is None
    native.call(message_callback, 1, 21, b"\x02\x46", m.c)  # protocol_version, fatal, written by us
    native.call(message_callback, 1, 21, b"\x02", m.c)  # not an alert's two bytes: ignored
    assert m.alert_sent == (2, 70)
    native.call(message_callback, 1, 21, b"\x01\x00", m.c)  # then a close_notify: the last one counts
    assert m.alert_sent == (1, 0)
