"""Python's garbage collector, tuned for a process that holds many connections.

Each connection is a few hundred objects tied in reference cycles (mitmproxy's layers and context, asyncio's
tasks and transports). At CPython's default first-generation threshold (700 allocations) a connection's
objects are collected young several times during its handshake and promoted to the oldest generation,
whose full collections visit every object of every held connection: with 10,000 held, 18 % of the lab's CPU
while it opened new ones went to the collector, 7 % at this threshold (docs/performance.md, "The
collector"). A short-lived connection's cycles now die young; the oldest generation fills, and is swept,
far less (simulator.dataplane.sweep frees closed held connections in step).

A process that only serves a lab (`lbsim up`, a worker) also freezes what it built to start (modules,
mitmproxy, the lab itself: about 90,000 objects) once it serves, so that no full collection visits them again:
those took about 20 ms each (docs/performance.md, "Round three").
"""

from __future__ import annotations

import gc

THRESHOLD0 = 10_000  # allocations between young collections (CPython's default: 700)


def tune_gc() -> tuple[int, int, int]:
    """Raise the young-generation threshold to THRESHOLD0 (never lower it); returns the thresholds now."""
    first, second, third = gc.get_threshold()
    if first and first < THRESHOLD0:  # 0: the collector is off, leave it so
        gc.set_threshold(THRESHOLD0, second, third)
    return gc.get_threshold()


def freeze_startup() -> int:
    """Collect, then move every object alive now out of the collector's reach (`gc.freeze`); how many.

    Only for a process the lab owns: objects made later are collected as usual, but cyclic garbage of what
    was frozen would stay for good, so a test or notebook process that starts labs does not call this.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
