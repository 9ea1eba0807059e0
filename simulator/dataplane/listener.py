"""Listeners: the long-lived entity (port, status, backend health) and its immutable configuration versions.

A `ListenerVersion` is everything a hook needs for one configuration, built once: the OpenSSL context, the
resolved backends, the scheduler. A change builds a new version; new connections get the active version,
existing connections keep the one they started with, so a change never cuts traffic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL

from simulator import vendors
from simulator.model.config import TICKET_LIFETIME, ListenerSpec
from simulator.policies.context import build_server_context
from simulator.dataplane.scheduling import Scheduler
from simulator.dataplane.resumption import SharedSessionCache, set_ticket_keys
from simulator.dataplane.upstream import UpstreamPool


@dataclass
class BackendState:
    """One backend server as seen by one listener: health and load survive configuration changes."""

    name: str
    host: str
    port: int
    weight: int = 100
    healthy: bool = True
    active: int = 0
    ok_streak: int = 0
    fail_streak: int = 0
    pool: UpstreamPool | None = None
    token: str = ""  # identifies the backend in sticky cookies without revealing its address

    def __post_init__(self) -> None:
        self.pool = UpstreamPool(self.host, self.port)
        self.token = hashlib.sha256(f"{self.name}|{self.host}:{self.port}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": f"{self.host}:{self.port}",
            "weight": self.weight,
            "healthy": self.healthy,
            "active_requests": self.active,
        }


@dataclass
class ListenerVersion:
    """One configuration of a listener, ready to serve. Never mutated after it is built."""

    spec: ListenerSpec
    context: SSL.Context
    certificate_ids: dict[str, str]  # config reference -> store id
    revisions: dict[str, int]  # store id -> revision the context was built from
    backends: list[BackendState]
    scheduler: Scheduler
    built: float = field(default_factory=time.time)


@dataclass
class Listener:
    """A listener as the control plane sees it, keyed by its address and port (`key`): two load balancers
    (two 127.0.0.x addresses) may each have a listener on the same port."""

    name: str
    port: int
    status: str = "stopped"  # stopped | configuring | running
    active: ListenerVersion | None = None
    pending: ListenerVersion | None = None
    activates_at: float | None = None
    mode: str = ""  # the mitmproxy mode spec serving it
    address: str = "127.0.0.1"  # its load balancer's address (simulator.model.loadbalancers)
    connections: int = 0
    backends: dict[str, BackendState] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`address:port`: what the registry, the workers and health checks key it by."""
        return f"{self.address}:{self.port}"

    @property
    def spec(self) -> ListenerSpec | None:
        version = self.pending or self.active
        return version.spec if version else None

    def backend_state(self, name: str, host: str, port: int, weight: int) -> BackendState:
        """The health state of a backend persists across versions while its address stays the same."""
        state = self.backends.get(name)
        if state is None or (state.host, state.port) != (host, port):
            state = BackendState(name, host, port, weight)
            self.backends[name] = state
        state.weight = weight
        return state

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {
            "name": self.name,
            "port": self.port,
            "address": self.address,
            "key": self.key,
            "status": self.status,
            "connections": self.connections,
            "activates_in": round(max(0.0, self.activates_at - time.time()), 3) if self.activates_at else None,
        }
        if spec:
            out.update(
                profile=spec.profile,
                lb_id=spec.lb_id,
                mutual=spec.mutual,
                server_certificate=spec.server_certificate,
                server_certificates=list(spec.server_certificates) or None,
                ca_certificate=spec.ca_certificate,
                ssl_verify_client=spec.ssl_verify_client if spec.mutual else None,
                mtls_mode=spec.mtls_mode,
                trust_store=spec.trust_store,
                client_cert_refusal=spec.client_cert_refusal if spec.mutual else None,
                tls_policy=spec.policy.name,
                tls_versions=list(spec.policy.versions),
                # In the vendor's table but absent from this OpenSSL build: never negotiated here (docs/tls-policies.md).
                tls_unavailable_suites=list(spec.policy.unavailable),
                http2=spec.http2,
                scheduler=spec.scheduler,
                sticky_session=dataclasses.asdict(spec.sticky_session) if spec.sticky_session else None,
                idle_timeout=spec.idle_timeout,
                request_timeout=spec.request_timeout,
                sni=dict(spec.sni) or None,
                billing_model=spec.billing_model,
            )
        version = self.active
        out["backend_servers"] = [b.to_dict() for b in version.backends] if version else []
        return out


def build_context(
    spec: ListenerSpec,
    materials: dict[str, Any],
    time_scale: float,
    ticket_keys: bytes | None = None,
    session_cache: SharedSessionCache | None = None,
    session_namespace: bytes = b"",
    trust_store: Any = None,
) -> SSL.Context:
    """The listener's one OpenSSL context (plus one per SNI domain), built once per version.

    `ticket_keys` (80 bytes) replace OpenSSL's random session-ticket keys, and `session_cache` backs the
    session-ID cache: worker processes that share both resume each other's sessions (simulator.runtime.workers).
    """
    lifetime = max(1, round(TICKET_LIFETIME * time_scale))
    alpn = (b"h2", b"http/1.1") if spec.http2 else (b"http/1.1",)
    # The session id context ties resumption to this listener's configuration: a session from another
    # listener, or from an earlier certificate, must not resume here.
    sid = hashlib.sha256(f"{spec.port}|{spec.name}|{spec.server_certificate}".encode()).digest()[:32]

    ca = materials[spec.ca_certificate] if spec.ca_certificate else None
    # The ALB's mutual TLS: `trust_store` (a simulator.certs.truststore.TrustStore) for mtls_mode verify.
    mtls: dict[str, Any] = {}
    if spec.mtls_mode != "off":
        mtls = dict(mtls_mode=spec.mtls_mode, ignore_client_certificate_expiry=spec.ignore_client_certificate_expiry,
                    advertise_ca_names=spec.advertise_trust_store_ca_names)
        if trust_store is not None:
            mtls.update(trust_anchors=trust_store.cas, revocations=trust_store.crls)

    def one(cert_ref: str, **extra: Any) -> SSL.Context:
        server = materials[cert_ref]
        return build_server_context(
            spec.policy,
            server.chain,
            server.key,
            client_ca=ca.chain if ca else None,
            verify_client=spec.ssl_verify_client if ca else "off",
            client_cert_refusal=spec.client_cert_refusal,
            session_timeout=lifetime,
            session_id_context=sid,
            alpn=alpn,
            **mtls,
            **extra,
        )

    # Per-domain certificates when SNI is configured; a profile that ignores SNI serves one certificate whatever
    # the client asks (Alibaba CLB, seed).
    sni = {domain: one(ref) for domain, ref in spec.sni} or None
    # An RSA and an ECC certificate on one listener (tencent MultiCertInfo): one context holds both.
    also = [(materials[ref].chain, materials[ref].key) for ref in spec.server_certificates[1:]]
    context = one(spec.server_certificate, sni=sni, ignore_sni=vendors.get(spec.profile).capabilities.ignore_sni, also=also)
    for ctx in (context, *(sni or {}).values()):
        if ticket_keys is not None:
            set_ticket_keys(ctx, ticket_keys)
        if session_cache is not None:
            session_cache.attach(ctx, session_namespace)
    return context
