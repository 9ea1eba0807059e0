"""A minimal threaded TLS server around a context from `build_server_context`, for tests and scenarios.

Accepts, handshakes, answers one HTTP request with a JSON description of the handshake, and closes. Each
handshake is also recorded (with its `tls_verify_status`) for the test to inspect. The real listener runs
inside mitmproxy; this stand-in lets the TLS behaviour be pinned down without it.

    with TLSTestServer(ctx) as server:
        r = probe("127.0.0.1", server.port, http_request=b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        rec = server.next_record()   # rec.status == "Success"
"""

from __future__ import annotations

import json
import queue
import socket
import struct
import threading
from dataclasses import dataclass

from OpenSSL import SSL

from simulator.policies.context import session_reused, tls_verify_status


def handshake_in_memory(client: SSL.Connection, server: SSL.Connection, rounds: int = 8) -> None:
    """Pass bytes between two memory-BIO pyOpenSSL connections, each a handshake step, up to `rounds` times
    (fewer once a round moves nothing): raises the SSL.Error of a handshake that fails."""
    for _ in range(rounds):
        moved = False
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                b.bio_write(a.bio_read(1 << 16))
                moved = True
            except SSL.WantReadError:
                pass
        if not moved:
            return


@dataclass
class HandshakeRecord:
    """What the server saw of one client connection."""

    ok: bool
    status: str
    error: str | None = None
    version: str | None = None
    cipher: str | None = None
    sni: str | None = None
    sni_domain: str | None = None
    resumed: bool = False
    alpn: str | None = None
    client_subject: str | None = None
    verify_error: tuple[int, int, str] | None = None


class TLSTestServer:
    """Serves `ctx` on `host`, a free port; a context manager."""

    def __init__(self, ctx: SSL.Context, host: str = "127.0.0.1", timeout: float = 5.0):
        self.ctx = ctx
        self.host = host
        self.timeout = timeout
        self.records: queue.Queue[HandshakeRecord] = queue.Queue()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"tls-test-{self.port}", daemon=True)

    def __enter__(self) -> TLSTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def next_record(self, timeout: float = 5.0) -> HandshakeRecord:
        return self.records.get(timeout=timeout)

    def drain(self) -> list[HandshakeRecord]:
        out = []
        while True:
            try:
                out.append(self.records.get_nowait())
            except queue.Empty:
                return out

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        # A blocking socket with kernel timeouts: pyOpenSSL then sees a stalled peer as WantReadError.
        sock.settimeout(None)
        tv = struct.pack("ll", int(self.timeout), int((self.timeout % 1) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        conn = SSL.Connection(self.ctx, sock)
        conn.set_accept_state()
        exc: Exception | None = None
        try:
            conn.do_handshake()
        except Exception as e:  # the record says what; the server goes on
            exc = e
        rec = self._record(conn, exc)
        self.records.put(rec)
        try:
            if exc is None:
                self._answer(conn, rec)
        except Exception:
            pass
        finally:
            self._linger_close(sock)

    @staticmethod
    def _linger_close(sock: socket.socket) -> None:
        # Like nginx's lingering close: closing with unread client bytes (a TLS 1.3 client's request
        # after a rejected certificate) would send a reset that destroys our alert in flight.
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            while sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            sock.close()

    @staticmethod
    def _record(conn: SSL.Connection, exc: Exception | None) -> HandshakeRecord:
        raw_sni = conn.get_servername()
        rec = HandshakeRecord(
            ok=exc is None,
            status=tls_verify_status(conn, exc),
            error=None if exc is None else repr(exc),
            sni=raw_sni.decode() if raw_sni else None,
            sni_domain=getattr(conn, "lbsim_sni_domain", None),
            verify_error=getattr(conn, "lbsim_verify_error", None),
        )
        if exc is None:
            rec.version = conn.get_protocol_version_name()
            rec.cipher = conn.get_cipher_name()
            rec.resumed = session_reused(conn)
            proto = conn.get_alpn_proto_negotiated()
            rec.alpn = proto.decode() if proto else None
            peer = conn.get_peer_certificate(as_cryptography=True)
            rec.client_subject = peer.subject.rfc4514_string() if peer is not None else None
        return rec

    @staticmethod
    def _answer(conn: SSL.Connection, rec: HandshakeRecord) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            try:
                chunk = conn.recv(65536)
            except SSL.ZeroReturnError:  # closed without a request: say goodbye properly
                conn.shutdown()
                return
            if not chunk:
                return
            request += chunk
        body = json.dumps(
            {
                "version": rec.version,
                "cipher": rec.cipher,
                "alpn": rec.alpn,
                "sni": rec.sni,
                "resumed": rec.resumed,
                "client": rec.client_subject,
            }
        ).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        conn.shutdown()
