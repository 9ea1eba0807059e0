"""Hook dispatch for the lab's connections: each event goes straight to the addons that handle it.

mitmproxy's `AddonManager` dispatches an event by walking the whole addon chain: for every entry an
error-catching context manager, a generator over the entry and its children, a `getattr` per addon and
the event's arguments rebuilt from its dataclass fields per call; and after every flow event a second
walk for the `update` event. For a keep-alive request (four events, each followed by an `update` that
no lbsim addon handles) that cost 60 µs, about a tenth of the request's CPU (docs/performance.md, "Round three").

A lab's addon chain is fixed once it runs, so `HookTable` looks each event's handlers up once, in chain
order, and `LabConnectionHandler` calls just those. Each handler runs as under mitmproxy: sync or
async, an exception logged as mitmproxy's `Addon error: ...` (the next addon still runs), `AddonHalt`
ends the event. Events of the master itself (`load`, `configure`, `running`, `done`) still go through
mitmproxy's `AddonManager`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, flow
from mitmproxy.addonmanager import AddonManager, traverse
from mitmproxy.proxy import commands
from mitmproxy.proxy.mode_servers import ProxyConnectionHandler

logger = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy logs an addon's error


class HookTable:
    """The handlers of each event name, from a master's addon chain (built lazily, then kept)."""

    def __init__(self, addons: AddonManager):
        self._addons = addons
        self._handlers: dict[str, tuple[Callable[..., Any], ...]] = {}
        self._argument: dict[type, str] = {}

    def handlers(self, name: str) -> tuple[Callable[..., Any], ...]:
        """The bound methods named `name` of every addon, children included, in mitmproxy's order."""
        found = self._handlers.get(name)
        if found is None:
            found = tuple(h for a in traverse(self._addons.chain) if callable(h := getattr(a, name, None)))
            self._handlers[name] = found
        return found

    def argument(self, hook: commands.StartHook) -> Any:
        """A connection event's one argument (mitmproxy's proxy core raises only single-argument hooks)."""
        kind = type(hook)
        field = self._argument.get(kind)
        if field is None:
            field = self._argument[kind] = next(iter(kind.__dataclass_fields__))  # type: ignore[attr-defined]
        return getattr(hook, field)

    async def dispatch(self, hook: commands.StartHook) -> Any:
        """Call the event's handlers in order; returns its argument (a flow, a connection's data, ...)."""
        data = self.argument(hook)
        await _call(self.handlers(hook.name), data)
        if isinstance(data, flow.Flow) and (update := self.handlers("update")):
            await _call(update, [data])  # mitmproxy's UpdateHook after every flow event
        return data


async def _call(handlers: tuple[Callable[..., Any], ...], argument: Any) -> None:
    for handler in handlers:
        try:
            result = handler(argument)
            if result is not None and inspect.isawaitable(result):
                await result
        except exceptions.AddonHalt:
            return
        except Exception as e:
            logger.error(f"Addon error: {e}", exc_info=True)


class LabConnectionHandler(ProxyConnectionHandler):
    """mitmproxy's connection handler, its hooks dispatched through the lab's `HookTable`."""

    def __init__(self, hooks: HookTable, *args: Any):
        self.hooks = hooks
        super().__init__(*args)

    async def handle_hook(self, hook: commands.StartHook) -> None:
        # As ProxyConnectionHandler.handle_hook: no idle timeout while a hook runs; an intercepted flow waits.
        with self.timeout_watchdog.disarm():
            data = await self.hooks.dispatch(hook)
            if isinstance(data, flow.Flow):
                await data.wait_for_resume()
