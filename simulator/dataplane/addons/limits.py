"""Request limits: what an nginx-based vendor listener refuses before anything reaches a backend.

The vendors' layer-7 listeners are nginx underneath (Alibaba's Tengine, Tencent's STGW). They document none
of these limits, so lbsim takes nginx's defaults (UNCONFIRMED for the vendors) and answers with the
vendor's error page:

| what                                                    | limit                     | answer                                  |
| ------------------------------------------------------- | ------------------------- | --------------------------------------- |
| request line                                            | 8 KiB                     | 414                                     |
| one header line                                         | 8 KiB                     | 400 Request Header Or Cookie Too Large  |
| the whole header section                                | 32 KiB                    | 400 Request Header Or Cookie Too Large  |
| HTTP version on an HTTP/1 connection                    | HTTP/1.x                  | 505                                     |
| method                                                  | `A`-`Z`, `_`, `-`         | 400                                     |
| `Host` in HTTP/1.1 (missing or repeated), HTTP/1.0 (repeated) | exactly one         | 400                                     |
| control characters (NUL, CR, LF, ...) in target or header values | none             | 400                                     |
| bytes a client pipelines while its request is in flight | 1 MiB                     | connection closed                       |
| a refused client certificate, `client_cert_refusal: http_400` | every request      | 400 No required SSL certificate was sent / The SSL certificate error |

(nginx: `large_client_header_buffers 4 8k`; it stops reading a pipelining client instead of buffering.)
mitmproxy's own HTTP/1 parser has no header size limit ("FIXME: protect against header size DoS"), so
:class:`LimitedHttp1Server` checks the buffer before it parses, and turns mitmproxy's own error pages
(`Server: mitmproxy <version>`) into the vendor's. Refused requests get `Connection: close`, and the
reason lands in the connection log's `error`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import HttpLayer, HttpStream
from mitmproxy.proxy.layers.http._events import ErrorCode, RequestHeaders, RequestProtocolError, ResponseProtocolError
from mitmproxy.proxy.layers.http._http1 import Http1Server
from mitmproxy.proxy.layers.http._http2 import Http2Server

from simulator.dataplane.addons.pages import HEADER_TOO_LARGE, error_response, nginx_400
from simulator.dataplane.smalldeque import SmallEventQueue
from simulator.dataplane.registry import ClientState, Registry

logger = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_LINE = 8 * 1024
MAX_HEADER_SECTION = 32 * 1024
MAX_PIPELINED = 1024 * 1024
# flow.metadata keys: the client reset the stream or left before the balancer forwarded the request;
# an HTTP/2 request's (connection, stream id), to ask whether the client reset it.
CLIENT_GONE = "lbsim.client_gone"
# The connection-log record's error for a client that closed while its request was in flight (nginx's 499).
CLIENT_LEFT = "client closed the connection before the answer to its request"
H2_STREAM = "lbsim.h2_stream"

_METHOD = re.compile(rb"[A-Z_-]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")

Problem = tuple[int, str | None, str]  # status, page title (None: the status's), message for the log


def head_problem(data: bytes) -> Problem | None:
    """What is wrong with the size of the request head at the start of `data` (maybe incomplete), if anything."""
    data = data.lstrip(b"\r\n")  # RFC 9112 2.2: empty lines before the request line are ignored
    blank = _BLANK_LINE.search(data, 0, MAX_HEADER_SECTION + 4)
    head = data[:blank.start()] if blank else data[:MAX_HEADER_SECTION + 1]
    lines = head.split(b"\n")
    if len(lines[0]) > MAX_REQUEST_LINE:
        return 414, None, f"request line over {MAX_REQUEST_LINE} bytes"
    if any(len(line) > MAX_HEADER_LINE for line in lines[1:]):
        return 400, HEADER_TOO_LARGE, f"a header line over {MAX_HEADER_LINE} bytes"
    if len(head) > MAX_HEADER_SECTION:
        return 400, HEADER_TOO_LARGE, f"request headers over {MAX_HEADER_SECTION} bytes"
    return None


def request_problem(request: http.Request, http2: bool) -> Problem | None:
    """What nginx would refuse in a parsed request head, if anything."""
    if not http2 and not request.data.http_version.startswith(b"HTTP/1."):
        return 505, None, f"unsupported HTTP version {request.data.http_version[:16]!r} on an HTTP/1 connection"
    if not _METHOD.fullmatch(request.data.method):
        return 400, None, f"invalid method {request.data.method[:32]!r}"
    if _CONTROL.search(request.data.path if not http2 else request.path.encode("utf-8", "surrogateescape")):
        return 400, None, "control character in the request target"
    fields = request.headers.fields
    # One scan of every name and value, joined by a tab (which _CONTROL allows); the field only when one is found.
    if fields and _CONTROL.search(b"\t".join([part for field in fields for part in field])):
        for name, value in fields:
            if _CONTROL.search(value) or _CONTROL.search(name):
                return 400, None, f"control character in header {name[:64]!r}"
    if not http2:
        hosts = len(request.headers.get_all("host"))
        if hosts > 1:
            return 400, None, "duplicate Host header"
        if hosts == 0 and request.data.http_version == b"HTTP/1.1":
            return 400, None, "HTTP/1.1 request without a Host header"
    return None


def error_recorder(state: ClientState) -> Callable[[str], None]:
    """Keeps the first error of a connection for its connection-log record."""

    def record(message: str) -> None:
        if state.error is None:
            state.error = message

    return record


def client_gone(flow: http.HTTPFlow) -> bool:
    """The client reset this request (HTTP/2) or left: nothing of it should reach a backend."""
    if flow.metadata.get(CLIENT_GONE):
        return True
    stream = flow.metadata.get(H2_STREAM)
    return stream is not None and stream[0].is_closed(stream[1])


class LimitedHttp1Server(SmallEventQueue, Http1Server):
    """mitmproxy's HTTP/1 server with nginx's header limits, a bound on pipelined bytes, and vendor error pages."""

    def __init__(self, context: Any, profile: str, on_error: Callable[[str], None]):
        super().__init__(context)
        self.profile = profile
        self.on_error = on_error

    def read_headers(self, event: events.ConnectionEvent) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            # Empty lines before a request line are ignored (RFC 9112 2.2, as nginx does). mitmproxy's buffer
            # drops one per read and then waits for more bytes, so a client that sent them waited for nothing.
            while (start := bytes(self.buf)[:2])[:1] == b"\n" or start == b"\r\n":
                self.buf.maybe_extract_lines()
            problem = head_problem(bytes(self.buf))
            if problem is not None:
                yield from self.refuse(problem)
                return
        return (yield from self._vendor_pages(super().read_headers(event)))

    def send(self, event: Any) -> layer.CommandGenerator[None]:
        # Of what it sends, mitmproxy makes a page of its own only for a ResponseProtocolError: the rest of a
        # request's answer goes out without the page check's generator around it.
        if isinstance(event, ResponseProtocolError):
            return self._vendor_pages(super().send(event))
        return super().send(event)

    def read_body(self, event: events.Event) -> layer.CommandGenerator[None]:
        # mitmproxy closes silently on a body it cannot parse (bad chunking); nginx answers 400 first.
        for command in super().read_body(event):
            if isinstance(command, commands.CloseConnection) and self.response is None:
                page = error_response(400, self.profile, close=True)
                yield commands.SendData(self.conn, http1.assemble_response(page))
            yield command

    def wait(self, event: events.Event) -> layer.CommandGenerator[None]:
        # mitmproxy keeps reading while a request is in flight and buffers what arrives: bound it.
        if isinstance(event, events.DataReceived) and len(self.buf) > MAX_PIPELINED:
            self.on_error(f"more than {MAX_PIPELINED} bytes pipelined while a request was in flight")
            self.state = self.done
            yield commands.CloseConnection(self.conn)
            return
        return (yield from super().wait(event))

    def refuse(self, problem: Problem) -> layer.CommandGenerator[None]:
        status, title, message = problem
        self.on_error(message)
        page = error_response(status, self.profile, title, close=True)
        yield commands.SendData(self.conn, http1.assemble_response(page))
        yield commands.CloseConnection(self.conn)
        self.state = self.done

    def _vendor_pages(self, gen: Generator[commands.Command, Any, Any]) -> layer.CommandGenerator[Any]:
        """Pass `gen`'s commands through, replacing mitmproxy's own error pages by the vendor's."""
        try:
            command = next(gen)
            while True:
                if isinstance(command, commands.SendData) and b"\r\nServer: mitmproxy" in command.data[:256]:
                    command = self._replace_page(command)
                command = gen.send((yield command))
        except StopIteration as stop:
            return stop.value

    def _replace_page(self, command: commands.SendData) -> commands.SendData:
        status = int(command.data[9:12]) if command.data[9:12].isdigit() else 400
        detail = command.data.partition(b"<p>")[2].partition(b"</p>")[0][:200]
        self.on_error(detail.decode("utf-8", "replace") or f"HTTP/1 error {status}")
        page = error_response(status, self.profile, close=b"Connection: close" in command.data)
        return commands.SendData(command.connection, http1.assemble_response(page))


