"""The lab's connection handler (simulator.runtime.handler): mitmproxy's, with less kept per open connection."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import inspect

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
