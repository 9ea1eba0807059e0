"""The console's HTTP side: HTML responses on the management API's small server, login, CSRF, forms.

It reuses `simulator.faces.http.JsonServer` for reading requests (the same limits and timeouts) and answers
with pages instead of JSON. With `api.token` set, every page but the login needs the token once: typed into
the login form, or given as `?token=` in a URL; either way it becomes an HttpOnly cookie. Every POST carries a
CSRF token bound to the browser's session cookie; state changes are POST only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from simulator.faces.http import STATUS_TEXT, JsonServer, Request, Router
from simulator.faces.console.markup import Markup, form, layout, static_text, tag, text_input

logger = logging.getLogger(__name__)
SESSION_COOKIE = "lbsim_console_session"
AUTH_COOKIE = "lbsim_console_auth"
STATUS = {**STATUS_TEXT, 303: "See Other", 403: "Forbidden", 422: "Unprocessable Content"}
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
# Pages only load what the console itself serves: no inline script, no third party (nothing fetched elsewhere).
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # a ?token= URL never leaks through a Referer
    ("Cache-Control", "no-store"),
]


@dataclass
class Page:
    status: int = 200
    body: str | bytes = ""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def redirect(location: str) -> Page:
    """303 See Other: the browser follows with a GET (post/redirect/get)."""
    return Page(303, "", headers=[("Location", location)])


@dataclass
class Form:
    """A posted form: text fields (a file input's content wins over its textarea) and the CSRF token."""

    values: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        items = self.values.get(name)
        return items[-1] if items else default

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def has(self, name: str) -> bool:
        return name in self.values


def parse_form(request: Request) -> Form:
    kind = request.headers.get("content-type", "")
    values: dict[str, list[str]] = {}
    if kind.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + request.body)
        files: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            data = part.get_payload(decode=True) or b""
            text = data.decode("utf-8", errors="replace")
            if part.get_filename() is not None:
                if data:  # a chosen file: its text goes where the user could have pasted it
                    files[name.removesuffix("_file")] = text
                continue
            values.setdefault(name, []).append(text)
        for name, text in files.items():
            values[name] = [text]
    else:
        for key, value in parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True):
            values.setdefault(key, []).append(value)
    return Form(values)


@dataclass
class Context:
    """Per request: the browser's session (for the CSRF token) and the cookies to set."""

    session: str
    csrf: str
    set_cookies: list[str] = field(default_factory=list)


Handler = Callable[[Request, Context], Awaitable[Page]]


