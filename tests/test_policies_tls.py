"""The server context on real loopback sockets: what negotiates, mutual TLS, resumption, SNI, ALPN.

Each test serves `build_server_context(...)` with the minimal `TLSTestServer` and probes it with
`simulator.policies.probe`; sslyze cross-checks once as an independent scanner. The mitmproxy listener reuses the
same context, so these are the expectations it must meet too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL

from simulator.errors import LbsimError
from simulator.policies import POLICIES, Policy, resolve_policy
from simulator.policies.context import build_server_context, client_cert_verdict, key_type_of, match_sni, session_reused
from simulator.policies.testing import TLSTestServer
from simulator.policies.probe import enumerate_tls, probe

HOST = "127.0.0.1"
GET = b"GET / HTTP/1.1\r\nHost: lb.example.com\r\n\r\n"
RSA, ECDSA = trustme.KeyType.RSA, trustme.KeyType.ECDSA
ALIYUN = [name for name, p in POLICIES.items() if p.profile == "aliyun-slb"]


@dataclass
class Pair:
    chain: list[x509.Certificate]
    key: object
    leaf: trustme.LeafCert

    @property
    def cert_pem(self) -> bytes:
        return b"".join(b.bytes() for b in self.leaf.cert_chain_pems)

    @property
    def key_pem(self) -> bytes:
        return self.leaf.private_key_pem.bytes()


def pair(ca: trustme.CA, *names: str, key_type: trustme.KeyType = RSA, **kw) -> Pair:
    leaf = ca.issue_cert(*names, key_type=key_type, **kw)  # trustme's leaf default is ECDSA
    chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
    return Pair(chain, serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None), leaf)


@dataclass
class PKI:
    ca: trustme.CA
    rsa: Pair
    ecdsa: Pair
    client_ca: trustme.CA
    clients: dict[str, Pair | None]
    domain_a: Pair
    wildcard: Pair

    @property
    def client_ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.client_ca.cert_pem.bytes())


@pytest.fixture(scope="module")
def pki() -> PKI:
    ca = trustme.CA(key_type=RSA)
    ec_ca = trustme.CA(key_type=ECDSA)
    client_ca, other_ca = trustme.CA(key_type=RSA), trustme.CA(key_type=RSA)
    now = dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    return PKI(
        ca=ca,
        rsa=pair(ca, "lb.example.com", "localhost"),
        ecdsa=pair(ec_ca, "lb.example.com", "localhost", key_type=ECDSA),
        client_ca=client_ca,
        clients={
            "none": None,
            "valid": pair(client_ca, "client@example.com", common_name="valid"),
            "untrusted": pair(other_ca, "client@example.com", common_name="untrusted"),
            "expired": pair(client_ca, "client@example.com", common_name="expired", not_before=now - 10 * day, not_after=now - day),
            "not-yet-valid": pair(client_ca, "client@example.com", common_name="future", not_before=now + day, not_after=now + 10 * day),
        },
        domain_a=pair(ca, "a.example.com"),
        wildcard=pair(ca, "*.wild.example.com"),
    )


@contextlib.contextmanager
def serve(policy: Policy, cert: Pair, **kw) -> Iterator[TLSTestServer]:
    with TLSTestServer(build_server_context(policy, cert.chain, cert.key, **kw)) as server:
        yield server


# --- what negotiates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALIYUN)
def test_aliyun_policy_negotiates_exactly_its_table_with_rsa(pki: PKI, name: str) -> None:
    policy = POLICIES[name]
    with serve(policy, pki.rsa) as server:
        found = enumerate_tls(HOST, server.port)
    assert found == policy.negotiable("RSA")  # versions, suites and server preference order
    assert "DES-CBC3-SHA" not in {s for suites in found.values() for s in suites}


@pytest.mark.parametrize("cert", ["rsa", "ecdsa"])
def test_tencent_default_negotiates_its_expansion(pki: PKI, cert: str) -> None:
    policy = resolve_policy("tencent-clb", None)
    pair_ = getattr(pki, cert)
    with serve(policy, pair_) as server:
        found = enumerate_tls(HOST, server.port)
    expected = policy.negotiable(key_type_of(pair_.key))
    assert found == expected
    assert set(expected) == {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}


def test_strict_with_1_3_and_an_ecdsa_certificate(pki: PKI) -> None:
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    with serve(policy, pki.ecdsa) as server:
        found = enumerate_tls(HOST, server.port)
    assert found == policy.negotiable("ECDSA")
    assert all("ECDSA" in s for s in found["TLSv1.2"]) and len(found["TLSv1.3"]) == 5


def test_an_rsa_and_an_ecdsa_certificate_on_one_context(pki: PKI) -> None:
    """tencent MultiCertInfo: one context, two certificates; every suite either can serve negotiates, in the
    policy's order, and the suite picks the certificate (tests/test_listener.py verifies both chains)."""
    policy = resolve_policy("tencent-clb", None)
    ctx = build_server_context(policy, pki.rsa.chain, pki.rsa.key, also=[(pki.ecdsa.chain, pki.ecdsa.key)])
    with TLSTestServer(ctx) as server:
        found = enumerate_tls(HOST, server.port)
        for suite, key_type in (("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDSA"), ("ECDHE-RSA-AES256-GCM-SHA384", "RSA")):
            r = probe(HOST, server.port, version="TLSv1.2", ciphers=suite)
            assert r.ok and key_type_of(r.server_chain[0]) == key_type, (suite, r.error)
    assert found == policy.negotiable("ECDSA+RSA")
    assert found["TLSv1.2"][:2] == ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"]  # the seed's order
    with pytest.raises(LbsimError) as info:
        build_server_context(policy, pki.rsa.chain, pki.rsa.key, also=[(pki.domain_a.chain, pki.domain_a.key)])
    assert info.value.code == "InvalidCertificateSet" and info.value.field == "server_certificates"


