"""A TLS probe client: one handshake (and optionally one HTTP request) with full control over what it offers.

pyOpenSSL rather than Python's ``ssl``, which can neither pick TLS 1.3 suites nor go below security level 1.
The TLS engine runs on memory BIOs and this module moves the bytes, so `bytes_sent`/`bytes_received` are
the raw socket bytes, handshake included, and a ClientHello that cannot be built (e.g. a TLS 1.2-only
suite offered over TLS 1.0) fails before any connection is made.

    r = probe("127.0.0.1", 8443, version="TLSv1.2", ciphers="ECDHE-RSA-AES128-SHA")
    r.ok, r.version, r.cipher, r.alert
    again = probe("127.0.0.1", 8443, session=r.session)   # again.resumed
    enumerate_tls("127.0.0.1", 8443)   # {"TLSv1.2": [...suites in server preference order...], ...}
"""

from __future__ import annotations

import functools
import hashlib
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto

from simulator.policies.context import alert_from_error, session_reused, verify_reason
from simulator.policies.groups import set_groups
from simulator.policies.suites import (
    EVERYTHING,
    OPENSSL_VERSION_CONSTANTS,
    TLS13_SUITES,
    VERSIONS,
    canonical_version,
    expand,
    suite_info,
)

# What the probe offers when not told otherwise: everything but anonymous and NULL suites, level 0.
DEFAULT_CIPHERS = "ALL:!aNULL:!eNULL"


