"""Small socket helpers shared by the lab, the load runner and the benchmarks (no mitmproxy import here)."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel says is free now. Another process can take it before the caller binds it: callers
    that bind later retry on a fresh port (Locust's master) or fail with a clear error (a listener)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
