"""The mock backends' HTTP/1.1 request parser and query parameters, without sockets."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.backends.http1 import HttpError, Request, RequestParser
from simulator.backends.params import FAULTS, ParamError, parse_params


def parse_all(data: bytes, pieces: list[int] | None = None) -> list[Request]:
    """Feed `data` (split at the offsets in `pieces`) and collect every complete request."""
    p = RequestParser()
    out: list[Request] = []
    cuts = sorted(set(pieces or [])) + [len(data)]
    start = 0
    for cut in cuts:
        p.feed(data[start:cut])
        start = cut
        while (req := p.next_request()) is not None:
            out.append(req)
    return out


def error_of(data: bytes) -> int:
    with pytest.raises(HttpError) as ei:
        parse_all(data)
    return ei.value.status


def test_simple_get() -> None:
    [r] = parse_all(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
    assert (r.method, r.path, r.query, r.target, r.http_version) == ("GET", "/a/b", "x=1&y=2", "/a/b?x=1&y=2", "HTTP/1.1")
    assert r.headers == [("Host", "h"), ("X-A", "1"), ("x-a", "2")]  # order, case and duplicates kept
    assert r.keep_alive and r.body_size == 0
    assert r.body_sha256 == hashlib.sha256(b"").hexdigest()


def test_content_length_body_and_pipelining() -> None:
    data = (b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    a, b = parse_all(data)
    assert a.body_size == 5 and a.body_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert b.path == "/q" and not b.keep_alive


def test_chunked_with_extensions_and_trailers() -> None:
    data = (b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    [r] = parse_all(data)
    assert r.body_size == 11 and r.body_sha256 == hashlib.sha256(b"hello world").hexdigest()


def test_http10_keep_alive_rules() -> None:
    [a] = parse_all(b"GET / HTTP/1.0\r\n\r\n")
    [b] = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert a.http_version == "HTTP/1.0" and not a.keep_alive and b.keep_alive


def test_leading_empty_lines_and_absolute_form() -> None:
    [r] = parse_all(b"\r\n\r\nGET http://example.com:8080/x/y?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (r.path, r.query) == ("/x/y", "q=1")
    [r] = parse_all(b"GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (r.path, r.query) == ("/", "q=1")
    [r] = parse_all(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r.path == "*"


def test_expect_continue_is_signalled_once_before_the_body() -> None:
    p = RequestParser()
    p.feed(b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert p.next_request() is None and p.take_continue() and not p.take_continue()
    p.feed(b"abc")
    assert p.next_request().body_size == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\nHost: h\r\n\r\n", 400),  # HTTP/0.9 style
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # double space
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # not a token
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # raw non-ASCII target
        (b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # authority-form
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host in 1.1
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", 400),  # space before colon
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),  # bare CR
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),  # not ending in chunked
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70000, 431),  # still incomplete
    ],
)
def test_refused(raw: bytes, status: int) -> None:
    assert error_of(raw) == status


def test_duplicate_identical_content_length_is_accepted() -> None:
    [r] = parse_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab")
    assert r.body_size == 2


# -- property tests ---------------------------------------------------------------------------------

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
_value = st.text("".join(map(chr, range(0x20, 0x7F))), max_size=30).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, tuple[str, str, list[tuple[str, str]], bytes]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    path = "/" + draw(_token)
    headers = [("Host", "h")] + draw(st.lists(st.tuples(_token.map(lambda t: "X-" + t), _value), max_size=5))
    body = draw(st.binary(max_size=200))
    chunked = draw(st.booleans()) and body
    head = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 50), max_size=10))
        encoded, i = b"", 0
        for size in sizes:
            part = body[i : i + size]
            if part:
                encoded += b"%x\r\n" % len(part) + part + b"\r\n"
            i += size
        if i < len(body):
            encoded += b"%x\r\n" % (len(body) - i) + body[i:] + b"\r\n"
        encoded += b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        encoded = body
    wire = ("\r\n".join(head) + "\r\n\r\n").encode() + encoded
    return wire, (method, path, headers, body)


@settings(max_examples=200, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=5), st.lists(st.integers(0, 3000), max_size=20))
def test_any_split_of_a_pipelined_stream_parses_the_same(reqs, cuts) -> None:  # type: ignore[no-untyped-def]
    data = b"".join(w for w, _ in reqs)
    got = parse_all(data, [c for c in cuts if c <= len(data)])
    assert len(got) == len(reqs)
    for r, (_, (method, path, headers, body)) in zip(got, reqs):
        assert (r.method, r.path) == (method, path)
        assert r.headers[: len(headers)] == headers
        assert r.body_size == len(body) and r.body_sha256 == hashlib.sha256(body).hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_refuse_cleanly(data: bytes) -> None:
    try:
        parse_all(data)
    except HttpError as e:
        assert 400 <= e.status < 600


# -- query parameters --------------------------------------------------------------------------------

def test_params() -> None:
    p = parse_params("size=10&delay_ms=2.5&status=418&set_cookie=a=b&set_cookie=c%3Dd%3B%20Path%3D%2F&fault=reset&close=1&other=x")
    assert (p.size, p.delay_ms, p.status, p.fault, p.close) == (10, 2.5, 418, "reset", True)
    assert p.cookies == ("a=b", "c=d; Path=/")
    assert parse_params("") == parse_params("unrelated=1")
    assert FAULTS == {"reset", "close", "garbage", "hang", "truncate"}


@pytest.mark.parametrize(
    "query",
    ["size=-1", "size=abc", "size=1e3", "status=99", "status=600", "delay_ms=-5", "delay_ms=nan",
     "delay_ms=inf", "fault=explode", "set_cookie=novalue", "set_cookie=a=b%0d%0aX-Evil:%201", "set_cookie=a=%C3%A9"],
)
def test_bad_params(query: str) -> None:
    with pytest.raises(ParamError):
        parse_params(query)
