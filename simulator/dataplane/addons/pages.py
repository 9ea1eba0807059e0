"""The error pages a vendor listener answers with itself (nginx's layout, the vendor's Server name)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mitmproxy import http

from simulator import vendors


class _ErrorServers(Mapping[str, str]):
    """`ERROR_SERVER`: profile name -> the server name on its own error pages (`VendorProfile.error_server`)."""

    def __getitem__(self, name: str) -> str:
        if name not in vendors.names():
            raise KeyError(name)
        return vendors.get(name).error_server

    def __iter__(self) -> Iterator[str]:
        return iter(vendors.names())

    def __len__(self) -> int:
        return len(vendors.names())


ERROR_SERVER: Mapping[str, str] = _ErrorServers()
REASONS = {
    400: "Bad Request",
    408: "Request Time-out",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    502: "Bad Gateway",
    504: "Gateway Time-out",
    505: "HTTP Version Not Supported",
}
# nginx answers an oversized header with status 400 and this title (its internal status 494).
HEADER_TOO_LARGE = "Request Header Or Cookie Too Large"
# nginx's answers to a client certificate it refuses after the handshake (internal statuses 496 and 495).
NO_CLIENT_CERT = "No required SSL certificate was sent"
CLIENT_CERT_ERROR = "The SSL certificate error"


def error_response(status: int, profile: str, title: str | None = None, close: bool = False) -> http.Response:
    """The vendor's error page for `status`; `close` adds `Connection: close` (HTTP/1 only)."""
    title = title or REASONS.get(status, "Error")
    body = f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1></center>\r\n</body>\r\n</html>\r\n"
    headers = {"Server": ERROR_SERVER.get(profile, "lbsim"), "Content-Type": "text/html"}
    if close:
        headers["Connection"] = "close"
    response = http.Response.make(status, body, headers)
    response.reason = REASONS.get(status, title)
    return response


def nginx_400(profile: str, detail: str, close: bool = False) -> http.Response:
    """nginx's special 400 pages (495, 496, 497 inside nginx): the detail in the title and under the heading,
    "400 Bad Request" as the heading, as in nginx's ngx_http_special_response.c."""
    body = (f"<html>\r\n<head><title>400 {detail}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1>"
            f"</center>\r\n<center>{detail}</center>\r\n</body>\r\n</html>\r\n")
    headers = {"Server": ERROR_SERVER.get(profile, "lbsim"), "Content-Type": "text/html"}
    if close:
        headers["Connection"] = "close"
    response = http.Response.make(400, body, headers)
    response.reason = REASONS[400]
    return response
