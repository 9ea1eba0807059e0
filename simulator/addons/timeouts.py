"""`idle_timeout`: the listener closes client connections that sit idle (vendor default 15 s, scaled)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


from simulator.registry import Registry

MIN_SWEEP = 0.05


class IdleTimeouts:
    """One sweeper for all connections: cheaper than a timer per connection at high connection rates."""

    def __init__(self, registry: Registry, time_scale: float = 1.0):
        self.registry = registry
        self.time_scale = time_scale
        self._task: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        self.master = loader.master  # not mitmproxy's ctx.master: the newest lab in the process overwrites that

    def running(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep())

    def done(self) -> None:
        if self._task:
            self._task.cancel()

    def sweep_interval(self) -> float:
        timeouts = [s.version.spec.idle_timeout for s in self.registry.clients.values()] or [1]
        return max(MIN_SWEEP, min(timeouts) * self.time_scale / 4)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval())
            connections = self.master.addons.get("proxyserver").connections
            now = time.time()
            for client_id, state in list(self.registry.clients.items()):
                handler = connections.get(client_id)
                # A request waiting on its backend is not idle: request_timeout governs it.
                if handler is None or state.in_flight:
                    continue
                idle = now - handler.timeout_watchdog.last_activity
                if idle > state.version.spec.idle_timeout * self.time_scale:
                    state.closed_by = "idle_timeout"
                    io = handler.transports.get(handler.client)
                    if io and io.handler:
                        io.handler.cancel("idle_timeout")
