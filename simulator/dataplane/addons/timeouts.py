"""Client timeouts: `idle_timeout` (vendor default 15 s) and a client header timeout (60 s), both scaled.

- Idle: a connection with no bytes in either direction for `idle_timeout` after its TLS handshake is closed
  (`closed_by: idle_timeout`).
- Client header: a client must deliver its TLS handshake and the complete headers of its first request within
  `CLIENT_HEADER_TIMEOUT` (scaled like every I/O timeout, at least 1 s) of connecting, and those of a later
  request within `idle_timeout` + `CLIENT_HEADER_TIMEOUT` of the previous answer, however slowly it dribbles them
  (`closed_by: client_header_timeout`). That bounds slowloris clients, which the idle timeout alone does
  not: each byte resets it. The vendors document no such value; nginx (Tengine, STGW) has
  `client_header_timeout`, default 60 s, which also covers the handshake, so lbsim uses that (UNCONFIRMED).
  Like nginx, the connection is closed without an answer.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import time
from typing import Any

from mitmproxy import connection, http

from simulator.model.config import io_timeout
from simulator.dataplane.registry import Registry

MIN_SWEEP = 0.05
CLIENT_HEADER_TIMEOUT = 60  # seconds before time_scale: nginx's client_header_timeout default


def unread_bytes(writer: Any) -> int:
    """Bytes the kernel holds for us on this connection's socket (0 if unknown)."""
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def unsent(io: Any) -> bool:
    """Our answer still sits in this connection's send buffer (the client is not reading it)."""
    return io.writer is not None and io.writer.transport.get_write_buffer_size() > 0


class ActivityClock:
    """A connection's last activity, which `IdleTimeouts` reads: mitmproxy's `TimeoutWatchdog` without its timer.

    mitmproxy gives each connection a watchdog task that sleeps until `tcp_timeout` (600 s, unscaled) of
    silence and then closes it. A listener's idle timeout is the vendor's (AWS allows 4,000 s) and the sweeper
    below keeps it for every connection, so the watchdog could only close a connection the vendor keeps open;
    its task, timer and event also cost each held connection about 2 KiB (docs/performance.md, "Round five").
    The lab's connection handler (simulator.runtime.handler) keeps this instead and starts no watchdog task.
    """

    __slots__ = ("last_activity",)

    def __init__(self) -> None:
        self.last_activity = time.time()

    def register_activity(self) -> None:
        self.last_activity = time.time()

    def disarm(self) -> ActivityClock:
        """`with clock.disarm():` around a hook, as with the watchdog; the hook's end counts as activity."""
        return self

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        self.last_activity = time.time()


class IdleTimeouts:
    """One sweeper for all connections: cheaper than a timer per connection at high connection rates."""

    def __init__(self, registry: Registry, time_scale: float = 1.0):
        self.registry = registry
        self.time_scale = time_scale
        self._task: asyncio.Task | None = None
        self._waiting: dict[str, float] = {}  # client id -> when its header clock started (may be in the future)
        self._open: dict[str, set[http.HTTPFlow]] = {}  # client id -> requests with headers in and no answer yet

    def load(self, loader: Any) -> None:
        self.master = loader.master  # not mitmproxy's ctx.master: the newest lab in the process overwrites that

    def running(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep())

    def done(self) -> None:
        if self._task:
            self._task.cancel()

    # ---- what the client owes ------------------------------------------------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        self._waiting[client.id] = time.time()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._open.setdefault(flow.client_conn.id, set()).add(flow)
        self._waiting.pop(flow.client_conn.id, None)

    def response(self, flow: http.HTTPFlow) -> None:
        self._answered(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._answered(flow)

    def _answered(self, flow: http.HTTPFlow) -> None:
        client_id = flow.client_conn.id
        flows = self._open.get(client_id)
        if flows is not None:
            flows.discard(flow)
            if flows:
                return
            del self._open[client_id]
        state = self.registry.clients.get(client_id)
        if state is not None:
            self._waiting[client_id] = time.time() + self.keepalive_grace(state)

    def client_disconnected(self, client: connection.Client) -> None:
        self._waiting.pop(client.id, None)
        self._open.pop(client.id, None)

    def working(self, client_id: str) -> bool:
        """The listener holds a whole request of this client (body included) that it has not answered yet."""
        return any(f.request.timestamp_end is not None for f in self._open.get(client_id, ()))

    # ---- sweeping -------------------------------------------------------------------------------------------

    @property
    def client_header_timeout(self) -> float:
        return io_timeout(CLIENT_HEADER_TIMEOUT, self.time_scale)

    def keepalive_grace(self, state: Any) -> float:
        """After an answer the client has idle_timeout to start its next request (a keep-alive connection that
        stays silent is idle, not slow), then the header timeout to finish it."""
        return io_timeout(state.version.spec.idle_timeout, self.time_scale)

    def sweep_interval(self) -> float:
        timeouts = [s.version.spec.idle_timeout for s in self.registry.clients.values()] or [1]
        return max(MIN_SWEEP, min(io_timeout(t, self.time_scale) for t in timeouts) / 4)

    @staticmethod
    def _close(io: Any, reason: str) -> None:
        # A client that does not read leaves our answer in the send buffer, and a closing asyncio transport
        # waits for that buffer to drain, forever: abort (reset) it so the socket is really gone.
        if unsent(io):
            io.writer.transport.abort()
        io.handler.cancel(reason)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval())
            connections = self.master.addons.get("proxyserver").connections
            now = time.time()
            header_limit = self.client_header_timeout
            for client_id, state in list(self.registry.clients.items()):
                handler = connections.get(client_id)
                # A request waiting on its backend is not idle: request_timeout governs it.
                if handler is None or state.in_flight:
                    continue
                io = handler.transports.get(handler.client)
                if io is None or io.handler is None:
                    continue
                # Nor is one the listener is still working on, unless it waits for the client to read.
                if self.working(client_id) and not unsent(io):
                    continue
                idle = now - handler.timeout_watchdog.last_activity
                # Idle counts once the handshake is done (before, the header timeout governs, as in nginx);
                # bytes waiting in the kernel mean the loop was busy, not the client idle.
                if (state.handshake_done is not None and idle > io_timeout(state.version.spec.idle_timeout, self.time_scale)
                        and not unread_bytes(io.writer)):
                    state.closed_by = "idle_timeout"
                    self._close(io, "idle_timeout")
                    continue
                waiting = self._waiting.get(client_id)
                if waiting is None or now - waiting <= header_limit:
                    continue
                if unsent(io):
                    self._waiting[client_id] = now + self.keepalive_grace(state)  # still sending the last answer
                    continue
                state.closed_by = "client_header_timeout"
                self._close(io, "client_header_timeout")
