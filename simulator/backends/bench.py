"""Keep-alive request rate of a mock backend, measured with a small asyncio client.

    python -m simulator.backends.bench [--connections 20] [--duration 5] [--target /] [--address HOST:PORT]

Without `--address` it starts one backend in a child process (`BackendProcess`), so server and client
each get a core. The client is itself Python, so on a small machine the figure is a floor: `wrk` (see
docs/backends.md) measures the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import json
import time
from dataclasses import asdict, dataclass

from simulator.backends.process import BackendProcess


@dataclass
class BenchResult:
    requests: int
    errors: int
    seconds: float
    connections: int
    target: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class _Client(asyncio.Protocol):
    """Sends one request, reads its response (by Content-Length), sends the next, until told to stop."""

    def __init__(self, request: bytes, stop: asyncio.Event, done: asyncio.Future[None]) -> None:
        self.request, self.stop, self.done = request, stop, done
        self.buf = bytearray()
        self.count = 0
        self.errors = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            i = self.buf.find(b"Content-Length: ", 0, end)
            length = int(self.buf[i + 16 : self.buf.find(b"\r\n", i)]) if i >= 0 else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            if not self.buf.startswith(b"HTTP/1.1 200 "):
                self.errors += 1
            del self.buf[:total]
            self.count += 1
            if self.stop.is_set():
                assert self.transport is not None
                self.transport.close()
                return
            assert self.transport is not None
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def measure(host: str, port: int, connections: int = 20, duration: float = 5.0, target: str = "/",
                  warmup: float = 0.5, ssl_context: ssl.SSLContext | None = None) -> BenchResult:
    """Run `connections` keep-alive clients against host:port for `duration` seconds (over TLS with `ssl_context`)."""
    loop = asyncio.get_running_loop()
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: lbsim-bench\r\n\r\n".encode()
    stop = asyncio.Event()
    clients: list[_Client] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        tls = {"ssl": ssl_context, "server_hostname": "localhost"} if ssl_context else {}
        _, proto = await loop.create_connection(lambda d=done: _Client(request, stop, d), host, port, **tls)
        clients.append(proto)
    await asyncio.sleep(warmup)
    start_count, t0 = sum(c.count for c in clients), time.perf_counter()
    await asyncio.sleep(duration)
    count, t1 = sum(c.count for c in clients), time.perf_counter()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), 10)
    return BenchResult(count - start_count, sum(c.errors for c in clients), t1 - t0, connections, target)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.backends.bench", description=__doc__.splitlines()[0])
    p.add_argument("--connections", "-c", type=int, default=20)
    p.add_argument("--duration", "-d", type=float, default=5.0)
    p.add_argument("--target", default="/")
    p.add_argument("--address", help="HOST:PORT of a running backend (default: start one)")
    args = p.parse_args(argv)
    if args.address:
        host, _, port = args.address.rpartition(":")
        result = asyncio.run(measure(host, int(port), args.connections, args.duration, args.target))
    else:
        with BackendProcess(["bench"]) as bp:
            result = asyncio.run(measure("127.0.0.1", bp.ports["bench"], args.connections, args.duration, args.target))
    print(json.dumps({**asdict(result), "rate": round(result.rate)}))
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