def test_classic_aliyun_policy_has_nothing_for_an_ecdsa_certificate(pki: PKI) -> None:
    with serve(POLICIES["tls_cipher_policy_1_0"], pki.ecdsa) as server:
        r = probe(HOST, server.port)
        rec = server.next_record()
    assert not r.ok and r.alert == "handshake failure" and rec.status == "Failed:NoSharedCipher"


@pytest.mark.parametrize("name", ALIYUN)
def test_versions_outside_the_policy_are_refused(pki: PKI, name: str) -> None:
    policy = POLICIES[name]
    with serve(policy, pki.rsa) as server:
        for version in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"):
            r = probe(HOST, server.port, version=version)
            rec = server.next_record()
            if version in policy.versions:
                assert r.ok and r.version == version and rec.status == "Success", (version, r)
            else:
                assert not r.ok and r.alert == "protocol version", (version, r)
                assert rec.status == "Failed:ProtocolVersion"
        # the client offering everything gets the newest version the policy allows
        assert probe(HOST, server.port).version == policy.versions[-1]


def test_a_version_gap_in_a_custom_policy(pki: PKI) -> None:
    policy = resolve_policy("tencent-clb", {"ssl_protocols": "TLSv1 TLSv1.2", "ssl_ciphers": "ECDHE-RSA-AES128-SHA"})
    with serve(policy, pki.rsa) as server:
        assert enumerate_tls(HOST, server.port) == {"TLSv1": ["ECDHE-RSA-AES128-SHA"], "TLSv1.2": ["ECDHE-RSA-AES128-SHA"]}
        # the server answers a TLS 1.1-only client with TLS 1.0 (1.1 is off), which that client refuses
        r = probe(HOST, server.port, version="TLSv1.1")
        assert not r.ok and r.version is None and "unsupported protocol" in r.error
        server.drain()
        assert probe(HOST, server.port, version="TLSv1.1", ciphers="AES128-SHA").alert == "handshake failure"


def test_no_shared_cipher_is_reported_on_both_sides(pki: PKI) -> None:
    with serve(POLICIES["tls_cipher_policy_1_2_strict"], pki.rsa) as server:
        r = probe(HOST, server.port, version="TLSv1.2", ciphers="AES128-GCM-SHA256")
        rec = server.next_record()
    assert not r.ok and r.alert == "handshake failure" and rec.status == "Failed:NoSharedCipher"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_server_cipher_preference(pki: PKI, version: str) -> None:
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    with serve(policy, pki.rsa) as server:
        if version == "TLSv1.2":
            offered = list(reversed(policy.negotiable("RSA")["TLSv1.2"]))
            r = probe(HOST, server.port, version=version, ciphers=":".join(offered))
        else:
            offered = list(reversed(policy.tls13_ciphersuites))
            r = probe(HOST, server.port, version=version, tls13_ciphersuites=":".join(offered))
    assert r.cipher == offered[-1] == policy.negotiable("RSA")[version][0]