class LimitedHttpLayer(SmallEventQueue, HttpLayer):
    """The HTTP layer of a listener connection: HTTP/1 goes through :class:`LimitedHttp1Server`, and a request
    whose client resets it (HTTP/2 RST_STREAM) or leaves is marked, so the balancer does not forward it."""

    def __init__(self, context: Any, mode: Any, profile: str, on_error: Callable[[str], None]):
        super().__init__(context, mode)
        self.profile = profile
        self.on_error = on_error

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start) and self.context.client.alpn != b"h2":  # listeners offer h2 or h1
            # HttpLayer keeps a connection object that is already there (it does so for client replay).
            self.connections.setdefault(
                self.context.client, LimitedHttp1Server(self.context.fork(), self.profile, self.on_error)
            )
        yield from super()._handle_event(event)

    def event_to_child(self, child: Any, event: events.Event) -> layer.CommandGenerator[None]:
        # Not a generator itself: every event to every child passes here, and most need nothing more than
        # HttpLayer's own generator (one generator level less for each of their commands).
        # The stream queues this error behind its running request hook; mark the flow now, so the balancer
        # (which runs later in the loop) sees it: a rapid-reset client cannot make backends do its work.
        if isinstance(event, RequestProtocolError) and isinstance(child, HttpStream):
            flow = getattr(child, "flow", None)
            if flow is not None:
                flow.metadata[CLIENT_GONE] = event.message
                if event.code is ErrorCode.CLIENT_DISCONNECTED:  # HTTP/1's client left; not an HTTP/2 stream reset
                    self.on_error(CLIENT_LEFT)  # before the close writes the record
        if self.context.client.alpn == b"h2" and isinstance(event, RequestHeaders) and isinstance(child, HttpStream):
            return self._noting_h2_stream(child, event)
        return super().event_to_child(child, event)

    def _noting_h2_stream(self, child: HttpStream, event: RequestHeaders) -> layer.CommandGenerator[None]:
        yield from super().event_to_child(child, event)
        # mitmproxy drops an RST_STREAM that arrives in the same read as the request's END_STREAM (the h2
        # stream is already closed when it looks): let the balancer ask the HTTP/2 connection itself.
        flow = getattr(child, "flow", None)
        conn = self.connections.get(self.context.client)
        if flow is not None and isinstance(conn, Http2Server):
            flow.metadata[H2_STREAM] = (conn, event.stream_id)


