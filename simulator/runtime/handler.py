"""The lab's connection handler: mitmproxy's `ProxyConnectionHandler`, lighter for every open connection.

- Its hooks go through the lab's `HookTable`, those that finish at once without tasks (`HooksAtOnce`,
  simulator.runtime.hooks).
- Its idle clock is an `ActivityClock` (simulator.dataplane.addons.timeouts): the listener's idle timeout is
  the one timer, not mitmproxy's watchdog task and its 600 s `tcp_timeout`.
- `handle_client` is mitmproxy 12.2's (tests/test_handler.py trips when mitmproxy's changes), without what
  each open connection kept there for nothing: the watchdog's task, and `asyncio.wait`'s coroutine, set,
  callback and future around the task that reads the client (a future the task's end sets is enough).
  That and the watchdog were about 3.4 KiB of every held connection (docs/performance.md, "Round five").
- Its context is a `ListenerContext`, whose `fork` (three per connection, one per request) builds no server
  connection object only to replace it.
- Its `log_prefix` (the peer's address, formatted) is built when first read: mitmproxy 12.2 builds it for
  every connection and reads it nowhere (tests/test_handler.py trips when its `__init__` changes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy.proxy import commands, context, events, layer, server, server_hooks
from mitmproxy.proxy.mode_servers import ProxyConnectionHandler
from mitmproxy.utils import asyncio_utils, human

from simulator.dataplane.addons.timeouts import ActivityClock
from simulator.runtime.hooks import HookTable, HooksAtOnce


class ListenerContext(context.Context):
    """mitmproxy's layer context, with a `fork` that builds no throwaway `Server`.

    mitmproxy's fork constructs a whole Context, whose __init__ makes a new `connection.Server` (a UUID and
    about twenty checked attribute sets), and then replaces that server with its own. Every layer forks its
    context: three forks per connection and one per request (each HTTP stream), 3-4 % of a keep-alive
    request's CPU. This fork makes the same context without the Server (tests/test_handler.py holds it to
    mitmproxy's: a digest trips when mitmproxy's fork or __init__ changes)."""

    def fork(self) -> ListenerContext:
        ret = ListenerContext.__new__(ListenerContext)
        ret.client, ret.options, ret.server, ret.layers = self.client, self.options, self.server, self.layers.copy()
        return ret


class LabConnectionHandler(ProxyConnectionHandler):
    """mitmproxy's connection handler, its hooks dispatched through the lab's `HookTable`."""

    def __init__(self, hooks: HookTable, top: Callable[[Any], layer.Layer], master: Any, *args: Any):
        self.hooks = hooks
        # ProxyConnectionHandler.__init__ less its `log_prefix`, which formats the peer's address (about 1 % of
        # a connection's CPU) for a prefix mitmproxy 12.2 never reads: built on first use instead, below.
        self.master = master
        server.LiveConnectionHandler.__init__(self, *args)
        # The one context mitmproxy built (its first layer holds it), now forking without a Server each time.
        self.layer.context.__class__ = ListenerContext
        self.timeout_watchdog = ActivityClock()  # type: ignore[assignment]
        self.layer = HooksAtOnce(self, top(self.layer.context))  # type: ignore[assignment]

    @functools.cached_property
    def log_prefix(self) -> str:  # type: ignore[override]
        return f"{human.format_address(self.client.peername)}: "

    async def handle_hook(self, hook: commands.StartHook) -> None:
        # As ProxyConnectionHandler.handle_hook: an intercepted flow waits; its end counts as activity.
        with self.timeout_watchdog.disarm():
            await self.hooks.dispatch(hook)

    async def finish_hook(self, hook: commands.StartHook, rest: Awaitable[None]) -> None:
        """The rest of an event that had to wait, then its completion (mitmproxy's `hook_task`)."""
        with self.timeout_watchdog.disarm():
            await rest
        if hook.blocking:
            await self.server_event(events.HookCompleted(hook))

    async def handle_client(self) -> None:
        """mitmproxy's `ConnectionHandler.handle_client`, less the watchdog task and `asyncio.wait`."""
        asyncio_utils.set_current_task_debug_info(name="client handler", client=self.client.peername)
        self.log("client connect")
        await self.handle_hook(server_hooks.ClientConnectedHook(self.client))
        if self.client.error:
            self.log("client kill connection")
            writer = self.transports.pop(self.client).writer
            assert writer
            writer.close()
        else:
            await self.server_event(events.Start())
            handler = asyncio_utils.create_task(
                self.handle_connection(self.client), name="client connection handler", keep_ref=False,
                client=self.client.peername)
            self.transports[self.client].handler = handler
            ended = asyncio.get_running_loop().create_future()
            handler.add_done_callback(functools.partial(_wake, ended))
            await ended
            if not handler.cancelled() and (e := handler.exception()):
                self.log(f"connection handler has crashed: {e}", logging.ERROR,
                         exc_info=(type(e), e, e.__traceback__))

        while self.wakeup_timer:
            self.wakeup_timer.pop().cancel()

        self.log("client disconnect")
        self.client.timestamp_end = time.time()
        await self.handle_hook(server_hooks.ClientDisconnectedHook(self.client))

        if self.transports:
            self.log("closing transports...", logging.DEBUG)
            for io in self.transports.values():
                if io.handler:
                    io.handler.cancel("client disconnected")
            await asyncio.wait([x.handler for x in self.transports.values() if x.handler])
            self.log("transports closed!", logging.DEBUG)


def _wake(waiter: asyncio.Future[None], _task: object) -> None:
    if not waiter.done():  # cancelled: the lab is stopping
        waiter.set_result(None)