@dataclass
class ProbeResult:
    """The outcome of one probe. `ok` means the handshake completed and the server did not reject it right
    after (TLS 1.3 servers refuse a missing client certificate only once the client has finished)."""

    ok: bool = False
    version: str | None = None
    cipher: str | None = None
    group: str | None = None
    alpn: str | None = None
    resumed: bool = False
    session: SSL.Session | None = field(default=None, repr=False)
    server_chain: list[x509.Certificate] = field(default_factory=list, repr=False)
    server_fingerprint_sha256: str | None = None
    error: str | None = None
    alert: str | None = None
    verify_error: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    handshake_ms: float | None = None
    http_response: bytes | None = field(default=None, repr=False)
    local_port: int | None = None  # our side of the TCP connection, to find it in the listener's log
    # When it began to connect (epoch s): its log record opened no earlier. Ports are reused, so the port
    # alone may find an older connection's record.
    opened: float | None = None

    @property
    def server_subject(self) -> str | None:
        return self.server_chain[0].subject.rfc4514_string() if self.server_chain else None

    @property
    def server_names(self) -> list[str]:
        """DNS names of the server certificate (its SAN), to check which certificate SNI selected."""
        if not self.server_chain:
            return []
        try:
            san = self.server_chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return san.value.get_values_for_type(x509.DNSName)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the chain as subjects, the session and raw response left out (the latter as size)."""
        return {
            "ok": self.ok,
            "version": self.version,
            "cipher": self.cipher,
            "group": self.group,
            "alpn": self.alpn,
            "resumed": self.resumed,
            "server_chain": [c.subject.rfc4514_string() for c in self.server_chain],
            "server_fingerprint_sha256": self.server_fingerprint_sha256,
            "error": self.error,
            "alert": self.alert,
            "verify_error": self.verify_error,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "handshake_ms": self.handshake_ms,
            "local_port": self.local_port,
            "http_response_bytes": None if self.http_response is None else len(self.http_response),
        }


class _ProbeFailed(Exception):
    pass


class _Wire:
    """Moves bytes between the memory BIOs of `conn` and a socket, counting them."""

    def __init__(self, conn: SSL.Connection, deadline: float):
        self.conn = conn
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.sent = 0
        self.received = 0
        self.eof = False
        self.send_error: OSError | None = None

    def flush(self) -> None:
        while True:
            try:
                data = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            if not data:
                return
            if self.sock is None:
                return  # nothing connected yet: the bytes stay with the probe
            if self.send_error is not None:
                continue  # the peer is gone; what it sent before (an alert) may still be readable
            try:
                self.sock.sendall(data)
                self.sent += len(data)
            except (BrokenPipeError, ConnectionResetError) as e:
                self.send_error = e

    def fill(self, deadline: float | None = None) -> bool:
        """Read once from the socket into the TLS engine; False at EOF."""
        assert self.sock is not None
        remaining = (deadline or self.deadline) - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.conn.bio_shutdown()
            return False
        self.received += len(data)
        self.conn.bio_write(data)
        return True

    def run(self, op, deadline: float | None = None):  # type: ignore[no-untyped-def]
        """Call `op` until it stops wanting to read."""
        while True:
            try:
                result = op()
            except SSL.WantReadError:
                self.flush()
                if self.eof:
                    raise
                self.fill(deadline)
                continue
            except SSL.Error:
                self.flush()  # our alert, if any, still goes out
                raise
            self.flush()
            return result


def _client_context(
    version: str | None,
    ciphers: str | None,
    tls13_ciphersuites: str | None,
    cafile: str | None,
    ca_pem: bytes | str | None,
    client_cert_pem: bytes | str | None,
    client_key_pem: bytes | str | None,
    alpn: Sequence[str | bytes] | None,
    tickets: bool,
    verify_log: list[tuple[int, int, str]],
    groups: Sequence[str] | None = None,
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    if groups:
        set_groups(ctx, tuple(groups))
    if version is not None:
        v = canonical_version(version)
        if v is None:
            raise ValueError(f"unknown TLS version {version!r}; expected one of {', '.join(VERSIONS)}")
        ctx.set_min_proto_version(OPENSSL_VERSION_CONSTANTS[v])
        ctx.set_max_proto_version(OPENSSL_VERSION_CONSTANTS[v])
    else:
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    # Level 0 on the client too, or OpenSSL 3 will not even offer TLS 1.0/1.1, SHA-1 or CCM_8.
    cipher_string = ciphers or DEFAULT_CIPHERS
    if "@SECLEVEL" not in cipher_string:
        cipher_string += ":@SECLEVEL=0"
    ctx.set_cipher_list(cipher_string.encode())
    if tls13_ciphersuites is not None:
        ctx.set_tls13_ciphersuites(tls13_ciphersuites.encode())
    if not tickets:
        ctx.set_options(SSL.OP_NO_TICKET)
    # No client-side session cache: freeing the context would flush it and mark our sessions
    # not resumable; the caller keeps `result.session` instead.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)

    if cafile or ca_pem:

        def record(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                verify_log.append((errno, depth, verify_reason(errno)))
            return bool(ok)

        if cafile:
            ctx.load_verify_locations(cafile)
        if ca_pem:
            store = ctx.get_cert_store()
            assert store is not None
            for cert in x509.load_pem_x509_certificates(_bytes(ca_pem)):
                store.add_cert(crypto.X509.from_cryptography(cert))
        ctx.set_verify(SSL.VERIFY_PEER, record)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)

    if client_cert_pem:
        certs, key = _credentials(_bytes(client_cert_pem), _bytes(client_key_pem or client_cert_pem))
        ctx.use_certificate(certs[0])
        for extra in certs[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)  # type: ignore[arg-type]
    if alpn:
        ctx.set_alpn_protos([p.encode() if isinstance(p, str) else p for p in alpn])
    return ctx


def _bytes(pem: bytes | str) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem


@functools.lru_cache(maxsize=32)
def _credentials(cert_pem: bytes, key_pem: bytes) -> tuple[list[x509.Certificate], Any]:
    # Parsed once, and without cryptography's RSA consistency check (~40 ms, more than a handshake; a broken key
    # fails the handshake anyway): an enumeration presents the same certificate hundreds of times.
    return (x509.load_pem_x509_certificates(cert_pem),
            serialization.load_pem_private_key(key_pem, None, unsafe_skip_rsa_key_validation=True))


def _read_http(wire: _Wire, conn: SSL.Connection, deadline: float, limit: int = 64 * 1024 * 1024) -> bytes:
    """One HTTP/1.x response: up to Content-Length, the last chunk, or EOF."""
    buf = bytearray()
    need: int | None = None
    while len(buf) < limit:
        if need is None and b"\r\n\r\n" in buf:
            head, _, body = bytes(buf).partition(b"\r\n\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            }
            if b"content-length" in headers:
                need = len(head) + 4 + int(headers[b"content-length"])
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                need = -1
            else:
                need = -2  # until EOF
        if need is not None and need >= 0 and len(buf) >= need:
            return bytes(buf[:need])
        if need == -1 and buf.endswith(b"0\r\n\r\n"):
            return bytes(buf)
        try:
            buf += wire.run(lambda: conn.recv(65536), deadline)
        except (SSL.ZeroReturnError, SSL.SysCallError):
            break
    return bytes(buf)


def probe(
    host: str,
    port: int,
    *,
    version: str | None = None,
    ciphers: str | None = None,
    tls13_ciphersuites: str | None = None,
    sni: str | None = None,
    cafile: str | None = None,
    ca_pem: bytes | str | None = None,
    client_cert_pem: bytes | str | None = None,
    client_key_pem: bytes | str | None = None,
    session: SSL.Session | None = None,
    alpn: Sequence[str | bytes] | None = None,
    http_request: bytes | None = None,
    tickets: bool = True,
    timeout: float = 5.0,
    groups: Sequence[str] | None = None,
) -> ProbeResult:
    """Connect, handshake, optionally send `http_request` and read the response, then close cleanly.

    `version` pins one protocol version (``"TLSv1"`` ... ``"TLSv1.3"``); None offers TLS 1.0 to 1.3.
    `ciphers` is an OpenSSL cipher string for TLS <= 1.2 (security level 0 is added), `tls13_ciphersuites`
    a colon-separated TLS 1.3 list. The server is verified only against `cafile`/`ca_pem` when given (chain
    only, no hostname check). `client_cert_pem` is the client's chain (leaf first), `client_key_pem` its
    key (or include it in `client_cert_pem`). `session` resumes an earlier probe's ``result.session``;
    `tickets=False` disables tickets so that TLS 1.2 resumes by session ID. `groups` restricts the key-exchange
    groups offered (``["X25519MLKEM768"]``: a post-quantum-only client). Never raises for TLS or
    network failures: they are in ``result.error`` (and ``result.alert`` for an alert from the server).
    """
    result = ProbeResult()
    verify_log: list[tuple[int, int, str]] = []
    try:
        ctx = _client_context(
            version, ciphers, tls13_ciphersuites, cafile, ca_pem, client_cert_pem, client_key_pem, alpn, tickets, verify_log,
            groups,
        )
    except SSL.Error as e:
        result.error = f"client setup: {ssl_error_text(e)}"
        return result
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    if sni:
        conn.set_tlsext_host_name(sni.encode("idna"))
    if session is not None:
        conn.set_session(session)
    deadline = time.monotonic() + timeout
    wire = _Wire(conn, deadline)

    # Build the ClientHello before connecting: an impossible offer fails here, without a connection.
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    except SSL.Error as e:
        result.error = f"client: {ssl_error_text(e)}"
        return result

    sock: socket.socket | None = None
    started = time.perf_counter()
    result.opened = time.time()
    try:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise _ProbeFailed(f"connect: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        result.local_port = sock.getsockname()[1]
        wire.sock = sock
        wire.flush()
        wire.run(conn.do_handshake)
        result.handshake_ms = round((time.perf_counter() - started) * 1000, 3)
        result.version = conn.get_protocol_version_name()
        result.cipher = conn.get_cipher_name()
        result.group = conn.get_group_name()
        proto = conn.get_alpn_proto_negotiated()
        result.alpn = proto.decode() if proto else None
        result.resumed = session_reused(conn)
        result.server_chain = list(conn.get_peer_cert_chain(as_cryptography=True) or [])
        leaf = conn.get_peer_certificate(as_cryptography=True)
        if leaf is not None:
            if not result.server_chain:
                result.server_chain = [leaf]
            result.server_fingerprint_sha256 = leaf.fingerprint(hashes.SHA256()).hex()
        if http_request is not None:
            wire.run(lambda: conn.sendall(http_request))
            result.http_response = _read_http(wire, conn, deadline)
        # Close cleanly and drain: TLS 1.3 tickets and a late rejection (certificate required) arrive now.
        _close(wire, conn, min(deadline, time.monotonic() + min(timeout, 1.0)))
        if wire.send_error is not None:
            raise wire.send_error
        result.ok = True
    except _ProbeFailed as e:
        result.error = str(e)
    except SSL.Error as e:
        result.error = ssl_error_text(e)
        result.alert = alert_from_error(e)
    except TimeoutError:
        result.error = "timed out"
    except OSError as e:
        result.error = f"socket: {e.strerror or e}"
    finally:
        if sock is not None:
            sock.close()
        result.bytes_sent, result.bytes_received = wire.sent, wire.received
        if verify_log:
            errno, depth, reason = verify_log[0]
            result.verify_error = f"{reason} (depth {depth})"
        if result.version is not None:
            result.session = conn.get_session()
    return result


def _close(wire: _Wire, conn: SSL.Connection, deadline: float) -> None:
    try:
        conn.shutdown()
    except SSL.Error:
        return
    wire.flush()
    while not wire.eof:
        try:
            wire.run(lambda: conn.recv(65536), deadline)
        except (SSL.ZeroReturnError, SSL.SysCallError, TimeoutError):
            return
        # SSL.Error (an alert after our Finished) propagates: the server rejected us


def ssl_error_text(e: BaseException) -> str:
    """A short reason for a TLS or socket error: OpenSSL's reason strings rather than its tuple soup."""
    if isinstance(e, SSL.Error) and e.args and isinstance(e.args[0], list):
        reasons = [str(x[-1]) for x in e.args[0] if isinstance(x, tuple) and x]
        if reasons:
            return "; ".join(reasons)
    if isinstance(e, SSL.SysCallError) and e.args:
        return f"connection closed ({e.args[-1]})"
    if isinstance(e, OSError):
        return f"socket: {e.strerror or e}"
    return str(e) or type(e).__name__


