"""A lean HTTPS/1.1 client for load generation that counts every byte it puts on the wire.

pyOpenSSL on memory BIOs over a plain socket: the TLS engine never touches the socket, this module moves
the bytes and counts them, so `sent`/`received` are exactly the TCP payload the listener's meter sees.
Under Locust the socket is gevent's, so a connection waiting for the listener yields to other users.

    ctx = client_context(TlsOptions(cafile="lbsim-out/pki/ca.pem"))
    conn = TlsConnection(Target.parse("https://localhost:8443"), ctx)
    conn.connect()                                  # conn.handshake_ms, conn.resumed, conn.version
    r = conn.request("GET", "/hello?size=1024")     # r.status, r.http_received, r.wire_received ...
    conn.close(); session = conn.session            # pass to the next TlsConnection to resume

No Locust import here (importing Locust monkey-patches the process); the Locust user is in
`scenarios/load/common.py`.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from OpenSSL import SSL

from simulator.policies.context import alert_from_error, session_reused
from simulator.policies.suites import OPENSSL_VERSION_CONSTANTS, canonical_version
from simulator.policies.probe import ssl_error_text

CHUNK = 65536
# Hostname checks as browsers do them: no partial wildcards (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS).
_NO_PARTIAL_WILDCARDS = 0x4


class HandshakeRejected(Exception):
    """The listener refused the handshake with an alert (or, in TLS 1.3, right after the client finished)."""

    def __init__(self, message: str, alert: str | None):
        super().__init__(message)
        self.alert = alert


class ConnectionFailed(Exception):
    """Anything else: connect refused, reset, timeout, certificate not trusted, a broken response."""


@dataclass(frozen=True)
class Target:
    """Where to connect (`ip`, `port`) and who we expect there (`host`: SNI and hostname check)."""

    host: str
    port: int
    ip: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """``https://name:port`` (a bare ``name:port`` too), resolved once, IPv4 first."""
        parts = urlsplit(url if "//" in url else f"https://{url}")
        if parts.scheme != "https":
            raise ValueError(f"{url!r}: the target must be an https:// URL")
        if not parts.hostname or not parts.port:
            raise ValueError(f"{url!r}: expected https://HOST:PORT")
        return cls(parts.hostname, parts.port, resolve(parts.hostname, parts.port))


@functools.lru_cache(maxsize=64)
def resolve(host: str, port: int) -> str:
    # Once per process: a lookup per connection would cost more than the handshake under gevent.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


@dataclass(frozen=True)
class TlsOptions:
    """What the client offers. `version` pins one version; `ciphers` is an OpenSSL cipher string for
    TLS <= 1.2, `tls13_ciphersuites` a colon-separated list. The server is always verified against
    `cafile` (chain and hostname). `cert`/`key` are a client certificate chain and key (PEM files)."""

    cafile: str
    version: str | None = None
    ciphers: str | None = None
    tls13_ciphersuites: str | None = None
    cert: str | None = None
    key: str | None = None
    alpn: tuple[str, ...] = ("http/1.1",)
    tickets: bool = True