class HtmlServer(JsonServer):
    """`JsonServer`'s request reading, with HTML pages, cookies, login and CSRF checks."""

    def __init__(self, router: Router, host: str, port: int, token: str | None, nav: list[tuple[str, str]]):
        super().__init__(router, host, port, token)
        self.secret = secrets.token_bytes(32)
        self.nav = nav
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await super()._serve(reader, writer)
        finally:
            self._writers.discard(writer)

    async def stop(self) -> None:
        """Close browsers' idle keep-alive connections too: `wait_closed` would wait for them (a minute)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await super().stop()

    # ---- auth and CSRF ---------------------------------------------------------------------------------------

    def _auth_value(self) -> str:
        assert self.token
        return hmac.new(self.token.encode(), b"lbsim-console", hashlib.sha256).hexdigest()

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _cookie(name: str, value: str) -> str:
        return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"

    async def _dispatch(self, request: Request) -> tuple[int, Any]:
        cookies = SimpleCookie()
        try:
            cookies.load(request.headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header: as if none
            cookies = SimpleCookie()
        session = cookies[SESSION_COOKIE].value if SESSION_COOKIE in cookies else ""
        ctx = Context(session, "")
        if len(session) != 32 or not all(c in "0123456789abcdef" for c in session):
            ctx.session = secrets.token_hex(16)
            ctx.set_cookies.append(self._cookie(SESSION_COOKIE, ctx.session))
        ctx.csrf = self.csrf_for(ctx.session)
        page = await self._answer(request, cookies, ctx)
        page.headers += [("Set-Cookie", c) for c in ctx.set_cookies]
        return page.status, page

    async def _answer(self, request: Request, cookies: SimpleCookie, ctx: Context) -> Page:
        if request.path.startswith("/static/"):
            name = request.path.removeprefix("/static/")
            if request.method != "GET" or name not in STATIC:
                return self.error_page(404, "Not found", f"no such file {request.path}")
            return Page(200, static_text(f"static/{name}"), STATIC[name], headers=[("Cache-Control", "max-age=60")])
        if self.token and request.path != "/login":
            given = request.query.get("token")
            if given is not None and request.method == "GET" and hmac.compare_digest(given.encode(), self.token.encode()):
                ctx.set_cookies.append(self._cookie(AUTH_COOKIE, self._auth_value()))
                rest = {k: v for k, v in request.query.items() if k != "token"}
                return redirect(request.path + (f"?{urlencode(rest)}" if rest else ""))
            cookie = cookies[AUTH_COOKIE].value if AUTH_COOKIE in cookies else ""
            if not hmac.compare_digest(cookie.encode(), self._auth_value().encode()):
                if request.method == "GET":
                    return redirect("/login?" + urlencode({"next": request.path}))
                return self.error_page(401, "Log in first", "this console needs the lab's api.token: log in again")
        if request.method == "POST" and not request.path == "/login":
            sent = parse_form(request).get("csrf")
            if not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
                return self.error_page(403, "Form expired", "the form's CSRF token does not match this browser's "
                                       "session (an old tab, or a request from another site): reload the page and "
                                       "send the form again")
        if request.path == "/login":
            return self.login(request, ctx)
        handler, params, known = self.router.match(request.method, request.path)
        if handler is None:
            if known:
                return self.error_page(405, "Method not allowed", f"{request.method} is not allowed on {request.path}",
                                       headers=[("Allow", "POST" if request.method == "GET" else "GET")])
            return self.error_page(404, "Not found", f"no such page {request.path}")
        request.params = params
        try:
            return await handler(request, ctx)
        except Exception:  # never a stack trace to the browser; the log has it
            logger.exception("console handler failed: %s %s", request.method, request.path)
            return self.error_page(500, "Internal error", "the lab failed to handle this request; see its log")

    def login(self, request: Request, ctx: Context) -> Page:
        nxt = request.query.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # never a redirect off this console
        errors: dict[str, list[dict[str, Any]]] = {}
        if not self.token:
            return redirect(nxt)
        if request.method == "POST":
            data = parse_form(request)
            if hmac.compare_digest(data.get("csrf").encode(), ctx.csrf.encode()) and \
                    hmac.compare_digest(data.get("token").encode(), self.token.encode()):
                ctx.set_cookies.append(self._cookie(AUTH_COOKIE, self._auth_value()))
                return redirect(nxt)
            errors["token"] = [{"code": "Unauthorized", "message": "wrong token",
                                "hint": "the lab's api.token (the management API's Bearer token)"}]
        body = form(f"/login?{urlencode({'next': nxt})}",
                    Markup(text_input("token", "API token", "", errors, type="password", autofocus=True)
                           + tag("button", "Log in", type="submit")), ctx.csrf)
        return self.page("Log in", body, status=401 if errors else 200)

    # ---- pages -----------------------------------------------------------------------------------------------

    def header(self) -> Any:
        return ""

    def page(self, title: str, body: Any, current: str = "", status: int = 200) -> Page:
        return Page(status, layout(title, body, self.nav, current, self.header()))

    def error_page(self, status: int, title: str, message: str, headers: list[tuple[str, str]] | None = None) -> Page:
        page = self.page(title, tag("p", message, class_="error-message"), status=status)
        page.headers += headers or []
        return page

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: Any, close: bool) -> None:
        if not isinstance(body, Page):  # a request the server could not read (JsonServer's own errors)
            message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
            body = Page(status, f"{status} {STATUS.get(status, '')}: {message}\n", "text/plain; charset=utf-8")
        payload = body.body.encode() if isinstance(body.body, str) else body.body
        headers = [("Content-Type", body.content_type), ("Content-Length", str(len(payload)))]
        headers += [h for h in SECURITY_HEADERS if not any(h[0] == k for k, _ in body.headers)] + body.headers
        if close:
            headers.append(("Connection", "close"))
        head = f"HTTP/1.1 {status} {STATUS.get(status, 'Unknown')}\r\n"
        # No header value can end a line: a path parameter with an encoded CR LF never splits the response.
        head += "".join(f"{k}: {v.replace(chr(13), '').replace(chr(10), '')}\r\n" for k, v in headers) + "\r\n"
        writer.write(head.encode("latin-1", errors="replace") + payload)
        await writer.drain()


__all__ = ["Context", "Form", "HtmlServer", "Page", "parse_form", "redirect"]