def candidate_suites() -> tuple[str, ...]:
    """Every TLS <= 1.2 suite this OpenSSL can offer, security level 0 legacy ones included."""
    return expand(EVERYTHING)


def enumerate_tls(
    host: str,
    port: int,
    *,
    versions: Iterable[str] = VERSIONS,
    sni: str | None = None,
    candidates: Sequence[str] | None = None,
    tls13_candidates: Sequence[str] = TLS13_SUITES,
    order: bool = True,
    timeout: float = 5.0,
    **probe_kwargs: Any,
) -> dict[str, list[str]]:
    """Version -> suites the server really accepts, each suite probed alone, like a scanner.

    A version that does not negotiate with everything offered is left out. With `order`, the accepted
    suites are then sorted by what the server picks when offered all of them, in the reverse of their
    discovery order (so a server preferring the client's order would show up reversed). Extra keyword
    arguments (client certificate, CA...) go to every :func:`probe`.
    """
    pool = tuple(candidates) if candidates is not None else candidate_suites()
    out: dict[str, list[str]] = {}
    for v in versions:
        v = canonical_version(v) or v
        tls13 = v == "TLSv1.3"
        suites = tuple(tls13_candidates) if tls13 else pool

        def offer(names: Sequence[str]) -> ProbeResult:
            if tls13:
                return probe(host, port, version=v, tls13_ciphersuites=":".join(names), sni=sni, timeout=timeout, **probe_kwargs)
            return probe(host, port, version=v, ciphers=":".join(names), sni=sni, timeout=timeout, **probe_kwargs)

        if not offer(suites).ok:
            continue
        accepted = [s for s in suites if (r := offer([s])).ok and r.cipher == s]
        if not accepted:
            continue
        if order:
            accepted = cipher_preference(offer, accepted)
        out[v] = accepted
    return out


