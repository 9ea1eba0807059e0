"""The listener's HTTP/1.1 client to its backends (simulator.dataplane.upstream), against scripted raw backends.

Each backend connection answers with the bytes a test gives it, cut where the test cuts them, so framing
(Content-Length, chunked, close-delimited, no body), pooling, retries and the 502/504 errors are checked
on real loopback sockets, byte by byte.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest

from simulator.dataplane.upstream import MAX_HEADER_BYTES, UpstreamError, UpstreamPool
from simulator.net import LOOPBACK

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # (request, writer) -> keep the connection open


class ScriptedBackend:
    """A loopback server: each request read (head and Content-Length body) gets `reply`; counts connections."""

    def __init__(self, reply: Reply):
        self.reply, self.connections, self.requests = reply, 0, []

    async def __aenter__(self) -> ScriptedBackend:
        self.server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.reply(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 20))
    return run


def answer(raw: bytes, keep: bool = True, pieces: int = 1) -> Reply:
    """Send `raw` for every request, in `pieces` writes a loop turn apart (a response cut across reads)."""
    async def reply(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        step = max(1, -(-len(raw) // pieces))
        for i in range(0, len(raw), step):
            writer.write(raw[i:i + step])
            await writer.drain()
            await asyncio.sleep(0.001)
        return keep
    return reply


async def get(pool: UpstreamPool, method: bytes = b"GET", body: bytes = b"", timeout: float = 5.0):
    return await pool.request(method, b"/path?q=1", [(b"Host", b"app"), (b"X-A", b"1")], body, timeout)


@pytest.mark.parametrize("pieces", [1, 7])
@async_test
async def test_a_content_length_body_is_read_whole_and_the_connection_is_reused(pieces: int) -> None:
    raw = b"HTTP/1.1 201 Made It\r\nContent-Length: 5\r\nX-B: two words \r\n\r\nhello"
    async with ScriptedBackend(answer(raw, pieces=pieces)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        for _ in range(3):
            r = await get(pool)
            assert (r.status, r.reason, r.body, r.http_version) == (201, b"Made It", b"hello", b"HTTP/1.1")
            assert r.headers == [(b"Content-Length", b"5"), (b"X-B", b"two words")]
        assert b.connections == 1
        assert b.requests[0] == b"GET /path?q=1 HTTP/1.1\r\nHost: app\r\nX-A: 1\r\n\r\n"
        pool.close()


@pytest.mark.parametrize("pieces", [1, 9])
@async_test
async def test_a_chunked_body_is_joined_with_its_length_and_trailers_are_dropped(pieces: int) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    async with ScriptedBackend(answer(raw, pieces=pieces)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        for _ in range(2):
            r = await get(pool)
            assert r.body == b"hello world"
            assert r.headers == [(b"content-length", b"11")]
        assert b.connections == 1  # the chunked framing leaves the connection reusable
        pool.close()


@async_test
async def test_a_body_delimited_by_the_close_is_read_to_the_end_and_the_connection_not_kept() -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end"
    async with ScriptedBackend(answer(raw, keep=False, pieces=3)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        for _ in range(2):
            r = await get(pool)
            assert r.body == b"until the end" and r.headers == [(b"X-A", b"1"), (b"content-length", b"13")]
        assert b.connections == 2
        pool.close()


async def twice(raw: bytes, method: bytes = b"GET"):
    """Two requests through one pool to a backend that answers `raw`: the answers, and the connections used."""
    async with ScriptedBackend(answer(raw)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        try:
            return [await get(pool, method), await get(pool, method)], b.connections
        finally:
            pool.close()


@async_test
async def test_http_1_0_and_connection_close_answers_are_not_pooled() -> None:
    for raw in (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"):
        answers, connections = await twice(raw)
        assert [r.body for r in answers] == [b"ok", b"ok"] and connections == 2


@async_test
async def test_head_204_and_304_answers_have_no_body_whatever_their_length_says() -> None:
    answers, connections = await twice(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"HEAD")
    assert answers[0].body == b"" and answers[0].headers == [(b"Content-Length", b"10")]  # HEAD keeps it
    assert connections == 1  # and the connection stays usable: no body was expected
    for status in (204, 304):
        answers, connections = await twice(b"HTTP/1.1 %d X\r\n\r\n" % status)
        assert [(r.status, r.body) for r in answers] == [(status, b"")] * 2 and connections == 1


@async_test
async def test_a_post_body_is_sent_with_its_length() -> None:
    async with ScriptedBackend(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        await get(pool, b"POST", b"x" * 100_000)
        await get(pool, b"POST")
        assert b.requests[0].endswith(b"content-length: 100000\r\n\r\n" + b"x" * 100_000)
        assert b.requests[1].endswith(b"content-length: 0\r\n\r\n")
        pool.close()


@pytest.mark.parametrize("raw, says", [
    (b"SPDY/3 200 OK\r\n\r\n", "invalid status line"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "invalid status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "invalid header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", "headers too large"),
])
@async_test
async def test_what_is_not_http_is_an_upstream_error_naming_it(raw: bytes, says: str) -> None:
    async with ScriptedBackend(answer(raw, keep=False)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        with pytest.raises(UpstreamError, match=says):
            await get(pool)
        assert b.connections == 1  # not retried: the backend answered, badly
        pool.close()


@async_test
async def test_a_pooled_connection_the_backend_closed_is_retried_once_for_a_safe_method_only() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with ScriptedBackend(answer(ok, keep=False)) as b:  # closes after each answer, without saying so
        pool = UpstreamPool(LOOPBACK, b.port)
        assert (await get(pool)).body == b"ok"
        await asyncio.sleep(0.05)  # the close reached us: the pool drops the connection before using it
        assert (await get(pool)).body == b"ok"
        assert b.connections == 2
    cut: list[int] = []

    async def closes_on_the_second(request: bytes, writer: asyncio.StreamWriter) -> bool:
        cut.append(1)
        if len(cut) % 2 == 0:
            return False  # reads the request, answers nothing, closes
        writer.write(ok)
        return True

    for method, retried in ((b"GET", True), (b"POST", False)):
        cut.clear()
        async with ScriptedBackend(closes_on_the_second) as b:
            pool = UpstreamPool(LOOPBACK, b.port)
            await get(pool, method)
            if retried:
                assert (await get(pool, method)).body == b"ok" and b.connections == 2
            else:
                with pytest.raises(UpstreamError):
                    await get(pool, method)
                assert b.connections == 1
            pool.close()


@async_test
async def test_a_backend_that_closes_mid_answer_or_refuses_is_an_upstream_error() -> None:
    async with ScriptedBackend(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", keep=False)) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        with pytest.raises(UpstreamError):
            await get(pool)
    with pytest.raises(UpstreamError, match=f"connect to {LOOPBACK}:{b.port} failed"):
        await get(UpstreamPool(LOOPBACK, b.port))  # the server is gone: nothing listens there


async def slow_when_asked(request: bytes, writer: asyncio.StreamWriter) -> bool:
    """A backend's reply: `ok`, half a second late to a request with "slow" in it."""
    if b"slow" in request:
        await asyncio.sleep(0.5)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


