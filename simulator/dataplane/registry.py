"""What the addons share: the listeners by mitmproxy mode, and one record per live client connection."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL

from simulator.metering.kept_records import KeptRecords
from simulator.dataplane.listener import Listener, ListenerVersion


@dataclass(slots=True)  # one per open connection: no instance dict
class ClientState:
    """One client connection: pinned to the listener version it arrived on."""

    id: str
    listener: Listener
    version: ListenerVersion
    peer: tuple[str, int]
    started: float = field(default_factory=time.time)
    ssl_conn: SSL.Connection | None = None
    handshake_done: float | None = None
    sni: str | None = None
    verify_status: str | None = None
    error: str | None = None
    refused_client_cert: str | None = None  # client_cert_refusal http_400: the 400 page every request gets
    in_flight: int = 0
    requests: int = 0
    closed_by: str | None = None  # "idle_timeout" when the listener closed it
    kernel_received: int = 0  # TCP_INFO bytes received, read after a failed handshake's linger


class Registry:
    """The addons' shared state. The lab mutates it; hooks only read listeners and their own client."""

    def __init__(self, recent: int = 10_000) -> None:
        self.listeners: dict[str, Listener] = {}  # by `Listener.key` (address:port)
        self._by_mode: dict[str, Listener] = {}
        self.clients: dict[str, ClientState] = {}
        self.recent = KeptRecords(maxlen=recent)  # the last connection records, as JSON text
        # Every address:port a listener of this lab has held: a port the lab picks is never one of them, so
        # `GET /v1/connections?listener=PORT` never mixes a deleted listener's records with a new one's.
        self.held: set[str] = set()

    def add(self, listener: Listener) -> None:
        self.listeners[listener.key] = listener
        self.held.add(listener.key)
        self._by_mode[listener.mode] = listener

    def remove(self, key: str) -> Listener | None:
        listener = self.listeners.pop(key, None)
        if listener:
            self._by_mode.pop(listener.mode, None)
        return listener

    def on_port(self, port: int) -> list[Listener]:
        """Every listener on `port` (one per load balancer address)."""
        return [l for l in self.listeners.values() if l.port == port]

    def by_mode(self, full_spec: str) -> Listener | None:
        return self._by_mode.get(full_spec)