def cipher_preference(offer, suites: Sequence[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Suites in the order the server picks them: offer all (reversed), take its choice, repeat."""
    remaining = list(reversed(suites))
    ordered: list[str] = []
    while remaining:
        r = offer(remaining)
        if not r.ok or r.cipher not in remaining:
            ordered += list(reversed(remaining))  # cannot tell any more: keep discovery order
            break
        ordered.append(r.cipher)
        remaining.remove(r.cipher)
    return ordered


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex, as in `ProbeResult.server_fingerprint_sha256`."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def accepted_suites(host: str, port: int, versions: Iterable[str] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
                    **probe_kwargs: Any) -> dict[str, list[str]]:
    """Version -> every suite the server accepts, found by elimination, in the order the server picks them.

    Offer every suite this OpenSSL knows (security level 0); the server picks one it accepts; take it out
    and offer the rest again, until the handshake fails: what is left is refused. One handshake per accepted
    suite plus one per version (a one-suite-at-a-time scan needs ~160 per version), and the picks come out in
    the server's preference order. sslyze, which offers suites one at a time, is the independent check.
    """
    out: dict[str, list[str]] = {}
    for version in versions:
        if version == "TLSv1.3":
            remaining = list(TLS13_SUITES)
        else:
            remaining = [c for c in candidate_suites() if version in suite_info(c).versions]
        picked: list[str] = []
        while remaining:
            key = "tls13_ciphersuites" if version == "TLSv1.3" else "ciphers"
            r = probe(host, port, version=version, **{key: ":".join(remaining)}, **probe_kwargs)
            if not r.ok or r.cipher not in remaining:
                break
            picked.append(r.cipher)
            remaining.remove(r.cipher)
        if picked:
            out[version] = picked
    return out