class RequestLimits:
    """Refuses, with the vendor's error page, requests nginx would refuse (see the module docstring)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        state = self.registry.clients.get(flow.client_conn.id)
        if state is None or flow.response is not None:
            return
        http2 = flow.client_conn.alpn == b"h2"
        problem = request_problem(flow.request, http2)
        if problem is None and state.refused_client_cert is not None:
            # nginx checks the client certificate once the request head is read (a bad head is answered first),
            # and closes an HTTP/1 connection after the page. HTTP/2: every stream gets it.
            flow.response = nginx_400(state.version.spec.profile, state.refused_client_cert, close=not http2)
            logger.info("listener %s: refused a request from %s: 400 %s (%s)", state.listener.port, state.peer[0],
                        state.refused_client_cert, state.verify_status)
            return
        if problem is None:
            return
        status, title, message = problem
        flow.response = error_response(status, state.version.spec.profile, title, close=not http2)
        error_recorder(state)(message)
        logger.info("listener %s: refused a request from %s: %s", state.listener.port, state.peer[0], message)

    def error(self, flow: http.HTTPFlow) -> None:
        """A protocol error on a request (bad chunking, an HTTP/2 stream error, a client gone): log it."""
        state = self.registry.clients.get(flow.client_conn.id)
        if state is not None and flow.error is not None:
            error_recorder(state)(flow.error.msg[:200])
