"""A layer's queue of the events that arrive while it waits for a hook, kept small.

mitmproxy's `Layer` gives every layer a `collections.deque` for the events that reach it while it is
paused on a blocking command (a hook). An empty deque is 760 bytes and a held connection has five layers,
so the queues took 3.7 KiB of every idle connection (docs/performance.md, "Round four") while being empty
nearly always and never more than a few events long. lbsim's own layers take `SmallEventQueue` first
among their bases: their queue is an `EventQueue`, a list with the deque methods mitmproxy calls.
"""

from __future__ import annotations

from typing import Any


class EventQueue(list):  # type: ignore[type-arg]
    """A list that pops from the left like a deque (in O(n): a paused layer holds a few events at most)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class SmallEventQueue:
    """Mixin for a mitmproxy `Layer` subclass, before it among the bases: its paused-event queue is an `EventQueue`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_event_queue = EventQueue()
