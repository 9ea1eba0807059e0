"""The listener's server `SSL.Context`: one per listener configuration, built once, shared by every connection.

Building a context per connection would kill resumption (the ticket keys and the session cache live in the
context) and cost CPU; pyOpenSSL also refuses changes to a context once a connection used it. So
everything here happens at build time, and the callbacks only record what happened on the connection:

- ``conn.lbsim_verify_error``: ``(errno, depth, reason)`` of the first client certificate check that failed
  (mitmproxy later reports only a generic message);
- ``conn.lbsim_peer_cert``: the client's leaf (depth-0) certificate as the verify callback saw it, so a
  refused certificate can still be logged (OpenSSL keeps no peer certificate when verification fails);
- ``conn.lbsim_alert_sent``: ``(level, code, description)`` of the last alert this side sent;
- ``conn.lbsim_sni_domain``: the per-domain certificate chosen by SNI, if any.

:func:`tls_verify_status` turns those, and the handshake error, into the connection log's
``tls_verify_status``.
"""

from __future__ import annotations

import datetime
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL, crypto

from simulator.errors import LbsimError
from simulator.policies.groups import GROUPS, groups_settable, set_groups
from simulator.policies.resolve import Policy
from simulator.policies.suites import NO_VERSION_OPTIONS, OPENSSL_VERSION_CONSTANTS, VERSIONS

