"""The lab's connection handler (simulator.runtime.handler): mitmproxy's, with less kept per open connection."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import inspect
from typing import Any

from mitmproxy.proxy.mode_servers import ProxyConnectionHandler
from mitmproxy.proxy.server import ConnectionHandler

from helpers import handlers_of

from simulator.harness.running import RunningLab
from simulator.runtime.handler import LabConnectionHandler

# mitmproxy 12.2's ConnectionHandler.handle_client, which LabConnectionHandler.handle_client follows.
MITMPROXY_HANDLE_CLIENT = "01f1b7cc991c4711c901cb22b77a8a0c388e1d7fcf8f020dbb7520059b5aaeb6"


def test_mitmproxys_handle_client_is_still_the_one_the_lab_follows() -> None:
    # When this fails, mitmproxy changed its handle_client: carry the change over to LabConnectionHandler's
    # (simulator/runtime/handler.py), then record the new digest here.
    source = inspect.getsource(ConnectionHandler.handle_client)
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_HANDLE_CLIENT, source


# mitmproxy 12.2's ProxyConnectionHandler.__init__, which LabConnectionHandler.__init__ follows less its log_prefix.
MITMPROXY_HANDLER_INIT = "c1c9c9c45c90f56123217d6a6bf7050167875b7066d5db747ba564c6d61c92b7"


def test_mitmproxys_handler_init_is_still_the_one_the_lab_follows() -> None:
    # When this fails, mitmproxy changed what its handler sets up: carry it over to LabConnectionHandler.__init__.
    source = inspect.getsource(ProxyConnectionHandler.__init__)
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_HANDLER_INIT, source


def test_a_handler_formats_its_log_prefix_only_when_read(lab: RunningLab) -> None:
    from mitmproxy.utils import human

    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        [handler] = handlers_of(lab, conn.sock.getsockname()[1])
        assert "log_prefix" not in vars(handler)  # mitmproxy's handler has formatted and kept it by now
        peer = handler.client.peername
        assert handler.log_prefix == f"{human.format_address(peer)}: " == f"127.0.0.1:{peer[1]}: "
        assert vars(handler)["log_prefix"] == handler.log_prefix  # formatted once, then kept
    finally:
        conn.close()


def test_a_held_connection_runs_two_tasks_and_no_watchdog(lab: RunningLab) -> None:
    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() is not None  # the connection stays open, idle
        port = conn.sock.getsockname()[1]

        async def tasks_of_the_connection() -> list[str]:
            return sorted(t.get_name().split(" [")[0] for t in asyncio.all_tasks()
                          if getattr(t, "client", None) and t.client[1] == port)

        # mitmproxy's own handler would add its "timeout watchdog" task, sleeping until tcp_timeout
        assert lab.call(tasks_of_the_connection()) == ["client connection handler", "client handler"]
        [handler] = handlers_of(lab, port)
        assert isinstance(handler, LabConnectionHandler) and not hasattr(handler.timeout_watchdog, "watch")
    finally:
        conn.close()


def test_a_closed_connection_ends_both_tasks_and_leaves_the_registry(lab: RunningLab) -> None:
    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    conn.request("GET", "/")
    conn.getresponse().read()
    port = conn.sock.getsockname()[1]
    conn.close()

    async def left() -> tuple[list[asyncio.Task], list[object]]:
        for _ in range(200):
            tasks = [t for t in asyncio.all_tasks() if getattr(t, "client", None) and t.client[1] == port]
            handlers = handlers_of(lab, port)
            if not tasks and not handlers:
                break
            await asyncio.sleep(0.01)
        return tasks, handlers

    assert lab.call(left()) == ([], [])


# mitmproxy 12.2's Context.__init__ and Context.fork, which ListenerContext.fork does without the throwaway Server.
MITMPROXY_CONTEXT = "145364d038a5c879cf0cd0c78f0e9f0f3029fdd7da37dd787170d041f80d6956"


def test_a_listener_context_forks_as_mitmproxys_without_building_a_server(monkeypatch) -> None:
    from mitmproxy import connection
    from mitmproxy.options import Options
    from mitmproxy.proxy.context import Context

    from simulator.runtime.handler import ListenerContext

    # When this fails, mitmproxy changed what a context holds or how it forks: carry it over to ListenerContext.
    source = inspect.getsource(Context.__init__) + inspect.getsource(Context.fork)
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_CONTEXT, source

    client = connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0.0)
    theirs = Context(client, Options())
    ours = Context(client, theirs.options)
    ours.__class__ = ListenerContext
    for ctx in (theirs, ours):
        ctx.layers.append("a layer")
    built = []
    real_init = connection.Server.__init__
    monkeypatch.setattr(connection.Server, "__init__", lambda self, *a, **kw: built.append(1) or real_init(self, *a, **kw))
    a, b = theirs.fork(), ours.fork()
    assert len(built) == 1, "mitmproxy's fork builds a Server it drops; ours builds none"
    assert type(b) is ListenerContext and b.fork().server is ours.server  # a fork's forks are lean too
    for parent, child in ((theirs, a), (ours, b)):
        assert child.client is parent.client and child.options is parent.options and child.server is parent.server
        assert child.layers == parent.layers and child.layers is not parent.layers  # a copy: a layer added below stays below
    assert set(vars(a)) == set(vars(b))  # the same attributes as mitmproxy's


def test_every_connection_of_a_lab_forks_lean_contexts(lab: RunningLab) -> None:
    from simulator.runtime.handler import ListenerContext

    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    try:
        # A chunked body: the listener's HTTP layer hands the connection to mitmproxy's, so every layer is there.
        conn.request("POST", "/", body=iter([b"hello"]), encode_chunked=True)
        assert conn.getresponse().read() and conn.sock is not None

        def layers(top: Any) -> list[Any]:  # the connection's layers, its HTTP/1 server and any open HTTP stream
            found, todo = [], [top]
            while todo:
                layer = todo.pop()
                found.append(layer)
                todo += [x for x in (getattr(layer, "child_layer", None), getattr(layer, "layer", None),
                                     getattr(layer, "inner", None)) if hasattr(x, "context")]
                todo += list(getattr(layer, "streams", {}).values()) + list(getattr(layer, "connections", {}).values())
            return found

        async def contexts() -> list[str]:
            (handler,) = handlers_of(lab, conn.sock.getsockname()[1])
            return [type(layer.context).__name__ for layer in layers(handler.layer.layer)]

        names = lab.call(contexts())
        # proxy, next layer, TLS, the listener's HTTP layer, mitmproxy's HTTP layer, HTTP/1 server (the finished
        # request's stream is gone: it was a fork of the HTTP layer's, and a ListenerContext's forks are
        # ListenerContexts, above)
        assert len(names) >= 6 and set(names) == {ListenerContext.__name__}, names
    finally:
        conn.close()
