"""The layer above a listener's TLS: ordinary HTTP/1.1 requests served leanly, everything else by mitmproxy's layers.

mitmproxy serves an HTTP/1 request through three layers (its HTTP layer, an HTTP/1 connection and a stream per
request) that hand each request's events to one another: about a quarter of a keep-alive request's CPU, which
this layer saves (docs/performance.md, "Round nine"). Most requests a load balancer sees are ordinary, and for those
:class:`ListenerHttpLayer` does what those layers do, in their order, itself: the same parser, the same flow,
the same hooks (requestheaders, request, responseheaders, response, and error for a client that leaves or a
killed flow), the same answer bytes, the same decision to close.

Ordinary means: a whole head that mitmproxy parses and validates, within nginx's limits (addons/limits.py), no
`CONNECT`, `Expect`, `Upgrade` or WebSocket header, and no body or a Content-Length one
already received. At the first request that is anything else (a head to refuse, a chunked body, a body still
arriving, 100-continue), and for HTTP/2, the connection goes to mitmproxy's layers
(:class:`LimitedHttpLayer`) for good, with every byte not served yet: what those layers do with them is what
they always did.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1, status_codes
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import (
    HttpErrorHook,
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
    validate_request,
)

from simulator.dataplane.addons.limits import CLIENT_GONE, CLIENT_LEFT, MAX_PIPELINED, LimitedHttpLayer, head_problem
from simulator.dataplane.leanheaders import lean
from simulator.dataplane.smalldeque import SmallEventQueue

_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, as h11's buffer (mitmproxy's) finds it
# Headers that make a request more than an exchange (mitmproxy answers 100-continue, upgrades, pipes).
_NOT_ORDINARY = frozenset({b"expect", b"upgrade", b"sec-websocket-version"})

Exchange = Generator[commands.Command, Any, None]


class ListenerHttpLayer(SmallEventQueue, layer.Layer):
    """A listener connection's HTTP: ordinary HTTP/1.1 requests as exchanges of its own, the rest handed over.

    Built as `TlsTermination.http_layer` builds it: `mode` is mitmproxy's HTTP mode (transparent), `profile` names
    the vendor's error pages, `on_error` keeps the connection's first error for its connection-log record.
    """

    def __init__(self, context: Any, mode: Any, profile: str, on_error: Callable[[str], None]) -> None:
        super().__init__(context)
        self.mode, self.profile, self.on_error = mode, profile, on_error
        self.buffer = bytearray()
        self.inner: layer.Layer | None = None  # mitmproxy's layers, once the connection is theirs
        self.flow: http.HTTPFlow | None = None  # the request in flight
        self.waiting: tuple[commands.Command, Exchange] | None = None  # its hook, and the exchange it pauses
        self.gone: str | None = None  # the client left while the request was in flight

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self.inner is not None:
            yield from self.inner.handle_event(event)
        elif isinstance(event, events.DataReceived):
            self.buffer += event.data
            if self.flow is None:
                yield from self._serve()
            elif len(self.buffer) > MAX_PIPELINED:  # as LimitedHttp1Server bounds what a client pipelines
                self.on_error(f"more than {MAX_PIPELINED} bytes pipelined while a request was in flight")
                yield commands.CloseConnection(self.context.client)
        elif isinstance(event, events.CommandCompleted):
            if self.waiting is not None and event.command is self.waiting[0]:
                exchange, self.waiting = self.waiting[1], None
                yield from self._run(exchange, event.reply)
        elif isinstance(event, events.ConnectionClosed):
            yield from self._closed(event)
        elif isinstance(event, events.Start):
            options = self.context.options
            if self.context.client.alpn == b"h2" or options.stream_large_bodies or options.body_size_limit:
                yield from self._hand_over()

    def hook_done(self, hook: commands.Command) -> None:
        """The lab's handler ran `hook` to its end as it was raised (simulator.runtime.hooks.HooksAtOnce): the
        exchange goes on at once, instead of after a HookCompleted passed down every layer to it."""
        if self.waiting is not None and self.waiting[0] is hook:
            self.waiting = None

    def _closed(self, event: events.ConnectionClosed) -> layer.CommandGenerator[None]:
        if self.flow is None:  # as mitmproxy's HTTP/1 server between requests
            if bytes(self.buffer).strip():
                yield commands.Log(f"Client closed connection before completing request headers: {bytes(self.buffer)!r}")
            yield commands.CloseConnection(self.context.client)
            return
        # A request in flight: mitmproxy closes our side too, and its stream learns of it once its hook is done.
        if event.connection.state is not ConnectionState.CLOSED:
            yield commands.CloseConnection(event.connection)
        self.gone = "Client disconnected."
        self.flow.metadata[CLIENT_GONE] = self.gone  # so the balancer forwards nothing (LimitedHttpLayer does the same)
        self.on_error(CLIENT_LEFT)  # now: the record is written at the close, before the exchange's error hook

    def _hand_over(self) -> layer.CommandGenerator[None]:
        """From now on, mitmproxy's layers serve this connection, starting with the bytes not served yet."""
        self.inner = LimitedHttpLayer(self.context, self.mode, self.profile, self.on_error)
        yield from self.inner.handle_event(events.Start())
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            yield from self.inner.handle_event(events.DataReceived(self.context.client, data))

    def _serve(self) -> layer.CommandGenerator[None]:
        """Serve the ordinary requests at the head of the buffer, one at a time; hand over at anything else."""
        while self.buffer and self.flow is None and self.inner is None:
            while self.buffer[:1] == b"\n" or self.buffer[:2] == b"\r\n":  # as LimitedHttp1Server.read_headers
                del self.buffer[:1 if self.buffer[:1] == b"\n" else 2]
            if head_problem(bytes(self.buffer)) is not None:
                yield from self._hand_over()
                return
            blank = _BLANK_LINE.search(self.buffer)
            if blank is None:
                return  # the rest of the head is on its way
            lines = [line[:-1] if line.endswith(b"\r") else line for line in bytes(self.buffer[:blank.end()]).split(b"\n")]
            try:
                request = http1.read_request_head(lines[:-2])
                lean(request.headers)  # the lookups below and the addons' make no call per field
                size = http1.expected_http_body_size(request)
            except ValueError:
                yield from self._hand_over()
                return
            end = blank.end() + (size or 0)
            if (size is None or size < 0 or end > len(self.buffer) or request.data.method == b"CONNECT"
                    or not _NOT_ORDINARY.isdisjoint([name.lower() for name, _ in request.headers.fields])
                    or validate_request(self.mode, request, self.context.options.validate_inbound_headers)):
                yield from self._hand_over()
                return
            body = bytes(self.buffer[blank.end():end])
            del self.buffer[:end]
            yield from self._run(self._exchange(request, body), None)

    def _run(self, exchange: Exchange, reply: Any) -> layer.CommandGenerator[None]:
        """Drive `exchange` until it waits for a hook or ends (mitmproxy's `Layer.__process`, for one generator).

        The exchange waits without pausing this layer: what the client sends meanwhile, or its leaving, arrives
        at once, as at mitmproxy's HTTP/1 server while its stream waits."""
        try:
            command = exchange.send(reply)
            while True:
                if command.blocking is True:
                    command.blocking = self  # ours: the layers above pass it up without pausing
                    self.waiting = (command, exchange)
                    yield command
                    if self.waiting is not None:
                        return  # a HookCompleted will bring it back; else hook_done finished it as it was raised
                else:
                    yield command
                command = next(exchange)
        except StopIteration:
            pass
        self.flow, self.gone = None, None
        if self.context.client.state & ConnectionState.CAN_READ:
            yield from self._serve()  # a pipelined request, as mitmproxy's server reads on after an answer

    def _exchange(self, request: http.Request, body: bytes) -> Exchange:
        """One ordinary request, as mitmproxy's HTTP stream and HTTP/1 server handle it (their steps named)."""
        client = self.context.client
        server = self.context.server
        self.flow = flow = http.HTTPFlow(client, server)  # state_wait_for_request_headers
        flow.request = request
        flow.live = True
        assert server.address
        request.data.host, request.data.port = server.address[0], server.address[1]  # transparent mode
        request.scheme = "https" if server.tls else "http"
        yield HttpRequestHeadersHook(flow)
        if (yield from self._killed(flow, True)):
            return
        request.timestamp_end = time.time()  # state_consume_request_body, at the end of the message
        request.data.content = body
        yield HttpRequestHook(flow)
        if (yield from self._killed(flow, True)):
            return
        response = flow.response
        if response is None:  # mitmproxy would connect to the listener's own address; the balancer always answers
            flow.error = mflow.Error("no answer for the request")
            yield HttpErrorHook(flow)
            yield commands.CloseConnection(client)
            return
        response.timestamp_start = time.time()  # an answer an addon made: mitmproxy emulates responseheaders
        yield HttpResponseHeadersHook(flow)
        if (yield from self._killed(flow, True)):
            return
        response.timestamp_end = time.time()  # send_response
        yield HttpResponseHook(flow)
        if (yield from self._killed(flow, False)):
            return
        response = flow.response
        assert response is not None
        if client.state & ConnectionState.CAN_WRITE:
            yield commands.SendData(client, _answer(request, response))  # Http1Server.send, head and body at once
        flow.live = False  # flow_done
        # A 101 to a request that asked for no upgrade (those go to mitmproxy's layers): closed. mitmproxy's
        # stream would turn the connection into a raw pipe to the listener's own address.
        if response.status_code == 101:
            yield commands.Log("Sent HTTP 101 response, but no protocol is enabled to upgrade to.", logging.WARNING)
            yield commands.CloseConnection(client)
            return
        try:  # Http1Connection.mark_done
            until_eof = http1.expected_http_body_size(request, response) == -1
        except ValueError:
            until_eof = False
        if (until_eof or http1.connection_close(request.http_version, request.headers)
                or http1.connection_close(response.http_version, response.headers)):
            yield commands.CloseConnection(client)

    def _killed(self, flow: http.HTTPFlow, emit_error_hook: bool) -> Generator[commands.Command, Any, bool]:
        """mitmproxy's `HttpStream.check_killed`: a flow killed by an addon, or whose client left, ends here."""
        killed_by_us = flow.error is not None and flow.error.msg == mflow.Error.KILLED_MESSAGE
        if self.gone and not flow.error:
            flow.error = mflow.Error(self.gone)
        if not (killed_by_us or self.gone):
            return False
        if emit_error_hook:
            yield HttpErrorHook(flow)
        if self.context.client.state & ConnectionState.CAN_WRITE:  # HTTP/1 answers a kill with a close, no page
            yield commands.CloseConnection(self.context.client)
        flow.live = False
        return True


def _answer(request: http.Request, response: http.Response) -> bytes:
    """The bytes mitmproxy's HTTP/1 server writes for a whole answer (`Http1Server.send`, its three events)."""
    if response.is_http2 or response.is_http3:
        response = response.copy()
        response.http_version = "HTTP/1.1"
        response.reason = status_codes.RESPONSES.get(response.status_code, "")
    out = http1.assemble_response_head(response)
    content = response.raw_content
    chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
    if content:
        out += b"%x\r\n%s\r\n" % (len(content), content) if chunked else content
    if chunked and request.method.upper() != "HEAD":
        out += b"0\r\n\r\n"
    return out
