"""Plain HTTP/1.1 from the listener to its backends, with keep-alive pools.

The vendors forward decrypted traffic to backends over plain HTTP (seed). We make that request ourselves
inside mitmproxy's `request` hook instead of letting mitmproxy connect upstream, so that the balancer owns
what a load balancer owns: which backend, 502 when it cannot be reached, 504 when it is too slow.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
NO_BODY_STATUSES = {204, 304}
SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS"}


class UpstreamError(Exception):
    """The backend could not be reached or answered something that is not HTTP (-> 502)."""


@dataclass
class UpstreamResponse:
    """A backend's answer as the client gets it: the body whole, framed by its Content-Length when it has one."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    http_version: bytes = b"HTTP/1.1"


class _Answer:
    """The parse of one answer as its bytes come in: the head once, then the body by its framing."""

    __slots__ = ("status", "reason", "version", "headers", "close", "framing", "length", "at", "parts")

    def __init__(self) -> None:
        self.status = -1  # no head yet
        self.parts: list[bytes] = []

    def head(self, buf: bytearray, method: bytes) -> bool:
        """Parse the head if all of it is in `buf`; raises UpstreamError for what is not HTTP/1."""
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end + 4 > MAX_HEADER_BYTES:
            if len(buf) > MAX_HEADER_BYTES:
                raise UpstreamError("backend response headers too large")
            return False
        lines = bytes(buf[:end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise UpstreamError(f"backend sent an invalid status line: {lines[0][:80]!r}")
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise UpstreamError(f"backend sent an invalid header line: {line[:80]!r}")
            name, value = name.strip(), value.strip()
            lname = name.lower()
            if lname == b"content-length":
                if not value.isdigit():
                    raise UpstreamError("backend sent an invalid Content-Length")
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
                continue  # we re-frame the body for the client
            elif lname == b"connection":
                close = b"close" in value.lower()
            headers.append((name, value))
        self.status, self.version, self.reason = status, parts[0], parts[2] if len(parts) > 2 else b""
        self.close = close or parts[0] == b"HTTP/1.0"
        self.at = end + 4
        if method == b"HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            self.framing, self.length = "none", 0  # a HEAD answer keeps the backend's Content-Length
        elif chunked or length is None:
            # Chunked, or delimited by the backend's close: the client gets the body with its length.
            self.framing = "chunked" if chunked else "close"
            self.close = self.close or not chunked
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        else:
            self.framing, self.length = "length", length
        self.headers = headers
        return True

    def body(self, buf: bytearray, eof: bool) -> tuple[bytes, int] | None:
        """The whole body and the bytes the answer took from `buf`, or None while more is to come."""
        if self.framing == "length":
            end = self.at + self.length
            return (bytes(buf[self.at:end]), end) if len(buf) >= end else None
        if self.framing == "none":
            return b"", self.at
        if self.framing == "close":
            return (bytes(buf[self.at:]), len(buf)) if eof else None
        while True:  # chunked: `at` moves past each whole chunk, so a body in many reads is walked once
            line_end = buf.find(b"\r\n", self.at)
            if line_end < 0:
                return None
            try:
                size = int(bytes(buf[self.at:line_end]).split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise UpstreamError("backend sent an invalid chunk size") from e
            if size == 0:
                end = line_end + 2
                while True:  # trailers, dropped
                    next_end = buf.find(b"\r\n", end)
                    if next_end < 0:
                        return None
                    if next_end == end:
                        return b"".join(self.parts), end + 2
                    end = next_end + 2
            if len(buf) < line_end + 2 + size + 2:
                return None
            self.parts.append(bytes(buf[line_end + 2:line_end + 2 + size]))
            self.at = line_end + 2 + size + 2

    def response(self, body: bytes) -> UpstreamResponse:
        headers = self.headers
        if self.framing in ("chunked", "close"):
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        return UpstreamResponse(self.status, self.reason, headers, body, self.version)


def _expire(waiter: asyncio.Future[tuple[UpstreamResponse, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Conn(asyncio.Protocol):
    """One connection to a backend: gathers an answer's bytes and wakes the request once it is whole.

    A protocol instead of asyncio's streams: one future per exchange, woken once, instead of a
    coroutine and a future per `drain`, `readuntil` and `readexactly`.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the backend ended the connection (EOF, reset) or we closed it
        self.waiter: asyncio.Future[tuple[UpstreamResponse, bool]] | None = None
        self.answer = _Answer()
        self.method = b"GET"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None:
            self._advance()
        elif self.transport is not None:
            self.close()  # bytes on an idle connection answer nothing: it cannot carry another request

    def eof_received(self) -> bool:
        self.closed = True
        self._advance()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._advance()

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, method: bytes, raw: bytes, deadline: float) -> tuple[UpstreamResponse, bool]:
        """Send one request; the answer and whether the connection can take another. TimeoutError if the
        answer is not whole by `deadline` (the loop's clock)."""
        assert self.transport is not None
        self.method, self.answer = method, _Answer()
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        # A timer on the one future the exchange waits for: what asyncio.timeout() would do, without its
        # context object and task cancellation (0.6 % of a keep-alive request's instructions).
        timer = loop.call_at(deadline, _expire, waiter)
        self.transport.write(raw)
        self._advance()  # the backend may have closed already
        try:
            return await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _advance(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        answer = self.answer
        try:
            done = (answer.status >= 0 or answer.head(self.buffer, self.method)) and answer.body(self.buffer, self.closed)
        except UpstreamError as e:
            waiter.set_exception(e)
            return
        if done:
            body, used = done
            del self.buffer[:used]
            waiter.set_result((answer.response(body), not answer.close and not self.closed))
        elif self.closed:
            waiter.set_exception(ConnectionResetError("the backend closed the connection before its answer was whole"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections to one backend address."""

    def __init__(self, host: str, port: int, max_idle: int = 32):
        self.host, self.port, self.max_idle = host, port, max_idle
        self._idle: list[_Conn] = []

    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> UpstreamResponse:
        """Send one request; raises UpstreamError (-> 502) or TimeoutError (-> 504)."""
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        if body or method in (b"POST", b"PUT", b"PATCH"):
            head.append(b"content-length: %d\r\n" % len(body))
        head += [b"\r\n", body]
        raw = b"".join(head)
        deadline = asyncio.get_running_loop().time() + timeout  # one for the whole request, retry included
        # A pooled connection may have been closed by the backend since: retry once on a fresh one,
        # for methods that are safe to send twice (RFC 9110 §9.2.1) only.
        retries = 2 if method in SAFE_METHODS else 1
        for attempt in range(retries):
            conn, reused = await self._acquire(deadline)
            try:
                response, keep = await conn.exchange(method, raw, deadline)
            except (ConnectionError, UpstreamError) as e:
                conn.close()
                if reused and attempt + 1 < retries and not isinstance(e, UpstreamError):
                    continue
                raise e if isinstance(e, UpstreamError) else UpstreamError(str(e) or type(e).__name__) from e
            except BaseException:
                conn.close()  # timeout or cancellation mid-exchange: the connection is in an unknown state
                raise
            if keep and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    async def _acquire(self, deadline: float) -> tuple[_Conn, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable() and not conn.buffer:  # bytes on an idle connection: not an answer to anything
                return conn, True
            conn.close()
        async with asyncio.timeout_at(deadline):  # outside the except: its TimeoutError is an OSError too
            try:
                _, conn = await asyncio.get_running_loop().create_connection(_Conn, self.host, self.port)
            except OSError as e:
                raise UpstreamError(f"connect to {self.host}:{self.port} failed: {e.strerror or e}") from e
        return conn, False

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
