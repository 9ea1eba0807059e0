"""simulator.dataplane.clienthello: the listener's ClientHello parse against mitmproxy's kaitaistruct one.

The two must accept and refuse the same bytes and give the same SNI and ALPN offers, on real ClientHellos
and on the fuzzer's mutations of them (truncations, bad lengths, shuffled and mangled extensions, record
splits) and random byte streams: about 6,000 inputs, a few seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy.proxy.layers import tls as mitmproxy_tls
from mitmproxy.tls import ClientHello
from OpenSSL import SSL

from simulator.dataplane import clienthello
from simulator.tools import fuzz


def outcome(parse: Any, record: bytes) -> Any:
    """What a parse makes of `record`: "refused" (ValueError), None (incomplete), or what it offers."""
    try:
        hello = parse(record)
    except ValueError:
        return "refused"
    except Exception as e:  # anything else would be a bug in either: it must at least be the same one
        return type(e).__name__
    if hello is None:
        return None
    return hello.sni, hello.alpn_protocols


@pytest.fixture(scope="module")
def hellos() -> dict[str, bytes]:
    captured = fuzz.capture_client_hellos()
    captured["h2-and-sni"] = fuzz.capture_client_hello(SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION, sni=b"api.example.com",
                                                       alpn=[b"h2", b"http/1.1"])
    return captured


def test_real_client_hellos_give_mitmproxys_sni_and_alpn(hellos: dict[str, bytes]) -> None:
    for name, record in hellos.items():
        ours, theirs = clienthello.parse_client_hello(record), mitmproxy_tls.parse_client_hello(record)
        assert ours is not None and theirs is not None
        assert (ours.sni, ours.alpn_protocols) == (theirs.sni, theirs.alpn_protocols), name
        # The rest of mitmproxy's ClientHello is still there, parsed by kaitaistruct when asked for.
        assert isinstance(ours, ClientHello)
        assert (ours.cipher_suites, ours.extensions, ours.raw_bytes()) == (theirs.cipher_suites, theirs.extensions,
                                                                            theirs.raw_bytes()), name
    h2 = clienthello.parse_client_hello(hellos["h2-and-sni"])
    assert h2 is not None and (h2.sni, h2.alpn_protocols) == ("api.example.com", [b"h2", b"http/1.1"])


def test_mutated_and_random_inputs_are_accepted_and_refused_alike(hellos: dict[str, bytes]) -> None:
    seen = {"not a record": 0, "refused by the grammar": 0, "incomplete": 0, "parsed": 0}
    for data in fuzz.inputs(seed=21, count=6_000, hellos=hellos):
        expected = outcome(mitmproxy_tls.parse_client_hello, data)
        assert outcome(clienthello.parse_client_hello, data) == expected, data.hex()
        if expected == "refused":
            try:
                mitmproxy_tls.get_client_hello(data)
                seen["refused by the grammar"] += 1
            except ValueError:
                seen["not a record"] += 1  # refused by mitmproxy's record reader, which both use
        else:
            seen["incomplete" if expected is None else "parsed"] += 1
    # The inputs reach every branch (about 1,000 each or more with this seed).
    assert min(seen.values()) > 500, seen


@pytest.mark.parametrize("cut", range(0, 60))
def test_every_truncation_of_a_client_hello_body_is_refused_alike(hellos: dict[str, bytes], cut: int) -> None:
    body = mitmproxy_tls.get_client_hello(hellos["h2-and-sni"])[4:]
    short = body[:len(body) * cut // 60]
    try:
        ClientHello(short).sni
        expected: Any = "parsed"
    except EOFError:
        expected = "refused"
    try:
        clienthello.offers(short)
        got: Any = "parsed"
    except ValueError:
        got = "refused"
    assert got == expected


def test_the_listener_runs_mitmproxys_handshake_code_with_this_parse() -> None:
    from mitmproxy.proxy.layers import ClientTLSLayer

    from simulator.dataplane.addons.tls import ListenerTLSLayer, _parsing_with

    handshake = ListenerTLSLayer.receive_handshake_data
    assert handshake.__code__ is ClientTLSLayer.receive_handshake_data.__code__  # mitmproxy's code, not a copy
    assert handshake.__globals__["parse_client_hello"] is clienthello.parse_client_hello
    assert mitmproxy_tls.parse_client_hello is not clienthello.parse_client_hello  # mitmproxy itself untouched
    # A mitmproxy whose method no longer calls the name: the lab refuses to start instead of parsing otherwise.
    with pytest.raises(RuntimeError, match="no longer calls parse_client_hello"):
        _parsing_with(ClientTLSLayer.start_handshake, clienthello.parse_client_hello)
