"""A small asyncio HTTP/1.1 JSON server for the control plane: no framework, loopback by default."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from simulator.errors import LbsimError

logger = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
MAX_HEAD = 16 * 1024
READ_TIMEOUT = 30.0  # seconds a client gets to send a whole request once it started one (no slowloris)
LINGER_TIME = 2.0  # seconds we keep reading (and discarding) after an error answer, before closing
IDLE_TIMEOUT = 60.0  # seconds a connection may sit between requests (or before its first) before we close it
STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
               413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
               503: "Service Unavailable"}  # fmt: skip


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:32]} is out of range")
    return value


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    target: str = ""  # the raw request target, query included (signatures are computed over it)

    def json(self) -> Any:
        if not self.body:
            raise LbsimError("InvalidJson", "the request body is empty; expected a JSON object", field="body")
        try:
            data = json.loads(self.body, parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError as e:  # [[[[...]]]]: nested deeper than the parser recurses
            raise LbsimError("InvalidJson", "the request body nests too deeply", field="body") from e
        except (ValueError, UnicodeDecodeError) as e:
            raise LbsimError("InvalidJson", f"the request body is not valid JSON: {e}", field="body") from e
        if not isinstance(data, dict):
            raise LbsimError("InvalidJson", f"expected a JSON object, got {type(data).__name__}", field="body")
        return data


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


def status_for(err: LbsimError) -> int:
    if err.code.endswith("NotFound"):
        return 404
    if err.code in ("CertificateInUse", "ListenerExists", "NameConflict", "QuotaExceeded", "ListenerConfiguring",
                    "AmbiguousListener", "TrustStoreInUse", "DuplicateTrustStoreName"):
        return 409
    if err.code == "InputTooLarge":
        return 413
    return 400


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self.routes.append((method, regex, handler))

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        path_known = False
        for m, regex, handler in self.routes:
            found = regex.match(path)
            if found:
                path_known = True
                if m == method:
                    return handler, {k: unquote(v) for k, v in found.groupdict().items()}, True
        return None, {}, path_known


class JsonServer:
    def __init__(self, router: Router | None, host: str, port: int, token: str | None = None,
                 ssl: Any = None):
        self.router, self.host, self.port, self.token, self.ssl = router, host, port, token, ssl
        self.read_timeout = READ_TIMEOUT
        self.head_limit = MAX_HEAD  # request line and headers
        self.idle_timeout = IDLE_TIMEOUT
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=self.head_limit, ssl=self.ssl,
                                                  ssl_handshake_timeout=self.read_timeout if self.ssl else None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    def read_error(self, err: LbsimError) -> tuple[int, Any]:
        """The answer to a request that could not be read whole (too large, malformed, too slow)."""
        return err.details.get("status", 400), {"error": err.to_dict()}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await self._read(reader)
                except LbsimError as e:
                    await self._send(writer, *self.read_error(e), close=True)
                    await self._linger(reader, writer)
                    return
                if request is None:
                    return
                status, body = await self._dispatch(request)
                close = request.headers.get("connection", "").lower() == "close"
                await self._send(writer, status, body, close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except OSError as e:  # a TLS client that went away mid-record, and the like: the connection only
            logger.debug("connection failed: %s", e)
        finally:
            writer.close()

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After an error answer to a request we did not read whole (413, 431, ...): stop sending, then
        discard what the client still sends for a moment. Closing with unread bytes would send a TCP reset,
        and the client could lose our answer before reading it (nginx's lingering close, shorter)."""
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(LINGER_TIME):
                while await reader.read(65536):
                    pass

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            async with asyncio.timeout(self.idle_timeout):  # between requests (or before the first)
                first = await reader.readexactly(1)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None
        try:
            async with asyncio.timeout(self.read_timeout):
                return await self._read_request(first, reader)
        except TimeoutError as e:
            raise LbsimError("RequestTimeout", f"the request was not complete within {self.read_timeout:g} s",
                             details={"status": 408}) from e

    async def _read_request(self, first: bytes, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as e:
            raise LbsimError("HeadersTooLarge", "request headers too large", details={"status": 431}) from e
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise LbsimError("BadRequest", f"malformed request line {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise LbsimError("BadRequest", f"malformed header line {line[:80]!r}")
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise LbsimError("LengthRequired", "send the body with Content-Length", details={"status": 411})
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise LbsimError("BadRequest", "invalid Content-Length", field="Content-Length")
        if int(length) > MAX_BODY:
            raise LbsimError("InputTooLarge", f"request body over {MAX_BODY} bytes", details={"status": 413})
        body = await reader.readexactly(int(length))
        url = urlsplit(parts[1])
        return Request(parts[0].upper(), url.path, dict(parse_qsl(url.query)), headers, body, target=parts[1])

    async def _dispatch(self, request: Request) -> tuple[int, Any]:
        if self.token and request.path != "/health":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return 401, {"error": {"code": "Unauthorized", "message": "missing or wrong bearer token",
                                       "hint": "send Authorization: Bearer <api.token>"}}
        handler, params, path_known = self.router.match(request.method, request.path)
        if handler is None:
            if path_known:
                return 405, {"error": {"code": "MethodNotAllowed", "message": f"{request.method} is not allowed on {request.path}"}}
            return 404, {"error": {"code": "NotFound", "message": f"no such resource {request.path}"}}
        request.params = params
        try:
            return await handler(request)
        except LbsimError as e:
            return status_for(e), {"error": e.to_dict()}
        except Exception:  # never a stack trace to the caller; the log has it
            logger.exception("API handler failed: %s %s", request.method, request.path)
            return 500, {"error": {"code": "InternalError", "message": "the lab failed to handle this request; see its log"}}

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: Any, close: bool) -> None:
        payload = b"" if status == 204 else json.dumps(body, default=str, indent=1).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
