"""The listener's HTTP layer (simulator.dataplane.addons.http1): ordinary HTTP/1.1 requests served by its own
exchange, everything else by mitmproxy's layers, and a client sees the same bytes either way.

Each case goes to the session lab twice: once as the listener serves it, once with mitmproxy's layers for every
request (`TlsTermination.http_layer` set to `LimitedHttpLayer`, as before the lean exchange). Real TLS clients,
the lab's real mock backends.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from typing import Any

import pytest
from helpers import handlers_of, read_response

from simulator.dataplane.addons.http1 import ListenerHttpLayer
from simulator.dataplane.addons.limits import CLIENT_LEFT, LimitedHttpLayer
from simulator.dataplane.addons.tls import TlsTermination
from simulator.harness.running import RunningLab
from simulator.tools.soak import exchange, record_of

LISTENER = "aliyun-one-way"
H = b"Host: h\r\n"

# name -> what the client sends in one write; the answers are read until the listener closes.
CASES = {
    "get": b"GET /a?size=100 HTTP/1.1\r\n" + H + b"\r\n",
    "head": b"HEAD /a?size=100 HTTP/1.1\r\n" + H + b"\r\n",
    "post with a body": b"POST /p?size=10 HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    "three pipelined": b"".join(b"GET /%d?size=%d HTTP/1.1\r\n" % (n, n) + H + b"\r\n" for n in (1, 2, 3)),
    "connection: close": b"GET /c?size=7 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    "http/1.0": b"GET /old?size=7 HTTP/1.0\r\n\r\n",
    "http/1.0 keep-alive": b"GET /old?size=7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "backend status": b"GET /s?status=404&size=5 HTTP/1.1\r\n" + H + b"\r\n",
    "refused by the limits addon": b"GET /two-hosts HTTP/1.1\r\n" + H + H + b"\r\n",
    "backend closes": b"GET /bye?size=3&close=1 HTTP/1.1\r\n" + H + b"\r\n",
    "empty lines before it": b"\r\n\n\r\nGET /lead?size=5 HTTP/1.1\r\n" + H + b"\r\n",  # ignored (RFC 9112 2.2)
    # handed to mitmproxy's layers: a chunked body, 100-continue, a bad head, a good request before a bad one
    "chunked body": b"POST /ch?size=3 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "expect": b"POST /e?size=4 HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "bad head": b"BROKEN\r\n\r\n",
    "good then bad": b"GET /g?size=5 HTTP/1.1\r\n" + H + b"\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
}
# What differs from one connection to the next: the date, the backend picked, the client's port and connection.
_VARYING = [(re.compile(rb"\r\n([Dd]ate): [^\r]*"), rb"\r\n\1: -"), (re.compile(rb"web-\d"), b"web-N"),
            (re.compile(rb'"(client|connection_id|connection_request)":("[^"]*"|\d+)'), rb'"\1":-')]


# After each case, a request that asks to close: the listener answers it and closes, unless it closed before.
LAST = b"GET /last?size=2 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"


def converse(lab: RunningLab, data: bytes) -> tuple[bytes, str]:
    """Send `data` and LAST on a new connection and read until the listener closes: what came back (what varies
    masked), and how it ended."""
    got, ended, _ = exchange(lab.port(LISTENER), lab.ssl_context(), data + LAST)
    for pattern, mask in _VARYING:
        got = pattern.sub(mask, got)
    return got, ended


@pytest.mark.parametrize("case", CASES)
def test_a_client_gets_the_same_bytes_as_from_mitmproxys_layers(lab: RunningLab, case: str, monkeypatch) -> None:
    ours = converse(lab, CASES[case])
    monkeypatch.setattr(TlsTermination, "http_layer", LimitedHttpLayer)
    theirs = converse(lab, CASES[case])
    assert ours == theirs
    assert ours[0], "nothing came back"


def layer_of(lab: RunningLab, conn: ssl.SSLSocket) -> ListenerHttpLayer:
    async def find() -> Any:
        (handler,) = handlers_of(lab, conn.getsockname()[1])
        layer = handler.layer.layer
        while not isinstance(layer, ListenerHttpLayer):
            layer = getattr(layer, "child_layer", None) or getattr(layer, "layer")
        return layer

    return lab.call(find())


def read_answer(conn: ssl.SSLSocket) -> dict[str, Any]:
    head, _, body = read_response(conn).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def test_ordinary_requests_stay_on_the_lean_exchange_until_one_is_not(lab: RunningLab) -> None:
    raw = socket.create_connection(("127.0.0.1", lab.port(LISTENER)), timeout=5)
    with lab.ssl_context().wrap_socket(raw, server_hostname="localhost") as conn:
        for n in range(3):
            conn.sendall(b"GET /k%d HTTP/1.1\r\n" % n + H + b"\r\n")
            assert read_answer(conn)["path"] == f"/k{n}"
        assert layer_of(lab, conn).inner is None  # three exchanges of its own
        # A body that arrives in two writes: mitmproxy's layers read it, and serve the connection from then on.
        conn.sendall(b"POST /slow HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello")
        time.sleep(0.2)
        conn.sendall(b"world")
        assert read_answer(conn)["body_size"] == 10
        assert isinstance(layer_of(lab, conn).inner, LimitedHttpLayer)
        conn.sendall(b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
        assert read_answer(conn)["path"] == "/after"


@pytest.mark.parametrize("layers", ["lean", "mitmproxy"])
def test_a_client_that_leaves_mid_request_is_counted_and_sent_nothing(lab: RunningLab, layers: str,
                                                                            monkeypatch) -> None:
    if layers == "mitmproxy":
        monkeypatch.setattr(TlsTermination, "http_layer", LimitedHttpLayer)
    started = time.time()
    raw = socket.create_connection(("127.0.0.1", lab.port(LISTENER)), timeout=5)
    conn = lab.ssl_context().wrap_socket(raw, server_hostname="localhost")
    local = conn.getsockname()[1]
    conn.sendall(b"GET /slow?delay_ms=300 HTTP/1.1\r\n" + H + b"\r\n")
    time.sleep(0.1)  # the balancer is waiting for the backend
    conn.close()
    record = record_of(lab, local, since=started)
    assert record is not None
    # Counted, nothing sent, and the record says why no answer went out: the same with mitmproxy's layers.
    assert (record["requests"], record["error"], record["closed_by"]) == (1, CLIENT_LEFT, None), record
    assert record["traffic"]["lb_to_client"]["payload"] == 0


def test_hooks_that_finish_as_raised_go_on_without_a_round_trip(lab: RunningLab, monkeypatch) -> None:
    """The handler tells the layer at once (`hook_done`) of every hook it finished as it was raised; only the
    balancer's request, which waits for a backend, comes back as a HookCompleted event."""
    told: list[str] = []
    completed: list[str] = []
    hook_done, handle_event = ListenerHttpLayer.hook_done, ListenerHttpLayer._handle_event

    def recording_done(self: ListenerHttpLayer, hook: Any) -> None:
        told.append(hook.name)
        hook_done(self, hook)

    def recording_events(self: ListenerHttpLayer, event: Any) -> Any:
        if type(event).__name__ == "HookCompleted":
            completed.append(event.command.name)
        return handle_event(self, event)

    monkeypatch.setattr(ListenerHttpLayer, "hook_done", recording_done)
    monkeypatch.setattr(ListenerHttpLayer, "_handle_event", recording_events)
    answer, ended = converse(lab, b"")  # LAST alone: one ordinary request
    assert answer.startswith(b"HTTP/1.1 200") and ended == "closed"
    assert (told, completed) == (["requestheaders", "responseheaders", "response"], ["request"])
