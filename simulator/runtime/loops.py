"""The event loop a lab process runs on (`event_loop` in the lab file): asyncio's own, or uvloop.

uvloop (libuv) is an option, not the default: measured in docs/performance.md ("uvloop"), with mitmproxy's
proxy core and every addon unchanged on top of it.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from simulator.errors import LbsimError
from simulator.model.config import DEFAULT_EVENT_LOOP, EVENT_LOOPS

__all__ = ["DEFAULT_EVENT_LOOP", "EVENT_LOOPS", "loop_factory"]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of that kind; refused, naming the field, when uvloop is not installed."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise LbsimError("InvalidConfig", "event_loop uvloop: the uvloop package is not installed",
                             field="event_loop", hint="pip install uvloop, or event_loop: asyncio") from None
        return uvloop.new_event_loop
    raise LbsimError("InvalidConfig", f"unknown event loop {name!r}; expected one of {', '.join(EVENT_LOOPS)}",
                     field="event_loop")