@async_test
async def test_a_slow_backend_times_out_and_its_connection_is_not_reused() -> None:
    async with ScriptedBackend(slow_when_asked) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        with pytest.raises(TimeoutError):
            await pool.request(b"GET", b"/", [(b"X", b"slow")], b"", 0.1)
        assert (await get(pool)).body == b"ok"  # not the slow one's late answer
        assert b.connections == 2
        pool.close()


@async_test
async def test_a_slow_answer_on_a_pooled_connection_times_out_and_that_connection_is_closed() -> None:
    async with ScriptedBackend(slow_when_asked) as b:
        pool = UpstreamPool(LOOPBACK, b.port)
        assert (await get(pool)).body == b"ok"
        assert len(pool._idle) == 1  # the next request reuses it
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request(b"GET", b"/", [(b"X", b"slow")], b"", 0.15)
        assert 0.14 <= loop.time() - started < 1.0  # not before its deadline (the raise: before the late answer)
        assert pool._idle == []  # closed, not pooled again
        assert (await get(pool)).body == b"ok"  # a fresh connection, not the slow one's late answer
        assert b.connections == 2
        pool.close()


@async_test
async def test_a_connect_that_hangs_times_out_as_a_timeout_not_as_an_unreachable_backend() -> None:
    import socket

    # A listener with a full accept queue that never accepts: the kernel drops further SYNs, so a connect hangs.
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((LOOPBACK, port))
            fillers.append(s)
        await asyncio.sleep(0.05)
        pool = UpstreamPool(LOOPBACK, port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError) as caught:
            await pool.request(b"GET", b"/", [], b"", 0.2)
        assert not isinstance(caught.value, UpstreamError) and caught.value.errno is None  # asyncio's, not the kernel's
        assert 0.19 <= loop.time() - started < 1.0
    finally:
        for s in fillers:
            s.close()
        server.close()
