"""The headers a vendor listener adds to what it forwards to backends (vendor-facts §1, header switches)."""

from __future__ import annotations

import functools

from mitmproxy import http

from simulator.model.config import CLIENT_CERT_HEADERS
from simulator.dataplane.registry import ClientState, Registry

# Headers a client must not be able to forge: the listener sets them itself (whether or not switched on).
OWNED = ("x-forwarded-proto", "slb-ip", "slb-id")


@functools.lru_cache(maxsize=256)
def owned_headers(client_cert_names: tuple[tuple[str, str], ...] = CLIENT_CERT_HEADERS) -> frozenset[bytes]:
    """The lowercase names a listener strips from clients: OWNED, its client-certificate header names, and the
    default ones too (a backend written for those must not be fooled when a listener renames them)."""
    names = (*OWNED, *(n for _, n in CLIENT_CERT_HEADERS), *(n for _, n in client_cert_names))
    return frozenset(n.lower().encode() for n in names)


class ForwardedHeaders:
    """X-Forwarded-For (appended), X-Forwarded-Proto, SLB-IP, SLB-ID and the client certificate headers."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def request(self, flow: http.HTTPFlow) -> None:
        state = self.registry.clients.get(flow.client_conn.id)
        if state is None:
            return
        spec = state.version.spec
        headers = flow.request.headers
        owned = owned_headers(spec.headers.client_cert_names)
        # One pass over the fields, not one lookup per owned name (each scans and lowercases all of them).
        if any(name.lower() in owned for name, _ in headers.fields):
            headers.fields = tuple((name, value) for name, value in headers.fields if name.lower() not in owned)
        client_ip = flow.client_conn.peername[0]
        previous = headers.get("x-forwarded-for")
        headers["X-Forwarded-For"] = f"{previous}, {client_ip}" if previous else client_ip
        if spec.headers.x_forwarded_proto:
            headers["X-Forwarded-Proto"] = "https"
        if spec.headers.slb_ip:
            headers["SLB-IP"] = flow.client_conn.sockname[0]
        if spec.headers.slb_id:
            headers["SLB-ID"] = spec.lb_id
        if spec.mutual and spec.headers.client_cert:
            names = dict(spec.headers.client_cert_names)
            for key, value in client_certificate_fields(state).items():
                headers[names[key]] = value


def client_certificate_fields(state: ClientState) -> dict[str, str]:
    """Subject, issuer, SHA-1 fingerprint and verify result of the client's leaf certificate.

    The verify result reads like nginx's `$ssl_client_verify`: ``SUCCESS``, or ``NONE`` when an optional-mutual
    client sent no certificate (a refused one never gets this far)."""
    cert = state.ssl_conn.get_peer_certificate() if state.ssl_conn else None
    if cert is None:
        return {"verify": "NONE"}
    fields = {"verify": "SUCCESS" if state.verify_status == "Success" else "NONE"}
    x509 = cert.to_cryptography()
    fields["subject"] = x509.subject.rfc4514_string()
    fields["issuer"] = x509.issuer.rfc4514_string()
    fields["fingerprint"] = cert.digest("sha1").decode().replace(":", "").lower()
    return fields
