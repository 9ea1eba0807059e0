"""MockBackend: a fast asyncio HTTP/1.1 server that echoes what it received, for load-balancer tests.

One `asyncio.Protocol` per connection and no task per request: an ordinary request is parsed and answered
inside `data_received`, which is what makes it several times faster than any listener it sits behind.
Only requests that must wait (a delay, a fault, a streamed body) get a task, and while one runs the
connection parses nothing further, so pipelined responses stay in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import time
from collections import Counter
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from simulator.backends.http1 import MAX_HEAD, HttpError, Request, RequestParser
from simulator.backends.params import NO_PARAMS, ParamError, parse_params

log = logging.getLogger("lbsim.backends")

# Body filler for `?size=N`: byte i of every body is PATTERN[i % 64], so truncation and reordering are
# visible at a glance. The block length is a multiple of 64 so streamed chunks keep the pattern.
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
assert len(PATTERN) == 64
_BLOCK = PATTERN * 1024  # 64 KiB: bodies up to this size go out in one write, larger ones are streamed

# `fault=garbage`: looks like nothing an HTTP client can parse (a TLS record header, NULs, no status line).
GARBAGE = b"\x16\x03\x01\x00\x05\x00\xff\xfeNOT HTTP \x00\x01\x02\x03 garbage from lbsim\r\n\r\n"

_READ_LIMIT = 256 * 1024  # unparsed bytes buffered while busy before we stop reading the socket
_MAX_PATH_KEYS = 256  # distinct path prefixes counted; a fuzzer must not grow the stats without bound
_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NAME = re.compile(r"[\x21-\x7e]{1,128}")
_encode = json.JSONEncoder(separators=(",", ":")).encode


def filler(n: int) -> bytes:
    """The exact body a backend sends for `?size=n` (for clients that want to verify it)."""
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


_status_lines: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _status_lines[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


_date = [0, b""]


def _http_date() -> bytes:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]  # type: ignore[return-value]


def _prefix(path: str) -> str:
    """The first path segment: '/api/v1/x' -> '/api'; what weighted-distribution tests count by."""
    if not path.startswith("/"):
        return path
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


class BackendStats:
    """Counters of one backend; read them through `MockBackend.stats`."""

    __slots__ = (
        "requests", "health_checks", "bad_requests", "by_path", "by_status", "faults",
        "connections_total", "active_connections", "bytes_in", "bytes_out",
    )

    def __init__(self) -> None:
        self.requests = 0  # every parsed request except health checks
        self.health_checks = 0
        self.bad_requests = 0  # refused by the parser (400/414/431/501/505) or for a bad parameter
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.connections_total = 0
        self.active_connections = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def count_path(self, path: str) -> None:
        key = _prefix(path)
        if key in self.by_path or len(self.by_path) < _MAX_PATH_KEYS:
            self.by_path[key] += 1
        else:
            self.by_path["(other)"] += 1

    def reset(self) -> None:
        active = self.active_connections
        self.__init__()  # type: ignore[misc]
        self.active_connections = active  # a gauge, not a counter


class _Connection(asyncio.Protocol):
    """One client connection: parse, answer, and keep the responses in request order."""

    def __init__(self, backend: MockBackend) -> None:
        self.backend = backend
        self.parser = RequestParser(backend.max_head)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client = "?"
        self.conn_id = 0
        self.nreq = 0
        self.busy = False  # a task owns the connection (delay, fault, streamed body)
        self.hanging = False
        self.closing = False
        self.eof = False
        self.write_paused = False
        self.read_paused = False
        self.task: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        b = self.backend
        b._conns.add(self)
        st = b._stats
        st.connections_total += 1
        st.active_connections += 1
        self.conn_id = b._next_conn_id()
        peer = transport.get_extra_info("peername")
        if peer:
            host, port = peer[0], peer[1]
            self.client = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if b._down:  # accepted in the instant before the listener closed: an outage answers nothing
            self.reset()
            return
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        b = self.backend
        if self in b._conns:
            b._conns.discard(self)
            b._stats.active_connections -= 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.task is not None:
            self.task.cancel()
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self.backend._stats.bytes_in += len(data)
        if self.closing:
            return
        self.parser.feed(data)
        if self.busy or self.write_paused:
            self._update_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        self.eof = True
        if self.closing:
            return False
        if self.hanging:  # nobody is waiting for an answer that never comes
            self.close()
        elif not self.busy and not self.write_paused:
            self.close()  # anything still buffered is an incomplete request
        # else: answer what was asked (a half-closed client may still read), then close
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()
        self._update_reading()
        if not self.busy and not self.closing:
            asyncio.get_running_loop().call_soon(self._resume)

    # -- control -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close after flushing what was written (FIN)."""
        self.closing = True
        self.transport.close()

    def reset(self) -> None:
        """Abort with an RST: SO_LINGER 0 makes the kernel drop the connection instead of a FIN."""
        self.closing = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    # -- request loop ------------------------------------------------------------------------------

    def _resume(self) -> None:
        if not self.busy and not self.closing and not self.write_paused:
            self._process()

    def _process(self) -> None:
        """Answer every complete request in the buffer until one needs a task or the connection ends."""
        out: list[bytes] = []
        parser = self.parser
        try:
            while not (self.busy or self.closing):
                req = parser.next_request()
                if req is None:
                    if parser.take_continue():
                        out.append(_CONTINUE)
                    break
                self._dispatch(req, out)
                if len(out) > 64:  # a pipelining burst: let the transport apply backpressure
                    self._write(b"".join(out))
                    out.clear()
                    if self.write_paused:
                        break
        except HttpError as e:
            self.backend._stats.bad_requests += 1
            self.backend._stats.by_status[e.status] += 1
            log.info("%s %s: %s from %s", self.backend.name, e.status, e.reason, self.client)
            body = _encode({"backend": self.backend.name, "error": e.reason}).encode() + b"\n"
            out.append(self._head(None, e.status, _JSON, len(body), [], keep=False) + body)
            self.closing = True
        if out and not self.transport.is_closing():
            self._write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            if not self.transport.is_closing():
                self.transport.close()
        elif not self.busy:
            if self.eof and not self.write_paused:
                self.close()
            else:
                self._arm_idle()
        self._update_reading()

    def _dispatch(self, req: Request, out: list[bytes]) -> None:
        """Answer `req` into `out` if it can be done now, else hand it to a task."""
        b = self.backend
        st = b._stats
        self.nreq += 1
        if b._down:
            self.reset()
            return
        is_health = req.path == b.health_path
        if is_health:
            st.health_checks += 1
        else:
            st.requests += 1
            st.count_path(req.path)
        try:
            plan = parse_params(req.query) if req.query else NO_PARAMS
        except ParamError as e:
            st.bad_requests += 1
            st.by_status[400] += 1
            body = _encode({"backend": b.name, "error": str(e)}).encode() + b"\n"
            out.append(self._head(req, 400, _JSON, len(body), [], req.keep_alive) + body)
            if not req.keep_alive:
                self.closing = True
            return
        fault = plan.fault or b.fault
        delay_ms = plan.delay_ms if plan.delay_ms is not None else b.delay_ms
        keep = req.keep_alive and not plan.close
        extra: list[bytes] = []
        body: bytes | int
        ctype = _JSON
        if is_health:
            # The health answer follows `healthy` only: status/size/set_cookie are ignored here, but
            # delay and faults apply so health-check timeouts and failures can be provoked.
            if req.method in ("GET", "HEAD"):
                status = 200 if b.healthy else 503
            else:
                status = 405
                extra.append(b"Allow: GET, HEAD\r\n")
            body = _encode({"backend": b.name, "healthy": b.healthy}).encode() + b"\n"
        else:
            status = plan.status or 200
            echo = self._echo(req)
            for cookie in plan.cookies:
                extra.append(b"Set-Cookie: " + cookie.encode() + b"\r\n")
            # The echo goes into a header when the body cannot carry it (filler, HEAD, 204, 304).
            if plan.size is not None or not self._sends_body(req, status):
                extra.append(b"X-Echo: " + _encode(echo).encode() + b"\r\n")
            if plan.size is not None:
                body, ctype = plan.size, _OCTETS
            else:
                body = _encode(echo).encode() + b"\n"
        if fault is not None:
            st.faults[fault] += 1
        if fault is None and not delay_ms and (isinstance(body, bytes) or body <= len(_BLOCK)):
            if isinstance(body, int):
                body = _BLOCK[:body]
            head = self._head(req, status, ctype, len(body), extra, keep)
            out.append(head + body if self._sends_body(req, status) else head)
            st.by_status[status] += 1
            if not keep:
                self.closing = True
            return
        self.busy = True
        if fault == "hang":
            self.hanging = True
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._answer_later(req, status, ctype, body, extra, keep, fault, delay_ms))
        self.task.add_done_callback(_log_task_error)

    async def _answer_later(
        self, req: Request, status: int, ctype: bytes, body: bytes | int, extra: list[bytes],
        keep: bool, fault: str | None, delay_ms: float,
    ) -> None:
        try:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            if self.closing:
                return
            if fault == "hang":
                await asyncio.get_running_loop().create_future()  # until the client or stop() ends it
            elif fault == "reset":
                self.reset()
            elif fault == "close":
                self.close()
            elif fault == "garbage":
                self._write(GARBAGE)
                self.close()
            else:
                length = body if isinstance(body, int) else len(body)
                head = self._head(req, status, ctype, length, extra, keep)
                self.backend._stats.by_status[status] += 1
                if not self._sends_body(req, status):
                    self._write(head)
                elif fault == "truncate":  # promise `length` bytes, send half, then close
                    half = length // 2
                    part = body[:half] if isinstance(body, bytes) else _BLOCK[: min(half, len(_BLOCK))]
                    self._write(head + part)
                    self.close()
                    return
                elif isinstance(body, bytes):
                    self._write(head + body)
                else:
                    self._write(head)
                    await self._stream_filler(body)
                if not keep and not self.closing:
                    self.close()
        finally:
            self.task = None
            self.busy = self.hanging = False
            if not self.closing:
                self._process()

    async def _stream_filler(self, size: int) -> None:
        block = memoryview(_BLOCK)
        while size > 0 and not self.closing:
            n = min(size, len(block))
            self._write(block[:n])
            size -= n
            if self.write_paused:
                waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
                await waiter

    # -- helpers -----------------------------------------------------------------------------------

    def _echo(self, req: Request) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "target": req.target,
            "http_version": req.http_version,
            "headers": req.headers,
            "body_size": req.body_size,
            "body_sha256": req.body_sha256,
            "client": self.client,
            "connection_id": self.conn_id,
            "connection_request": self.nreq,
        }

    @staticmethod
    def _sends_body(req: Request, status: int) -> bool:
        return req.method != "HEAD" and status >= 200 and status not in (204, 304)

    def _head(
        self, req: Request | None, status: int, ctype: bytes, length: int, extra: list[bytes], keep: bool
    ) -> bytes:
        parts = [_status_line(status), b"Server: lbsim-backend\r\nDate: ", _http_date(), b"\r\n",
                 self.backend._x_backend]
        if status >= 200 and status not in (204, 304):  # these carry no body and no length
            parts += [b"Content-Type: ", ctype, b"\r\nContent-Length: ", str(length).encode(), b"\r\n"]
        parts += extra
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif req is not None and req.http_version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _write(self, data: bytes | memoryview) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
            self.backend._stats.bytes_out += len(data)

    def _wake_drain(self) -> None:
        w, self._drain_waiter = self._drain_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _update_reading(self) -> None:
        """Stop reading while the client does not read our answers or floods us while we are busy."""
        if self.closing:
            return
        want_pause = self.write_paused or len(self.parser.buf) > _READ_LIMIT
        if want_pause and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not want_pause and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        timeout = self.backend.keepalive_timeout
        if timeout is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        if not (self.busy or self.closing) and self.parser.idle:
            self.close()  # like nginx's keepalive_timeout: the race a load balancer must survive


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("backend task failed", exc_info=task.exception())