def test_sslyze_agrees(pki: PKI) -> None:
    """An independent scanner (sslyze, on nassl's own OpenSSL builds) sees the same matrices."""
    from sslyze import ScanCommand, Scanner, ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum

    commands = {
        "TLSv1": ScanCommand.TLS_1_0_CIPHER_SUITES,
        "TLSv1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
        "TLSv1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
        "TLSv1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
    }
    names = ["tls_cipher_policy_1_0", "tls_cipher_policy_1_2_strict_with_1_3"]
    with contextlib.ExitStack() as stack:
        servers = {stack.enter_context(serve(POLICIES[n], pki.rsa)).port: n for n in names}
        scanner = Scanner()
        scanner.queue_scans(
            [
                ServerScanRequest(
                    server_location=ServerNetworkLocation("localhost", port, ip_address=HOST),
                    scan_commands=set(commands.values()),
                )
                for port in servers
            ]
        )
        results = list(scanner.get_results())
    assert len(results) == 2
    for res in results:
        assert res.scan_status == ServerScanStatusEnum.COMPLETED, res.connectivity_error_trace
        policy = POLICIES[servers[res.server_location.port]]
        seen: dict[str, set[str]] = {}
        rejected: set[str] = set()
        for version, command in commands.items():
            attempt = getattr(res.scan_result, command.value)
            assert attempt.result is not None, attempt.error_trace
            accepted = {c.cipher_suite.openssl_name for c in attempt.result.accepted_cipher_suites}
            rejected |= {c.cipher_suite.openssl_name for c in attempt.result.rejected_cipher_suites}
            if accepted:
                seen[version] = accepted
        assert seen == {v: set(s) for v, s in policy.negotiable("RSA").items()}
        if "DES-CBC3-SHA" in policy.ciphers:
            assert "DES-CBC3-SHA" in rejected  # sslyze offered it (legacy nassl); this OpenSSL cannot


# --- mutual TLS --------------------------------------------------------------------------------------

MUTUAL = {
    # client certificate -> (status with "on", status with "optional", alert the client gets per version)
    "none": ("Failed:NoClientCertificate", "Success", {"TLSv1.2": "handshake failure", "TLSv1.3": "certificate required"}),
    "valid": ("Success", "Success", None),
    "untrusted": ("Failed:ClientCertUntrusted", "Failed:ClientCertUntrusted", "unknown ca"),
    "expired": ("Failed:ClientCertExpired", "Failed:ClientCertExpired", "certificate expired"),
    "not-yet-valid": ("Failed:ClientCertNotYetValid", "Failed:ClientCertNotYetValid", "bad certificate"),
}


@pytest.mark.parametrize("verify_client", ["on", "optional"])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_mutual_matrix(pki: PKI, verify_client: str, version: str) -> None:
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    with serve(policy, pki.rsa, client_ca=[pki.client_ca_cert], verify_client=verify_client) as server:
        for kind, client in pki.clients.items():
            on, optional, alert = MUTUAL[kind]
            status = on if verify_client == "on" else optional
            creds = {"client_cert_pem": client.cert_pem, "client_key_pem": client.key_pem} if client else {}
            r = probe(HOST, server.port, version=version, http_request=GET, **creds)
            rec = server.next_record()
            assert rec.status == status, (kind, rec)
            if status == "Success":
                assert r.ok and json.loads(r.http_response.split(b"\r\n\r\n", 1)[1])["client"] == rec.client_subject
                assert (rec.client_subject is not None) == (client is not None)
            else:
                expected_alert = alert[version] if isinstance(alert, dict) else alert
                assert not r.ok and r.alert == expected_alert, (kind, r)
                assert r.http_response is None
                if kind != "none":
                    assert rec.verify_error is not None and rec.verify_error[1] == 0  # the leaf


def _handshake_pair(ctx: SSL.Context, client: Pair | None, version: str, session: SSL.Session | None = None
                    ) -> tuple[SSL.Connection, SSL.Connection]:
    """One handshake over a socketpair: (server side, client side), both connections kept for inspection."""
    server_sock, client_sock = socket.socketpair()
    server = SSL.Connection(ctx, server_sock)
    server.set_accept_state()
    cctx = SSL.Context(SSL.TLS_METHOD)
    pinned = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}[version]
    cctx.set_min_proto_version(pinned)
    cctx.set_max_proto_version(pinned)
    cctx.set_options(SSL.OP_NO_TICKET)  # TLS 1.2 resumes by session ID
    if client is not None:
        cctx.use_certificate(client.chain[0])
        cctx.use_privatekey(client.key)
    conn = SSL.Connection(cctx, client_sock)
    conn.set_connect_state()
    if session is not None:
        conn.set_session(session)
    done = threading.Thread(target=conn.do_handshake)
    done.start()
    server.do_handshake()
    done.join(5)
    return server, conn