@functools.lru_cache(maxsize=32)
def client_context(options: TlsOptions) -> SSL.Context:
    """One context per set of options and process: the certificate, key and CA are parsed once."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    if options.version:
        v = canonical_version(options.version)
        if v is None:
            raise ValueError(f"unknown TLS version {options.version!r}")
        ctx.set_min_proto_version(OPENSSL_VERSION_CONSTANTS[v])
        ctx.set_max_proto_version(OPENSSL_VERSION_CONSTANTS[v])
    ciphers = options.ciphers or "DEFAULT"
    if options.version in ("TLSv1", "TLSv1.0", "TLSv1.1") and "@SECLEVEL" not in ciphers:
        ciphers += ":@SECLEVEL=0"  # OpenSSL 3 will not even offer TLS 1.0/1.1 above level 0
    ctx.set_cipher_list(ciphers.encode())
    if options.tls13_ciphersuites:
        ctx.set_tls13_ciphersuites(options.tls13_ciphersuites.encode())
    if not options.tickets:
        ctx.set_options(SSL.OP_NO_TICKET)
    # The caller keeps sessions itself (TlsConnection.session); no cache to flush them from.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.load_verify_locations(options.cafile)
    ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
    if options.cert:
        ctx.use_certificate_chain_file(options.cert)
        ctx.use_privatekey_file(options.key or options.cert)
    if options.alpn:
        ctx.set_alpn_protos([p.encode() for p in options.alpn])
    return ctx


@dataclass
class Response:
    """One request's result. `http_*` are HTTP bytes (request or status line, headers, body); `wire_*` the
    TLS bytes on the socket since the previous request on this connection ended, so the first request
    on a connection carries its handshake."""

    status: int
    body_length: int
    http_sent: int
    http_received: int
    wire_sent: int
    wire_received: int
    elapsed_ms: float
    keep_alive: bool = True


@dataclass
class ConnectionRecord:
    """What the client saw of one connection, to compare with the listener's connection-log record."""

    target: str
    local_port: int | None = None
    started: float = 0.0
    outcome: str = "open"  # ok | rejected | failed | aborted
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    resumed: bool | None = None
    connect_ms: float | None = None
    handshake_ms: float | None = None
    handshake_sent: int = 0
    handshake_received: int = 0
    sent: int = 0
    received: int = 0
    http_sent: int = 0
    http_received: int = 0
    requests: int = 0
    client_cert: str | None = None
    expect_rejection: bool = False
    alert: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TlsConnection:
    """One TLS connection: connect, any number of HTTP/1.1 requests, close. Counts wire and HTTP bytes."""

    target: Target
    context: SSL.Context
    sni: str | None = None  # default: the target's host name (none for an IP literal)
    session: SSL.Session | None = None
    timeout: float = 30.0
    client_cert: str | None = None
    expect_rejection: bool = False
    record: ConnectionRecord = field(init=False)

    def __post_init__(self) -> None:
        self.record = ConnectionRecord(
            target=f"{self.target.host}:{self.target.port}", client_cert=self.client_cert,
            expect_rejection=self.expect_rejection,
        )
        self.sock: socket.socket | None = None
        self.conn: SSL.Connection | None = None
        self._buf = bytearray()  # plaintext received and not yet consumed
        self._mark_sent = self._mark_received = 0  # wire counts when the last request ended
        self._handshake_started = 0.0
        self._eof = False
        self.closed = False

    # ---- the wire --------------------------------------------------------------------------------------

    def _flush(self) -> None:
        assert self.conn is not None and self.sock is not None
        while True:
            try:
                data = self.conn.bio_read(CHUNK)
            except SSL.WantReadError:
                return
            if not data:
                return
            self.sock.sendall(data)
            self.record.sent += len(data)

    def _fill(self) -> None:
        assert self.conn is not None and self.sock is not None
        data = self.sock.recv(CHUNK)
        if not data:
            self._eof = True
            self.conn.bio_shutdown()
            return
        self.record.received += len(data)
        self.conn.bio_write(data)

    def _run(self, op):  # type: ignore[no-untyped-def]
        """Call the TLS operation `op` until it stops wanting bytes from the peer."""
        while True:
            try:
                result = op()
            except SSL.WantReadError:
                self._flush()
                if self._eof:
                    raise
                self._fill()
                continue
            except SSL.Error:
                self._flush()  # our own alert, if any, still goes out
                raise
            self._flush()
            return result

    # ---- connection ------------------------------------------------------------------------------------

    def connect(self) -> None:
        """TCP connect and TLS handshake. Raises HandshakeRejected or ConnectionFailed."""
        rec = self.record
        rec.started = time.time()
        conn = self.conn = SSL.Connection(self.context, None)
        conn.set_connect_state()
        name = self.sni if self.sni is not None else self.target.host
        _verify_hostname(conn, name)
        if self.session is not None:
            conn.set_session(self.session)
        t0 = time.perf_counter()
        # Not socket.create_connection: under gevent it resolves even an IP literal, in a thread pool.
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.target.ip else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect((self.target.ip, self.target.port))
        except OSError as e:
            self._drop()
            rec.outcome, rec.error = "failed", f"connect: {e.strerror or e}"
            raise ConnectionFailed(rec.error) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rec.local_port = self.sock.getsockname()[1]
        t1 = self._handshake_started = time.perf_counter()
        rec.connect_ms = (t1 - t0) * 1000
        try:
            self._run(conn.do_handshake)
        except BaseException as e:
            rec.handshake_ms = (time.perf_counter() - t1) * 1000
            rec.handshake_sent, rec.handshake_received = rec.sent, rec.received
            raise self._failure(e, in_handshake=True) from None
        rec.handshake_ms = (time.perf_counter() - t1) * 1000
        rec.handshake_sent, rec.handshake_received = rec.sent, rec.received
        rec.version = conn.get_protocol_version_name()
        rec.cipher = conn.get_cipher_name()
        alpn = conn.get_alpn_proto_negotiated()
        rec.alpn = alpn.decode() if alpn else None
        rec.resumed = session_reused(conn)

    def _failure(self, e: BaseException, in_handshake: bool) -> Exception:
        """Classify an exception, close the socket, and return what to raise."""
        rec = self.record
        if not isinstance(e, Exception):  # GreenletExit, KeyboardInterrupt: the user was stopped
            rec.outcome, rec.error = "aborted", type(e).__name__
            self._drop()
            return e  # type: ignore[return-value]
        alert = alert_from_error(e) if isinstance(e, SSL.Error) else None
        rec.alert = alert
        rec.error = ssl_error_text(e)
        self._drop()
        # In TLS 1.3 the client finishes its handshake before the server has checked the client's
        # certificate: a refusal arrives as an alert on the first read, before any HTTP byte.
        if alert is not None and (in_handshake or rec.http_received == 0 and rec.requests == 0):
            rec.outcome = "rejected"
            rec.handshake_ms = (time.perf_counter() - self._handshake_started) * 1000  # until the refusal
            return HandshakeRejected(f"handshake refused: {alert}", alert)
        rec.outcome = "failed"
        return ConnectionFailed(rec.error)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        """Send one request and read the whole response (Content-Length or chunked)."""
        assert self.conn is not None and not self.closed
        rec = self.record
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.target.host}:{self.target.port}"]
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        t0 = time.perf_counter()
        try:
            self._run(lambda: self.conn.sendall(raw))  # type: ignore[union-attr]
            status, body_length, received, keep_alive = self._read_response()
        except BaseException as e:
            raise self._failure(e, in_handshake=False) from None
        elapsed = (time.perf_counter() - t0) * 1000
        rec.requests += 1
        rec.http_sent += len(raw)
        rec.http_received += received
        wire_sent, wire_received = rec.sent - self._mark_sent, rec.received - self._mark_received
        self._mark_sent, self._mark_received = rec.sent, rec.received
        return Response(status, body_length, len(raw), received, wire_sent, wire_received, elapsed, keep_alive)

    def _recv_more(self) -> None:
        try:
            self._buf += self._run(lambda: self.conn.recv(CHUNK))  # type: ignore[union-attr]
        except SSL.ZeroReturnError:
            raise ConnectionFailed("connection closed by the listener (close_notify)") from None
        except SSL.SysCallError:
            raise ConnectionFailed("connection closed by the listener") from None

    def _read_response(self) -> tuple[int, int, int, bool]:
        """(status, body length, HTTP bytes received, keep-alive) of one response."""
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._recv_more()
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ConnectionFailed(f"bad status line {head[0]!r}") from None
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        keep_alive = fields.get("connection", "").lower() != "close"
        start = end + 4
        if "content-length" in fields:
            total = start + int(fields["content-length"])
            while len(buf) < total:
                self._recv_more()
            body_length = total - start
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            total, body_length = self._read_chunked(start)
        else:  # until the listener closes
            while not self._eof:
                try:
                    self._recv_more()
                except ConnectionFailed:
                    break
            total, body_length, keep_alive = len(buf), len(buf) - start, False
        del buf[:total]
        return status, body_length, total, keep_alive

    def _read_chunked(self, pos: int) -> tuple[int, int]:
        buf, body = self._buf, 0
        while True:
            while (eol := buf.find(b"\r\n", pos)) < 0:
                self._recv_more()
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:  # trailers end with an empty line
                while (end := buf.find(b"\r\n\r\n", pos - 2)) < 0:
                    self._recv_more()
                return end + 4, body
            while len(buf) < pos + size + 2:
                self._recv_more()
            body += size
            pos += size + 2

    def close(self) -> tuple[int, int]:
        """Send close_notify and close (if still open); the bytes no request was given (sent, received):
        close_notify, or all of a connection that served nothing. Idempotent."""
        rec = self.record
        if not self.closed and self.conn is not None and self.sock is not None:
            try:
                self.conn.shutdown()
                self._flush()
            except (SSL.Error, OSError):
                pass
            if rec.outcome == "open":
                rec.outcome = "ok"
        self._drop()
        rest = rec.sent - self._mark_sent, rec.received - self._mark_received
        self._mark_sent, self._mark_received = rec.sent, rec.received
        return rest

    def _drop(self) -> None:
        if self.conn is not None and self.record.version is not None:
            self.session = self.conn.get_session()
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.closed = True


def _verify_hostname(conn: SSL.Connection, name: str) -> None:
    """Check the server certificate's name as well as its chain (pyOpenSSL has no API for it)."""
    param = SSL._lib.SSL_get0_param(conn._ssl)  # type: ignore[attr-defined]
    SSL._lib.X509_VERIFY_PARAM_set_hostflags(param, _NO_PARTIAL_WILDCARDS)  # type: ignore[attr-defined]
    try:
        ip = ipaddress.ip_address(name).packed
    except ValueError:
        encoded = name.encode("idna")
        conn.set_tlsext_host_name(encoded)
        ok = SSL._lib.X509_VERIFY_PARAM_set1_host(param, encoded, len(encoded))  # type: ignore[attr-defined]
    else:  # RFC 6066: no SNI for an IP literal
        ok = SSL._lib.X509_VERIFY_PARAM_set1_ip(param, ip, len(ip))  # type: ignore[attr-defined]
    if ok != 1:
        raise ValueError(f"cannot check the server certificate against {name!r}")


