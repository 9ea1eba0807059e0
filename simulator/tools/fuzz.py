"""Inputs for abusing a listener: mutated ClientHellos, random byte streams, and a sender that fires them.

The ClientHellos are real: captured off pyOpenSSL clients (the same OpenSSL the listener runs) in a few
configurations, then mutated by a seeded `random.Random`, so every input is reproducible from
``(seed, index)``. Mutations know the ClientHello's structure (record and handshake headers, the
session id, cipher suite, compression and extension vectors, each extension's length), so many of them
reach deep into OpenSSL's parser instead of dying at the first length check.

    hellos = capture_client_hellos()
    for data in inputs(seed=1, count=10_000, hellos=hellos): ...
    stats = send_inputs("127.0.0.1", port, inputs(...), concurrency=32)   # -> SendStats

Hypothesis users get the same inputs as strategies: :func:`client_hello_strategy`, :func:`byte_stream_strategy`.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL

# Client configurations whose ClientHellos we capture: (name, min version, max version, cipher string,
# TLS 1.3 suites, SNI, ALPN). Together they cover TLS 1.0-1.3 hellos, with and without SNI and ALPN,
# RSA and ECDSA suites, and the key_share / supported_versions / psk modes extensions of TLS 1.3.
CLIENTS: tuple[tuple[str, int, int, str | None, str | None, bytes | None, list[bytes] | None], ...] = (
    ("tls13-default", SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION, None, None, b"localhost", [b"h2", b"http/1.1"]),
    ("tls13-only", SSL.TLS1_3_VERSION, SSL.TLS1_3_VERSION, None, "TLS_CHACHA20_POLY1305_SHA256", b"lbsim.test", None),
    ("tls12-rsa", SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA", None, None, [b"http/1.1"]),
    ("tls12-ecdsa", SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", None, b"ecdsa.lbsim.test", None),
    ("tls10", SSL.TLS1_VERSION, SSL.TLS1_VERSION, "ECDHE-RSA-AES128-SHA:AES128-SHA:@SECLEVEL=0", None, b"localhost", None),
)

HANDSHAKE, CLIENT_HELLO = 0x16, 0x01


def capture_client_hello(min_version: int, max_version: int, ciphers: str | None = None,
                         tls13_suites: str | None = None, sni: bytes | None = None,
                         alpn: list[bytes] | None = None) -> bytes:
    """The first flight (a ClientHello record) of a pyOpenSSL client with these settings."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(min_version)
    ctx.set_max_proto_version(max_version)
    if ciphers:
        ctx.set_cipher_list(ciphers.encode())
    if tls13_suites:
        ctx.set_tls13_ciphersuites(tls13_suites.encode())
    if alpn:
        ctx.set_alpn_protos(alpn)
    conn = SSL.Connection(ctx, None)
    if sni:
        conn.set_tlsext_host_name(sni)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def capture_client_hellos() -> dict[str, bytes]:
    """One real ClientHello per configuration in `CLIENTS`."""
    return {name: capture_client_hello(*settings) for name, *settings in CLIENTS}


# ---- structure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthField:
    """A length prefix inside a ClientHello record: where it is, how wide, and what it covers."""

    offset: int
    width: int
    name: str


def length_fields(record: bytes) -> list[LengthField]:
    """Every length prefix of a single-record ClientHello (record, handshake, vectors, extensions)."""
    fields = [LengthField(3, 2, "record"), LengthField(6, 3, "handshake")]
    pos = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
    try:
        fields.append(LengthField(pos, 1, "session_id"))
        pos += 1 + record[pos]
        fields.append(LengthField(pos, 2, "cipher_suites"))
        pos += 2 + struct.unpack_from("!H", record, pos)[0]
        fields.append(LengthField(pos, 1, "compression"))
        pos += 1 + record[pos]
        fields.append(LengthField(pos, 2, "extensions"))
        end = pos + 2 + struct.unpack_from("!H", record, pos)[0]
        pos += 2
        while pos + 4 <= min(end, len(record)):
            kind = struct.unpack_from("!H", record, pos)[0]
            fields.append(LengthField(pos + 2, 2, f"extension {kind}"))
            pos += 4 + struct.unpack_from("!H", record, pos + 2)[0]
    except (IndexError, struct.error):
        pass
    return [f for f in fields if f.offset + f.width <= len(record)]


