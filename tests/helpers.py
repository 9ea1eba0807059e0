"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def handlers_of(lab, client_port: int) -> list:
    """The lab's mitmproxy connection handlers of the client connection from `client_port` (open ones only)."""
    return [h for h in lab.lab.master.addons.get("proxyserver").connections.values()
            if h.client.peername and h.client.peername[1] == client_port]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """`n` bytes from `sock` (a TLS socket too), or fewer if the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def read_response(s: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length body."""
    data = b""
    def more() -> bytes:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} bytes of the response")
        return chunk

    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


BASELINE_MARK = "the baseline checkout"


@contextlib.contextmanager
def baseline_copy(name: str = "before") -> Iterator[Path]:
    """A checkout folder `name` holding a copy of this `simulator` package that prints BASELINE_MARK when imported:
    a tool given it as a baseline must run its code, not ours. Outside pytest's temporary folders (it is source,
    not output, and test_reliability_keys scans those for keys); removed afterwards."""
    import simulator

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / name
        shutil.copytree(Path(simulator.__file__).parent, copy / "simulator", ignore=shutil.ignore_patterns("__pycache__"))
        with (copy / "simulator" / "__init__.py").open("a") as init:
            init.write(f"\nprint({BASELINE_MARK!r}, flush=True)\n")
        yield copy
