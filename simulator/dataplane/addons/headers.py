"""The headers a vendor listener adds to what it forwards to backends (vendor-facts §1, header switches)."""

from __future__ import annotations

import functools
import secrets
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import http

from simulator import vendors
from simulator.model.config import CLIENT_CERT_HEADERS
from simulator.dataplane.leanheaders import set_headers
from simulator.dataplane.registry import ClientState, Registry
from simulator.vendors.profile import MutualTlsModes

# Headers a client must not be able to forge: the listener sets them itself (whether or not switched on).
OWNED = ("x-forwarded-proto", "x-forwarded-port", "slb-ip", "slb-id")


def mtls_header_names() -> tuple[str, ...]:
    """The mutual-TLS headers of every registered profile with mutual-TLS modes (`VendorProfile.mtls`): never
    taken from a client, whatever the listener's profile. (Walks the profiles: `owned_headers` caches it.)"""
    profiles = map(vendors.get, vendors.names())
    return tuple(sorted({h for p in profiles if p.mtls is not None
                         for h in (p.mtls.passthrough_header, *(n for _, n in p.mtls.verify_headers))}))


def owned_headers(client_cert_names: tuple[tuple[str, str], ...] = CLIENT_CERT_HEADERS) -> frozenset[bytes]:
    """The lowercase names a listener strips from clients: OWNED, the mutual-TLS headers, its client-certificate
    header names, and the default ones too (a backend written for those must not be fooled when a listener
    renames them)."""
    return _owned(client_cert_names, vendors.generation())  # once per request: no walk of the profiles


@functools.lru_cache(maxsize=256)
def _owned(client_cert_names: tuple[tuple[str, str], ...], _generation: int) -> frozenset[bytes]:
    names = (*OWNED, *mtls_header_names(), *(n for _, n in CLIENT_CERT_HEADERS), *(n for _, n in client_cert_names))
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
        # Set in this order, all in one pass over the fields at the end (set_headers).
        out = {"X-Forwarded-For": f"{previous}, {client_ip}" if previous else client_ip}
        if spec.headers.x_forwarded_proto:
            out["X-Forwarded-Proto"] = "https"
        if spec.headers.x_forwarded_port:
            out["X-Forwarded-Port"] = str(flow.client_conn.sockname[1])
        if spec.headers.amzn_trace_id:
            out["X-Amzn-Trace-Id"] = trace_id(headers.get("x-amzn-trace-id"))
        if spec.headers.slb_ip:
            out["SLB-IP"] = flow.client_conn.sockname[0]
        if spec.headers.slb_id:
            out["SLB-ID"] = spec.lb_id
        if spec.mutual and spec.headers.client_cert:
            names = dict(spec.headers.client_cert_names)
            for key, value in client_certificate_fields(state).items():
                out[names[key]] = value
        mtls = vendors.get(spec.profile).mtls
        if spec.mtls_mode != "off" and mtls is not None:
            out.update(mtls_headers(state, mtls))
        set_headers(headers, out)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def mtls_headers(state: ClientState, vendor: MutualTlsModes) -> dict[str, str]:
    """The ALB's mutual-TLS headers for this connection's client certificate (none without one).

    passthrough: the whole chain the client sent, URL-encoded PEM, in one header (on a resumed connection
    OpenSSL keeps the leaf only). verify: serial number (hex), issuer and subject (RFC 4514), validity
    (``NotBefore=...;NotAfter=...``) and the leaf as URL-encoded PEM."""
    conn = state.ssl_conn
    leaf = conn.get_peer_certificate(as_cryptography=True) if conn is not None else None
    if leaf is None:
        return {}
    if state.version.spec.mtls_mode == "passthrough":
        rest = conn.get_peer_cert_chain(as_cryptography=True) or []  # the server side's excludes the leaf
        chain = [leaf, *(c for c in rest if c != leaf)]
        return {vendor.passthrough_header: urllib.parse.quote("".join(_pem(c) for c in chain), safe="")}
    when = "%Y-%m-%dT%H:%M:%SZ"
    fields = {
        "serial": format(leaf.serial_number, "X"),
        "issuer": leaf.issuer.rfc4514_string(),
        "subject": leaf.subject.rfc4514_string(),
        "validity": f"NotBefore={leaf.not_valid_before_utc.strftime(when)};NotAfter={leaf.not_valid_after_utc.strftime(when)}",
        "leaf": urllib.parse.quote(_pem(leaf), safe=""),
    }
    return {name: fields[what] for what, name in vendor.verify_headers}


def new_trace_id() -> str:
    """An ALB trace identifier: version 1, the epoch second in hex, 96 random bits in hex."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def trace_id(previous: str | None) -> str:
    """X-Amzn-Trace-Id as the ALB forwards it: ``Root=<new id>`` when the client sent none; a client's own
    header (with its Root) goes on with the load balancer's ``Self=<new id>`` put first."""
    if not previous or "root=" not in previous.lower():
        return f"Root={new_trace_id()}"
    return f"Self={new_trace_id()};{previous}"


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
