"""Balancing: pick a backend (sticky cookie, then the scheduler), forward over plain HTTP, 502/504 like the vendors."""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from simulator.addons.sticky import sticky_backend
from simulator.registry import Registry
from simulator.upstream import UpstreamError

# Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "http2-settings"}
)
# The server name on the vendors' own error pages.
ERROR_SERVER = {"aliyun-slb": "Tengine", "tencent-clb": "stgw"}
REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


def error_response(status: int, profile: str) -> http.Response:
    reason = REASONS[status]
    body = f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    return http.Response.make(
        status, body, {"Server": ERROR_SERVER.get(profile, "lbsim"), "Content-Type": "text/html"}
    )


class Balancer:
    """Forwards each request to one healthy backend of the client's listener version."""

    def __init__(self, registry: Registry, time_scale: float = 1.0):
        self.registry = registry
        self.time_scale = time_scale

    async def request(self, flow: http.HTTPFlow) -> None:
        state = self.registry.clients.get(flow.client_conn.id)
        if state is None or flow.response is not None:
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
            return

        request = flow.request
        headers = [(k, v) for k, v in request.headers.fields if k.lower().decode() not in HOP_BY_HOP and not k.startswith(b":")]
        if not any(k.lower() == b"host" for k, _ in headers):
            headers.insert(0, (b"Host", (request.host_header or f"{request.host}:{request.port}").encode()))
        target = request.data.path if not request.is_http2 else request.path.encode()
        timeout = spec.request_timeout * self.time_scale
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
            out = http.Response.make(
                response.status,
                response.body,
                [(k, v) for k, v in response.headers if k.lower().decode() not in HOP_BY_HOP],
            )
            out.reason = response.reason.decode("latin-1") or out.reason
            flow.response = out
        finally:
            backend.active -= 1
            state.in_flight -= 1
        flow.metadata["lbsim.backend"] = backend
        flow.metadata["lbsim.upstream_ms"] = round((time.monotonic() - started) * 1000, 3)
