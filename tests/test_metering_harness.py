"""Test harness for traffic metering, plus its own sanity tests.

`LoopbackServer` serves real TCP connections on 127.0.0.1 and drives each `SSL.Connection` exactly the
way mitmproxy 12's `ClientTLSLayer` does: it buffers until a whole ClientHello arrived, then
`bio_write` + `do_handshake`, drains `bio_read(65535)` after every operation, reads plaintext with
`recv(65535)` until WantReadError/ZeroReturnError, answers with `sendall`, and never sends
close_notify. `CountingClient` is a pyOpenSSL client on a memory BIO whose every byte goes through a
real socket it counts, and splits into records itself (`RecordStream`).

Other metering tests import from here (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import simulator  # noqa: F401  first: it pins OpenSSL's key exchange groups before OpenSSL loads
import functools
import queue
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme
from mitmproxy.proxy.layers.tls import parse_client_hello
from OpenSSL import SSL

from simulator.metering import MeteredConnection, meter, tcpinfo
from simulator.metering.records import RecordStream
from simulator.policies.testing import handshake_in_memory

VERSIONS = {"TLSv1": SSL.TLS1_VERSION, "TLSv1.1": SSL.TLS1_1_VERSION, "TLSv1.2": SSL.TLS1_2_VERSION,
            "TLSv1.3": SSL.TLS1_3_VERSION}


# --- certificates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    """RSA-2048 lab PKI: server chain of 2 certificates (leaf + intermediate), a client certificate."""

    dir: Path
    server_chain: Path    # leaf + intermediate, then the key
    ca: Path              # root, for clients
    client_ca: Path
    client: Path          # client leaf + key


@functools.cache
def pki() -> Pki:
    d = Path(tempfile.mkdtemp(prefix="lbsim-metering-"))
    root = trustme.CA(key_type=trustme.KeyType.RSA)
    inter = root.create_child_ca(key_type=trustme.KeyType.RSA)
    leaf = inter.issue_cert("lb.test", key_type=trustme.KeyType.RSA)
    client_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    client = client_ca.issue_cert("client@lb.test", key_type=trustme.KeyType.RSA)
    p = Pki(d, d / "server.pem", d / "ca.pem", d / "client-ca.pem", d / "client.pem")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(p.server_chain))
    root.cert_pem.write_to_path(str(p.ca))
    client_ca.cert_pem.write_to_path(str(p.client_ca))
    client.private_key_and_cert_chain_pem.write_to_path(str(p.client))
    return p


def server_context(*, versions: tuple[str, str] = ("TLSv1", "TLSv1.3"), ciphers: str | None = None,
                   tls13_ciphers: str | None = None, mutual: bool = False) -> SSL.Context:
    """One context per listener configuration, as the TLS addon builds it (tickets on, 300 s)."""
    p = pki()
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(VERSIONS[versions[0]])
    ctx.set_max_proto_version(VERSIONS[versions[1]])
    ctx.set_cipher_list((ciphers or "DEFAULT").encode() + b":@SECLEVEL=0")
    if tls13_ciphers:
        ctx.set_tls13_ciphersuites(tls13_ciphers.encode())
    ctx.use_certificate_chain_file(str(p.server_chain))
    ctx.use_privatekey_file(str(p.server_chain))
    ctx.set_session_id(b"lbsim-metering")
    ctx.set_timeout(300)
    if mutual:
        ctx.load_verify_locations(str(p.client_ca))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: a[-1])
    return ctx


def client_context(*, versions: tuple[str, str] = ("TLSv1", "TLSv1.3"), ciphers: str | None = None,
                   tls13_ciphers: str | None = None, cert: bool = False) -> SSL.Context:
    p = pki()
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(VERSIONS[versions[0]])
    ctx.set_max_proto_version(VERSIONS[versions[1]])
    if ciphers or versions[0] in ("TLSv1", "TLSv1.1"):
        ctx.set_cipher_list((ciphers or "DEFAULT").encode() + b":@SECLEVEL=0")
    if tls13_ciphers:
        ctx.set_tls13_ciphersuites(tls13_ciphers.encode())
    ctx.load_verify_locations(str(p.ca))
    ctx.set_verify(SSL.VERIFY_PEER, lambda *a: a[-1])
    if cert:
        ctx.use_certificate_chain_file(str(p.client))
        ctx.use_privatekey_file(str(p.client))
    return ctx


# --- server: mitmproxy's TLSLayer, over a real socket ------------------------------------------------

class HttpApp:
    """A tiny HTTP/1.1 keep-alive responder: `X-Response-Bytes: N` asks for an N-byte body (default 2)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.requests = 0
        self.received = 0   # plaintext bytes the app got

    def feed(self, data: bytes) -> list[bytes]:
        self.received += len(data)
        self.buf += data
        out = []
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return out
            head = bytes(self.buf[:head_end]).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            length = int(headers.get("content-length", 0))
            if len(self.buf) < head_end + 4 + length:
                return out
            del self.buf[:head_end + 4 + length]
            self.requests += 1
            n = int(headers.get("x-response-bytes", 2))
            out.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"o" * n)


