"""Frees closed connections' memory in step with the connections a lab holds.

A connection held open for a while ends in the collector's oldest generation, and its objects are tied in
reference cycles (mitmproxy's layers and context, asyncio's tasks), so closing it frees nothing, OpenSSL's
part included, until a full collection. CPython starts one only after about a million allocations at the
lab's young threshold (simulator.runtime.gctune): 10,000 connections closed at once stayed in memory for
the next round of connections to grow past. One full collection per as many closes as there are open
connections keeps the garbage below the held set, at a cost per connection that does not grow with it.
"""

from __future__ import annotations

import gc

MIN_CLOSED = 1_000  # closes between full collections when few connections are open


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