class MockBackend:
    """An echoing HTTP/1.1 backend on the running asyncio loop.

    Use it from the loop's thread: `healthy`, `fault`, `delay_ms` take effect for the next request;
    `down = True` stops listening (new connections are refused) and resets every open connection,
    `down = False` listens again on the same port (`await set_down(False)` waits until it does).
    """

    def __init__(
        self,
        name: str = "backend",
        host: str = "127.0.0.1",
        port: int = 0,
        health_path: str = "/health",
        *,
        healthy: bool = True,
        keepalive_timeout: float | None = None,
        max_head: int = MAX_HEAD,
    ) -> None:
        if _NAME.fullmatch(name) is None:  # it goes into a header: no spaces, no CR/LF
            raise ValueError(f"backend name must be printable ASCII without spaces, got {name!r}")
        self.name = name
        self.host = host
        self.health_path = health_path
        self.healthy = healthy
        self.fault: str | None = None  # applied to requests that do not ask for a fault themselves
        self.delay_ms: float = 0.0  # likewise, for requests without ?delay_ms
        self.keepalive_timeout = keepalive_timeout  # close idle keep-alive connections after it
        self.max_head = max_head
        self._port = port
        self._server: asyncio.Server | None = None
        self._down = False
        self._started = False
        self._relisten: asyncio.Task[None] | None = None
        self._conns: set[_Connection] = set()
        self._stats = BackendStats()
        self._conn_seq = 0
        self._x_backend = b"X-Backend: " + name.encode("latin-1") + b"\r\n"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> MockBackend:
        if self._started:
            raise RuntimeError(f"backend {self.name} already started")
        self._started = True
        if not self._down:
            await self._listen()
        return self

    async def stop(self) -> None:
        """Stop listening and abort every connection (in-flight delayed answers are cut)."""
        if not self._started:
            return
        self._started = False
        if self._relisten is not None:
            self._relisten.cancel()
            self._relisten = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = [c.task for c in self._conns if c.task is not None]
        for conn in list(self._conns):
            conn.closing = True
            conn.transport.abort()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> MockBackend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, reuse_address=True, backlog=1024
        )
        if self._down or not self._started:  # went down (or stopped) while we were binding
            server.close()
            return
        self._server = server
        self._port = server.sockets[0].getsockname()[1]

    # -- state -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self._port}" if ":" in self.host else f"{self.host}:{self._port}"

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        value = bool(value)
        if value == self._down:
            return
        self._down = value
        if value:
            if self._relisten is not None:
                self._relisten.cancel()
                self._relisten = None
            if self._server is not None:
                self._server.close()  # closes the listening socket now: connects are refused
                self._server = None
            for conn in list(self._conns):
                conn.reset()
        elif self._started:
            self._relisten = asyncio.get_running_loop().create_task(self._listen())
            self._relisten.add_done_callback(_log_task_error)

    async def set_down(self, value: bool) -> None:
        """Set `down` and, when coming back, wait until the port listens again."""
        self.down = value
        task = self._relisten
        if task is not None:
            await task
            if self._relisten is task:
                self._relisten = None

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (plain dicts, safe to keep or serialise)."""
        s = self._stats
        return {
            "name": self.name,
            "address": self.address,
            "healthy": self.healthy,
            "down": self._down,
            "requests": s.requests,
            "health_checks": s.health_checks,
            "bad_requests": s.bad_requests,
            "by_path": dict(s.by_path),
            "by_status": dict(s.by_status),
            "faults": dict(s.faults),
            "connections_total": s.connections_total,
            "active_connections": s.active_connections,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
        }

    def reset_stats(self) -> None:
        self._stats.reset()

    def _next_conn_id(self) -> int:
        self._conn_seq += 1
        return self._conn_seq

    def __repr__(self) -> str:
        state = "down" if self._down else ("healthy" if self.healthy else "unhealthy")
        return f"<MockBackend {self.name} {self.address} {state}>"