def extensions(record: bytes) -> tuple[int, list[bytes]]:
    """(offset of the extensions vector's length, the raw extensions) of a single-record ClientHello."""
    ext_len = next((f for f in length_fields(record) if f.name == "extensions"), None)
    if ext_len is None:
        raise ValueError("no extensions vector")
    pos, end = ext_len.offset + 2, len(record)
    out = []
    while pos + 4 <= end:
        size = struct.unpack_from("!H", record, pos + 2)[0]
        out.append(record[pos:pos + 4 + size])
        pos += 4 + size
    return ext_len.offset, out


def with_extensions(record: bytes, exts: list[bytes]) -> bytes:
    """The same ClientHello with another extension list; record, handshake and vector lengths fixed up."""
    offset, _ = extensions(record)
    body = b"".join(exts)
    hello = record[9:offset] + struct.pack("!H", len(body)) + body
    handshake = bytes([CLIENT_HELLO]) + len(hello).to_bytes(3, "big") + hello
    return record[:3] + struct.pack("!H", len(handshake)) + handshake


def fragment(record: bytes, sizes: Iterable[int]) -> bytes:
    """Split a record's payload into several records of the given sizes (the rest in a last record)."""
    head, payload = record[:3], record[5:]
    out, pos = [], 0
    for size in sizes:
        if pos >= len(payload):
            break
        out.append(head + struct.pack("!H", len(payload[pos:pos + size])) + payload[pos:pos + size])
        pos += size
    if pos < len(payload):
        out.append(head + struct.pack("!H", len(payload) - pos) + payload[pos:])
    return b"".join(out)


# ---- mutations ---------------------------------------------------------------------------------------

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def _bitflips(r: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(out))
        out[i] ^= 1 << r.randrange(8)
    return bytes(out)


