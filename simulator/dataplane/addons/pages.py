"""The error pages a vendor listener answers with itself (nginx's layout, the vendor's Server name)."""

from __future__ import annotations

from mitmproxy import http

from simulator.vendors import aws_alb  # vendor data: folds into simulator/vendors at merge

# The server name on the vendors' own error pages.
ERROR_SERVER = {"aliyun-slb": "Tengine", "tencent-clb": "stgw",
                aws_alb.NAME: aws_alb.ERROR_SERVER}  # vendor data: folds into simulator/vendors at merge
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
