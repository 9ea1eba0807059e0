"""TLS termination with the listener's own certificate, policy and client CA.

Runs before mitmproxy's TlsConfig: we hand mitmproxy a ready `SSL.Connection` built from the listener's one
`SSL.Context`, so TlsConfig steps aside and never mints a certificate. Hooks do no file or context work.
"""

from __future__ import annotations

import asyncio
import logging
import re
import types
from typing import Any, Callable

from mitmproxy import connection
from mitmproxy.addons.tlsconfig import AppData
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import commands, events, layer, layers, tunnel
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.server import ConnectionIO
from mitmproxy.tls import ClientHelloData, TlsData
from OpenSSL import SSL

from simulator.dataplane import clienthello
from simulator.dataplane.addons.http1 import ListenerHttpLayer
from simulator.dataplane.addons.limits import error_recorder
from simulator.dataplane.smalldeque import SmallEventQueue
from simulator.metering import MeteredConnection, native, tcpinfo
from simulator.dataplane.addons.pages import CLIENT_CERT_ERROR, NO_CLIENT_CERT
from simulator.policies.context import alert, client_cert_verdict, handshake_failure_reason, tls_verify_status
from simulator.dataplane.registry import ClientState, Registry

logger = logging.getLogger(__name__)
_QUIET_INFO = native.quiet_info_callback()  # cast once, set on every metered connection
LINGER = 0.1  # seconds a failed handshake's connection stays open after its alert
ERROR_SNIPPET = 32  # bytes of an unparseable ClientHello kept in the connection log's error (as hex)
TCP_CLOSE = 7  # Linux TCP state: before we close, only a reset from the client puts the socket there
# mitmproxy wraps handshake errors in advice about its own certificate, naming lbsim's dummy upstream.
_MITM_ADVICE = re.compile(r"The client (?:may not|does not) trust the proxy's certificate for .*? \((.*)\)$", re.S)

# What nginx (and so the vendors' layer-7 listeners) answers plain HTTP sent to an HTTPS port.
PLAIN_HTTP_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 90\r\nConnection: close\r\n\r\n"
    b"<html><body><h1>400 Bad Request</h1>The plain HTTP request was sent to HTTPS port</body></html>"
)


def short_error(error: str | None) -> str | None:
    """mitmproxy puts the whole unparseable ClientHello (hex) in its error: keep a bounded prefix."""
    head, sep, hexdata = (error or "").partition("Cannot parse ClientHello: ")
    if not sep or len(hexdata) <= 2 * ERROR_SNIPPET:
        return error
    return f"{head}Cannot parse ClientHello: {hexdata[:2 * ERROR_SNIPPET]}... ({len(hexdata) // 2} bytes)"


def mitmproxy_reason(error: str | None) -> str | None:
    """mitmproxy's handshake error text without its advice about the proxy's certificate."""
    text = error or ""
    if text in ("connection closed", "connection closed early") or text.startswith("The client disconnected"):
        return "the client closed the connection during the handshake"
    if m := _MITM_ADVICE.match(text):
        return m.group(1)
    return short_error(text) or None


def drop_handshake_advice(record: logging.LogRecord) -> bool:
    """mitmproxy logs every refused client as a WARNING blaming its own certificate and naming lbsim's dummy
    upstream (or, for an unparseable ClientHello, the whole of it in hex, up to 128 KiB a line): drop it.
    TlsTermination logs one accurate line instead, and the connection log has the record."""
    return not (isinstance(record.msg, str) and record.msg.startswith("Client TLS handshake failed."))


