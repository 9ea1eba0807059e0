"""Mock backends: fast asyncio HTTP/1.1 servers that answer with what they received.

`MockBackend` runs in the caller's event loop (the lab runs it next to mitmproxy); `BackendProcess`
runs several in a child process for benchmarks. See docs/backends.md.
"""

from simulator.backends.http1 import HttpError, Request, RequestParser
from simulator.backends.params import FAULTS, ParamError, Plan, parse_params
from simulator.backends.process import BackendProcess
from simulator.backends.server import GARBAGE, PATTERN, BackendStats, MockBackend, filler

__all__ = [
    "FAULTS", "GARBAGE", "PATTERN", "BackendProcess", "BackendStats", "HttpError", "MockBackend",
    "ParamError", "Plan", "Request", "RequestParser", "filler", "parse_params",
]
