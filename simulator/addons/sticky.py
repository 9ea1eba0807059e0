"""Sticky sessions: `insert` (the LB's own SERVERID cookie) and `server` (rewrite of the backend's cookie)."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

from mitmproxy import http

from simulator.listener import BackendState, ListenerVersion
from simulator.registry import Registry

INSERT_COOKIE = "SERVERID"
SEPARATOR = "!"  # server mode: "<backend token>!<the backend's own value>"


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
        token = value.split("|", 1)[0]
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

    def __init__(self, registry: Registry):
        self.registry = registry

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
            flow.response.headers.add(
                "Set-Cookie", f"{INSERT_COOKIE}={backend.token}|{now}|{now}; Path=/; Max-Age={sticky.cookie_timeout}"
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