VerifyClient = Literal["off", "on", "optional"]
MtlsMode = Literal["off", "passthrough", "verify"]
X509_V_ERR_CRL_HAS_EXPIRED = 12
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_CERT_REVOKED = 23
ClientCertRefusal = Literal["handshake", "http_400"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# TLS alert descriptions (RFC 8446 section 6 and predecessors) by code, as OpenSSL words them.
ALERTS: dict[int, str] = {
    0: "close notify",
    10: "unexpected message",
    20: "bad record mac",
    22: "record overflow",
    40: "handshake failure",
    42: "bad certificate",
    43: "unsupported certificate",
    44: "certificate revoked",
    45: "certificate expired",
    46: "certificate unknown",
    47: "illegal parameter",
    48: "unknown ca",
    49: "access denied",
    50: "decode error",
    51: "decrypt error",
    70: "protocol version",
    71: "insufficient security",
    80: "internal error",
    86: "inappropriate fallback",
    90: "user canceled",
    100: "no renegotiation",
    109: "missing extension",
    110: "unsupported extension",
    112: "unrecognized name",
    116: "certificate required",
    120: "no application protocol",
}

_SSL_CB_ALERT = 0x4000
_SSL_CB_WRITE = 0x08

# X.509 verify errors (X509_V_ERR_*) with a status of their own; any other failure is "untrusted".
_VERIFY_STATUS: dict[int, str] = {
    9: "Failed:ClientCertNotYetValid",
    10: "Failed:ClientCertExpired",
    22: "Failed:ClientCertMaxChainDepthExceeded",
    23: "Failed:ClientCertRevoked",
    26: "Failed:ClientCertPurposeInvalid",
}

# OpenSSL reason strings (and mitmproxy's rewordings of them) -> status; first match wins.
_REASON_STATUS: tuple[tuple[str, str], ...] = (
    ("peer did not return a certificate", "Failed:NoClientCertificate"),
    ("no shared cipher", "Failed:NoSharedCipher"),
    ("no ciphers available", "Failed:NoSharedCipher"),
    ("unsupported protocol", "Failed:ProtocolVersion"),
    ("wrong version number", "Failed:ProtocolVersion"),
    ("version too low", "Failed:ProtocolVersion"),
    ("no protocols available", "Failed:ProtocolVersion"),
    ("alert protocol version", "Failed:ProtocolVersion"),
    ("cannot agree on a tls version", "Failed:ProtocolVersion"),
    ("inappropriate fallback", "Failed:InappropriateFallback"),
    ("no suitable key share", "Failed:NoSharedGroup"),
    ("no shared groups", "Failed:NoSharedGroup"),
    ("no suitable signature algorithm", "Failed:NoSharedSignatureAlgorithm"),
    ("certificate verify failed", "Failed:ClientCertUntrusted"),
    ("alert unknown ca", "Failed:ServerCertRejected"),
    ("alert bad certificate", "Failed:ServerCertRejected"),
    ("alert certificate unknown", "Failed:ServerCertRejected"),
    ("does not trust the proxy", "Failed:ServerCertRejected"),
    ("http request", "Failed:NotTLS"),
    ("https proxy request", "Failed:NotTLS"),
    ("cannot parse clienthello", "Failed:NotTLS"),
    ("does not speak tls", "Failed:NotTLS"),
    ("no application protocol", "Failed:NoApplicationProtocol"),
    ("unexpected eof", "Failed:ConnectionClosed"),
    ("connection closed", "Failed:ConnectionClosed"),
    ("disconnected during the handshake", "Failed:ConnectionClosed"),
    ("connection reset", "Failed:ConnectionClosed"),
)

# Alerts this side sent -> status, when no error text says more.
_ALERT_STATUS: dict[int, str] = {
    70: "Failed:ProtocolVersion",
    116: "Failed:NoClientCertificate",
    45: "Failed:ClientCertExpired",
    48: "Failed:ClientCertUntrusted",
    42: "Failed:ClientCertUntrusted",
    86: "Failed:InappropriateFallback",
}


def key_type_of(key: Any) -> str:
    """``"RSA"`` or ``"ECDSA"`` for a private key, public key or certificate."""
    if isinstance(key, x509.Certificate):
        key = key.public_key()
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ECDSA"
    raise TypeError(f"unsupported key type {type(key).__name__}")


def verify_reason(errno: int) -> str:
    """OpenSSL's text for an X509_V_ERR_* code ("certificate has expired", ...)."""
    try:
        return SSL._ffi.string(SSL._lib.X509_verify_cert_error_string(errno)).decode()  # type: ignore[attr-defined]
    except Exception:  # a binding without it: the code still says what happened
        return f"X509 verify error {errno}"


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the handshake on `conn` resumed a session (ticket, session ID or TLS 1.3 PSK).

    pyOpenSSL has no method for it; mitmproxy reaches into the binding the same way.
    """
    return bool(SSL._lib.SSL_session_reused(conn._ssl))  # type: ignore[attr-defined]


def _record_verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    if depth == 0:
        conn.lbsim_peer_cert = cert  # type: ignore[attr-defined]
    # Keep the first failure: later calls for the same chain only repeat it at other depths.
    if not ok and getattr(conn, "lbsim_verify_error", None) is None:
        conn.lbsim_verify_error = (errno, depth, verify_reason(errno))  # type: ignore[attr-defined]
    return bool(ok)


def _accept_any(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    """Mutual TLS passthrough: any client certificate is accepted (the backend decides)."""
    if depth == 0:
        conn.lbsim_peer_cert = cert  # type: ignore[attr-defined]
    return True


def _verify_call(store_ctx: Any) -> tuple[SSL.Connection, Any, int, int]:
    """What a native verify callback is called about: the connection, the certificate (a pyOpenSSL `X509`,
    or None), the error so far and the depth, as pyOpenSSL's own wrapper hands them to `set_verify`'s."""
    lib = SSL._lib  # type: ignore[attr-defined]
    ssl = lib.X509_STORE_CTX_get_ex_data(store_ctx, lib.SSL_get_ex_data_X509_STORE_CTX_idx())
    conn = SSL.Connection._reverse_mapping[ssl]  # type: ignore[attr-defined]
    x509_ptr = lib.X509_STORE_CTX_get_current_cert(store_ctx)
    cert = None
    if x509_ptr != SSL._ffi.NULL:  # type: ignore[attr-defined]
        lib.X509_up_ref(x509_ptr)
        cert = crypto.X509._from_raw_x509_ptr(x509_ptr)  # type: ignore[attr-defined]
    return conn, cert, lib.X509_STORE_CTX_get_error(store_ctx), lib.X509_STORE_CTX_get_error_depth(store_ctx)


@dataclass(frozen=True)
class _Revocations:
    """A trust store's CRLs as the verify callback uses them: every revoked (issuer, serial) of every list,
    and the issuers all of whose lists have expired. A store may hold several CRLs of one issuer (one per
    AddTrustStoreRevocations call); a certificate any of them lists is revoked. OpenSSL's own CRL check
    consults one list per issuer (the newest), so it would forget the others."""

    revoked: frozenset[tuple[x509.Name, int]]
    expired: frozenset[x509.Name]
    ignore_expiry: bool

    @classmethod
    def of(cls, crls: Sequence[x509.CertificateRevocationList], ignore_expiry: bool) -> _Revocations:
        now = datetime.datetime.now(datetime.timezone.utc)
        revoked = frozenset((crl.issuer, entry.serial_number) for crl in crls for entry in crl)
        current = {crl.issuer for crl in crls if crl.next_update_utc is None or crl.next_update_utc > now}
        return cls(revoked, frozenset(crl.issuer for crl in crls) - current, ignore_expiry)

    def check(self, cert: x509.Certificate, depth: int, errno: int, ok: int) -> tuple[int, int]:
        """(errno, ok) for the certificate at `depth` of the chain: revocation first (at every depth, as
        RFC 5280's path validation does), as OpenSSL checks it before the signatures and dates; an expired
        date passes when the listener ignores expiry."""
        if (cert.issuer, cert.serial_number) in self.revoked:
            return X509_V_ERR_CERT_REVOKED, 0
        if depth == 0 and cert.issuer in self.expired:
            return X509_V_ERR_CRL_HAS_EXPIRED, 0  # as OpenSSL's leaf check: a stale list verifies nobody
        if not ok and self.ignore_expiry and errno == X509_V_ERR_CERT_HAS_EXPIRED:
            return 0, 1
        return errno, ok


def _trust_store_verify(ok: int, store_ctx: Any) -> int:
    """mtls_mode ``verify``: OpenSSL's chain check, then the store's revocations (`_Revocations` on the
    context). Native, like `_admit_and_record`, so that a refusal leaves its error in the store: OpenSSL
    then sends the matching alert (certificate_revoked) and keeps it as the verify result."""
    try:
        conn, cert, errno, depth = _verify_call(store_ctx)
        if cert is not None:
            errno, ok = conn.get_context().lbsim_revocations.check(cert.to_cryptography(), depth, errno, ok)
            SSL._lib.X509_STORE_CTX_set_error(store_ctx, errno)  # type: ignore[attr-defined]
        return int(_record_verify(conn, cert, errno, depth, ok))
    except Exception:  # noqa: BLE001 - a failure here refuses the client rather than admitting it unchecked
        return 0


_TRUST_STORE_VERIFY = SSL._ffi.callback("int (*)(int, X509_STORE_CTX *)", _trust_store_verify)  # type: ignore[attr-defined]


def _admit_and_record(ok: int, store_ctx: Any) -> int:
    """`client_cert_refusal="http_400"`: record the check on the connection and let the handshake go on, as
    nginx's verify callback does; the HTTP layer answers 400 afterwards (:func:`client_cert_verdict`).

    A native callback, not `Context.set_verify`: pyOpenSSL's wrapper clears the store's error when a callback
    returns true, and then OpenSSL keeps X509_V_OK as the connection's verify result and in the session, so a
    resumed session (no callback runs) would pass. Left alone, the error stays, as in nginx."""
    try:
        _record_verify(*_verify_call(store_ctx), ok)
    except Exception:  # noqa: BLE001 - a record lost; the verdict itself is OpenSSL's verify result
        pass
    return 1


_ADMIT_AND_RECORD = SSL._ffi.callback("int (*)(int, X509_STORE_CTX *)", _admit_and_record)  # type: ignore[attr-defined]


def client_cert_verdict(conn: SSL.Connection, verify_client: VerifyClient) -> tuple[str, str] | None:
    """After a handshake a `client_cert_refusal="http_400"` context let through: ``(tls_verify_status, reason)``
    when the client should be refused, None when it passes.

    The callback's record (the first failed check) comes first, as in handshake mode; without one, OpenSSL's
    verify result, which a resumed session carries from the handshake that created it (no callback runs on
    resumption). Reasons are OpenSSL's words, as in a handshake refusal ("certificate verify failed:
    certificate has expired (depth 0)").
    """
    recorded = getattr(conn, "lbsim_verify_error", None)  # the first failed check, as in handshake mode
    errno = SSL._lib.SSL_get_verify_result(conn._ssl)  # type: ignore[attr-defined]
    if recorded is None and errno != 0:  # X509_V_OK; resumed: the result of the session's handshake
        recorded = (errno, 0, verify_reason(errno))
    if recorded is not None:
        return (_VERIFY_STATUS.get(recorded[0], "Failed:ClientCertUntrusted"),
                f"certificate verify failed: {recorded[2]} (depth {recorded[1]})")
    if verify_client == "on" and conn.get_peer_certificate() is None:
        return "Failed:NoClientCertificate", "peer did not return a certificate"
    return None


def alert(level: int, code: int) -> tuple[int, int, str]:
    """An alert as ``conn.lbsim_alert_sent`` holds it: (level, code, description)."""
    return level, code, ALERTS.get(code, f"alert {code}")


def _record_alert(conn: SSL.Connection, where: int, ret: int) -> None:
    # The info callback runs at every state of a handshake (about 15 per connection), each a call from C
    # into Python: a metered listener connection sets a do-nothing one in its place and takes its alerts
    # from the meter's message callback instead (simulator.dataplane.addons.tls).
    if where & _SSL_CB_ALERT and where & _SSL_CB_WRITE:
        conn.lbsim_alert_sent = alert((ret >> 8) & 0xFF, ret & 0xFF)  # type: ignore[attr-defined]


def _alpn_selector(alpn: tuple[bytes, ...]):
    def select(conn: SSL.Connection, offered: list[bytes]) -> bytes:
        # Server order: h2 first when the listener enables HTTP/2. No overlap: carry on without ALPN
        # (HTTP/1.1), as lenient listeners do, rather than failing the handshake.
        for proto in alpn:
            if proto in offered:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    return select


def match_sni(name: str | None, domains: Mapping[str, Any]) -> str | None:
    """The configured domain serving `name`: an exact match, else a one-label wildcard ``*.example.com``."""
    if not name:
        return None
    name = name.lower().rstrip(".")
    table = {d.lower().rstrip("."): d for d in domains}
    if name in table:
        return table[name]
    head, _, parent = name.partition(".")
    if head and parent and f"*.{parent}" in table:
        return table[f"*.{parent}"]
    return None


def _sni_switcher(sni: Mapping[str, SSL.Context]):
    def on_servername(conn: SSL.Connection) -> None:
        raw = conn.get_servername()
        try:
            name = raw.decode("idna") if raw else None
        except UnicodeError:
            name = None
        domain = match_sni(name, sni)
        if domain is not None:
            conn.set_context(sni[domain])
            conn.lbsim_sni_domain = domain  # type: ignore[attr-defined]

    return on_servername


def build_server_context(
    policy: Policy,
    chain: Sequence[x509.Certificate],
    key: PrivateKey,
    *,
    client_ca: Sequence[x509.Certificate] | None = None,
    verify_client: VerifyClient = "off",
    client_cert_refusal: ClientCertRefusal = "handshake",
    session_timeout: int = 300,
    session_id_context: bytes = b"lbsim",
    alpn: tuple[bytes, ...] = (b"http/1.1",),
    sni: Mapping[str, SSL.Context | tuple[Sequence[x509.Certificate], PrivateKey]] | None = None,
    ignore_sni: bool = False,
    mtls_mode: MtlsMode = "off",
    trust_anchors: Sequence[x509.Certificate] | None = None,
    revocations: Sequence[x509.CertificateRevocationList] = (),
    ignore_client_certificate_expiry: bool = False,
    advertise_ca_names: bool = False,
    also: Sequence[tuple[Sequence[x509.Certificate], PrivateKey]] = (),
) -> SSL.Context:
    """A ready server context for one listener configuration.

    `chain` is the server certificate then its intermediates (and optionally the root), `key` its private
    key. The context negotiates exactly `policy` (versions, TLS <= 1.2 suites, TLS 1.3 suites) with server
    preference, ECDHE for forward secrecy and never DH parameters. Sessions (cache and tickets) live
    `session_timeout` seconds, at least one.

    `verify_client` ``"on"`` requires a client certificate chaining to `client_ca`; ``"optional"`` admits
    clients without one but still refuses a bad one. `client_cert_refusal` says how: ``"handshake"`` fails
    the handshake with a TLS alert; ``"http_400"`` lets it complete (``VERIFY_PEER`` without
    ``FAIL_IF_NO_PEER_CERT``, a callback that records the verdict and returns 1), as nginx does, and leaves
    the refusal to the HTTP layer (:func:`client_cert_verdict`). `alpn` lists the protocols in server preference
    order (``(b"h2", b"http/1.1")`` for an HTTP/2 listener).

    `sni` maps domains (exact or ``*.example.com``) to per-domain contexts, or to ``(chain, key)`` pairs
    built here with the same settings; other names, or none, get this context's certificate. Per-domain
    contexts must share the verify, ALPN and session settings: OpenSSL keeps the first context's session
    cache and ticket keys but takes the CA store and ALPN callback from the switched one.
    `ignore_sni` serves this certificate whatever the client asks (aliyun-slb).

    `mtls_mode` is the ALB's mutual TLS (independent of `verify_client`): ``"passthrough"`` asks for a
    client certificate and accepts any (or none); ``"verify"`` requires one that chains to `trust_anchors`
    and is not listed by any of `revocations` (CRLs; an issuer without one is not checked), expiry ignored with
    `ignore_client_certificate_expiry`; `advertise_ca_names` lists the anchors' names in the
    CertificateRequest (AdvertiseTrustStoreCaNames), else the list is empty.

    `also` adds certificates (chain, key) of other key types to the same context: an RSA and an ECDSA one on
    one listener (tencent MultiCertInfo). OpenSSL keeps one certificate per key type, each with its own chain,
    and serves the one the handshake can use: in TLS <= 1.2 the policy's first suite the client offers decides
    (ECDHE-ECDSA needs the ECDSA one), in TLS 1.3 the signature algorithms the client offers.
    """
    if not chain:
        raise LbsimError("MissingCertificate", "a server certificate chain is required", field="server_certificate")
    if verify_client not in ("off", "on", "optional"):
        raise LbsimError(
            "invalid_value",
            f"unknown ssl_verify_client {verify_client!r}; expected on or optional",
            field="ssl_verify_client",
        )
    if mtls_mode not in ("off", "passthrough", "verify"):
        raise LbsimError("invalid_value", f"unknown mtls_mode {mtls_mode!r}; expected off, passthrough or verify",
                         field="mtls_mode")
    if mtls_mode == "verify" and not trust_anchors:
        raise LbsimError("MissingTrustStore", "mtls_mode verify needs a trust store with CA certificates",
                         field="trust_store")
    if client_cert_refusal not in ("handshake", "http_400"):
        raise LbsimError("invalid_value", f"unknown client_cert_refusal {client_cert_refusal!r}; expected "
                         "handshake or http_400", field="client_cert_refusal")
    if verify_client != "off" and not client_ca:
        raise LbsimError(
            "MissingCaCertificate",
            "a mutual listener needs a CA certificate to verify clients against",
            field="ca_certificate",
        )

    ctx = SSL.Context(SSL.TLS_METHOD)
    # An idle connection keeps no record buffers (about 24 KiB per held connection, docs/performance.md): they
    # are allocated again for its next record. nginx sets the same mode on every context it builds.
    ctx.set_mode(SSL._lib.SSL_MODE_RELEASE_BUFFERS)
    versions = [v for v in VERSIONS if v in policy.versions]
    if not policy.tls13_ciphersuites and "TLSv1.3" in versions:
        versions.remove("TLSv1.3")  # nothing to negotiate it with: refuse it cleanly instead
    if not versions:
        raise LbsimError("InvalidPolicy", f"policy {policy.name!r} allows no TLS version", field="tls_policy")
    ctx.set_min_proto_version(OPENSSL_VERSION_CONSTANTS[versions[0]])
    ctx.set_max_proto_version(OPENSSL_VERSION_CONSTANTS[versions[-1]])
    gaps = 0
    for v in VERSIONS[VERSIONS.index(versions[0]) : VERSIONS.index(versions[-1]) + 1]:
        if v not in versions:
            gaps |= NO_VERSION_OPTIONS[v]
    ctx.set_options(
        gaps
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION  # vendors refuse client-initiated renegotiation
    )
    # The cipher string also carries @SECLEVEL=0, which TLS 1.0/1.1, SHA-1 and CCM_8 need under OpenSSL 3.
    ctx.set_cipher_list(policy.openssl_cipher_list().encode())
    ctx.set_tls13_ciphersuites(":".join(policy.tls13_ciphersuites).encode())
    # The policy's key-exchange groups, whatever the process-wide default (post-quantum policies add hybrids).
    # Without a way in (a stripped cryptography build) the pinned default still serves the policies that use it.
    if groups_settable() or policy.groups != GROUPS:
        try:
            set_groups(ctx, policy.groups)
        except (ValueError, RuntimeError) as e:
            raise LbsimError("InvalidPolicy", f"policy {policy.name!r}: {e}", field="tls_policy") from None
    # No load_tmp_dh, ever: DHE suites listed by a policy stay unusable (dh_auto is off by default).

    if not also:
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        _use_key(ctx, key, "server_certificate")
    else:
        kinds = [key_type_of(c[0]) for c, _ in ((chain, key), *also)]
        if len(set(kinds)) != len(kinds):
            raise LbsimError("InvalidCertificateSet", "certificates on one listener need different key types (one RSA, "
                             f"one ECDSA), got {' and '.join(kinds)}", field="server_certificates")
        for i, (c, k) in enumerate(((chain, key), *also)):
            _use_chain(ctx, c)
            _use_key(ctx, k, f"server_certificates[{i}]")

    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(max(1, int(session_timeout)))  # the session and ticket lifetime (and ticket hint)
    ctx.set_session_id(session_id_context)  # without it, resumption fails once VERIFY_PEER is on

    if verify_client != "off":
        store = ctx.get_cert_store()
        assert store is not None
        # Trust what was uploaded as the CA even when it is an intermediate, as the vendors do.
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        for ca in client_ca or ():
            store.add_cert(crypto.X509.from_cryptography(ca))
            ctx.add_client_ca(ca)
        mode = SSL.VERIFY_PEER
        if client_cert_refusal == "http_400":
            SSL._lib.SSL_CTX_set_verify(ctx._context, mode, _ADMIT_AND_RECORD)  # type: ignore[attr-defined]
        else:
            if verify_client == "on":
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, _record_verify)
    elif mtls_mode == "passthrough":
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    elif mtls_mode == "verify":
        store = ctx.get_cert_store()
        assert store is not None
        flags = crypto.X509StoreFlags.PARTIAL_CHAIN
        for ca in trust_anchors or ():
            store.add_cert(crypto.X509.from_cryptography(ca))
            if advertise_ca_names:
                ctx.add_client_ca(ca)
        store.set_flags(flags)
        ctx.lbsim_revocations = _Revocations.of(revocations, ignore_client_certificate_expiry)  # type: ignore[attr-defined]
        SSL._lib.SSL_CTX_set_verify(ctx._context, SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,  # type: ignore[attr-defined]
                                    _TRUST_STORE_VERIFY)
    ctx.set_info_callback(_record_alert)

    if alpn:
        ctx.set_alpn_select_callback(_alpn_selector(tuple(alpn)))

    if sni and not ignore_sni:
        domains: dict[str, SSL.Context] = {}
        for domain, target in sni.items():
            if isinstance(target, SSL.Context):
                domains[domain] = target
            else:
                d_chain, d_key = target
                domains[domain] = build_server_context(
                    policy,
                    d_chain,
                    d_key,
                    client_ca=client_ca,
                    verify_client=verify_client,
                    client_cert_refusal=client_cert_refusal,
                    session_timeout=session_timeout,
                    session_id_context=session_id_context,
                    alpn=alpn,
                    mtls_mode=mtls_mode,
                    trust_anchors=trust_anchors,
                    revocations=revocations,
                    ignore_client_certificate_expiry=ignore_client_certificate_expiry,
                    advertise_ca_names=advertise_ca_names,
                )
        ctx.set_tlsext_servername_callback(_sni_switcher(domains))
    return ctx


def _use_key(ctx: SSL.Context, key: PrivateKey, field: str) -> None:
    try:
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    except SSL.Error:
        raise LbsimError(
            "KeyCertificateMismatch",
            "The certificate and private key that you upload do not match",
            field=field,
        ) from None


def _use_chain(ctx: SSL.Context, chain: Sequence[x509.Certificate]) -> None:
    """Put a certificate and its own chain in the slot of its key type. `add_extra_chain_cert` would give every
    certificate one shared chain, and pyOpenSSL binds no SSL_CTX_add1_chain_cert; OpenSSL's
    use_certificate_chain_file sets the leaf and adds the rest to that leaf's own chain. Public data only."""
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    with tempfile.NamedTemporaryFile(prefix="lbsim-chain-", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        ctx.use_certificate_chain_file(f.name)


def _reasons(exc: BaseException | str | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, str):
        return exc.lower()
    parts: list[str] = []
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        parts += [str(e[-1]) for e in exc.args[0] if isinstance(e, tuple) and e]
    parts.append(str(exc))
    return " | ".join(parts).lower()


def tls_verify_status(conn: SSL.Connection | None, exc: BaseException | str | None) -> str:
    """The connection log's ``tls_verify_status`` for a finished handshake.

    ``"Success"``, or ``"Failed:"`` + the real reason: NoClientCertificate, ClientCertUntrusted,
    ClientCertExpired, ClientCertNotYetValid, ProtocolVersion, NoSharedCipher, ... `exc` is the handshake
    exception or mitmproxy's error text (None if there was none); the connection's recorded verify error
    and sent alert fill in what the text does not say, so ``tls_verify_status(conn, None)`` works in a
    ``tls_failed_client`` hook too.
    """
    verify = getattr(conn, "lbsim_verify_error", None) if conn is not None else None
    alert = getattr(conn, "lbsim_alert_sent", None) if conn is not None else None
    fatal_alert = alert if alert and alert[0] == 2 else None
    if exc is None and verify is None and fatal_alert is None:
        return "Success"
    if verify is not None:
        return _VERIFY_STATUS.get(verify[0], "Failed:ClientCertUntrusted")
    text = _reasons(exc)
    for needle, status in _REASON_STATUS:
        if needle in text:
            return status
    if isinstance(exc, TimeoutError) or "timed out" in text or "timeout" in text:
        return "Failed:Timeout"
    if isinstance(exc, (ConnectionError, SSL.ZeroReturnError)) or (
        isinstance(exc, SSL.SysCallError) and exc.args and exc.args[0] in (-1, 104, 32)
    ):
        return "Failed:ConnectionClosed"
    if fatal_alert is not None and fatal_alert[1] in _ALERT_STATUS:
        return _ALERT_STATUS[fatal_alert[1]]
    return "Failed:HandshakeError"


def handshake_failure_reason(conn: SSL.Connection | None, exc: BaseException | str | None) -> str | None:
    """Why a handshake failed, in OpenSSL's words (the connection log's ``error``).

    The recorded verify error comes first ("certificate verify failed: certificate has expired"), then
    OpenSSL's reason strings from `exc` ("peer did not return a certificate"), then `exc` as text; the alert
    this side sent is appended when there was one.
    """
    verify = getattr(conn, "lbsim_verify_error", None) if conn is not None else None
    alert = getattr(conn, "lbsim_alert_sent", None) if conn is not None else None
    if verify is not None:
        reason = f"certificate verify failed: {verify[2]} (depth {verify[1]})"
    elif isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        reason = "; ".join(str(e[-1]) for e in exc.args[0] if isinstance(e, tuple) and e)
    elif isinstance(exc, SSL.SysCallError):
        reason = "the client closed the connection during the handshake"
    elif exc is not None and str(exc):
        reason = str(exc)
    else:
        return None
    if alert is not None and alert[0] == 2:
        reason += f"; sent alert {alert[2]}"
    return reason


_ALERT_RE = re.compile(r"(?:sslv3|tlsv1|tlsv13|ssl/tls) alert (.+)")


def alert_from_error(exc: BaseException | str | None) -> str | None:
    """The alert description an OpenSSL error reports receiving (``"handshake failure"``), or None."""
    m = _ALERT_RE.search(_reasons(exc))
    return m.group(1).split(" | ")[0].strip() if m else None