def _bytes(r: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(r.randint(1, 16)):
        out[r.randrange(len(out))] = r.choice(INTERESTING) if r.random() < 0.5 else r.randrange(256)
    return bytes(out)


def _length(r: random.Random, data: bytes) -> bytes:
    fields = length_fields(data)
    f = r.choice(fields)
    value = int.from_bytes(data[f.offset:f.offset + f.width], "big")
    top = (1 << (8 * f.width)) - 1
    new = r.choice((0, 1, top, value - 1, value + 1, value * 2, r.randrange(top + 1))) % (top + 1)
    return data[:f.offset] + new.to_bytes(f.width, "big") + data[f.offset + f.width:]


def _truncate(r: random.Random, data: bytes) -> bytes:
    return data[:r.randrange(1, len(data))] if len(data) > 1 else b""


def _append(r: random.Random, data: bytes) -> bytes:
    return data + r.randbytes(r.randint(1, 512))


def _insert(r: random.Random, data: bytes) -> bytes:
    i = r.randrange(len(data))
    return data[:i] + r.randbytes(r.randint(1, 64)) + data[i:]


def _delete(r: random.Random, data: bytes) -> bytes:
    i = r.randrange(len(data))
    return data[:i] + data[i + r.randint(1, 32):]


def _extension_shuffle(r: random.Random, data: bytes) -> bytes:
    _, exts = extensions(data)
    choice = r.randrange(4)
    if choice == 0 and exts:  # duplicate one (RFC 8446: duplicates are illegal)
        exts.insert(r.randrange(len(exts) + 1), r.choice(exts))
    elif choice == 1 and exts:  # drop one (maybe a mandatory one)
        exts.pop(r.randrange(len(exts)))
    elif choice == 2:
        r.shuffle(exts)
    else:  # an unknown or known extension with random contents
        kind = r.choice((0, 10, 13, 16, 43, 45, 51, 41, 0xFF01, r.randrange(65536)))
        blob = r.randbytes(r.randint(0, 300))
        exts.insert(r.randrange(len(exts) + 1), struct.pack("!HH", kind, len(blob)) + blob)
    return with_extensions(data, exts)


def _extension_contents(r: random.Random, data: bytes) -> bytes:
    _, exts = extensions(data)
    with_content = [i for i, ext in enumerate(exts) if len(ext) > 4]
    if not with_content:
        return _bytes(r, data)
    i = r.choice(with_content)
    ext = bytearray(exts[i])
    for _ in range(r.randint(1, 4)):
        ext[r.randrange(4, len(ext))] ^= r.randrange(1, 256)
    exts[i] = bytes(ext)
    return with_extensions(data, exts)


def _fragment(r: random.Random, data: bytes) -> bytes:
    """Valid TLS: the hello split over several records; sometimes with an empty record (illegal)."""
    sizes = [r.randint(0 if r.random() < 0.1 else 1, 64) for _ in range(r.randint(1, 12))]
    return fragment(data, sizes)


def _record_header(r: random.Random, data: bytes) -> bytes:
    """Wrong content type or record version."""
    out = bytearray(data)
    if r.random() < 0.5:
        out[0] = r.choice((20, 21, 23, 24, 0x80, r.randrange(256)))
    else:
        out[1:3] = r.choice((b"\x03\x00", b"\x03\x04", b"\x02\x00", b"\xfe\xff", r.randbytes(2)))
    return bytes(out)


def _twice(r: random.Random, data: bytes) -> bytes:
    """Two ClientHellos in a row, or a hello followed by a fake ChangeCipherSpec and Finished."""
    if r.random() < 0.5:
        return data + data
    return data + b"\x14\x03\x03\x00\x01\x01" + b"\x16\x03\x03\x00\x10" + r.randbytes(16)


MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _bitflips, _bytes, _length, _length, _truncate, _append, _insert, _delete,
    _extension_shuffle, _extension_contents, _fragment, _record_header, _twice,
)


def mutate(r: random.Random, hello: bytes, rounds: int | None = None) -> bytes:
    """A ClientHello after 1-3 random mutations (structure-aware ones first see a well-formed record)."""
    data = hello
    for _ in range(rounds or r.choice((1, 1, 1, 2, 3))):
        mutation = r.choice(MUTATIONS)
        try:
            data = mutation(r, data)
        except (ValueError, IndexError, struct.error):  # an earlier round broke the structure it needs
            data = _bytes(r, data)
        if not data:
            data = hello[:1]
    return data


def random_stream(r: random.Random) -> bytes:
    """Random bytes: sometimes behind a TLS handshake record header (so OpenSSL, not the sniffer, sees them)."""
    kind = r.randrange(4)
    body = r.randbytes(r.choice((1, 2, 5, 16, 100, 517, 1500, r.randint(1, 8192))))
    if kind == 0:
        return b"\x16\x03" + bytes([r.randrange(5)]) + struct.pack("!H", min(len(body), 0xFFFF)) + body
    if kind == 1:
        return b"\x16\x03\x01" + struct.pack("!H", r.randrange(65536)) + bytes([CLIENT_HELLO]) + body
    return body


def inputs(seed: int, count: int, hellos: dict[str, bytes] | None = None, streams: float = 0.3) -> Iterator[bytes]:
    """`count` inputs, reproducible from `seed`: mutated hellos, and a `streams` share of random byte streams."""
    hellos = hellos or capture_client_hellos()
    pool = list(hellos.values())
    for i in range(count):
        r = random.Random(f"{seed}:{i}")
        yield random_stream(r) if r.random() < streams else mutate(r, r.choice(pool))


