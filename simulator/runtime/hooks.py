"""Hook dispatch for the lab's connections: each event goes straight to the addons that handle it.

mitmproxy's `AddonManager` dispatches an event by walking the whole addon chain: for every entry an
error-catching context manager, a generator over the entry and its children, a `getattr` per addon and
the event's arguments rebuilt from its dataclass fields per call; and after every flow event a second
walk for the `update` event. For a keep-alive request (four events, each followed by an `update` that
no lbsim addon handles) that cost 60 µs, about a tenth of the request's CPU (docs/performance.md, "Round three").

A lab's addon chain is fixed once it runs, so `HookTable` looks each event's handlers up once, in chain
order, and the lab's connection handler (simulator.runtime.handler) calls just those. Each handler runs
as under mitmproxy: sync or async, an exception logged as mitmproxy's `Addon error: ...` (the next addon
still runs), `AddonHalt` ends the event. Events of the master itself (`load`, `configure`, `running`,
`done`) still go through mitmproxy's `AddonManager`.

mitmproxy's proxy core also runs every event as an asyncio task: under the eager task factory its
Master installs, the task calls the handlers at once, then waits for the connection's event lock to
report `HookCompleted` a turn of the loop later. Nearly every event has plain handlers only (all but the
balancer's `request`), so `HooksAtOnce` runs them where that eager task would have run them and hands their
completion straight back to the layers: no task, no lock, no turn of the loop. For a request's events that
was 3-5 % less CPU per keep-alive request (docs/performance.md, "Round four"); for a connection's own
(`next_layer` and the TLS hooks, four per connection) 5 % fewer instructions and about 4 % less CPU per
resumed connection, and no less CPU per full handshake ("Round ten"). An event with a coroutine handler, or
an intercepted flow, goes on as a task.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from mitmproxy import exceptions, flow
from mitmproxy.addonmanager import AddonManager, traverse
from mitmproxy.proxy import commands, events, layer
from mitmproxy.utils import asyncio_utils

if TYPE_CHECKING:
    from simulator.runtime.handler import LabConnectionHandler

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

    def start(self, hook: commands.StartHook) -> Awaitable[None] | None:
        """Run the event's handlers as far as they go without waiting.

        Returns None when the event is done (every handler has run), else a coroutine that finishes it:
        the rest of the handlers from the first that returned an awaitable, then `update`, then, for an
        intercepted flow, the wait for its resumption.
        """
        data = self.argument(hook)
        rest = _call_now(self.handlers(hook.name), data)
        if not isinstance(data, flow.Flow):
            return rest
        if rest is not None:
            return self._finish_flow(rest, data)
        rest = _call_now(self.handlers("update"), [data])  # mitmproxy's UpdateHook after every flow event
        if rest is None and not data.intercepted:
            return None
        return self._resume(rest, data)

    async def dispatch(self, hook: commands.StartHook) -> Any:
        """Run the event to its end; returns its argument (a flow, a connection's data, ...)."""
        if (rest := self.start(hook)) is not None:
            await rest
        return self.argument(hook)

    async def _finish_flow(self, rest: Awaitable[None], data: flow.Flow) -> None:
        await rest
        await _call(self.handlers("update"), [data])
        await data.wait_for_resume()

    @staticmethod
    async def _resume(rest: Awaitable[None] | None, data: flow.Flow) -> None:
        if rest is not None:
            await rest
        await data.wait_for_resume()


def _call_now(handlers: tuple[Callable[..., Any], ...], argument: Any) -> Awaitable[None] | None:
    """Call `handlers` in order until one returns an awaitable; None if all ran, else a coroutine for the rest."""
    for i, handler in enumerate(handlers):
        try:
            result = handler(argument)
        except exceptions.AddonHalt:
            return None
        except Exception as e:
            logger.error(f"Addon error: {e}", exc_info=True)
            continue
        if result is not None and inspect.isawaitable(result):
            return _await_then_call(result, handlers[i + 1:], argument)
    return None


async def _await_then_call(pending: Awaitable[Any], handlers: tuple[Callable[..., Any], ...], argument: Any) -> None:
    try:
        await pending
    except exceptions.AddonHalt:
        return
    except Exception as e:
        logger.error(f"Addon error: {e}", exc_info=True)
    await _call(handlers, argument)


async def _call(handlers: tuple[Callable[..., Any], ...], argument: Any) -> None:
    if (rest := _call_now(handlers, argument)) is not None:
        await rest


class HooksAtOnce:
    """A connection's top layer as its handler sees it: the events that finish at once end here.

    mitmproxy's `ConnectionHandler.server_event` walks the commands of `layer.handle_event(event)`; this
    walks them first. A `StartHook` (a flow's or the connection's) is started on the spot (`HookTable.start`).
    If that finished it, its `HookCompleted` goes back to the layers once the current event's commands are
    all out, as the next `server_event` would have sent it; otherwise a task finishes it, as mitmproxy's would.
    A layer that raised the hook and has a `hook_done(hook)` method is told at once instead, and goes on
    with the same flow before it yields its next command (simulator.dataplane.addons.http1.ListenerHttpLayer).
    Every other command goes on to `server_event` unchanged. (An answer's head and body already come as one
    write: the listener's TLS layer seals them together, as nginx does,
    simulator.dataplane.addons.tls.ListenerTLSLayer.)
    """

    __slots__ = ("handler", "layer")

    def __init__(self, handler: LabConnectionHandler, top: layer.Layer):
        self.handler = handler
        self.layer = top

    def handle_event(self, event: events.Event) -> Iterator[commands.Command]:
        hooks = self.handler.hooks
        queue = deque((event,))
        while queue:
            for command in self.layer.handle_event(queue.popleft()):
                if not isinstance(command, commands.StartHook):
                    yield command
                elif (rest := hooks.start(command)) is not None:
                    asyncio_utils.create_task(
                        self.handler.finish_hook(command, rest), name=f"handle_hook({command.name})",
                        keep_ref=True, client=self.handler.client.peername)
                elif command.blocking:
                    # A layer with `hook_done` (the listener's HTTP layer) goes on as soon as it is told, before
                    # its next command: no HookCompleted down the layers. Any other waits for the event.
                    done = getattr(command.blocking, "hook_done", None)
                    if done is not None:
                        done(command)
                    else:
                        queue.append(events.HookCompleted(command))