class EchoApp:
    """Echo every plaintext byte back (HTTP/2-sized frames are just bytes to the meter)."""

    def __init__(self) -> None:
        self.requests = 0
        self.received = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.received += len(data)
        return [data]


@dataclass
class Served:
    """What the server saw of one connection."""

    traffic: dict[str, Any] | None = None
    tcp: tcpinfo.TcpCounters | None = None
    error: str | None = None
    app_received: int = 0
    raw_before_tls: int = 0   # bytes buffered while the ClientHello was incomplete
    conn: Any = None


class LoopbackServer:
    """Accepts connections on 127.0.0.1; each one is served in its own thread."""

    def __init__(self, ctx: SSL.Context, *, app: Callable[[], Any] = HttpApp, metered: bool = True,
                 send_alert: str | None = "pending") -> None:
        """`send_alert`: how a failed handshake's alert reaches the client ("pending": write
        `pending_alert` and call `sent_alert`; "bio_read": drain it; None: drop it, as mitmproxy does)."""
        self.ctx, self.app, self.metered, self.send_alert = ctx, app, metered, send_alert
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.results: queue.Queue[Served] = queue.Queue()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def result(self, timeout: float = 10.0) -> Served:
        return self.results.get(timeout=timeout)

    # the per-connection loop, mirroring mitmproxy.proxy.layers.tls ------------------------------

    def _serve(self, sock: socket.socket) -> None:
        served = Served()
        app = self.app()
        conn: SSL.Connection | None = None
        hello = bytearray()
        done = False
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break  # receive_close
                if conn is None:  # ClientTLSLayer waits for the whole ClientHello
                    hello += data
                    try:
                        if parse_client_hello(bytes(hello)) is None:
                            continue
                    except ValueError:
                        break
                    conn = MeteredConnection(self.ctx) if self.metered else SSL.Connection(self.ctx)
                    conn.set_accept_state()
                    served.conn = conn
                    data = bytes(hello)
                if not done:
                    conn.bio_write(data)
                    try:
                        conn.do_handshake()
                    except SSL.WantReadError:
                        self._interact(conn, sock)
                        continue
                    except SSL.Error as e:
                        served.error = repr(e)
                        alert = getattr(conn, "pending_alert", b"")
                        if self.send_alert == "pending" and alert:  # write it, then report it
                            sock.sendall(alert)
                            conn.meter.sent_alert(len(alert))
                        elif self.send_alert == "bio_read":  # drain it like tls_interact would
                            self._interact(conn, sock)
                        break
                    done = True
                    if self._receive(conn, sock, app, b""):
                        break
                elif self._receive(conn, sock, app, data):
                    break
        except OSError as e:
            served.error = repr(e)
        finally:
            served.raw_before_tls = len(hello) if conn is None else 0
            if tcpinfo.supported():
                try:
                    served.tcp = tcpinfo.read_settled(sock)
                except OSError:
                    pass
            if isinstance(conn, MeteredConnection):
                conn.meter.requests = app.requests
                conn.meter.finish()
                served.traffic = conn.meter.to_dict()
            served.app_received = app.received
            sock.close()
            self.results.put(served)

    @staticmethod
    def _interact(conn: SSL.Connection, sock: socket.socket) -> None:
        while True:
            try:
                data = conn.bio_read(65535)
            except SSL.WantReadError:
                return
            sock.sendall(data)

    def _receive(self, conn: SSL.Connection, sock: socket.socket, app: Any, data: bytes) -> bool:
        """TLSLayer.receive_data, then the child's replies via send_data; True when the TLS side closed."""
        if data:
            conn.bio_write(data)
        plaintext = bytearray()
        close = False
        while True:
            try:
                plaintext.extend(conn.recv(65535))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                close = True
                break
            except SSL.Error:
                close = True  # mitmproxy logs it; the connection is then torn down
                break
        self._interact(conn, sock)
        if plaintext:
            for reply in app.feed(bytes(plaintext)):
                try:
                    conn.sendall(reply)
                except (SSL.ZeroReturnError, SSL.SysCallError):
                    pass
                self._interact(conn, sock)
        return close


# --- client: real socket, counted ------------------------------------------------------------------

