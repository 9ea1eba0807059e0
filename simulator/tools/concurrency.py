"""`lbsim bench --concurrency N`: how many idle keep-alive TLS connections a server holds, and at what memory.

For each server (lbsim, one process; nginx, one worker) in the same run, against the same certificate, policy
and backend: open N TLS connections (a full handshake each), send one keep-alive request on each and read its
answer, then hold them all idle. Measured:

* **memory per held connection**: the server's RSS (its process tree, `/proc/<pid>/status` VmRSS) with the N
  held, minus before, divided by N;
* **the handshake rate while they are held**: new connections (full handshake, one request, close) per
  second opened beside the N, and the same with nothing held, for comparison;
* **growth**: everything is closed, and two more rounds open and close N again; the third round's RSS with
  N held against the second's (memory a round leaves behind that the next cannot reuse). The first round
  only sets the high-water mark: closing N connections at once peaks above holding them, and memory freed
  inside the heap stays in the process's RSS, ready for the next round.

The client is a small asyncio client (a protocol object per connection, no stream buffers) in this process.
Loopback gives ~28,000 ephemeral ports per destination: beyond that the client spreads its connections over
source addresses 127.0.0.2, 127.0.0.3, ... (all of 127/8 is loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: lbsim-bench-concurrency\r\n\r\n"
PER_SOURCE = 20_000  # connections per source address (below the 28,232 ephemeral ports of Linux's default range)
IN_FLIGHT = 64  # handshakes the client keeps going at once while it opens
PROBE_CONCURRENCY = 16
SETTLE = 2.0  # seconds after the last close before RSS is read (the servers' close paths finish), at most
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux: pick the port at connect


def settle_seconds(n: int) -> float:
    """The pause before RSS is read, for `n` connections: 0.5 s, plus 0.3 ms per connection, up to SETTLE."""
    return min(SETTLE, 0.5 + n * 0.0003)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants (nginx's workers), in KiB, from /proc."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return pids


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_in_use() -> int | None:
    """Bytes this process holds from glibc's malloc (OpenSSL's allocations, Python's larger objects)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def openssl_floor_kib(cert: Path, key: Path, profile: str, policy: str, n: int = 500) -> float | None:
    """What OpenSSL alone keeps per idle server connection with the bench listener's context (its policy,
    certificate, RELEASE_BUFFERS): `n` in-memory TLS handshakes and one request each, the server ends held,
    malloc in use before and after. The part of lbsim's memory per connection no Python change can cut."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from OpenSSL import SSL

    from simulator.policies import resolve_policy
    from simulator.policies.context import build_server_context
    from simulator.policies.testing import handshake_in_memory

    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    server = build_server_context(resolve_policy(profile, policy), chain, load_pem_private_key(key.read_bytes(), None))
    client = SSL.Context(SSL.TLS_METHOD)

    def pump(a: SSL.Connection, b: SSL.Connection) -> None:
        with contextlib.suppress(SSL.WantReadError):
            b.bio_write(a.bio_read(65536))

    def one() -> SSL.Connection:
        s, c = SSL.Connection(server), SSL.Connection(client)
        s.set_accept_state()
        c.set_connect_state()
        handshake_in_memory(c, s)
        c.send(REQUEST)
        pump(c, s)
        s.recv(65536)
        s.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        pump(s, c)
        c.recv(65536)
        return s

    one()
    gc.collect()
    before = malloc_in_use()
    if before is None:
        return None
    held = [one() for _ in range(n)]
    gc.collect()
    floor = (malloc_in_use() - before) / n / 1024  # type: ignore[operator]
    del held
    return floor


class _OneRequest(asyncio.Protocol):
    """One connection: sends the request once connected, notes when the whole answer arrived, then idles."""

    __slots__ = ("answered", "transport", "_seen", "_need")

    def __init__(self, answered: asyncio.Future[None]):
        self.answered, self.transport, self._seen, self._need = answered, None, b"", -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(REQUEST)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self._seen += data
        if self._need < 0 and b"\r\n\r\n" in self._seen:
            head, _, _ = self._seen.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not head.startswith(b"HTTP/1.1 200"):
                self.answered.set_exception(RuntimeError(head.split(b"\r\n")[0].decode(errors="replace")))
                return
            self._need = len(head) + 4 + length
        if 0 <= self._need <= len(self._seen):
            self._seen = b""
            self.answered.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc or ConnectionError("closed before the answer"))


class Client:
    """Opens TLS connections to one port, one keep-alive request each; holds or closes them."""

    def __init__(self, port: int, ca_file: str, host: str = "127.0.0.1"):
        self.port, self.host = port, host
        self.context = ssl.create_default_context(cafile=ca_file)  # no session reuse: a full handshake each
        self.held: list[asyncio.BaseTransport] = []
        self.errors = 0
        self._opened = 0
        self.settle = SETTLE

    def _source(self) -> str:
        base = self._opened // PER_SOURCE
        self._opened += 1
        return f"127.0.0.{1 + base}"

    async def one(self) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self._source(), 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        answered: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: _OneRequest(answered), sock=sock, ssl=self.context,
                                                    server_hostname="localhost")
        try:
            await asyncio.wait_for(answered, 60)
        except BaseException:
            transport.abort()
            raise
        return transport

    async def open(self, n: int, in_flight: int = IN_FLIGHT) -> float:
        """Open and hold `n` more connections; returns the seconds it took."""
        gate = asyncio.Semaphore(in_flight)

        async def opened() -> None:
            async with gate:
                try:
                    self.held.append(await self.one())
                except (OSError, ssl.SSLError, RuntimeError, TimeoutError, ConnectionError):
                    self.errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(opened() for _ in range(n)))
        return time.monotonic() - t0

    async def churn(self, n: int) -> float:
        """Open `n` connections `PROBE_CONCURRENCY` at a time, each closed after its answer: connections/s."""
        gate = asyncio.Semaphore(PROBE_CONCURRENCY)

        async def once() -> None:
            async with gate:
                try:
                    transport = await self.one()
                    transport.close()
                except (OSError, ssl.SSLError, RuntimeError, TimeoutError, ConnectionError):
                    self.errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(once() for _ in range(n)))
        return n / (time.monotonic() - t0)

    async def close_all(self) -> None:
        for transport in self.held:
            transport.close()
        self.held.clear()
        await asyncio.sleep(self.settle)


@dataclass
class ConcurrencyResult:
    target: str
    connections: int
    rss_start_kib: int  # after a warm-up of `probe` connections opened and closed
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per round: rss held, rss after close, open time
    rate_idle: float = 0.0  # new connections/s with nothing held
    rate_held: float = 0.0  # ... with `connections` held
    errors: int = 0

    @property
    def per_connection_kib(self) -> float:
        first = self.rounds[0]
        return (first["rss_held_kib"] - self.rss_start_kib) / max(1, first["held"])

    @property
    def growth_kib(self) -> int:
        """Last round's RSS with N held minus the one before's: what a round leaves that the next cannot reuse
        (from the second round on: the first sets the high-water mark)."""
        return self.rounds[-1]["rss_held_kib"] - self.rounds[-2]["rss_held_kib"] if len(self.rounds) > 1 else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_connection_kib": round(self.per_connection_kib, 2), "growth_kib": self.growth_kib}


async def measure_server(label: str, pid: int, port: int, ca_file: str, n: int, probe: int, rounds: int = 3,
                         say: Callable[[str], None] = print) -> ConcurrencyResult:
    client = Client(port, ca_file)
    client.settle = settle_seconds(n)
    await client.churn(probe)  # warm-up: imports, caches, first allocations
    await asyncio.sleep(client.settle)
    result = ConcurrencyResult(label, n, rss_kib(pid))
    result.rate_idle = await client.churn(probe)
    for rnd in range(1, rounds + 1):
        seconds = await client.open(n)
        held = len(client.held)
        await asyncio.sleep(client.settle)
        row = {"round": rnd, "held": held, "open_s": round(seconds, 2), "rss_held_kib": rss_kib(pid)}
        if rnd == 1:
            result.rate_held = await client.churn(probe)
        await client.close_all()
        row["rss_closed_kib"] = rss_kib(pid)
        result.rounds.append(row)
        say(f"concurrency {label:6} round {rnd}: {held:,} held in {seconds:.1f} s ({held / seconds:,.0f}/s), "
            f"RSS {row['rss_held_kib'] / 1024:,.1f} MiB held ({(row['rss_held_kib'] - result.rss_start_kib) / max(1, held):.1f}"
            f" KiB each), {row['rss_closed_kib'] / 1024:,.1f} MiB after close")
    result.errors = client.errors
    return result


def format_results(results: list[ConcurrencyResult], command: str, notes: list[str]) -> str:
    lines = [f"`{command}`", "",
             "| server | connections held | RSS before | RSS held | per connection | new connections/s, none held"
             " | ... N held | RSS held, every round (last growth) | RSS after close, every round | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        first, last = r.rounds[0], r.rounds[-1]
        closed = ", ".join(f"{row['rss_closed_kib'] / 1024:,.1f}" for row in r.rounds)
        held = ", ".join(f"{row['rss_held_kib'] / 1024:,.1f}" for row in r.rounds)
        lines.append(
            f"| {r.target} | {first['held']:,} of {r.connections:,} | {r.rss_start_kib / 1024:,.1f} MiB"
            f" | {first['rss_held_kib'] / 1024:,.1f} MiB | **{r.per_connection_kib:.1f} KiB** | {r.rate_idle:,.0f}"
            f" | {r.rate_held:,.0f} | {held} MiB ({r.growth_kib / 1024:+,.1f} MiB, {r.growth_kib / max(1, last['held']):+.1f} KiB"
            " per connection)"
            f" | {closed} MiB | {r.errors} |")
    if len(results) > 1 and results[-1].per_connection_kib > 0:
        lines += ["", f"{results[0].target} / {results[-1].target}, memory per connection = "
                      f"{results[0].per_connection_kib / results[-1].per_connection_kib:.2f}x"]
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"
