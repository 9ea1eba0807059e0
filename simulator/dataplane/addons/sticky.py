"""Sticky sessions: `insert` (the LB's own SERVERID cookie) and `server` (rewrite of the backend's cookie).

The insert cookie is ``SERVERID=<backend token>|<last set>|<first set>`` (Unix seconds), refreshed on every answer,
with ``Max-Age`` = `CookieTimeout` scaled by time_scale like every vendor timer, but never below
`MIN_COOKIE_TIMEOUT` (Max-Age counts whole seconds, and 1 s is the vendor's own minimum). The timeout is enforced:
a client replaying a cookie older than that (a browser would have dropped it) is balanced afresh.
"""

from __future__ import annotations

import math
import time
from http.cookies import SimpleCookie

from mitmproxy import http

from simulator.dataplane.listener import BackendState, ListenerVersion
from simulator.dataplane.registry import Registry

INSERT_COOKIE = "SERVERID"
SEPARATOR = "!"  # server mode: "<backend token>!<the backend's own value>"
MIN_COOKIE_TIMEOUT = 1  # seconds: Max-Age is whole seconds, and the vendor's CookieTimeout starts at 1


def cookie_max_age(cookie_timeout: int, time_scale: float) -> int:
    """The insert cookie's lifetime in lab seconds: CookieTimeout scaled, rounded up, at least 1 s."""
    return max(MIN_COOKIE_TIMEOUT, math.ceil(cookie_timeout * time_scale))


def insert_cookie_times(value: str) -> tuple[str, int, int] | None:
    """``(token, last set, first set)`` of a SERVERID value, or None if it is not one the LB wrote."""
    token, *times = value.split("|")
    if len(times) != 2 or not all(t.isdigit() for t in times):
        return None
    return token, int(times[0]), int(times[1])


def sticky_backend(flow: http.HTTPFlow, version: ListenerVersion) -> BackendState | None:
    """The healthy backend a request's sticky cookie points at, if any."""
    sticky = version.spec.sticky_session
    if sticky is None:
        return None
    name = INSERT_COOKIE if sticky.type == "insert" else sticky.cookie
    value = flow.request.cookies.get(name)
    if not value:
        return None
    if sticky.type == "insert":
        token = value.split("|", 1)[0]  # StickySessions.request has dropped expired and foreign values
    else:
        token, sep, original = value.partition(SEPARATOR)
        if not sep:
            return None
        flow.request.cookies[name] = original  # the backend gets its own cookie back, unchanged
    for backend in version.backends:
        if backend.token == token and backend.healthy and backend.weight > 0:
            return backend
    return None


class StickySessions:
    """Sets or rewrites the session cookie on responses of listeners with sticky sessions on."""

    def __init__(self, registry: Registry, time_scale: float = 1.0):
        self.registry = registry
        self.time_scale = time_scale

    def max_age(self, cookie_timeout: int) -> int:
        return cookie_max_age(cookie_timeout, self.time_scale)

    def request(self, flow: http.HTTPFlow) -> None:
        """Drop an insert cookie past its Max-Age (or not of the LB's making) before the Balancer reads it."""
        state = self.registry.clients.get(flow.client_conn.id)
        sticky = state.version.spec.sticky_session if state else None
        if sticky is None or sticky.type != "insert":
            return
        value = flow.request.cookies.get(INSERT_COOKIE)
        if value is None:
            return
        times = insert_cookie_times(value)
        if times is None or int(time.time()) - times[1] > self.max_age(sticky.cookie_timeout):  # never early
            flow.metadata["lbsim.sticky_expired"] = value
            del flow.request.cookies[INSERT_COOKIE]
            if not flow.request.cookies:
                del flow.request.headers["cookie"]  # not an empty Cookie header

    def response(self, flow: http.HTTPFlow) -> None:
        state = self.registry.clients.get(flow.client_conn.id)
        backend = flow.metadata.get("lbsim.backend")
        if state is None or backend is None or flow.response is None:
            return
        sticky = state.version.spec.sticky_session
        if sticky is None:
            return
        if sticky.type == "insert":
            now = int(time.time())
            # The first-set time carries over while the client stays on the same backend.
            times = insert_cookie_times(flow.request.cookies.get(INSERT_COOKIE) or "")
            first = times[2] if times and times[0] == backend.token else now
            flow.response.headers.add(
                "Set-Cookie",
                f"{INSERT_COOKIE}={backend.token}|{now}|{first}; Path=/; Max-Age={self.max_age(sticky.cookie_timeout)}",
            )
            return
        rewritten = []
        for header in flow.response.headers.get_all("set-cookie"):
            cookie = SimpleCookie()
            try:
                cookie.load(header)
            except Exception:  # not ours to judge a backend's malformed cookie: pass it through
                rewritten.append(header)
                continue
            if sticky.cookie in cookie:
                name, _, rest = header.partition("=")
                value, sep, attrs = rest.partition(";")
                header = f"{name}={backend.token}{SEPARATOR}{value}{sep}{attrs}"
            rewritten.append(header)
        flow.response.headers.set_all("set-cookie", rewritten)
