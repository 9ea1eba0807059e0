"""Frees closed connections' memory in step with the connections a lab holds, and gives it back.

A connection held open for a while ends in the collector's oldest generation, and its objects are tied in
reference cycles (mitmproxy's layers and context, asyncio's tasks), so closing it frees nothing, OpenSSL's
part included, until a full collection. CPython starts one only after about a million allocations at the
lab's young threshold (simulator.runtime.gctune): 10,000 connections closed at once stayed in memory for
the next round of connections to grow past. One full collection per as many closes as there are open
connections keeps the garbage below the held set, at a cost per connection that does not grow with it.

What a collection frees, glibc's malloc keeps: OpenSSL's buffers freed in the middle of the heap stay
resident, and each round of open-all / close-all ended a few MiB higher (+2 KiB per connection at 10,000
held). So each sweep also calls `malloc_trim(0)`, which returns the free pages to the system (about 1 ms
after 5,000 closes; docs/performance.md, "Round five"). Without glibc there is nothing to trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

MIN_CLOSED = 1_000  # closes between full collections when few connections are open


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): no malloc_trim
        return None


malloc_trim = _malloc_trim()


class ClosedSweeper:
    def __init__(self) -> None:
        self.closed = 0
        self.collections = 0

    def closed_one(self, open_now: int) -> None:
        """One connection closed; `open_now` are still open."""
        self.closed += 1
        if self.closed >= max(MIN_CLOSED, open_now):
            self.closed = 0
            self.collections += 1
            gc.collect()
            if malloc_trim is not None:
                malloc_trim(0)
