"""The listener's HTTP/1 server layer (simulator.dataplane.addons.limits.LimitedHttp1Server) on its own:
mitmproxy's own error pages never leave it, a vendor's page goes instead, and answers pass unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http, options
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http._events import ErrorCode, ResponseHeaders, ResponseProtocolError
from mitmproxy.test import tflow, tutils

from simulator.dataplane.addons.limits import _CONTROL, LimitedHttp1Server, request_problem


def server(profile: str, errors: list[str]) -> LimitedHttp1Server:
    context = Context(tflow.tclient_conn(), options.Options())
    context.client.state = ConnectionState.OPEN
    layer = LimitedHttp1Server(context, profile, errors.append)
    layer.stream_id, layer.request = 1, tutils.treq()
    return layer


@pytest.mark.parametrize("profile, server_header", [("aliyun-slb", b"Tengine"), ("tencent-clb", b"stgw")])
def test_a_protocol_error_gets_the_vendors_page_not_mitmproxys(profile: str, server_header: bytes) -> None:
    errors: list[str] = []
    sent = list(server(profile, errors).send(ResponseProtocolError(1, "backend exploded", ErrorCode.GENERIC_SERVER_ERROR)))
    (page,) = [c.data for c in sent if isinstance(c, commands.SendData)]
    assert page.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and b"\r\nServer: " + server_header in page
    assert b"mitmproxy" not in page
    assert errors == ["backend exploded"]  # the reason goes to the connection log
    assert isinstance(sent[-1], commands.CloseConnection)


def test_an_answer_passes_as_mitmproxy_assembles_it() -> None:
    errors: list[str] = []
    response = tutils.tresp()
    sent = list(server("aliyun-slb", errors).send(ResponseHeaders(1, response, end_stream=False)))
    assert [c.data for c in sent if isinstance(c, commands.SendData)] == [http1.assemble_response_head(response)]
    assert errors == []


def test_empty_lines_before_a_request_line_are_ignored_in_one_read() -> None:
    # RFC 9112 2.2 (nginx ignores them too). mitmproxy's buffer drops one per read and then waits for more bytes.
    from mitmproxy.proxy import events
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import RequestHeaders

    errors: list[str] = []
    layer = server("aliyun-slb", errors)
    layer.request = None
    list(layer.handle_event(events.Start()))
    out = list(layer.handle_event(events.DataReceived(layer.conn, b"\r\n\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")))
    heads = [c.event for c in out if isinstance(c, ReceiveHttp) and isinstance(c.event, RequestHeaders)]
    assert [h.request.path for h in heads] == ["/x"] and errors == []


NAME_OR_VALUE = st.binary(max_size=6).map(lambda b: bytes(c % 0x80 if c % 3 else c % 0x21 for c in b))  # often control


def the_field_by_field_scan(request: Any) -> Any:
    """request_problem's check of the header fields as it was written first: one search per name and value."""
    for name, value in request.headers.fields:
        if _CONTROL.search(value) or _CONTROL.search(name):
            return 400, None, f"control character in header {name[:64]!r}"
    return None


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(st.tuples(NAME_OR_VALUE, NAME_OR_VALUE), max_size=5))
def test_a_control_character_in_a_header_is_refused_naming_the_first_such_header(fields: list[tuple[bytes, bytes]]) -> None:
    request = tutils.treq(headers=http.Headers([(b"Host", b"example.com"), *fields]))
    expected = the_field_by_field_scan(request)
    assert request_problem(request, http2=False) == expected
    if any(_CONTROL.search(part) for field in fields for part in field):
        assert expected is not None and expected[0] == 400  # the property is not vacuous


def test_a_tab_in_a_value_is_no_control_character_but_a_tab_joined_scan_sees_every_other() -> None:
    ok = tutils.treq(headers=http.Headers([(b"Host", b"a"), (b"X-A", b"one\ttwo")]))
    assert request_problem(ok, http2=False) is None
    for bad in (b"a\x00b", b"a\x7f", b"a\nb", b"\x1f"):
        refused = tutils.treq(headers=http.Headers([(b"Host", b"a"), (b"X-A", b"fine"), (b"X-B", bad)]))
        assert request_problem(refused, http2=False) == (400, None, "control character in header b'X-B'")