@pytest.mark.parametrize("verify_client", ["on", "optional"])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_http_400_refusal_lets_the_handshake_through_and_keeps_the_verdict(pki: PKI, verify_client: str,
                                                                            version: str) -> None:
    """`client_cert_refusal="http_400"`: every client completes the handshake (as with nginx's callback); the
    verdict is the handshake mode's status, and a resumed TLS 1.2 session (no callback runs) keeps it."""
    ctx = build_server_context(POLICIES["tls_cipher_policy_1_2_strict_with_1_3"], pki.rsa.chain, pki.rsa.key,
                               client_ca=[pki.client_ca_cert], verify_client=verify_client,
                               client_cert_refusal="http_400")
    for kind, client in pki.clients.items():
        on, optional, _ = MUTUAL[kind]
        status = on if verify_client == "on" else optional
        server, conn = _handshake_pair(ctx, client, version)
        verdict = client_cert_verdict(server, verify_client)
        assert (verdict[0] if verdict else "Success") == status, (kind, verdict)
        if kind in ("untrusted", "expired"):
            reason = {"untrusted": "unable to get local issuer certificate", "expired": "certificate has expired"}[kind]
            assert verdict[1] == f"certificate verify failed: {reason} (depth 0)"
            assert server.get_peer_certificate() is not None  # the refused certificate is there to log
        if version == "TLSv1.2" and kind in ("valid", "expired"):
            again, _ = _handshake_pair(ctx, client, version, session=conn.get_session())
            assert session_reused(again)
            assert client_cert_verdict(again, verify_client) == verdict, kind
    with pytest.raises(LbsimError) as info:
        build_server_context(POLICIES["tls_cipher_policy_1_2"], pki.rsa.chain, pki.rsa.key,
                             client_ca=[pki.client_ca_cert], verify_client="on", client_cert_refusal="reset")
    assert info.value.field == "client_cert_refusal"


def test_mutual_requires_a_ca_and_a_known_mode(pki: PKI) -> None:
    policy = POLICIES["tls_cipher_policy_1_2"]
    with pytest.raises(LbsimError) as info:
        build_server_context(policy, pki.rsa.chain, pki.rsa.key, verify_client="on")
    assert info.value.code == "MissingCaCertificate" and info.value.field == "ca_certificate"
    with pytest.raises(LbsimError) as info:
        build_server_context(policy, pki.rsa.chain, pki.rsa.key, client_ca=[pki.client_ca_cert], verify_client="required")
    assert info.value.field == "ssl_verify_client"


def test_a_key_that_does_not_match_is_refused(pki: PKI) -> None:
    with pytest.raises(LbsimError) as info:
        build_server_context(POLICIES["tls_cipher_policy_1_2"], pki.rsa.chain, pki.domain_a.key)
    assert info.value.code == "KeyCertificateMismatch"


# --- sessions ----------------------------------------------------------------------------------------


def _resume(port: int, version: str, tickets: bool = True, **kw) -> tuple:
    first = probe(HOST, port, version=version, tickets=tickets, http_request=GET, **kw)
    assert first.ok and not first.resumed and first.session is not None
    return first


def test_resumption_within_and_after_the_lifetime(pki: PKI) -> None:
    """Tickets (TLS 1.2 and 1.3) and session IDs (TLS 1.2, tickets off) resume within the lifetime, and
    give a full handshake once it is over (lifetime 1 s, like 300 s at time_scale 1/300)."""
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    cases = [("TLSv1.2", True), ("TLSv1.3", True), ("TLSv1.2", False)]
    with serve(policy, pki.rsa) as long_lived, serve(policy, pki.rsa, session_timeout=1) as short_lived:
        for version, tickets in cases:
            first = _resume(long_lived.port, version, tickets)
            again = probe(HOST, long_lived.port, version=version, tickets=tickets, session=first.session, http_request=GET)
            assert again.ok and again.resumed, (version, tickets)
            assert again.bytes_received < first.bytes_received - 1000  # no certificate chain this time
        firsts = [(_resume(short_lived.port, v, t), v, t) for v, t in cases]
        time.sleep(2.1)
        for first, version, tickets in firsts:
            late = probe(HOST, short_lived.port, version=version, tickets=tickets, session=first.session, http_request=GET)
            assert late.ok and not late.resumed, (version, tickets)
        server_side = [rec.resumed for rec in long_lived.drain()]
    assert server_side == [False, True] * 3


