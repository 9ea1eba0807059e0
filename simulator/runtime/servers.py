"""The lab's listening sockets: one asyncio server per listener port, feeding mitmproxy's proxy core.

We listen ourselves instead of through mitmproxy's `Proxyserver.servers` for two reasons:

* **Several worker processes share a port** (`workers: N`): every socket of the group needs
  `SO_REUSEPORT`, and mitmproxy binds without it.
* **The connection goes to this lab's mitmproxy Master.** mitmproxy's servers hand each connection to
  `mitmproxy.ctx.master`, a process-wide global that the newest `Master` overwrites, so with two labs in
  one process (tests, notebooks) the older lab's connections would run the newer lab's addons.

Each connection runs as under mitmproxy's own server: a `ProxyConnectionHandler` with the reverse-proxy
top layer, registered with the `Proxyserver` addon (the idle-timeout sweeper and the alert sender find live
connections there); its hooks go straight to the addons that handle them (simulator.runtime.hooks).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable

from mitmproxy.master import Master
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from simulator.dataplane.smalldeque import SmallDeque, SmallEventQueue, make_small
from simulator.runtime.handler import LabConnectionHandler
from simulator.runtime.hooks import HookTable

logger = logging.getLogger(__name__)


class ReverseProxy(SmallEventQueue, layers.modes.ReverseProxy):
    """mitmproxy's reverse-proxy top layer; its queue and its `NextLayer`'s are small (simulator.dataplane.smalldeque)."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from super()._handle_event(event)  # the Start: makes the NextLayer, which has queued nothing yet
        self.child_layer._paused_event_queue = SmallDeque()


class ListenerServers:
    """Listening sockets by mitmproxy mode spec (`reverse:http://...@host:port`)."""

    def __init__(self, master: Master, reuse_port: bool = False):
        self.master = master
        self.reuse_port = reuse_port
        self.hooks = HookTable(master.addons)  # the chain is complete once the master runs
        self._servers: dict[str, asyncio.Server] = {}

    async def update(self, modes: Iterable[str]) -> list[str]:
        """Listen on exactly `modes`; returns those that could not listen (the port is taken)."""
        wanted = list(dict.fromkeys(modes))
        for spec in [s for s in self._servers if s not in wanted]:
            self._servers.pop(spec).close()  # open connections carry on, as with mitmproxy's servers
        failed = []
        for spec in wanted:
            if spec in self._servers:
                continue
            mode = ProxyMode.parse(spec)
            if not isinstance(mode, ReverseMode):
                raise ValueError(f"listeners are reverse-proxy modes, got {spec!r}")
            host, port = mode.listen_host(""), mode.listen_port()
            try:
                self._servers[spec] = await asyncio.start_server(
                    functools.partial(self._handle, mode), host, port, reuse_port=self.reuse_port or None
                )
            except OSError as e:
                logger.error("cannot listen on %s:%s: %s", host, port, e.strerror or e)
                failed.append(spec)
        return failed

    def serving(self, spec: str) -> bool:
        server = self._servers.get(spec)
        return server is not None and server.is_serving()

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()

    async def _handle(self, mode: ReverseMode, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # What mitmproxy's AsyncioServerInstance.handle_stream does, with our master instead of ctx.master.
        handler = LabConnectionHandler(self.hooks, ReverseProxy, self.master, reader, writer,
                                       self.master.options, mode)
        # asyncio's queues of the connection, empty nearly always: small ones (simulator.dataplane.smalldeque)
        make_small(writer.transport, "_buffer")
        make_small(getattr(writer, "_protocol", None), "_drain_waiters")
        make_small(handler._server_event_lock, "_waiters")
        # Registered as `Proxyserver.register_connection` does, without its context manager: a generator and
        # its frame that every open connection would keep.
        connections = self.master.addons.get("proxyserver").connections
        connections[handler.client.id] = handler
        try:
            await handler.handle_client()
        except asyncio.CancelledError:
            # The lab is stopping. Python 3.12.1's asyncio logs an ERROR with a stack trace for every stream
            # callback task that ends cancelled (task.exception() raises): end quietly instead.
            writer.close()
        finally:
            del connections[handler.client.id]