class CountingClient:
    """A pyOpenSSL client whose bytes all pass through a real socket that counts them."""

    def __init__(self, address: tuple[str, int], ctx: SSL.Context, *, session: Any = None,
                 sni: bytes = b"lb.test") -> None:
        self.sock = socket.create_connection(address)
        self.sock.settimeout(10)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_tlsext_host_name(sni)
        if session is not None:
            self.conn.set_session(session)
        self.sent = 0
        self.received = 0
        self.out_records = RecordStream()   # client -> LB, as split by the client
        self.in_records = RecordStream()    # LB -> client
        self.hs_sent: int | None = None
        self.hs_received: int | None = None
        self.plain_sent = 0
        self.plain_received = 0

    def _flush(self) -> None:
        while True:
            try:
                data = self.conn.bio_read(65535)
            except SSL.WantReadError:
                return
            self.sock.sendall(data)
            self.sent += len(data)
            self.out_records.feed(data)

    def _pull(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.received += len(data)
        self.in_records.feed(data)
        self.conn.bio_write(data)
        return True

    def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the socket (a broken client)."""
        self.sock.sendall(data)
        self.sent += len(data)
        self.out_records.feed(data)

    def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
                break
            except SSL.WantReadError:
                self._flush()
                if not self._pull():
                    raise ConnectionError("server closed during the handshake")
        self._flush()
        self.hs_sent, self.hs_received = self.sent, self.received

    @property
    def version(self) -> str:
        return self.conn.get_protocol_version_name()

    @property
    def cipher(self) -> str:
        return self.conn.get_cipher_name()

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)
        self.plain_sent += len(data)
        self._flush()

    def read(self, n: int) -> bytes:
        """Exactly n plaintext bytes."""
        out = bytearray()
        while len(out) < n:
            try:
                out += self.conn.recv(min(65535, n - len(out)))
            except SSL.WantReadError:
                self._flush()
                if not self._pull():
                    raise ConnectionError("server closed")
        self.plain_received += len(out)
        return bytes(out)

    def read_response(self) -> bytes:
        head = bytearray()
        while not head.endswith(b"\r\n\r\n"):
            head += self.read(1)
        length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
        return bytes(head) + self.read(length)

    def request(self, body: bytes = b"", response_bytes: int = 2) -> bytes:
        req = (b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nContent-Length: %d\r\nX-Response-Bytes: %d\r\n\r\n"
               % (len(body), response_bytes)) + body
        self.send(req)
        return self.read_response()

    def session(self) -> Any:
        return self.conn.get_session()

    def close(self, notify: bool = True) -> None:
        """Send close_notify (or not), half-close, and count everything until the server closes."""
        if notify:
            try:
                self.conn.shutdown()
            except SSL.Error:
                pass
            self._flush()
        self.sock.shutdown(socket.SHUT_WR)
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            self.received += len(data)
            self.in_records.feed(data)
        self.sock.close()

    def abort(self) -> None:
        """Disconnect without a word (FIN, no alert), counting what the server sent until then."""
        self.close(notify=False)


def assert_invariant(traffic: dict[str, Any]) -> None:
    assert meter.callback_errors() == 0
    for d in ("client_to_lb", "lb_to_client"):
        v = traffic[d]
        assert v["wire"] == v["handshake"] + v["record_overhead"] + v["payload"] + v["closure"], (d, v)
        assert min(v.values()) >= 0, (d, v)


def assert_wire_matches(client: CountingClient, served: Served) -> None:
    """The LB's wire counts equal the client's raw socket counts, and the kernel's view of the LB socket."""
    t = served.traffic
    assert t is not None
    assert t["client_to_lb"]["wire"] == client.sent
    assert t["lb_to_client"]["wire"] == client.received
    assert_invariant(t)
    if served.tcp is not None:
        assert served.tcp.payload_received == client.sent
        assert served.tcp.payload_acked == client.received


# --- the harness's own sanity tests ---------------------------------------------------------------

def test_harness_serves_plain_connections_too() -> None:
    """Metering off: a plain SSL.Connection, same loop, same bytes; no traffic record."""
    with LoopbackServer(server_context(), metered=False) as srv:
        c = CountingClient(srv.address, client_context())
        c.handshake()
        assert c.request(b"x" * 10, 100).endswith(b"o" * 100)
        c.close()
        served = srv.result()
    assert served.traffic is None and served.error is None


def test_plain_connection_from_same_context_is_not_metered() -> None:
    """The callback is installed per SSL object: plain connections from a shared context stay plain."""
    ctx = server_context()
    metered = MeteredConnection(ctx)
    plain = SSL.Connection(ctx)
    plain.set_accept_state()
    c = SSL.Connection(client_context())
    c.set_connect_state()
    handshake_in_memory(c, plain, rounds=4)
    assert plain.get_protocol_version_name() == "TLSv1.3"
    assert metered.meter.to_dict()["records"]["client_to_lb"]["total"] == 0
    assert metered.meter.to_dict()["lb_to_client"]["wire"] == 0


def test_metered_connection_rejects_socket_mode() -> None:
    with pytest.raises(TypeError):
        MeteredConnection(server_context(), socket.socket())


def test_the_c_message_callback_is_built_where_there_is_a_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `cc` on the PATH the meter uses the C callback (built once, cached by the source's hash); without
    one it falls back to the Python callback, which meters the same bytes (tests run both: `message_callback`)."""
    from simulator.metering import native

    if shutil.which("cc") is None:
        assert native.KIND == "python" and native.available() == ["python"]
        return
    assert native.KIND == "c" and native.available() == ["c", "python"]
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "cache"])
    built = native.build()
    assert built is not None and built.parent == tmp_path / "cache" and built.stat().st_size > 0
    assert native.build() == built  # cached: not built again
    assert native.build(cc=str(tmp_path / "no-such-cc")) == built  # the cache answers before any compiler
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "other"])
    assert native.build(cc=str(tmp_path / "no-such-cc")) is None  # no compiler: the fallback, no exception
