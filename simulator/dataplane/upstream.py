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


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


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
        """Send one request; raises UpstreamError (-> 502) or asyncio.TimeoutError (-> 504)."""
        async with asyncio.timeout(timeout):
            # A pooled connection may have been closed by the backend since: retry once on a fresh one,
            # for methods that are safe to send twice (RFC 9110 §9.2.1) only.
            retries = 2 if method in SAFE_METHODS else 1
            for attempt in range(retries):
                conn, reused = await self._acquire()
                try:
                    response, keep = await self._exchange(conn, method, target, headers, body)
                except (ConnectionError, asyncio.IncompleteReadError, UpstreamError) as e:
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

    async def _acquire(self) -> tuple[_Conn, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
        except OSError as e:
            raise UpstreamError(f"connect to {self.host}:{self.port} failed: {e.strerror or e}") from e
        return _Conn(reader, writer), False

    async def _exchange(
        self, conn: _Conn, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[UpstreamResponse, bool]:
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        if body or method in (b"POST", b"PUT", b"PATCH"):
            head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        conn.writer.write(b"".join(head) + body)
        await conn.writer.drain()

        try:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:
            raise UpstreamError("backend response headers too large") from e
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise UpstreamError(f"backend sent an invalid status line: {lines[0][:80]!r}")
        status = int(parts[1])
        resp_headers: list[tuple[bytes, bytes]] = []
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
            resp_headers.append((name, value))
        if parts[0] == b"HTTP/1.0":
            close = True

        if method == b"HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            body_out = b""  # a HEAD answer keeps the backend's Content-Length
        elif chunked or length is None:
            # Chunked, or delimited by the backend's close: the client gets the body with its length.
            body_out = await (_read_chunked(conn.reader) if chunked else conn.reader.read())
            close = close or not chunked
            resp_headers = [(n, v) for n, v in resp_headers if n.lower() != b"content-length"]
            resp_headers.append((b"content-length", b"%d" % len(body_out)))
        else:
            body_out = await conn.reader.readexactly(length)
        reason = parts[2] if len(parts) > 2 else b""
        return UpstreamResponse(status, reason, resp_headers, body_out, parts[0]), not close

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as e:
            raise UpstreamError("backend sent an invalid chunk size") from e
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)