def _parsing_with(method: types.FunctionType, parse_client_hello: object) -> types.FunctionType:
    """mitmproxy's `method` as it is, but calling `parse_client_hello` where it calls its module's own.

    Not a copy of mitmproxy's code (its next version's is used as it comes): the same code object, with the one
    global name bound to another function. If mitmproxy stops calling that name, the lab refuses to start
    rather than silently parse the other way."""
    code = method.__code__
    if "parse_client_hello" not in code.co_names:
        raise RuntimeError(f"mitmproxy's {method.__qualname__} no longer calls parse_client_hello: "
                           "simulator/dataplane/clienthello.py needs another way in")
    namespace = {**method.__globals__, "parse_client_hello": parse_client_hello}
    return types.FunctionType(code, namespace, method.__name__, method.__defaults__, method.__closure__)


class ListenerTLSLayer(SmallEventQueue, layers.ClientTLSLayer):
    """mitmproxy's client TLS layer, quiet about clients it refused, writing an answer as nginx does.

    After a failed handshake mitmproxy's tunnel is CLOSED but still hands what the client sends next (a
    TLS 1.3 client's Finished and request, sent before it read the alert) to `receive_data`, whose
    `recv` on the dead connection logs `WARNING TLS Error: (-1, 'Unexpected EOF')` for every refused
    client. The connection log already records the refusal and its reason: the bytes are counted (the
    meter sees them through `bio_write`, as before) and nothing is decrypted or logged.

    mitmproxy's HTTP layer hands an answer's head and body over as two writes, which mitmproxy's TLS layer
    seals as two records. nginx, which the vendors' layer-7 listeners run on, gathers what it has to send
    into its 16 KiB TLS buffer and seals that, so a small answer is one record. Consecutive writes the
    layers above make while handling one event are sealed together here: one record per 16 KiB, as nginx,
    and one `SSL_write` instead of two (docs/performance.md, "Round seven")."""

    # The ClientHello's SNI and ALPN offers read by a plain walk, not kaitaistruct: about 34 µs less per
    # connection (simulator/dataplane/clienthello.py).
    receive_handshake_data = _parsing_with(layers.ClientTLSLayer.receive_handshake_data,  # type: ignore[assignment]
                                           clienthello.parse_client_hello)

    def event_to_child(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self.tunnel_state is tunnel.TunnelState.ESTABLISHING and not self.command_to_reply_to:
            self._event_queue.append(event)  # as mitmproxy's: events wait for the handshake's end
            return
        held: list[bytes] = []
        for command in self.child_layer.handle_event(event):
            if type(command) is commands.SendData and command.connection == self.conn:
                held.append(command.data)
                continue
            if held:  # every other command keeps its place after the writes before it
                yield from self.send_data(b"".join(held))
                held.clear()
            yield from self._handle_command(command)
        if held:
            yield from self.send_data(b"".join(held))

    def receive_data(self, data: bytes) -> layer.CommandGenerator[None]:
        if self.tunnel_state is tunnel.TunnelState.CLOSED:
            if data:
                try:
                    self.tls.bio_write(data)
                except SSL.Error:
                    pass
            return
        yield from super().receive_data(data)


class RefusePlaintext(SmallEventQueue, layer.Layer):
    """An HTTPS listener speaks TLS only: plain HTTP gets nginx's 400, anything else a closed connection."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            if event.data[:8].split(b" ", 1)[0].isalpha():
                yield commands.SendData(self.context.client, PLAIN_HTTP_400)
            yield commands.CloseConnection(self.context.client)


class _RecordsHandshakeError:
    """Keeps OpenSSL's own handshake error: mitmproxy rewrites it into advice about its own certificate."""

    handshake_error: SSL.Error | None = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()  # type: ignore[misc]
        except SSL.WantReadError:
            raise
        except SSL.Error as e:
            self.handshake_error = e
            raise


class PlainConnection(_RecordsHandshakeError, SSL.Connection):
    pass


class MeteredListenerConnection(_RecordsHandshakeError, MeteredConnection):
    """A listener's connection when metering is on. The meter's message callback (in C) sees the alerts it
    sends, so the context's info callback, which records them for a plain connection with a call into
    Python at every state of a handshake (about 15 a connection), is kept away by one that does nothing."""

    def __init__(self, context: SSL.Context, socket: Any = None) -> None:
        super().__init__(context, socket)
        SSL._lib.SSL_set_info_callback(self._ssl, _QUIET_INFO)  # type: ignore[attr-defined]

    @property
    def lbsim_alert_sent(self) -> tuple[int, int, str] | None:
        """As simulator.policies.context records it for a plain connection: (level, code, description)."""
        sent = self.meter.alert_sent
        return alert(*sent) if sent is not None else None


class TlsTermination:
    """Accepts client connections on our listeners and terminates their TLS."""

    # We replace mitmproxy's NextLayer addon (which would serve plain HTTP in reverse mode); proxyserver
    # looks this name up to check that some addon decides layers.
    name = "nextlayer"
    # The layer above TLS, built as ListenerHttpLayer(context, mode, profile, on_error). Only the bench swaps it
    # (simulator/tools/tlsonly.py: the TLS path alone, answering in place; leanhttp.py: a minimal HTTP/1.1 layer),
    # and tests/test_http1.py, to compare the listener's answers with mitmproxy's layers' (LimitedHttpLayer).
    http_layer: Callable[..., layer.Layer] = ListenerHttpLayer

    def __init__(self, registry: Registry, metering: bool = True):
        self.registry = registry
        self.metering = metering

    def load(self, loader: Any) -> None:
        # Our own lab's master: mitmproxy's `ctx.master` is a process-wide global the newest lab overwrites.
        self.master = loader.master
        server_log = logging.getLogger("mitmproxy.proxy.server")
        server_log.addFilter(drop_handshake_advice)

    def client_connected(self, client: connection.Client) -> None:
        listener = self.registry.by_mode(client.proxy_mode.full_spec)
        version = listener.active if listener else None
        if listener is None or version is None or listener.status == "stopped":
            client.error = "listener is not running"
            return
        listener.connections += 1
        self.registry.clients[client.id] = ClientState(client.id, listener, version, client.peername)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if nextlayer.layer:
            return
        data = nextlayer.data_client()
        if len(data) < 3:
            return  # wait for more bytes before deciding
        context = nextlayer.context
        if not starts_like_tls_record(data) or context.client.id not in self.registry.clients:
            nextlayer.layer = RefusePlaintext(context)
            return
        state = self.registry.clients[context.client.id]
        stack = tunnel.LayerStack()
        stack /= ListenerTLSLayer(context)
        stack /= self.http_layer(context, HTTPMode.transparent, state.version.spec.profile, error_recorder(state))
        nextlayer.layer = stack[0]

    def tls_clienthello(self, data: ClientHelloData) -> None:
        state = self.registry.clients.get(data.context.client.id)
        if state:
            state.sni = data.client_hello.sni

    def tls_start_client(self, data: TlsData) -> None:
        state = self.registry.clients.get(data.context.client.id)
        if state is None or data.ssl_conn is not None:
            return
        conn_class = MeteredListenerConnection if self.metering else PlainConnection
        conn = conn_class(state.version.context)
        conn.set_app_data(AppData(client_alpn=None, server_alpn=None, http2=state.version.spec.http2))
        conn.set_accept_state()
        state.ssl_conn = data.ssl_conn = conn

    def tls_established_client(self, data: TlsData) -> None:
        state = self.registry.clients.get(data.context.client.id)
        if state:
            state.handshake_done = data.conn.timestamp_tls_setup
            state.verify_status = tls_verify_status(data.ssl_conn, None)
            spec = state.version.spec
            if spec.mutual and spec.client_cert_refusal == "http_400":
                # The context let the handshake through; the status and reason are the same as a handshake
                # refusal's, and RequestLimits answers every request with nginx's 400 page.
                verdict = client_cert_verdict(data.ssl_conn, spec.ssl_verify_client)  # type: ignore[arg-type]
                if verdict is not None:
                    state.verify_status, state.error = verdict
                    state.refused_client_cert = (NO_CLIENT_CERT if verdict[0] == "Failed:NoClientCertificate"
                                                 else CLIENT_CERT_ERROR)

    async def tls_failed_client(self, data: TlsData) -> None:
        state = self.registry.clients.get(data.context.client.id)
        if state is None:
            return
        try:
            if data.ssl_conn is None:
                self._failed_before_openssl(state, data)
            else:
                await self._failed_in_openssl(state, data)
        finally:
            if state.closed_by:  # the listener cut the handshake (client header timeout), not the client
                state.verify_status = "Failed:Timeout"
                state.error = f"handshake not complete within the listener's {state.closed_by}"
            logger.info("%s: client %s:%s refused: %s (%s)", state.listener.name, *state.peer[:2],
                        state.verify_status, state.error)

    def _failed_before_openssl(self, state: ClientState, data: TlsData) -> None:
        # OpenSSL never saw a ClientHello: mitmproxy's own parser refused it, or the client left first.
        # Either way there is no alert to send.
        error = data.conn.error or ""
        state.error = mitmproxy_reason(error)
        if error.startswith("Cannot parse ClientHello"):
            state.verify_status = "Failed:MalformedClientHello"
        elif "disconnected" in error or error.startswith("connection closed"):
            state.verify_status = "Failed:ConnectionClosed"
        else:
            state.verify_status = tls_verify_status(None, error or "handshake failed")
        if self.metering:
            # No meter exists before the ClientHello is whole: the kernel counted what the client sent (the
            # listener's header timeout closes the socket first: then what mitmproxy had buffered).
            received = self._kernel_received(self._client_io(data))
            state.kernel_received = received if received is not None else sum(
                len(layer.recv_buffer) for layer in data.context.layers if isinstance(layer, layers.ClientTLSLayer))

    async def _failed_in_openssl(self, state: ClientState, data: TlsData) -> None:
        # Without an OpenSSL error (the client closed, or sent something that is not TLS) the failure is
        # mitmproxy's text; either way the handshake failed, which "Success" must never say.
        handshake_error = getattr(data.ssl_conn, "handshake_error", None)
        state.error = handshake_failure_reason(data.ssl_conn, handshake_error) or mitmproxy_reason(data.conn.error)
        state.verify_status = tls_verify_status(data.ssl_conn, handshake_error or data.conn.error or "handshake failed")
        io = self._client_io(data)
        if io is None or io.writer is None or io.writer.is_closing():
            return  # nothing can be sent: leave the alert unsent (and uncounted)
        # OpenSSL queued an alert that mitmproxy never sends; a real listener does, and clients report it.
        try:
            io.writer.write(data.ssl_conn.bio_read(65535))
        except SSL.Error:
            pass
        # Linger before mitmproxy closes: a TLS 1.3 client has already sent its Finished (and maybe a request);
        # closing on unread bytes makes the kernel send a reset that destroys the alert in the client's buffer.
        # Meanwhile mitmproxy's reader drains what the client sends; it may or may not hand those bytes to
        # OpenSSL, so the kernel's count is kept as a floor that the connection log settles at disconnect.
        await asyncio.sleep(LINGER)
        received = self._kernel_received(io)
        if received is not None:
            state.kernel_received = received

    @staticmethod
    def _kernel_received(io: ConnectionIO | None) -> int | None:
        """The client's data bytes the kernel received on this connection, or None once the socket is gone."""
        sock = io.writer.get_extra_info("socket") if io is not None and io.writer is not None else None
        if sock is None or not tcpinfo.supported():
            return None
        try:
            counters = tcpinfo.read(sock)
        except OSError:
            return None
        # A reset takes no sequence space; a FIN (CLOSE_WAIT) does, and payload_received takes it out.
        return counters.bytes_received if counters.state == TCP_CLOSE else counters.payload_received

    def _client_io(self, data: TlsData) -> ConnectionIO | None:
        handler = self.master.addons.get("proxyserver").connections.get(data.context.client.id)
        return handler.transports.get(data.context.client) if handler else None
