"""Balancing: pick a backend (sticky cookie, then the scheduler), forward over plain HTTP, 502/504 like the vendors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import status_codes
from mitmproxy.net.http.http1 import connection_close

from simulator.dataplane.addons.limits import client_gone
from simulator.dataplane.addons.pages import ERROR_SERVER, error_response  # noqa: F401 - ERROR_SERVER: re-exported
from simulator.dataplane.addons.sticky import sticky_backend
from simulator.model.config import io_timeout
from simulator.dataplane.leanheaders import LeanHeaders
from simulator.dataplane.registry import Registry
from simulator.dataplane.upstream import UpstreamError

# Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy (lower case, as bytes: compared to raw names).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"http2-settings"}
)


async def client_can_take_more(proxyserver: Any, flow: http.HTTPFlow) -> bool:
    """Wait until the client's send buffer is below its high-water mark; False if the client is gone."""
    handler = proxyserver.connections.get(flow.client_conn.id)
    io = handler.transports.get(handler.client) if handler else None
    writer = io.writer if io else None
    if writer is None:
        return True
    if writer.is_closing():
        return False
    try:
        await writer.drain()
    except ConnectionError:
        return False
    return not writer.is_closing()


def announce_close(flow: http.HTTPFlow) -> None:
    """An HTTP/1 client that asked to close (or speaks 1.0 without keep-alive) is told so in the answer.

    mitmproxy closes after the answer either way; without the header, a client expecting keep-alive finds the
    connection gone and counts an error (wrk does, for every request): RFC 9112 §9.6, as nginx does.
    """
    request = flow.request
    if flow.response is not None and not request.is_http2 and connection_close(request.http_version, request.headers):
        flow.response.headers["Connection"] = "close"


class Balancer:
    """Forwards each request to one healthy backend of the client's listener version."""

    def __init__(self, registry: Registry, time_scale: float = 1.0):
        self.registry = registry
        self.time_scale = time_scale

    def load(self, loader: Any) -> None:
        self.master = loader.master  # not mitmproxy's ctx.master: the newest lab in the process overwrites that

    async def request(self, flow: http.HTTPFlow) -> None:
        state = self.registry.clients.get(flow.client_conn.id)
        if state is None or flow.response is not None:
            return
        # A client that reset the request or left gets nothing forwarded; one that does not read its answers
        # gets no new ones: like nginx, the next pipelined request waits until the last answer is sent.
        if client_gone(flow) or not await client_can_take_more(self.master.addons.get("proxyserver"), flow):
            if flow.killable:
                flow.kill()
            return
        version = state.version
        spec = version.spec
        state.requests += 1
        meter = getattr(state.ssl_conn, "meter", None)
        if meter is not None:
            meter.requests += 1

        backend = sticky_backend(flow, version)
        if backend is None:
            backend = version.scheduler.pick([b for b in version.backends if b.healthy])
        if backend is None:
            flow.response = error_response(502, spec.profile)
            flow.metadata["lbsim.error"] = "no healthy backend"
            announce_close(flow)
            return

        request = flow.request
        headers = [(k, v) for k, v in request.headers.fields if k.lower() not in HOP_BY_HOP and not k.startswith(b":")]
        if not any(k.lower() == b"host" for k, _ in headers):
            headers.insert(0, (b"Host", (request.host_header or f"{request.host}:{request.port}").encode()))
        target = request.data.path if not request.is_http2 else request.path.encode()
        timeout = io_timeout(spec.request_timeout, self.time_scale)
        backend.active += 1
        state.in_flight += 1
        started = time.monotonic()
        try:
            response = await backend.pool.request(request.data.method, target, headers, request.raw_content or b"", timeout)
        except UpstreamError as e:
            flow.response = error_response(502, spec.profile)
            flow.metadata["lbsim.error"] = f"backend {backend.name}: {e}"
        except TimeoutError:
            flow.response = error_response(504, spec.profile)
            flow.metadata["lbsim.error"] = f"backend {backend.name}: no response within request_timeout ({timeout:g} s)"
        else:
            # Byte for byte as the backend sent it: not Response.make, whose content setter would encode the
            # body again by its Content-Encoding and set Content-Length to 0 on a HEAD answer.
            now = time.time()
            flow.response = http.Response(
                b"HTTP/1.1", response.status, response.reason or status_codes.RESPONSES.get(response.status, "").encode(),
                LeanHeaders.of(tuple([field for field in response.headers if field[0].lower() not in HOP_BY_HOP])),
                response.body, None, now, now,
            )
        finally:
            backend.active -= 1
            state.in_flight -= 1
        announce_close(flow)
        flow.metadata["lbsim.backend"] = backend
        flow.metadata["lbsim.upstream_ms"] = round((time.monotonic() - started) * 1000, 3)
