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


def free_port_on(*hosts: str, tries: int = 50) -> int:
    """A port free now on every one of `hosts` (two load balancers' addresses sharing a port)."""
    for _ in range(tries):
        port = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise OSError(f"no port free on all of {hosts} after {tries} tries")
