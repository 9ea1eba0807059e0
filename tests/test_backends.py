"""MockBackend over real loopback sockets: echo, parameters, faults, health, outage, robustness, stats."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from simulator.backends import GARBAGE, MockBackend, filler

Headers = dict[str, list[str]]


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh loop with a hard timeout (no pytest-asyncio here)."""

    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await asyncio.wait_for(fn(*args, **kwargs), 15)
        finally:  # close every client the test left open, so nothing leaks into the next test
            while Conn.opened:
                c = Conn.opened.pop()
                c.close()
                try:
                    await c.writer.wait_closed()
                except OSError:
                    pass

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(run(*args, **kwargs))

    return wrapper


class Conn:
    """A raw keep-alive client connection that reads responses strictly by Content-Length."""

    opened: list[Conn] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Conn.opened.append(self)

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, head_only: bool = False) -> tuple[int, Headers, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: Headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.lower(), []).append(v.strip())
        length = int(headers.get("content-length", ["0"])[0])
        body = b"" if head_only or status in (204, 304) else await self.reader.readexactly(length)
        return status, headers, body

    async def get(self, target: str, extra: str = "") -> tuple[int, Headers, bytes]:
        self.send(f"GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
        return await self.response(head_only=False)

    async def read_to_eof(self, timeout: float = 5) -> bytes:
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


async def get(port: int, target: str, extra: str = "") -> tuple[int, Headers, bytes]:
    c = await Conn.open(port)
    try:
        return await c.get(target, extra)
    finally:
        c.close()


async def until(predicate: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- echo -----------------------------------------------------------------------------------------------

@async_test
async def test_echo_reports_what_was_received() -> None:
    async with MockBackend(name="b1") as b:
        assert b.port > 0 and b.address == f"127.0.0.1:{b.port}"
        c = await Conn.open(b.port)
        c.send(b"POST /api/items?x=1&y=%20 HTTP/1.1\r\nHost: test\r\nX-Dup: 1\r\nx-dup: 2\r\n"
               b"X-Forwarded-For: 10.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
        status, headers, body = await c.response()
        assert status == 200 and headers["x-backend"] == ["b1"]
        assert headers["content-type"] == ["application/json"]
        echo = json.loads(body)
        local = c.writer.get_extra_info("sockname")
        assert echo == {
            "backend": "b1", "method": "POST", "path": "/api/items", "query": "x=1&y=%20",
            "target": "/api/items?x=1&y=%20", "http_version": "HTTP/1.1",
            "headers": [["Host", "test"], ["X-Dup", "1"], ["x-dup", "2"], ["X-Forwarded-For", "10.0.0.1"],
                        ["Content-Length", "5"]],
            "body_size": 5, "body_sha256": hashlib.sha256(b"hello").hexdigest(),
            "client": f"{local[0]}:{local[1]}", "connection_id": 1, "connection_request": 1,
        }
        c.close()


@async_test
async def test_keep_alive_many_requests_on_one_connection() -> None:
    async with MockBackend(name="ka") as b:
        c = await Conn.open(b.port)
        for i in range(1, 501):
            status, _, body = await c.get(f"/n/{i}")
            echo = json.loads(body)
            assert status == 200 and echo["path"] == f"/n/{i}" and echo["connection_request"] == i
        assert b.stats["connections_total"] == 1 and b.stats["requests"] == 500
        assert b.stats["by_path"] == {"/n": 500}
        c.close()


@async_test
async def test_pipelined_requests_are_answered_in_order_even_around_a_delay() -> None:
    async with MockBackend(name="pipe") as b:
        c = await Conn.open(b.port)
        targets = [f"/p/{i}" + ("?delay_ms=50" if i == 3 else "?size=70000" if i == 6 else "") for i in range(10)]
        c.send(b"".join(f"GET {t} HTTP/1.1\r\nHost: test\r\n\r\n".encode() for t in targets))
        for i, _ in enumerate(targets):
            status, headers, body = await c.response()
            echo = json.loads(headers["x-echo"][0]) if "x-echo" in headers else json.loads(body)
            assert status == 200 and echo["path"] == f"/p/{i}"
        c.close()


@async_test
async def test_chunked_request_body_even_split_byte_by_byte() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        wire = (b"PUT /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4;name=v\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n")
        for i in range(len(wire)):
            c.send(wire[i : i + 1])
            await c.writer.drain()
        status, _, body = await c.response()
        echo = json.loads(body)
        assert status == 200 and echo["body_size"] == 23
        assert echo["body_sha256"] == hashlib.sha256(b"Wikipedia in\r\n\r\nchunks.").hexdigest()
        status, _, _ = await c.get("/after")  # the connection is still in sync
        assert status == 200
        c.close()


@async_test
async def test_expect_100_continue() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"POST /u HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"data")
        status, _, body = await c.response()
        assert status == 200 and json.loads(body)["body_size"] == 4
        c.close()


@async_test
async def test_http10_closes_unless_keep_alive() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = await c.response()
        assert status == 200 and headers["connection"] == ["close"] and json.loads(body)["http_version"] == "HTTP/1.0"
        assert await c.read_to_eof() == b""
        c = await Conn.open(b.port)
        c.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = await c.response()
        assert headers["connection"] == ["keep-alive"]
        c.send(b"GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert (await c.response())[0] == 200
        c.close()


@async_test
async def test_connection_close_and_half_closed_client_still_get_an_answer() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        status, headers, _ = await c.response()
        assert status == 200 and headers["connection"] == ["close"]
        assert await c.read_to_eof() == b""
        # a client that sends its request and shuts down its write side (like `nc -N`)
        c = await Conn.open(b.port)
        c.send(b"GET /half?delay_ms=30 HTTP/1.1\r\nHost: test\r\n\r\n")
        c.writer.write_eof()
        data = await c.read_to_eof()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b'"path":"/half"' in data


# -- query parameters -------------------------------------------------------------------------------------

@async_test
async def test_size_gives_exact_filler_and_echo_header() -> None:
    async with MockBackend(name="sz") as b:
        c = await Conn.open(b.port)
        for n in (0, 1, 63, 64, 65536, 65537, 3 * 1024 * 1024 + 7):  # small ones at once, large ones streamed
            status, headers, body = await c.get(f"/blob?size={n}")
            assert status == 200 and len(body) == n and body == filler(n)
            assert headers["content-type"] == ["application/octet-stream"]
            echo = json.loads(headers["x-echo"][0])
            assert echo["backend"] == "sz" and echo["query"] == f"size={n}"
        c.close()


@async_test
async def test_head_status_and_set_cookie() -> None:
    async with MockBackend(name="st") as b:
        c = await Conn.open(b.port)
        c.send(b"HEAD /h?size=1000 HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers, _ = await c.response(head_only=True)
        assert status == 200 and headers["content-length"] == ["1000"]
        status, headers, body = await c.get("/s?status=503")
        assert status == 503 and json.loads(body)["path"] == "/s"
        status, headers, body = await c.get("/s?status=204")
        assert status == 204 and body == b"" and "content-length" not in headers
        assert json.loads(headers["x-echo"][0])["path"] == "/s"
        status, headers, _ = await c.get("/c?set_cookie=JSESSIONID=abc&set_cookie=lang%3Den%3B%20Path%3D%2F")
        assert headers["set-cookie"] == ["JSESSIONID=abc", "lang=en; Path=/"]
        # the connection is intact after all of that (HEAD and 204 sent no body)
        assert (await c.get("/ok"))[0] == 200
        c.close()


@async_test
async def test_delay() -> None:
    async with MockBackend() as b:
        t0 = time.monotonic()
        status, _, _ = await get(b.port, "/slow?delay_ms=200")
        assert status == 200 and time.monotonic() - t0 >= 0.19
        b.delay_ms = 150  # backend-wide default, overridden per request
        t0 = time.monotonic()
        await get(b.port, "/slow")
        assert time.monotonic() - t0 >= 0.14
        t0 = time.monotonic()
        await get(b.port, "/fast?delay_ms=0")
        assert time.monotonic() - t0 < 0.14


@async_test
async def test_bad_parameter_is_400_and_the_connection_survives() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        for target in ("/x?size=abc", "/x?fault=boom", "/x?set_cookie=a=b%0d%0aX-Evil:%201"):
            status, headers, body = await c.get(target)
            assert status == 400 and "error" in json.loads(body) and "x-evil" not in headers
        assert (await c.get("/x"))[0] == 200
        assert b.stats["bad_requests"] == 3
        c.close()


@async_test
async def test_close_parameter() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        status, headers, _ = await c.get("/x?close=1")
        assert status == 200 and headers["connection"] == ["close"]
        assert await c.read_to_eof() == b""


# -- faults as a raw client sees them -----------------------------------------------------------------------

@async_test
async def test_fault_reset_sends_rst() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /x?fault=reset HTTP/1.1\r\nHost: test\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            await c.read_to_eof()
        assert b.stats["faults"] == {"reset": 1}


@async_test
async def test_fault_close_sends_nothing_then_fin() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /x?fault=close HTTP/1.1\r\nHost: test\r\n\r\n")
        assert await c.read_to_eof() == b""


@async_test
async def test_fault_garbage_sends_non_http_bytes() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /x?fault=garbage HTTP/1.1\r\nHost: test\r\n\r\n")
        data = await c.read_to_eof()
        assert data == GARBAGE and not data.startswith(b"HTTP/")


@async_test
async def test_fault_hang_never_answers_and_is_cleaned_up() -> None:
    b = MockBackend()
    await b.start()
    c = await Conn.open(b.port)
    c.send(b"GET /x?fault=hang HTTP/1.1\r\nHost: test\r\n\r\n")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(c.reader.read(1), 0.3)
    assert b.stats["active_connections"] == 1
    c.close()  # the client gives up: the hung connection goes away with it
    await until(lambda: b.stats["active_connections"] == 0)
    c2 = await Conn.open(b.port)
    c2.send(b"GET /x?fault=hang HTTP/1.1\r\nHost: test\r\n\r\n")
    await until(lambda: b.stats["faults"].get("hang") == 2)
    t0 = time.monotonic()
    await b.stop()  # stop() does not wait for a hung request
    assert time.monotonic() - t0 < 1
    try:
        assert await c2.read_to_eof() == b""  # aborted: nothing was ever answered
    except ConnectionResetError:
        pass


@async_test
async def test_fault_truncate_promises_more_than_it_sends() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /x?fault=truncate&size=1000 HTTP/1.1\r\nHost: test\r\n\r\n")
        data = await c.read_to_eof()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"Content-Length: 1000" in head and body == filler(500)


@async_test
async def test_fault_after_delay_and_backend_wide_fault() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        t0 = time.monotonic()
        c.send(b"GET /x?fault=close&delay_ms=100 HTTP/1.1\r\nHost: test\r\n\r\n")
        assert await c.read_to_eof() == b"" and time.monotonic() - t0 >= 0.09
        b.fault = "reset"  # every request, health checks included
        for target in ("/x", "/health"):
            c = await Conn.open(b.port)
            c.send(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            with pytest.raises(ConnectionResetError):
                await c.read_to_eof()
        b.fault = None
        assert (await get(b.port, "/x"))[0] == 200


# -- health and outage ---------------------------------------------------------------------------------------

@async_test
async def test_health_toggle() -> None:
    async with MockBackend(name="hb", health_path="/status") as b:
        c = await Conn.open(b.port)
        status, headers, body = await c.get("/status")
        assert status == 200 and json.loads(body) == {"backend": "hb", "healthy": True}
        b.healthy = False
        assert (await c.get("/status"))[0] == 503
        assert (await c.get("/other"))[0] == 200  # only health is affected
        c.send(b"HEAD /status HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await c.response(head_only=True))[0] == 503
        c.send(b"POST /status HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        status, headers, _ = await c.response()
        assert status == 405 and headers["allow"] == ["GET, HEAD"]
        b.healthy = True
        assert (await c.get("/status?status=500&size=9"))[0] == 200  # health ignores status/size
        assert b.stats["health_checks"] == 5 and b.stats["requests"] == 1
        c.close()


@async_test
async def test_down_refuses_connections_resets_open_ones_and_comes_back_on_the_same_port() -> None:
    async with MockBackend(name="dn") as b:
        port = b.port
        c = await Conn.open(port)
        assert (await c.get("/x"))[0] == 200
        b.down = True
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await c.get("/x")  # the open keep-alive connection was reset
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        assert b.stats["down"] is True
        await b.set_down(False)
        assert b.port == port and (await get(port, "/x"))[0] == 200


# -- robustness -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nXYZ\r\n", 400),
        (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * (65 * 1024) + b"\r\n\r\n", 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n", 400),  # a TLS ClientHello
    ],
)
@async_test
async def test_malformed_request_gets_an_error_and_close(raw: bytes, status: int) -> None:
    async with MockBackend(name="m") as b:
        c = await Conn.open(b.port)
        c.send(raw)
        data = await c.read_to_eof()  # then EOF: the connection is closed
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"Connection: close" in head
        assert json.loads(body)["backend"] == "m"
        assert b.stats["bad_requests"] == 1


@async_test
async def test_vanishing_clients_leave_no_tracebacks_tasks_or_connections(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with MockBackend() as b:
        def rst(c: Conn) -> None:
            c.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.writer.transport.abort()

        for how in ("close", "rst"):
            for partial in (
                b"GET /x HTTP/1.1\r\nHost: te",  # mid-head
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",  # mid-body
                b"GET /x?delay_ms=100 HTTP/1.1\r\nHost: t\r\n\r\n",  # while we wait
                b"GET /x?size=50000000 HTTP/1.1\r\nHost: t\r\n\r\n",  # while we stream
                b"GET /x?fault=hang HTTP/1.1\r\nHost: t\r\n\r\n",
            ):
                c = await Conn.open(b.port)
                c.send(partial)
                await c.writer.drain()
                await asyncio.sleep(0.02)
                rst(c) if how == "rst" else c.close()
        await until(lambda: b.stats["active_connections"] == 0)
        await asyncio.sleep(0.15)  # past the delay: a cancelled answer must not wake up and write
        assert (await get(b.port, "/still-fine"))[0] == 200
        await until(lambda: b.stats["active_connections"] == 0)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@async_test
async def test_client_that_never_reads_is_bounded() -> None:
    async with MockBackend() as b:
        c = await Conn.open(b.port)
        c.send(b"GET /x?size=200000000 HTTP/1.1\r\nHost: t\r\n\r\n")  # 200 MB, never read
        await asyncio.sleep(0.3)
        # backpressure: only what the socket buffers hold was produced, not 200 MB
        assert b.stats["bytes_out"] < 20_000_000
        assert (await get(b.port, "/other"))[0] == 200  # and nobody else is slowed down
        c.close()


@async_test
async def test_keepalive_timeout_closes_idle_connections() -> None:
    async with MockBackend(keepalive_timeout=0.2) as b:
        c = await Conn.open(b.port)
        assert (await c.get("/x"))[0] == 200
        t0 = time.monotonic()
        assert await c.read_to_eof() == b""
        assert 0.15 <= time.monotonic() - t0 < 2


# -- stats ------------------------------------------------------------------------------------------------------

@async_test
async def test_stats_counters() -> None:
    async with MockBackend(name="s") as b:
        conns = [await Conn.open(b.port) for _ in range(3)]
        await until(lambda: b.stats["active_connections"] == 3)
        for i in range(30):
            await conns[i % 3].get(["/api/a", "/api/b/c", "/static/x", "/"][i % 4])
        await conns[0].get("/health")
        await conns[0].get("/x?status=418")
        s = b.stats
        assert s["requests"] == 31 and s["health_checks"] == 1
        assert s["by_path"] == {"/api": 16, "/static": 7, "/": 7, "/x": 1}
        assert s["by_status"] == {200: 31, 418: 1}
        assert s["connections_total"] == 3 and s["bytes_in"] > 0 and s["bytes_out"] > 0
        for c in conns:
            c.close()
        await until(lambda: b.stats["active_connections"] == 0)
        b.reset_stats()
        assert b.stats["requests"] == 0 and b.stats["by_path"] == {}


def test_backend_name_must_be_header_safe() -> None:
    with pytest.raises(ValueError):
        MockBackend(name="evil\r\nX-Injected: 1")
