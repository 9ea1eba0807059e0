"""An lbsim lab whose listeners speak HTTP/1.1 through a minimal layer: the bench's measure of a lean HTTP path.

`lbsim bench --lean-prototype` uses it to say what a leaner HTTP/1.1 path inside the listener could reach. It was
measured before the listener's own HTTP/1.1 exchange was built (simulator/dataplane/addons/http1.py), and stays as
the measure of how far below that exchange a minimal layer still goes. Everything below HTTP is the lab's own, as
in "lbsim TLS only" (simulator/tools/tlsonly.py). Above TLS, instead of the listener's HTTP layer, :class:`LeanHttp1`
reads each request head with mitmproxy's parser, runs the lab's own flow hooks on it (limits, headers,
stickiness, timeouts, and the balancer with its upstream request to a backend), and writes the answer. So it
does the work the product path does per request, without mitmproxy's layers around it: "lbsim lean HTTP/1
(prototype)" in the bench's report (docs/performance.md, "Round nine").

    python -m simulator.tools.leanhttp up -c lab.yaml     # as `lbsim up`, every listener's HTTP/1.1 through it

A prototype, not a listener for users: HTTP/1.x only (the bench's h2load runs `--h1`), request bodies by
Content-Length only (a chunked one is refused, 411, and the connection closed), none of mitmproxy's streaming,
`Expect: 100-continue`, upgrades or intercepts, and a protocol error closes the connection after nginx's 400.
The swap holds in this process only, as tlsonly's does.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import (
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)

from simulator.dataplane.addons.limits import CLIENT_GONE, MAX_PIPELINED, head_problem
from simulator.dataplane.addons.pages import error_response
from simulator.dataplane.smalldeque import SmallEventQueue
from simulator.tools.tlsonly import run_swapped


class LeanHttp1(SmallEventQueue, layer.Layer):
    """The layer above a listener's TLS: HTTP/1.1 requests in order, each through the lab's flow hooks.

    Built as the listener's HTTP layer is (`TlsTermination.http_layer`): `profile` names the error pages,
    `on_error` keeps a connection's first error for its connection-log record."""

    def __init__(self, context: Any, _mode: Any, profile: str, on_error: Callable[[str], None]) -> None:
        super().__init__(context)
        self.profile, self.on_error = profile, on_error
        self.buffer = bytearray()
        self.busy: http.HTTPFlow | None = None  # the flow whose hooks are running: what arrives meanwhile waits
        self.closed = False

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            self.buffer += event.data
            if self.busy is None:
                yield from self._serve()
            elif len(self.buffer) > MAX_PIPELINED:  # as the product's HTTP/1 server bounds a pipelining client
                self.on_error(f"more than {MAX_PIPELINED} bytes pipelined while a request was in flight")
                self.closed = True
                yield commands.CloseConnection(self.context.client)
        elif isinstance(event, events.ConnectionClosed):
            if self.busy is not None:  # the balancer forwards nothing for a client that left
                self.busy.metadata[CLIENT_GONE] = "Client disconnected."
            self.closed = True
            yield commands.CloseConnection(self.context.client)

    def _serve(self) -> layer.CommandGenerator[None]:
        client = self.context.client
        while self.buffer:
            while self.buffer.startswith(b"\r\n"):  # empty lines before a request line are ignored (RFC 9112 2.2)
                del self.buffer[:2]
            problem = head_problem(bytes(self.buffer))  # nginx's size limits, checked before parsing as the product does
            if problem is not None:
                yield from self._refuse(problem[0], problem[2])
                return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return  # the rest of the head is on its way
            try:
                request = http1.read_request_head([line + b"\r\n" for line in bytes(self.buffer[:end]).split(b"\r\n")])
                size = http1.expected_http_body_size(request)
            except ValueError as e:
                yield from self._refuse(400, str(e))
                return
            if size is None or size < 0:
                yield from self._refuse(411, "a chunked request body (the prototype reads Content-Length only)")
                return
            if len(self.buffer) < end + 4 + size:
                return  # the rest of the body is on its way
            request.data.content = bytes(self.buffer[end + 4:end + 4 + size])
            del self.buffer[:end + 4 + size]
            request.timestamp_start = request.timestamp_end = time.time()
            flow = http.HTTPFlow(client, self.context.server, live=True)
            flow.request = request
            server = self.context.server.address  # as mitmproxy's stream fills in a transparent request
            if server is not None:
                request.data.host, request.data.port = server[0], server[1]
            request.scheme = "https" if self.context.server.tls else "http"
            self.busy = flow
            # The hooks mitmproxy's stream raises for an answer an addon made (the balancer's), in its order.
            yield HttpRequestHeadersHook(flow)
            if flow.response is None:
                yield HttpRequestHook(flow)
            if flow.response is not None:
                flow.response.timestamp_start = time.time()
                yield HttpResponseHeadersHook(flow)
                flow.response.timestamp_end = time.time()
                yield HttpResponseHook(flow)
            self.busy = None
            flow.live = False
            response = flow.response
            if self.closed:  # the client left while the hooks ran, or pipelined too much
                return
            if response is None:  # killed
                yield commands.CloseConnection(client)
                return
            yield commands.SendData(client, http1.assemble_response(response))
            if (http1.connection_close(request.http_version, request.headers)
                    or http1.connection_close(response.http_version, response.headers)):
                yield commands.CloseConnection(client)
                return

    def _refuse(self, status: int, message: str) -> layer.CommandGenerator[None]:
        self.on_error(message)
        yield commands.SendData(self.context.client, http1.assemble_response(error_response(status, self.profile, close=True)))
        yield commands.CloseConnection(self.context.client)


def main(argv: list[str] | None = None) -> None:
    """Run `lbsim ARGS` with every listener's HTTP layer swapped for :class:`LeanHttp1`, in this process only."""
    run_swapped(LeanHttp1, "simulator.tools.leanhttp", argv)


if __name__ == "__main__":
    main()
