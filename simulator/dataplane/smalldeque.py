"""Small stand-ins for the `collections.deque` objects every connection holds, nearly always empty.

An empty deque is 760 bytes. mitmproxy gives each of a connection's five layers one for the events that
reach it while it waits for a hook, and asyncio gives each connection three more: its transport's write
buffer, its stream protocol's drain waiters and, once two hooks contend for it, the waiters of the
handler's event lock. Together that was 6 KiB of every idle connection (docs/performance.md, rounds four
and five), for queues that hold a few entries at most: a paused layer's few events, or a write buffer
that asyncio caps at its high-water mark (64 KiB, a handful of chunks) before it makes the writer wait.

`SmallDeque` is a list with the deque methods those callers use. lbsim's layers take `SmallEventQueue`
first among their bases; `make_small` swaps asyncio's queues of a new connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class SmallDeque(list):  # type: ignore[type-arg]
    """A list with a deque's `popleft` and `appendleft` (in O(n): it holds a few entries at most)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class SmallEventQueue:
    """Mixin for a mitmproxy `Layer` subclass, before it among the bases: its paused-event queue is small."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_event_queue = SmallDeque()


def make_small(owner: object, name: str) -> None:
    """`owner.name` becomes a `SmallDeque` if it is an empty deque or not made yet (None); else it is left.

    For asyncio's private queues (`_buffer`, `_drain_waiters`, `Lock._waiters`), which the same code in
    Python 3.12 and 3.13 only appends to, pops from either end, iterates and counts. uvloop's transports
    keep their buffers in C and have no such attribute: nothing changes there.
    """
    queue = getattr(owner, name, False)
    if queue is None or (type(queue) is deque and not queue):
        setattr(owner, name, SmallDeque())
