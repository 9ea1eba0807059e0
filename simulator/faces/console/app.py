"""`ConsoleServer`: the lab's web console, one page class per concern on one small HTTP server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.faces.console.certificates import CertificatePages
from simulator.faces.console.connections import ConnectionPages
from simulator.faces.console.listeners import ListenerPages
from simulator.faces.console.markup import join, tag
from simulator.faces.console.policy import PolicyPages
from simulator.faces.console.server import Context, HtmlServer, Page, redirect
from simulator.faces.console.traffic import TrafficPages
from simulator.faces.http import Request, Router

if TYPE_CHECKING:
    from simulator.runtime.lab import Lab

NAV = [("/certificates", "Certificates"), ("/listeners", "Listeners"), ("/traffic", "Traffic"),
       ("/connections", "Connection log"), ("/policy", "TLS policy")]


class ConsoleServer(HtmlServer):
    """Served by every lab beside the management API (same host, its own port, the same token)."""

    def __init__(self, lab: Lab, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.lab = lab
        self.certificates = CertificatePages(self)
        self.listeners = ListenerPages(self)
        self.traffic = TrafficPages(self)
        self.connections = ConnectionPages(self)
        self.policy = PolicyPages(self)
        router = Router()
        router.add("GET", "/", self.home)
        for pages in (self.certificates, self.listeners, self.traffic, self.connections, self.policy):
            for method, pattern, handler in pages.routes():
                router.add(method, pattern, handler)
        super().__init__(router, host, port, token, NAV)

    def header(self) -> Any:
        config = self.lab.config
        api = self.lab.api.url if self.lab.api is not None else "-"
        return tag("span", join([f"profile {config.profile}, time_scale {config.time_scale:g}, API ",
                                 tag("code", api)]), class_="lab")

    async def home(self, request: Request, ctx: Context) -> Page:
        return redirect("/listeners")

    async def stop(self) -> None:
        self.policy.stop()
        await super().stop()