def input_at(seed: int, index: int, hellos: dict[str, bytes], streams: float = 0.3) -> bytes:
    """The `index`th input of `inputs(seed, ...)`, to replay one finding."""
    r = random.Random(f"{seed}:{index}")
    pool = list(hellos.values())
    return random_stream(r) if r.random() < streams else mutate(r, r.choice(pool))


# ---- malformed HTTP after the handshake --------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class HttpCase:
    """Bytes sent after a successful handshake, and what a vendor (nginx) listener answers.

    `status` None means: no answer, the connection is closed. `forwarded`: nginx passes it on to a backend."""

    name: str
    data: bytes
    status: int | None
    forwarded: bool = False


def _req(head: bytes, body: bytes = b"") -> bytes:
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


HTTP1_CASES: tuple[HttpCase, ...] = (
    HttpCase("bad request line", b"GARBAGE\r\n\r\n", 400),
    HttpCase("HTTP/0.9 request", b"GET /\r\n\r\n", 400),
    HttpCase("unknown HTTP version", _req(b"GET / HTTP/9.9\nHost: x\n"), 505),
    HttpCase("HTTP/2 preface without ALPN h2", H2_PREFACE, 505),
    HttpCase("lowercase method", _req(b"get / HTTP/1.1\nHost: x\n"), 400),
    HttpCase("HTTP/1.1 without Host", _req(b"GET / HTTP/1.1\n"), 400),
    HttpCase("two Host headers", _req(b"GET / HTTP/1.1\nHost: a\nHost: b\n"), 400),
    HttpCase("space before colon", _req(b"GET / HTTP/1.1\nHost : x\n"), 400),
    HttpCase("header line without colon", _req(b"GET / HTTP/1.1\nHost: x\nNoColon\n"), 400),
    HttpCase("empty header name", _req(b"GET / HTTP/1.1\nHost: x\n: v\n"), 400),
    HttpCase("obs-fold continuation", _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\n b\n"), 400),
    HttpCase("NUL in a header value", _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\x00b\n"), 400),
    HttpCase("NUL in the target", _req(b"GET /a\x00b HTTP/1.1\nHost: x\n"), 400),
    HttpCase("request line over 8 KiB", _req(b"GET /" + b"a" * 9000 + b" HTTP/1.1\nHost: x\n"), 414),
    HttpCase("header line over 8 KiB", _req(b"GET / HTTP/1.1\nHost: x\nX-Big: " + b"a" * 9000 + b"\n"), 400),
    HttpCase("headers over 32 KiB", _req(b"GET / HTTP/1.1\nHost: x\n" + b"".join(b"X-%05d: %s\n" % (i, b"v" * 100) for i in range(400))), 400),
    HttpCase("1 MiB of headers that never end", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 131072, 400),
    HttpCase("Content-Length and Transfer-Encoding", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n",
                                                          b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
    HttpCase("two Content-Lengths", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 3\nContent-Length: 5\n", b"abcde"), 400),
    HttpCase("negative Content-Length", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: -1\n"), 400),
    HttpCase("Content-Length not a number", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 1x\n", b"abc"), 400),
    HttpCase("Transfer-Encoding other than chunked", _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: gzip\n", b"abc"), 400),
    HttpCase("bad chunk size", _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    HttpCase("chunk longer than its size", _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"3\r\nabcdef\r\n0\r\n\r\n"), 400),
    HttpCase("chunk size overflow", _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"f" * 20 + b"\r\nabc\r\n"), 400),
    HttpCase("CONNECT", _req(b"CONNECT evil.example:443 HTTP/1.1\nHost: evil.example:443\n"), 400),
    # nginx passes these on (the backend judges them); so does lbsim.
    HttpCase("bare LF line endings", b"GET / HTTP/1.1\nHost: x\nConnection: close\n\n", 200, forwarded=True),
    HttpCase("absolute-form target", _req(b"GET http://elsewhere.example/ HTTP/1.1\nHost: x\nConnection: close\n"), 200, forwarded=True),
    HttpCase("WebSocket upgrade (forwarded as plain GET)", _req(
        b"GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade, close\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
        b"Sec-WebSocket-Version: 13\n"), 200, forwarded=True),
)


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One raw HTTP/2 frame (RFC 9113 4.1), valid or not: hyperframe refuses to build the invalid ones."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + (stream & 0x7FFFFFFF).to_bytes(4, "big") + payload


def _h2_headers(stream: int, headers: list[tuple[str, str]], end_stream: bool = True, end_headers: bool = True) -> bytes:
    import hpack

    flags = (0x4 if end_headers else 0) | (0x1 if end_stream else 0)
    return h2_frame(0x1, flags, stream, hpack.Encoder().encode(headers))


def _get(path: str = "/", extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path), *extra]


@dataclass(frozen=True)
class H2Case:
    """HTTP/2 frames after the preface and an empty SETTINGS; `streams` requests the case opens."""

    name: str
    frames: bytes
    streams: int = 0


H2_CASES: tuple[H2Case, ...] = (
    H2Case("HEADERS on stream 0", h2_frame(0x1, 0x5, 0, b"\x82")),
    H2Case("even (server) stream id", _h2_headers(2, _get())),
    H2Case("DATA on an idle stream", h2_frame(0x0, 0x1, 5, b"x" * 10)),
    H2Case("INITIAL_WINDOW_SIZE over 2^31-1", h2_frame(0x4, 0, 0, struct.pack("!HI", 4, 2**31))),
    H2Case("ENABLE_PUSH = 2", h2_frame(0x4, 0, 0, struct.pack("!HI", 2, 2))),
    H2Case("window overflow", h2_frame(0x8, 0, 0, struct.pack("!I", 2**31 - 1))),
    H2Case("uppercase header name", _h2_headers(1, _get(extra=(("X-Upper", "v"),)))),
    H2Case("connection-specific header", _h2_headers(1, _get(extra=(("connection", "keep-alive"),)))),
    H2Case("missing :path", _h2_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "x")])),
    H2Case("undecodable HPACK", h2_frame(0x1, 0x5, 1, b"\xff" * 8)),
    H2Case("NUL in a header value", _h2_headers(1, _get(extra=(("x-a", "a\x00b"),)))),
    H2Case("CR LF in a header value", _h2_headers(1, _get(extra=(("x-a", "a\r\nX-Injected: 1"),)))),
    H2Case("invalid method", _h2_headers(1, [(":method", "G E T"), (":scheme", "https"), (":authority", "x"), (":path", "/")])),
    H2Case("content-length mismatch", _h2_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", "x"), (":path", "/"),
                                                      ("content-length", "3")], end_stream=False) + h2_frame(0x0, 0x1, 1, b"x" * 10)),
    H2Case("more streams than MAX_CONCURRENT_STREAMS", b"".join(_h2_headers(2 * i + 1, _get("/many"), end_stream=False) for i in range(120))),
    H2Case("CONTINUATION flood", _h2_headers(1, _get(), end_headers=False) + h2_frame(0x9, 0, 1, b"\x00" * 16000) * 100),
    H2Case("oversized header block", _h2_headers(1, _get(extra=(("x-b", "a" * 4000),) * 40))),
    H2Case("rapid reset (HEADERS + RST_STREAM) x 500", b"".join(
        _h2_headers(2 * i + 1, _get("/rapid-reset")) + h2_frame(0x3, 0, 2 * i + 1, struct.pack("!I", 8)) for i in range(500)), streams=500),
    H2Case("GOAWAY, then a request", h2_frame(0x7, 0, 0, struct.pack("!II", 0, 0)) + _h2_headers(1, _get())),
    H2Case("random frames", bytes(range(256)) * 4),
)


