"""A minimal, strict, incremental HTTP/1.1 request parser (RFC 9112), built for speed.

It is fed raw bytes and hands back complete requests. Bodies are counted and hashed, never stored, so
memory stays bounded whatever the client uploads. Anything ambiguous is refused rather than guessed:
that is what lets the lab notice when a load balancer forwards something a real backend would reject
(or, worse, something a smuggling attack relies on).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024  # request line + headers (and, separately, chunked trailers)
MAX_CHUNK_LINE = 4096  # a chunk-size line with extensions; anything longer is abuse

# RFC 9110 token and the request line; one regex keeps the common path quick.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_FIELD_NAME = re.compile(_TOKEN)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except HTAB; catches bare CR and LF
_DIGITS = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;.*)?")

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class HttpError(Exception):
    """The request cannot be served; answer `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Request:
    """One parsed request. Header names and values are latin-1 decoded, exactly as received."""

    method: str
    target: str
    path: str
    query: str
    http_version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]]
    keep_alive: bool
    body_size: int = 0
    _hash: "hashlib._Hash | None" = field(default=None, repr=False)

    @property
    def body_sha256(self) -> str:
        return self._hash.hexdigest() if self._hash is not None else _EMPTY_SHA256

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


# Parser states
_HEAD, _BODY, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(6)


class RequestParser:
    """Incremental parser: `feed()` bytes, then call `next_request()` until it returns None.

    `next_request()` raises `HttpError` for a request that must be refused; the connection is then
    unusable (its framing is unknown) and must be closed after the error response.
    """

    __slots__ = ("buf", "_state", "_req", "_remaining", "_trailer_bytes", "_continue", "max_head")

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self.buf = bytearray()
        self.max_head = max_head
        self._state = _HEAD
        self._req: Request | None = None
        self._remaining = 0
        self._trailer_bytes = 0
        self._continue = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    @property
    def idle(self) -> bool:
        """True between requests with nothing buffered (no partial request pending)."""
        return self._state == _HEAD and not self.buf

    @property
    def in_request(self) -> bool:
        """True once a request has started but is not complete (head or body still arriving)."""
        return self._state != _HEAD or bool(self.buf)

    def take_continue(self) -> bool:
        """True once per request whose head asked for `Expect: 100-continue` and whose body is due."""
        c, self._continue = self._continue, False
        return c

    def next_request(self) -> Request | None:
        buf = self.buf
        while True:
            state = self._state
            if state == _HEAD:
                req = self._parse_head()
                if req is None or self._state == _HEAD:
                    return req
            elif state == _BODY:
                n = min(len(buf), self._remaining)
                if n:
                    self._consume_body(n)
                if self._remaining:
                    return None
                return self._finish()
            elif state == _CHUNK_SIZE_LINE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError(400, "chunk size line too long")
                    return None
                m = _CHUNK_SIZE.fullmatch(buf, 0, end)
                if m is None or _BAD_VALUE.search(buf, 0, end):
                    raise HttpError(400, "bad chunk size line")
                size = int(m.group(1), 16)
                del buf[: end + 2]
                if size == 0:
                    self._state = _TRAILERS
                    self._trailer_bytes = 0
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                n = min(len(buf), self._remaining)
                if n:
                    self._consume_body(n)
                if self._remaining:
                    return None
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    if buf and buf[0] != 0x0D:
                        raise HttpError(400, "chunk data not followed by CRLF")
                    return None
                if buf[0] != 0x0D or buf[1] != 0x0A:
                    raise HttpError(400, "chunk data not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE_LINE
            else:  # _TRAILERS: header lines until an empty one; validated, then dropped
                end = buf.find(b"\r\n")
                if end < 0:
                    if self._trailer_bytes + len(buf) > self.max_head:
                        raise HttpError(431, "trailer section too large")
                    return None
                self._trailer_bytes += end + 2
                if self._trailer_bytes > self.max_head:
                    raise HttpError(431, "trailer section too large")
                if end == 0:
                    del buf[:2]
                    return self._finish()
                line = bytes(buf[:end])
                del buf[: end + 2]
                name, sep, value = line.partition(b":")
                if not sep or _FIELD_NAME.fullmatch(name) is None or _BAD_VALUE.search(value):
                    raise HttpError(400, "bad trailer field")

    # -- internals -------------------------------------------------------------------------------

    def _consume_body(self, n: int) -> None:
        req = self._req
        assert req is not None
        if req._hash is None:
            req._hash = hashlib.sha256()
        req._hash.update(self.buf[:n])
        del self.buf[:n]
        req.body_size += n
        self._remaining -= n

    def _finish(self) -> Request:
        req = self._req
        assert req is not None
        self._req = None
        self._state = _HEAD
        self._continue = False
        return req

    def _parse_head(self) -> Request | None:
        buf = self.buf
        # RFC 9112 2.2: ignore empty lines before a request line (clients may send CRLF after a body).
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_head:
                if buf.find(b"\r\n", 0, self.max_head) < 0:
                    raise HttpError(414, "request line too long")
                raise HttpError(431, "request header section too large")
            if buf.find(b"\n\n") >= 0 or buf.find(b"\n\r\n") >= 0:
                raise HttpError(400, "bare LF line ending")
            return None
        if end > self.max_head:
            raise HttpError(431, "request header section too large")
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]

        m = _REQUEST_LINE.fullmatch(lines[0])
        if m is None:
            raise HttpError(400, "malformed request line")
        method_b, target_b, major, minor = m.groups()
        if major != b"1":
            raise HttpError(505, "HTTP version not supported")
        http11 = minor != b"0"

        headers: list[tuple[str, str]] = []
        host_count = 0
        content_length: int | None = None
        te: list[str] = []
        te_seen = False
        conn_tokens: set[str] = set()
        expect_continue = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            # A name must be a bare token: this also refuses obs-fold (leading SP/HTAB) and
            # whitespace before the colon, both smuggling vectors (RFC 9112 5.1, 5.2).
            if not sep or _FIELD_NAME.fullmatch(name) is None:
                raise HttpError(400, "malformed header line")
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                raise HttpError(400, "control character in header value")
            n = name.decode("latin-1")
            v = value.decode("latin-1")
            headers.append((n, v))
            low = n.lower()
            if low == "host":
                host_count += 1
            elif low == "content-length":
                if _DIGITS.fullmatch(value) is None:
                    raise HttpError(400, "invalid Content-Length")
                cl = int(value)
                if content_length is not None and cl != content_length:
                    raise HttpError(400, "conflicting Content-Length headers")
                content_length = cl
            elif low == "transfer-encoding":
                te_seen = True
                te.extend(t.strip().lower() for t in v.split(",") if t.strip())
            elif low == "connection":
                conn_tokens.update(t.strip().lower() for t in v.split(","))
            elif low == "expect":
                expect_continue = v.lower() == "100-continue"

        if http11 and host_count != 1:
            raise HttpError(400, "HTTP/1.1 request needs exactly one Host header")
        if host_count > 1:
            raise HttpError(400, "more than one Host header")

        chunked = False
        if te_seen:
            if not http11:
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if content_length is not None:
                raise HttpError(400, "both Transfer-Encoding and Content-Length")
            if not te or te[-1] != "chunked":
                raise HttpError(400, "Transfer-Encoding does not end in chunked")
            if te != ["chunked"]:
                raise HttpError(501, "unsupported transfer coding")
            chunked = True

        target = target_b.decode("ascii")
        method = method_b.decode("ascii")
        path, query = _split_target(method, target)
        keep_alive = ("close" not in conn_tokens) if http11 else ("keep-alive" in conn_tokens)
        req = Request(
            method=method,
            target=target,
            path=path,
            query=query,
            http_version="HTTP/1.1" if http11 else "HTTP/1.0",
            headers=headers,
            keep_alive=keep_alive,
        )
        self._req = req
        if chunked:
            self._state = _CHUNK_SIZE_LINE
        elif content_length:
            self._state = _BODY
            self._remaining = content_length
        else:
            return self._finish()
        self._continue = expect_continue and http11
        return req


def _split_target(method: str, target: str) -> tuple[str, str]:
    """Path and raw query of a request-target, refusing forms a backend should never receive."""
    if target[0] == "/":
        path, _, query = target.partition("?")
        return path, query
    if target == "*" and method == "OPTIONS":
        return "*", ""
    low = target[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        # absolute-form: a server MUST accept it (RFC 9112 3.2.2); path is what follows the authority.
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        qmark = rest.find("?")
        if slash < 0 or (0 <= qmark < slash):
            rest = "/" + (rest[qmark:] if qmark >= 0 else "")
        else:
            rest = rest[slash:]
        path, _, query = rest.partition("?")
        return path, query
    raise HttpError(400, "unsupported request-target form")
