"""LeanHeaders (simulator.dataplane.leanheaders): mitmproxy's Headers, the same answers from fewer calls."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http

from simulator.dataplane.leanheaders import LeanHeaders, lean, set_headers
from simulator.harness.running import RunningLab

# Names that collide when lowercased, non-ASCII bytes (decoded with surrogateescape), empty values.
NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"Connection", b"connection", b"X-Forwarded-For",
                         b"x-forwarded-for", b"Transfer-Encoding", b"\xc3\xa9t\xc3\xa9", b"\xff", b""])
VALUES = st.sampled_from([b"", b"close", b"a, b", b"\xff\xfe", "é".encode()])
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=6)
# Queries as str and bytes, in other cases, and names that are never there; None and an int fail alike.
QUERIES = st.one_of(NAMES, NAMES.map(lambda n: n.decode("utf-8", "surrogateescape")),
                    st.sampled_from(["HoSt", "absent", b"absent", None, 7]))


def outcome(call: Any) -> Any:
    """What a call returns, or the type and message of what it raises."""
    try:
        return "ok", call()
    except Exception as e:  # noqa: BLE001 - the comparison is the point
        return type(e), str(e)


@settings(max_examples=400, deadline=None)
@given(fields=FIELDS, name=QUERIES, values=st.lists(st.one_of(VALUES, VALUES.map(lambda v: v.decode("utf-8", "surrogateescape"))), max_size=3))
def test_every_lookup_and_set_answers_as_mitmproxys(fields: list[tuple[bytes, bytes]], name: Any, values: list[Any]) -> None:
    theirs, ours = http.Headers(fields), LeanHeaders(fields)
    for op in (lambda h: h.get_all(name), lambda h: h[name], lambda h: name in h, lambda h: h.get(name),
               lambda h: h.get(name, "default")):
        assert outcome(lambda: op(ours)) == outcome(lambda: op(theirs))
    for op in (lambda h: h.set_all(name, list(values)), lambda h: h.__setitem__(name, values[0] if values else "v")):
        a, b = http.Headers(fields), LeanHeaders(fields)
        assert outcome(lambda: op(b)) == outcome(lambda: op(a))
        assert b.fields == a.fields  # same order, same spelling kept for the names replaced in place


@settings(max_examples=200, deadline=None)
@given(fields=FIELDS, steps=st.lists(st.tuples(QUERIES, st.sampled_from(["set", "del", "insert", "look"]), VALUES),
                                     max_size=6).filter(  # a name that is no str or bytes is only looked up:
                                         # mitmproxy's insert takes it and leaves headers no lookup can read
                                         lambda steps: all(isinstance(n, (str, bytes)) or c == "look" for n, c, _ in steps)))
def test_lookups_between_changes_answer_as_mitmproxys(fields: list[tuple[bytes, bytes]], steps: list[Any]) -> None:
    """Changes and lookups in turn on the same headers: each lookup sees every change before it."""
    theirs, ours = http.Headers(fields), LeanHeaders(fields)
    for name, change, value in steps:
        for h in (theirs, ours):
            if change == "set":
                outcome(lambda: h.__setitem__(name, value))
            elif change == "del":
                outcome(lambda: h.__delitem__(name))
            elif change == "insert":
                outcome(lambda: h.insert(0, name, value))
        assert ours.fields == theirs.fields
        for query in (name, b"host", "Connection", b"absent"):
            assert outcome(lambda: ours.get_all(query)) == outcome(lambda: theirs.get_all(query))
            assert outcome(lambda: query in ours) == outcome(lambda: query in theirs)


def test_lean_headers_are_mitmproxys_headers_in_every_other_way() -> None:
    fields = [(b"Host", b"example.com"), (b"Accept", b"text/html"), (b"accept", b"application/xml")]
    theirs = http.Headers(fields)
    ours = lean(http.Headers(fields))
    assert type(ours) is LeanHeaders and isinstance(ours, http.Headers)
    assert ours == theirs and bytes(ours) == bytes(theirs) and list(ours.items()) == list(theirs.items())
    assert ours["ACCEPT"] == theirs["ACCEPT"] == "text/html, application/xml"
    assert ours.get_state() == theirs.get_state() and type(ours.copy()) is LeanHeaders
    del ours["accept"]
    assert ours.fields == ((b"Host", b"example.com"),)

    class Own(http.Headers):  # a subclass keeps its own lookups
        pass

    assert type(lean(Own(fields))) is Own


def test_str_names_are_converted_once_and_the_memory_of_them_is_bounded(monkeypatch) -> None:
    from simulator.dataplane import leanheaders

    monkeypatch.setattr(leanheaders, "_KEYS", {})
    monkeypatch.setattr(leanheaders, "MAX_KEYS", 3)
    headers = LeanHeaders([(b"Content-Length", b"5"), (b"\xc3\xa9t\xc3\xa9", b"x")])
    assert headers.get("content-length") == "5" and "CONTENT-LENGTH" in headers and headers.get("été") == "x"
    assert leanheaders._KEYS == {"content-length": b"content-length", "CONTENT-LENGTH": b"content-length",
                                 "été": "été".encode()}
    for n in range(10):  # past the bound: still answered, no longer remembered
        assert f"absent-{n}" not in headers and headers.get(f"absent-{n}") is None
    assert len(leanheaders._KEYS) == 3
    assert headers.get("Content-Length") == "5"


@given(fields=FIELDS)
def test_headers_made_of_trusted_fields_are_the_headers_mitmproxy_makes_of_them(fields: list[tuple[bytes, bytes]]) -> None:
    theirs, ours = http.Headers(fields), LeanHeaders.of(tuple(fields))
    assert type(ours) is LeanHeaders and ours.fields == theirs.fields
    # The tripwire for mitmproxy's side: a Headers it makes keeps its fields and nothing else.
    assert vars(ours) == vars(theirs) == {"fields": tuple(fields)}
    assert ours == theirs and bytes(ours) == bytes(theirs) and ours.get_state() == theirs.get_state()


@pytest.mark.parametrize("body", [b"", b"hello"])
def test_the_listener_looks_its_requests_and_answers_up_in_lean_headers(lab: RunningLab, monkeypatch, body: bytes) -> None:
    looked_up: list[str] = []
    real = LeanHeaders.get_all
    monkeypatch.setattr(LeanHeaders, "get_all", lambda self, name: looked_up.append(str(name).lower()) or real(self, name))
    # Head and body in one write (one TLS record), so the listener has the whole request at once and serves
    # it on its own path; a body that came later would go to mitmproxy's layers, whose headers are theirs.
    method = b"POST" if body else b"GET"
    request = (method + b" / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n"
               + (b"Content-Length: %d\r\n" % len(body) if body else b"") + b"\r\n" + body)
    with socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way")), timeout=10) as raw:
        with lab.ssl_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(request)
            answer = b"".join(iter(lambda: tls.recv(65536), b""))
    head, _, echo = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"x-backend" in head.lower()
    received = {k.lower(): v for k, v in json.loads(echo)["headers"]}
    assert received["x-forwarded-for"] == "203.0.113.7, 127.0.0.1" and received["slb-id"] == "lb-lbsim"
    # mitmproxy's body-size check, the forwarded headers, the answer's framing: all through LeanHeaders
    assert {"content-length", "x-forwarded-for", "transfer-encoding"} <= set(looked_up)


SET_NAMES = st.sampled_from(["X-Forwarded-For", "x-forwarded-for", "SLB-IP", "Host", "host", "X-New", "x-new", "é"])


@settings(max_examples=400, deadline=None)
@given(fields=FIELDS, values=st.dictionaries(SET_NAMES, st.one_of(VALUES.map(lambda v: v.decode("utf-8", "surrogateescape")), VALUES), max_size=5))
def test_setting_several_headers_in_one_pass_leaves_what_one_set_after_another_leaves(fields: list[tuple[bytes, bytes]], values: dict[str, Any]) -> None:
    one_by_one, at_once = http.Headers(fields), LeanHeaders(fields)
    for name, value in values.items():
        one_by_one[name] = value
    set_headers(at_once, values)
    assert at_once.fields == one_by_one.fields