def test_resumption_on_a_mutual_listener(pki: PKI) -> None:
    """With VERIFY_PEER, resumption needs the session id context (else 'session id context uninitialized')."""
    valid = pki.clients["valid"]
    creds = {"client_cert_pem": valid.cert_pem, "client_key_pem": valid.key_pem}
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    with serve(policy, pki.rsa, client_ca=[pki.client_ca_cert], verify_client="on", session_id_context=b"\x01" * 32) as server:
        for version, tickets in (("TLSv1.2", True), ("TLSv1.2", False), ("TLSv1.3", True)):
            s = _resume(server.port, version, tickets, **creds).session
            again = probe(HOST, server.port, version=version, tickets=tickets, session=s, http_request=GET, **creds)
            assert again.ok and again.resumed, (version, tickets, again.error)


def _crl(ca: trustme.CA, *revoked: Pair | x509.Certificate, last_update: dt.datetime,
         next_update: dt.datetime) -> x509.CertificateRevocationList:
    """A CRL of `ca` with the given dates (two lists of one issuer, made within one second, share them)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
    builder = builder.last_update(last_update).next_update(next_update)
    for item in revoked:
        serial = (item.chain[0] if isinstance(item, Pair) else item).serial_number
        builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder()
                                                  .serial_number(serial).revocation_date(last_update).build())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def test_a_trust_store_revokes_what_any_of_its_lists_names(pki: PKI) -> None:
    """mtls_mode verify: every CRL of the store counts, even several from one issuer with the same dates
    (OpenSSL's own check would consult one of them); a client no list names passes; an issuer whose only
    list has expired verifies nobody."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    first, second = (pair(pki.client_ca, "client@example.com", common_name=f"revoked-{i}") for i in (1, 2))
    dates = {"last_update": now - dt.timedelta(minutes=5), "next_update": now + dt.timedelta(days=1)}
    lists = [_crl(pki.client_ca, first, **dates), _crl(pki.client_ca, second, **dates)]
    policy = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    for order in (lists, lists[::-1]):
        with serve(policy, pki.rsa, mtls_mode="verify", trust_anchors=[pki.client_ca_cert], revocations=order) as server:
            for client, status in ((first, "Failed:ClientCertRevoked"), (second, "Failed:ClientCertRevoked"),
                                   (pki.clients["valid"], "Success")):
                r = probe(HOST, server.port, version="TLSv1.2", http_request=GET,
                          client_cert_pem=client.cert_pem, client_key_pem=client.key_pem)
                assert server.next_record().status == status, client.leaf
                assert r.ok == (status == "Success") and (r.ok or r.alert == "certificate revoked"), r
    # A revoked intermediate: its clients are refused, at depth 1, by the root's list.
    root = trustme.CA(key_type=RSA)
    intermediate = root.create_child_ca()
    below = pair(intermediate, "client@example.com", common_name="below-intermediate")
    revoked_ca = _crl(root, x509.load_pem_x509_certificate(intermediate.cert_pem.bytes()), **dates)
    anchors = [x509.load_pem_x509_certificate(root.cert_pem.bytes())]
    for revocations, status in (([], "Success"), ([revoked_ca], "Failed:ClientCertRevoked")):
        with serve(policy, pki.rsa, mtls_mode="verify", trust_anchors=anchors, revocations=revocations) as server:
            r = probe(HOST, server.port, client_cert_pem=below.cert_pem, client_key_pem=below.key_pem, http_request=GET)
            record = server.next_record()
            assert record.status == status and r.ok == (status == "Success"), (record, r)
            assert record.verify_error is None or record.verify_error[1] == 1
    stale = _crl(pki.client_ca, first, last_update=now - dt.timedelta(days=2), next_update=now - dt.timedelta(days=1))
    with serve(policy, pki.rsa, mtls_mode="verify", trust_anchors=[pki.client_ca_cert], revocations=[stale]) as server:
        valid = pki.clients["valid"]
        assert not probe(HOST, server.port, client_cert_pem=valid.cert_pem, client_key_pem=valid.key_pem).ok
        assert server.next_record().verify_error[2] == "CRL has expired"


def test_sessions_do_not_cross_listeners(pki: PKI) -> None:
    policy = POLICIES["tls_cipher_policy_1_2"]
    with serve(policy, pki.rsa) as one, serve(policy, pki.rsa) as other:
        s = _resume(one.port, "TLSv1.2").session
        assert not probe(HOST, other.port, session=s).resumed


# --- SNI and ALPN ------------------------------------------------------------------------------------


def test_match_sni() -> None:
    domains = {"a.example.com": 1, "*.wild.example.com": 2}
    assert match_sni("A.Example.COM.", domains) == "a.example.com"
    assert match_sni("x.wild.example.com", domains) == "*.wild.example.com"
    assert match_sni("y.x.wild.example.com", domains) is None  # one label only
    assert match_sni("wild.example.com", domains) is None
    assert match_sni(None, domains) is None


def test_tencent_sni_per_domain_and_wildcard_certificates(pki: PKI) -> None:
    policy = resolve_policy("tencent-clb", None)
    wildcard_ctx = build_server_context(policy, pki.wildcard.chain, pki.wildcard.key)
    sni = {"a.example.com": (pki.domain_a.chain, pki.domain_a.key), "*.wild.example.com": wildcard_ctx}
    with serve(policy, pki.rsa, sni=sni) as server:
        cases = {
            "a.example.com": ["a.example.com"],
            "x.wild.example.com": ["*.wild.example.com"],
            "deep.x.wild.example.com": ["lb.example.com", "localhost"],
            "other.example.org": ["lb.example.com", "localhost"],
            None: ["lb.example.com", "localhost"],
        }
        for name, expected in cases.items():
            r = probe(HOST, server.port, sni=name, http_request=GET)
            assert r.ok and r.server_names == expected, name
            rec = server.next_record()
            assert rec.sni == name and rec.sni_domain == (name if name == "a.example.com" else "*.wild.example.com" if name == "x.wild.example.com" else None)


@pytest.mark.parametrize("ignore_sni", [True, False])
def test_aliyun_one_certificate_whatever_the_sni(pki: PKI, ignore_sni: bool) -> None:
    # aliyun-slb: either no sni mapping at all, or one that the listener is told to ignore
    sni = {"a.example.com": (pki.domain_a.chain, pki.domain_a.key)} if ignore_sni else None
    with serve(POLICIES["tls_cipher_policy_1_0"], pki.rsa, sni=sni, ignore_sni=ignore_sni) as server:
        fingerprints = {probe(HOST, server.port, sni=name).server_fingerprint_sha256 for name in ("a.example.com", "b.example.com", None)}
    assert len(fingerprints) == 1 and None not in fingerprints


def test_sni_contexts_keep_the_listener_session_cache(pki: PKI) -> None:
    policy = resolve_policy("tencent-clb", None)
    with serve(policy, pki.rsa, sni={"a.example.com": (pki.domain_a.chain, pki.domain_a.key)}) as server:
        s = _resume(server.port, "TLSv1.2", sni="a.example.com").session
        again = probe(HOST, server.port, version="TLSv1.2", sni="a.example.com", session=s)
    assert again.resumed and again.server_names == ["a.example.com"]


@pytest.mark.parametrize(
    ("listener", "offered", "chosen"),
    [
        ((b"h2", b"http/1.1"), ["h2", "http/1.1"], "h2"),
        ((b"h2", b"http/1.1"), ["http/1.1", "h2"], "h2"),  # server preference
        ((b"h2", b"http/1.1"), ["http/1.1"], "http/1.1"),
        ((b"http/1.1",), ["h2", "http/1.1"], "http/1.1"),
        ((b"http/1.1",), ["h2"], None),  # no overlap: no ALPN, the handshake still succeeds
        ((b"http/1.1",), None, None),
    ],
)
def test_alpn(pki: PKI, listener: tuple[bytes, ...], offered: list[str] | None, chosen: str | None) -> None:
    with serve(resolve_policy("tencent-clb", None), pki.rsa, alpn=listener) as server:
        r = probe(HOST, server.port, alpn=offered)
        rec = server.next_record()
    assert r.ok and r.alpn == chosen and rec.alpn == chosen
