"""The ClientHello of every new connection, read by a plain walk over its bytes where mitmproxy uses kaitaistruct.

mitmproxy's TLS layer parses each ClientHello into a `mitmproxy.tls.ClientHello` for its `tls_clienthello`
event, and reads only its SNI and ALPN offers itself (the listener's addon reads the SNI). The parse is
kaitaistruct's generated code: about 590 Python calls and 44 µs for a 330-byte ClientHello, 14 % of a new
connection's calls (docs/performance.md, "Round seven"). `ListenerClientHello` is the same class, its SNI and
ALPN read by a plain walk over the same grammar (10 µs with the records put together): the same bytes are
accepted and refused, and the same SNI and ALPN offers come out (tests/test_clienthello.py compares both on
the fuzzer's mutated ClientHellos). Anything else a caller asks of it (cipher suites, the raw extensions) is
parsed by kaitaistruct on first use.
"""

from __future__ import annotations

import functools
import io

from kaitaistruct import KaitaiStream
from mitmproxy import tls
from mitmproxy.contrib.kaitaistruct import tls_client_hello
from mitmproxy.net import check
from mitmproxy.proxy.layers.tls import get_client_hello


class ListenerClientHello(tls.ClientHello):
    """mitmproxy's ClientHello whose `sni` and `alpn_protocols` come from `offers`, parsed up front."""

    def __init__(self, raw_client_hello: bytes):
        # Not super().__init__: it would parse it all with kaitaistruct at once.
        self._raw_bytes = raw_client_hello
        self._sni, self._alpn = offers(raw_client_hello)

    @functools.cached_property
    def _client_hello(self) -> tls_client_hello.TlsClientHello:  # type: ignore[override]
        return tls_client_hello.TlsClientHello(KaitaiStream(io.BytesIO(self._raw_bytes)))

    @property
    def sni(self) -> str | None:
        return self._sni

    @property
    def alpn_protocols(self) -> list[bytes]:
        return list(self._alpn)


def parse_client_hello(data: bytes) -> ListenerClientHello | None:
    """mitmproxy's `parse_client_hello` (the records put together by its own `get_client_hello`): None while
    the ClientHello is incomplete, ValueError when it cannot be parsed."""
    client_hello = get_client_hello(data)
    if client_hello:
        return ListenerClientHello(client_hello[4:])
    return None


def offers(b: bytes) -> tuple[str | None, list[bytes]]:
    """The SNI and ALPN offers of a ClientHello body (after the handshake header), as mitmproxy's ClientHello
    gives them: the first SNI extension naming exactly one valid host, the first ALPN extension's protocols.

    The walk follows kaitaistruct's grammar (mitmproxy/contrib/kaitaistruct/tls_client_hello.ksy) to the byte,
    its quirks included: the extensions block's length and the SNI and ALPN lists' lengths are read and not
    used; `len // 2` cipher suites are read. Where kaitaistruct would run out of bytes: ValueError, as
    mitmproxy raises.
    """
    n = len(b)
    # Each check is written out (`if ... > n: raise`), not a helper: about 30 a ClientHello.
    if 35 > n:  # version (2), random (32), the session id's length
        raise ValueError("Invalid ClientHello")
    pos = 35 + b[34]
    if pos + 2 > n:
        raise ValueError("Invalid ClientHello")
    pos += 2 + 2 * ((b[pos] << 8 | b[pos + 1]) // 2)  # cipher suites
    if pos + 1 > n:
        raise ValueError("Invalid ClientHello")
    pos += 1 + b[pos]  # compression methods
    if pos > n:
        raise ValueError("Invalid ClientHello")
    sni: str | None = None
    alpn: list[bytes] | None = None
    if pos < n:
        pos += 2  # the extensions' length
        if pos > n:
            raise ValueError("Invalid ClientHello")
        while pos < n:
            if pos + 4 > n:
                raise ValueError("Invalid ClientHello")
            kind, end = b[pos] << 8 | b[pos + 1], pos + 4 + (b[pos + 2] << 8 | b[pos + 3])
            if end > n:
                raise ValueError("Invalid ClientHello")
            if kind == 0:
                names = _items(b, pos + 4, end, named=True)
                if sni is None and len(names) == 1 and names[0][0] == 0 and check.is_valid_host(names[0][1]):
                    sni = names[0][1].decode("ascii")
            elif kind == 16:
                protocols = [name for _, name in _items(b, pos + 4, end, named=False)]
                if alpn is None:
                    alpn = protocols
            pos = end
    return sni, alpn or []


def _items(b: bytes, pos: int, end: int, named: bool) -> list[tuple[int, bytes]]:
    """The entries of an SNI (`named`: a type byte, then a u16 length) or ALPN (a u8 length) extension body,
    after its list length, up to the body's end."""
    pos += 2
    if pos > end:
        raise ValueError("Invalid ClientHello")
    out = []
    while pos < end:
        if named:
            if pos + 3 > end:
                raise ValueError("Invalid ClientHello")
            kind, size, pos = b[pos], b[pos + 1] << 8 | b[pos + 2], pos + 3
        else:
            kind, size, pos = 0, b[pos], pos + 1
        if pos + size > end:
            raise ValueError("Invalid ClientHello")
        out.append((kind, b[pos:pos + size]))
        pos += size
    return out