# ---- hypothesis --------------------------------------------------------------------------------------


def client_hello_strategy(hellos: dict[str, bytes] | None = None) -> Any:
    """A hypothesis strategy of mutated ClientHellos (shrinks towards the unmutated hello)."""
    from hypothesis import strategies as st

    pool = list((hellos or capture_client_hellos()).values())
    return st.builds(
        lambda hello, seed, rounds: mutate(random.Random(seed), hello, rounds),
        st.sampled_from(pool), st.integers(0, 2**32), st.integers(1, 3),
    )


def byte_stream_strategy() -> Any:
    """A hypothesis strategy of random byte streams, some behind a TLS record header."""
    from hypothesis import strategies as st

    return st.one_of(
        st.binary(min_size=1, max_size=4096),
        st.builds(lambda seed: random_stream(random.Random(seed)), st.integers(0, 2**32)),
    )


# ---- sending -----------------------------------------------------------------------------------------


@dataclass
class SendStats:
    """What a burst of inputs met: how the listener ended each connection."""

    sent: int = 0
    closed: int = 0  # the listener closed (FIN) after answering or not
    reset: int = 0  # the listener reset the connection
    timed_out: int = 0  # no close within the read timeout (the listener still waited for bytes)
    refused: int = 0  # could not connect at all: a listener that stopped accepting
    answered: int = 0  # connections that got any bytes back (an alert, a 400)
    seconds: float = 0.0
    refused_examples: list[str] = field(default_factory=list)
    timed_out_examples: list[bytes] = field(default_factory=list)

    def merge(self, other: SendStats) -> None:
        for name in ("sent", "closed", "reset", "timed_out", "refused", "answered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused_examples += other.refused_examples[:5]
        self.timed_out_examples += other.timed_out_examples[:5]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def _one(host: str, port: int, data: bytes, stats: SendStats, timeout: float, half_close: bool) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        stats.refused += 1
        if len(stats.refused_examples) < 5:
            stats.refused_examples.append(repr(e))
        return
    stats.sent += 1
    got = 0
    try:
        writer.write(data)
        await writer.drain()
        if half_close and writer.can_write_eof():
            writer.write_eof()  # no more bytes: a truncated hello gets its answer now, not at idle timeout
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                got += len(chunk)
        stats.closed += 1
    except TimeoutError:
        stats.timed_out += 1
        if len(stats.timed_out_examples) < 5:
            stats.timed_out_examples.append(data)
    except (ConnectionResetError, BrokenPipeError):
        stats.reset += 1
    except OSError:
        stats.reset += 1
    finally:
        stats.answered += got > 0
        writer.transport.abort()


async def send_inputs_async(host: str, port: int, data: Iterable[bytes], concurrency: int = 32,
                            timeout: float = 5.0, half_close: bool = False) -> SendStats:
    """Each input on its own connection, `concurrency` at a time; returns how the connections ended."""
    stats = SendStats()
    started = time.monotonic()
    iterator = iter(data)

    async def worker() -> None:
        for item in iterator:  # shared iterator: workers take inputs in turn
            await _one(host, port, item, stats, timeout, half_close)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.seconds = time.monotonic() - started
    return stats


def send_inputs(host: str, port: int, data: Iterable[bytes], concurrency: int = 32, timeout: float = 5.0,
                half_close: bool = False) -> SendStats:
    """Synchronous front of :func:`send_inputs_async` (runs its own event loop)."""
    return asyncio.run(send_inputs_async(host, port, data, concurrency, timeout, half_close))


def main(argv: list[str] | None = None) -> int:
    """`python -m simulator.tools.fuzz PORT [--seed S] [--count N] [--concurrency C]`: fire inputs, print stats as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m simulator.tools.fuzz", description=main.__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="index of the first input")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    hellos = capture_client_hellos()
    data = (input_at(args.seed, i, hellos) for i in range(args.start, args.start + args.count))
    stats = send_inputs(args.host, args.port, data, args.concurrency, args.timeout)
    out = {k: v for k, v in vars(stats).items() if not k.endswith("examples")}
    out["timed_out_examples"] = [x.hex() for x in stats.timed_out_examples]
    out["refused_examples"] = stats.refused_examples
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
