"""The aws-alb profile: AWS's security policies (post-quantum ones included), ACM's certificate rules, the
listener's headers, error pages and timeouts, mutual TLS in passthrough and verify mode with a trust store
and revocations, and the ALB connection log. Real handshakes throughout: `build_server_context` behind the
minimal `TLSTestServer`, or a real lab (mitmproxy listener, mock backend) for the listener behaviour.
"""

from __future__ import annotations

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulator.policies.probe import probe
from simulator.policies import POLICIES, PROFILES, resolve_policy
from simulator.policies.context import build_server_context
from simulator.policies.groups import GROUPS
from simulator.policies.testing import TLSTestServer
from simulator.vendors import aws_alb

HOST = "127.0.0.1"
GET = b"GET / HTTP/1.1\r\nHost: lb.example.com\r\n\r\n"
AWS = [name for name, p in POLICIES.items() if p.profile == "aws-alb"]
PQ = [name for name in AWS if "-PQ-" in name]
PQ_ONLY_CLIENTS = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")


@pytest.fixture(scope="module")
def server_pair() -> tuple[list[x509.Certificate], object]:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("lb.example.com", key_type=trustme.KeyType.RSA)
    chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
    return chain, serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)


# ---- 1. security policies as data ----------------------------------------------------------------------


def test_every_named_policy_is_registered_with_its_groups() -> None:
    wanted = {
        "ELBSecurityPolicy-2016-08", "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06", "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
        "ELBSecurityPolicy-TLS13-1-0-2021-06", "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-FS-1-2-Res-2020-10", "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        "ELBSecurityPolicy-TLS13-1-1-2021-06", "ELBSecurityPolicy-TLS-1-2-2017-01", "ELBSecurityPolicy-TLS-1-1-2017-01",
        "ELBSecurityPolicy-FS-2018-06", "ELBSecurityPolicy-2015-05", "ELBSecurityPolicy-TLS-1-0-2015-04",
        "ELBSecurityPolicy-FS-1-2-Res-2019-08", "ELBSecurityPolicy-FS-1-1-2019-08", "ELBSecurityPolicy-FS-1-2-2019-08",
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-0-PQ-2025-09",
    }  # fmt: skip
    assert set(AWS) == wanted
    assert PROFILES["aws-alb"].default_policy == "ELBSecurityPolicy-2016-08"  # the API's default
    assert resolve_policy("aws-alb", None).name == "ELBSecurityPolicy-2016-08"
    for name in AWS:
        groups = POLICIES[name].groups
        if name in PQ:
            assert groups[:3] == ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")
        else:
            assert not any("MLKEM" in g for g in groups)
    # Every PQ policy is its 2021-06 sibling plus the hybrid groups.
    for name in PQ:
        sibling = POLICIES[name.replace("-PQ-2025-09", "-2021-06")]
        assert (POLICIES[name].versions, POLICIES[name].ciphers) == (sibling.versions, sibling.ciphers)
    # DescribeSSLPolicies' priority order: Ext2 puts ECDHE-ECDSA-AES256-SHA before ECDHE-RSA-AES256-SHA, 2016-08
    # the other way round; TLS-1-0-2015-04 is 2016-08's 18 suites plus DES-CBC3-SHA (not in this OpenSSL).
    ext2, classic = POLICIES["ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06"].ciphers, POLICIES["ELBSecurityPolicy-2016-08"].ciphers
    assert ext2[10:12] == ("ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA") and set(ext2) == set(classic)
    assert classic[10:12] == ("ECDHE-RSA-AES256-SHA", "ECDHE-ECDSA-AES256-SHA")
    assert POLICIES["ELBSecurityPolicy-TLS-1-0-2015-04"].ciphers == classic + ("DES-CBC3-SHA",)
    assert POLICIES["ELBSecurityPolicy-TLS-1-0-2015-04"].unavailable == ("DES-CBC3-SHA",)
    # Every other profile keeps the groups it had.
    assert {p.groups for p in POLICIES.values() if p.profile != "aws-alb"} == {GROUPS}


def test_custom_policies_are_refused_for_aws_alb() -> None:
    with pytest.raises(Exception) as e:
        resolve_policy("aws-alb", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA"]}, field="listeners[0].tls_policy")
    assert e.value.code == "CustomPolicyNotSupported" and e.value.field == "listeners[0].tls_policy"


def test_aws_alb_is_one_registered_vendor_profile() -> None:
    """Everything the ALB decides is its PROFILE's data, read through the registry; the other vendors keep
    the pinned classic groups and their own defaults."""
    from simulator import vendors
    from simulator.dataplane.addons.pages import ERROR_SERVER
    from simulator.metering import billing
    from simulator.vendors.profile import CLASSIC_GROUPS

    p = vendors.get("aws-alb")
    assert p is aws_alb.PROFILE and "aws-alb" in vendors.names()
    assert not p.tls.custom_policies and vendors.get("aliyun-slb").tls.custom_policies
    assert (p.limits.idle_timeout, p.limits.http2) == ((1, 4000, 60), True)
    assert p.headers.x_forwarded_port and p.headers.amzn_trace_id
    assert not any(vendors.get(n).headers.x_forwarded_port or vendors.get(n).mtls or vendors.get(n).connection_log
                   for n in ("aliyun-slb", "tencent-clb"))
    assert (p.certs.max_key_bytes, p.certs.require_v3) == (5120, True)
    assert p.certs.error_codes == {"CertificateExpired", "CertificateNotYetValid"}
    assert p.mtls is not None and p.mtls.modes == ("off", "passthrough", "verify")
    assert p.connection_log is not None and p.connection_log.fields == aws_alb.CONNECTION_LOG_FIELDS
    assert ERROR_SERVER["aws-alb"] == "awselb/2.0" and billing.MODELS["aws-alb"] is p.billing
    for name in ("aliyun-slb", "tencent-clb"):
        assert {row.groups for row in vendors.get(name).tls.policies} == {CLASSIC_GROUPS}
    assert CLASSIC_GROUPS == GROUPS  # the profile layer's default is the process-wide pin


# ---- 2. key-exchange groups per listener ---------------------------------------------------------------


@pytest.mark.parametrize("name", AWS)
def test_pq_only_client_succeeds_exactly_on_the_pq_policies(server_pair, name: str) -> None:
    policy = POLICIES[name]
    chain, key = server_pair
    with TLSTestServer(build_server_context(policy, chain, key)) as server:
        for group in PQ_ONLY_CLIENTS:
            # ML-KEM exists in TLS 1.3 only: a TLS 1.3 client whose one key share is a hybrid.
            r = probe(HOST, server.port, version="TLSv1.3", groups=[group], http_request=GET)
            if name in PQ:
                assert r.ok and r.group == group, (group, r.error)
            else:
                assert not r.ok, (group, r.version)
            server.drain()
            # Offered every version, it never gets a hybrid from a classic policy (at most TLS 1.2 with
            # RSA key exchange, as the 2016-08 family still lists AES128-GCM-SHA256 and friends).
            r = probe(HOST, server.port, groups=[group])
            assert (r.ok and r.group == group) if name in PQ else (not r.ok or "MLKEM" not in (r.group or ""))
            server.drain()
        # Classic clients negotiate on both kinds of policy.
        for group, expect in (("X25519", "x25519"), ("P-256", "secp256r1"), ("P-384", "secp384r1")):
            r = probe(HOST, server.port, groups=[group], http_request=GET)
            assert r.ok and r.group == expect, (group, r.error)
            server.drain()


def test_pq_policy_prefers_the_hybrid_when_the_client_offers_both(server_pair) -> None:
    chain, key = server_pair
    ctx = build_server_context(POLICIES["ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"], chain, key)
    with TLSTestServer(ctx) as server:
        r = probe(HOST, server.port, groups=["X25519MLKEM768", "X25519"])
        assert r.ok and r.group == "X25519MLKEM768"
        # A TLS 1.2 client falls back to classic ECDHE on the same listener.
        r = probe(HOST, server.port, version="TLSv1.2", groups=["X25519MLKEM768", "X25519"])
        assert r.ok and r.version == "TLSv1.2" and r.group == "x25519"


# ---- a real lab: aws-alb listeners behind mitmproxy, one mock backend ----------------------------------

import json  # noqa: E402
import shlex  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import urllib.parse  # noqa: E402

from OpenSSL import SSL  # noqa: E402

from simulator.certs import LabPKI  # noqa: E402
from simulator.harness.running import RunningLab, start_lab  # noqa: E402
from simulator.model.config import parse_config  # noqa: E402
from simulator.net import free_port  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

NAMES = ("localhost", "127.0.0.1", "lbsim.test")
PQ_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"


class AlbLab:
    """The running lab and the PEM material its tests use."""

    def __init__(self, running: RunningLab, clients: dict[str, tuple[bytes, bytes]], pki: LabPKI, other: LabPKI):
        self.running, self.clients, self.pki, self.other = running, clients, pki, other

    def port(self, name: str) -> int:
        return self.running.port(name)

    def probe(self, listener: str, client: str | None = None, request: bytes | None = GET, **kw):
        cert, key = self.clients[client] if client else (None, None)
        return probe(HOST, self.port(listener), client_cert_pem=cert, client_key_pem=key, http_request=request, **kw)

    def record(self, listener: str, result) -> dict:
        return self.running.record_of(result, listener, timeout=5)


def echo(result) -> dict:
    assert result.http_response and result.http_response.startswith(b"HTTP/1.1 200"), result.to_dict()
    data = json.loads(result.http_response.split(b"\r\n\r\n", 1)[1])
    return {k.lower(): v for k, v in data["headers"]}


@pytest.fixture(scope="module")
def alb(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("alb")
    servers, ecdsa = LabPKI("rsa"), LabPKI("ecdsa")
    pki = LabPKI("rsa", name="alb client CA")
    other = pki.other_ca()
    valid, expired, revoked = pki.client("alb-valid"), pki.client("alb-expired", "expired"), pki.client("alb-revoked")
    untrusted = other.client("alb-untrusted")
    clients = {name: (c.chain_pem, c.key_pem) for name, c in
               (("valid", valid), ("expired", expired), ("revoked", revoked), ("untrusted", untrusted))}
    rsa, ec = servers.server(*NAMES), ecdsa.server("ecdsa.lbsim.test")
    backends = [{"backend": "web"}]
    off = {"enabled": False}
    config = {
        "profile": "aws-alb",
        "certificates": [
            {"name": "alb-rsa", "cert": rsa.chain_pem.decode(), "key": rsa.key_pem.decode()},
            {"name": "alb-ecdsa", "cert": ec.chain_pem.decode(), "key": ec.key_pem.decode()},
        ],
        "trust_stores": [{"name": "clients", "ca_bundle": pki.ca_pem.decode(),
                          "revocations": [pki.crl(revoked).decode()]}],
        "backends": [{"name": "web", "port": 0}, {"name": "dead", "address": f"127.0.0.1:{free_port()}"}],
        "listeners": [
            {"name": "alb", "port": 0, "server_certificate": "alb-rsa", "sni": {"ecdsa.lbsim.test": "alb-ecdsa"},
             "backend_servers": backends, "health_check": off},
            {"name": "alb-pq", "port": 0, "server_certificate": "alb-rsa", "tls_policy": PQ_POLICY,
             "backend_servers": backends, "health_check": off},
            {"name": "alb-dead", "port": 0, "server_certificate": "alb-rsa", "backend_servers": [{"backend": "dead"}],
             "health_check": off},
            {"name": "alb-passthrough", "port": 0, "server_certificate": "alb-rsa", "mtls_mode": "passthrough",
             "backend_servers": backends, "health_check": off},
            {"name": "alb-verify", "port": 0, "server_certificate": "alb-rsa", "mtls_mode": "verify",
             "trust_store": "clients", "tls_policy": PQ_POLICY, "backend_servers": backends, "health_check": off},
            {"name": "alb-verify-lenient", "port": 0, "server_certificate": "alb-rsa", "mtls_mode": "verify",
             "trust_store": "clients", "ignore_client_certificate_expiry": True,
             "advertise_trust_store_ca_names": True, "backend_servers": backends, "health_check": off},
        ],
    }
    running = start_lab(config, out_dir=out, time_scale=0.01)
    running.__enter__()
    yield AlbLab(running, clients, pki, other)
    running.stop()


def test_listener_defaults_come_from_the_profile_data() -> None:
    base = {"profile": "aws-alb", "certificates": [], "listeners": [{"port": 0, "server_certificate": "x"}]}
    spec = parse_config(base).listeners[0]
    assert (spec.idle_timeout, spec.http2, spec.policy.name) == (60, True, "ELBSecurityPolicy-2016-08")
    assert spec.headers.x_forwarded_port and spec.headers.amzn_trace_id and spec.mtls_mode == "off"
    base["listeners"][0]["idle_timeout"] = 4000
    assert parse_config(base).listeners[0].idle_timeout == 4000
    base["listeners"][0]["idle_timeout"] = 4001
    with pytest.raises(Exception) as e:
        parse_config(base)
    assert e.value.field == "listeners[0].idle_timeout" and "1..4000" in e.value.message
    # The other profiles keep their own range and defaults.
    aliyun = {"profile": "aliyun-slb", "listeners": [{"port": 0, "server_certificate": "x", "idle_timeout": 61}]}
    with pytest.raises(Exception) as e:
        parse_config(aliyun)
    assert "1..60" in e.value.message
    aliyun["listeners"][0].pop("idle_timeout")
    spec = parse_config(aliyun).listeners[0]
    assert (spec.idle_timeout, spec.http2, spec.headers.x_forwarded_port) == (15, True, False)  # main: HTTP/2 on for both vendors


@pytest.mark.parametrize(("field", "value", "message"), [
    ("mtls_mode", "strict", "expected one of off, passthrough, verify"),
    ("trust_store", "nope", "unknown trust store 'nope'"),
    ("ignore_client_certificate_expiry", True, "only applies to mtls_mode verify"),
])
def test_mtls_fields_are_checked(field: str, value, message: str) -> None:
    listener = {"port": 0, "server_certificate": "x", field: value}
    if field == "trust_store":
        listener["mtls_mode"] = "verify"
    with pytest.raises(Exception) as e:
        parse_config({"profile": "aws-alb", "listeners": [listener]})
    assert e.value.field == f"listeners[0].{field}" and message in e.value.message
    with pytest.raises(Exception) as e:  # not an aliyun setting at all
        parse_config({"profile": "aliyun-slb", "listeners": [{"port": 0, "server_certificate": "x", "mtls_mode": "verify"}]})
    assert e.value.field == "listeners[0].mtls_mode" and "ca_certificate" in e.value.message


def test_headers_trace_id_and_http2(alb: AlbLab) -> None:
    r = alb.probe("alb", request=b"GET /t HTTP/1.1\r\nHost: x\r\nX-Forwarded-Port: 1\r\nConnection: close\r\n\r\n")
    headers = echo(r)
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(alb.port("alb"))  # the listener's, not the client's forgery
    root = headers["x-amzn-trace-id"]
    assert root.startswith("Root=1-") and len(root.split("-")[1]) == 8 and len(root.split("-")[2]) == 24
    mine = "Root=1-67891233-abcdef012345678912345678"
    headers = echo(alb.probe("alb", request=b"GET / HTTP/1.1\r\nHost: x\r\nX-Amzn-Trace-Id: " + mine.encode()
                             + b"\r\nConnection: close\r\n\r\n"))
    assert headers["x-amzn-trace-id"].startswith("Self=1-") and headers["x-amzn-trace-id"].endswith(";" + mine)
    assert alb.probe("alb", alpn=["h2", "http/1.1"], request=None).alpn == "h2"  # HTTP/2 on by default


def test_sni_default_certificate_and_certificate_list(alb: AlbLab) -> None:
    assert "ecdsa.lbsim.test" in alb.probe("alb", sni="ecdsa.lbsim.test", request=None).server_subject
    for sni in ("lbsim.test", "other.example", None):
        assert "localhost" in alb.probe("alb", sni=sni, request=None).server_subject


def test_error_page_is_awselb(alb: AlbLab) -> None:
    r = alb.probe("alb-dead")
    assert r.http_response.startswith(b"HTTP/1.1 502")
    assert b"\r\nServer: awselb/2.0\r\n" in r.http_response


def test_negotiated_group_is_in_the_connection_log(alb: AlbLab) -> None:
    pq = alb.probe("alb-pq", groups=["X25519MLKEM768"])
    classic = alb.probe("alb-pq", groups=["X25519"])
    assert alb.record("alb-pq", pq)["tls_keyexchange"] == "X25519MLKEM768"
    assert alb.record("alb-pq", classic)["tls_keyexchange"] == "x25519"
    refused = alb.probe("alb", version="TLSv1.3", groups=["X25519MLKEM768"])  # 2016-08: no TLS 1.3 at all
    assert not refused.ok
    assert alb.record("alb", refused)["tls_verify_status"] == "Failed:ProtocolVersion"


# ---- 5. mutual TLS as the ALB does it ------------------------------------------------------------------


def test_passthrough_accepts_any_client_certificate_and_forwards_the_chain(alb: AlbLab) -> None:
    for client in ("valid", "untrusted", "expired"):
        headers = echo(alb.probe("alb-passthrough", client))
        pem = urllib.parse.unquote(headers["x-amzn-mtls-clientcert"])
        assert headers["x-amzn-mtls-clientcert"].startswith("-----BEGIN%20CERTIFICATE-----%0A")
        assert x509.load_pem_x509_certificates(pem.encode())[0] == x509.load_pem_x509_certificate(alb.clients[client][0])
    headers = echo(alb.probe("alb-passthrough", request=b"GET / HTTP/1.1\r\nHost: x\r\nX-Amzn-Mtls-Clientcert: forged\r\n"
                                                        b"Connection: close\r\n\r\n"))
    assert "x-amzn-mtls-clientcert" not in headers  # no certificate, no header; a forged one is dropped


@pytest.mark.parametrize(("client", "status"), [
    ("valid", "Success"),
    ("revoked", "Failed:ClientCertRevoked"),
    ("expired", "Failed:ClientCertExpired"),
    ("untrusted", "Failed:ClientCertUntrusted"),
    (None, "Failed:NoClientCertificate"),
])
def test_verify_mode_matrix(alb: AlbLab, client: str | None, status: str) -> None:
    r = alb.probe("alb-verify", client)
    record = alb.record("alb-verify", r)
    assert record["tls_verify_status"] == status, record
    assert (r.http_response or b"").startswith(b"HTTP/1.1 200") == (status == "Success")
    if client == "revoked":
        assert "certificate revoked" in record["error"]
        assert record["client_cert_subject"].startswith("CN=alb-revoked")  # logged although refused


def test_verify_mode_headers(alb: AlbLab) -> None:
    headers = echo(alb.probe("alb-verify", "valid"))
    leaf = x509.load_pem_x509_certificate(alb.clients["valid"][0])
    assert headers["x-amzn-mtls-clientcert-serial-number"] == format(leaf.serial_number, "X")
    assert headers["x-amzn-mtls-clientcert-subject"] == leaf.subject.rfc4514_string()
    assert headers["x-amzn-mtls-clientcert-issuer"] == leaf.issuer.rfc4514_string()
    validity = headers["x-amzn-mtls-clientcert-validity"]
    assert validity == (f"NotBefore={leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ};"
                        f"NotAfter={leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    assert x509.load_pem_x509_certificate(urllib.parse.unquote(headers["x-amzn-mtls-clientcert-leaf"]).encode()) == leaf


def client_ca_names(port: int) -> list[bytes]:
    """The CA names of the server's CertificateRequest, as a pyOpenSSL client sees them."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)  # the list is read from a TLS 1.2 CertificateRequest
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setblocking(True)  # pyOpenSSL on a socket with a timeout raises WantReadError instead of waiting
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.Error:
        pass  # no certificate sent: refused, but the CertificateRequest came first
    names = [n.der() for n in conn.get_client_ca_list()]
    conn.close()
    return names


def test_ignore_expiry_and_advertised_ca_names(alb: AlbLab) -> None:
    assert echo(alb.probe("alb-verify-lenient", "expired"))  # expiry ignored ...
    r = alb.probe("alb-verify-lenient", "revoked")  # ... revocation is not
    assert alb.record("alb-verify-lenient", r)["tls_verify_status"] == "Failed:ClientCertRevoked"
    assert client_ca_names(alb.port("alb-verify-lenient")) == [alb.pki.ca_cert.subject.public_bytes()]
    assert client_ca_names(alb.port("alb-verify")) == []  # AdvertiseTrustStoreCaNames off


def test_trust_store_api_revocations_and_bundle(alb: AlbLab) -> None:
    api = alb.running.api
    status, body = api("GET", "/v1/trust-stores/clients")
    assert status == 200 and len(body["revocations"]) == 1
    # Revoke the valid client: its next connection is refused, and logged as revoked; a session it holds
    # from before does not resume.
    before = alb.probe("alb-verify", "valid", version="TLSv1.2")
    assert before.ok and before.session is not None
    status, body = api("POST", "/v1/trust-stores/clients/revocations", {"crl": alb.pki.crl(
        x509.load_pem_x509_certificate(alb.clients["valid"][0])).decode()})
    assert status == 201, body
    [rid] = body["revocation_ids"]
    r = alb.probe("alb-verify", "valid")
    assert alb.record("alb-verify", r)["tls_verify_status"] == "Failed:ClientCertRevoked"
    again = alb.probe("alb-verify", "valid", version="TLSv1.2", session=before.session)
    assert not again.ok and not again.resumed, again.to_dict()
    r = alb.probe("alb-verify", "revoked")  # the first list of the same CA still counts
    assert alb.record("alb-verify", r)["tls_verify_status"] == "Failed:ClientCertRevoked"
    assert api("DELETE", f"/v1/trust-stores/clients/revocations/{rid}")[0] == 204
    assert echo(alb.probe("alb-verify", "valid"))
    # A CRL from a CA outside the store is refused, and changes nothing.
    status, body = api("POST", "/v1/trust-stores/clients/revocations", {"crl": alb.other.crl().decode()})
    assert status == 400 and body["error"]["code"] == "InvalidRevocationContent", body
    # Replace the bundle: the other CA's clients are now the trusted ones.
    assert api("PUT", "/v1/trust-stores/clients", {"ca_bundle": alb.other.ca_pem.decode()})[0] == 200
    try:
        assert echo(alb.probe("alb-verify", "untrusted"))
        r = alb.probe("alb-verify", "valid")
        assert alb.record("alb-verify", r)["tls_verify_status"] == "Failed:ClientCertUntrusted"
    finally:
        assert api("PUT", "/v1/trust-stores/clients", {"ca_bundle": alb.pki.ca_pem.decode()})[0] == 200
    status, body = api("DELETE", "/v1/trust-stores/clients")
    assert status == 409 and body["error"]["code"] == "TrustStoreInUse"


# ---- 6. the ALB connection log format -----------------------------------------------------------------


def alb_log_line(alb: AlbLab, listener: str, result) -> list[str]:
    """The fields of one connection's line in aws-alb-connections.log (written when it closes)."""
    path = alb.running.lab.connection_log_path.parent / "aws-alb-connections.log"
    port = str(alb.port(listener))

    def find():
        for line in reversed(path.read_text().splitlines() if path.exists() else []):
            fields = shlex.split(line)  # space-separated; the quoted subject is one field
            if fields[2] == str(result.local_port) and fields[3] == port:
                return fields
        return None

    return wait_for(find, 5)


def test_a_record_the_lab_shows_is_in_the_alb_log_already(alb: AlbLab, monkeypatch) -> None:
    # A test (or the API's caller) that found a connection's record reads the vendor's log next: the line
    # must be there. The lab thread writes the line before the record becomes visible, never after.
    lab = alb.running.lab
    shown_before_written = []
    write = lab.vendor_logs.write

    def checked_write(record, *args):
        shown_before_written.append(any(r["client"] == record["client"] for r in lab.registry.recent[-5:]))
        write(record, *args)

    monkeypatch.setattr(lab.vendor_logs, "write", checked_write)
    ok = alb.probe("alb-verify", "valid")
    alb.record("alb-verify", ok)
    assert shown_before_written == [False]
    path = lab.connection_log_path.parent / "aws-alb-connections.log"
    assert any(line.split()[2] == str(ok.local_port) for line in path.read_text().splitlines())


def test_alb_connection_log_lines_in_aws_order(alb: AlbLab) -> None:
    ok = alb.probe("alb-verify", "valid", groups=["X25519MLKEM768"])
    record = alb.record("alb-verify", ok)
    fields = alb_log_line(alb, "alb-verify", ok)
    subject = record["client_cert_subject"]
    assert " " in subject  # "OU=alb client CA client": quoting keeps it one field
    assert len(fields) == len(aws_alb.CONNECTION_LOG_FIELDS) == 15
    line = dict(zip(aws_alb.CONNECTION_LOG_FIELDS, fields))
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == len("2023-10-04T17:05:15.514108Z")
    assert (line["client_ip"], line["listener_port"]) == ("127.0.0.1", str(alb.port("alb-verify")))
    assert (line["tls_protocol"], line["tls_cipher"]) == (record["tls_protocol"], record["tls_cipher"])
    assert float(line["tls_handshake_latency"]) == pytest.approx(record["tls_handshake_latency"], abs=0.001)
    assert line["leaf_client_cert_subject"] == subject
    assert f' "{subject}" NotBefore=' in (alb.running.lab.connection_log_path.parent / "aws-alb-connections.log").read_text()
    assert line["leaf_client_cert_validity"].startswith("NotBefore=") and ";NotAfter=" in line["leaf_client_cert_validity"]
    assert line["leaf_client_cert_serial_number"] == record["client_cert_serial"]
    assert line["tls_verify_status"] == "Success" and line["tls_keyexchange"] == "X25519MLKEM768"
    assert line["conn_trace_id"].startswith("TID_") and len(line["conn_trace_id"]) == 36
    assert (line["elb"], line["ip_address"]) == ("lb-lbsim", "127.0.0.1")
    # A revoked certificate: AWS's code for it, the JSON keeps lbsim's; no latency (no handshake).
    revoked = alb.probe("alb-verify", "revoked")
    line = dict(zip(aws_alb.CONNECTION_LOG_FIELDS, alb_log_line(alb, "alb-verify", revoked)))
    assert alb.record("alb-verify", revoked)["tls_verify_status"] == "Failed:ClientCertRevoked"
    assert line["tls_verify_status"] == "Failed:ClientCertCrlHit" and line["tls_handshake_latency"] == "-"
    assert line["leaf_client_cert_subject"].startswith("CN=alb-revoked")
    # A one-way listener: no client certificate fields.
    plain = alb.probe("alb")
    line = dict(zip(aws_alb.CONNECTION_LOG_FIELDS, alb_log_line(alb, "alb", plain)))
    assert [line[f] for f in ("leaf_client_cert_subject", "leaf_client_cert_validity",
                              "leaf_client_cert_serial_number")] == ["-", "-", "-"]
    assert line["tls_keyexchange"] == "x25519"


# ---- 7. the bytes of post-quantum handshakes -----------------------------------------------------------


def test_pq_handshake_bytes_are_metered_exactly(alb: AlbLab) -> None:
    """Classic (X25519) against hybrid (X25519MLKEM768) key exchange, full and resumed (TLS 1.3), on one PQ
    listener. `-s` prints the table docs/metering.md quotes."""
    rows = {}
    for label, group in (("classic", "X25519"), ("pq", "X25519MLKEM768")):
        full = alb.probe("alb-pq", groups=[group])
        resumed = alb.probe("alb-pq", groups=[group], session=full.session)
        for kind, result in (("full", full), ("resumed", resumed)):
            record = alb.record("alb-pq", result)
            traffic = record["traffic"]
            assert record["resumed"] == (kind == "resumed") and record["tls_protocol"] == "TLSv1.3"
            # Exact: what the client's socket sent and received, byte for byte.
            assert (traffic["client_to_lb"]["wire"], traffic["lb_to_client"]["wire"]) == \
                (result.bytes_sent, result.bytes_received)
            # TLS 1.3 resumption (psk_dhe_ke) exchanges a fresh key share: the hybrid's too.
            assert record["tls_keyexchange"] == ("x25519" if label == "classic" else "X25519MLKEM768")
            rows[label, kind] = (traffic["client_to_lb"]["handshake"], traffic["lb_to_client"]["handshake"],
                                 traffic["client_to_lb"]["wire"], traffic["lb_to_client"]["wire"])
    for kind in ("full", "resumed"):
        up = rows["pq", kind][0] - rows["classic", kind][0]
        down = rows["pq", kind][1] - rows["classic", kind][1]
        # The hybrid share: 1,216 bytes from the client (ML-KEM-768 key 1,184 + X25519 32) and 1,120 back
        # (ciphertext 1,088 + 32), against X25519's 32 each way; OpenSSL's ClientHello padding and the
        # record framing move a few bytes.
        assert 1100 <= up <= 1250 and 1000 <= down <= 1150, (kind, up, down)
    print("\nhandshake bytes (client->LB / LB->client), wire bytes of one GET connection")
    for (label, kind), (up, down, wire_up, wire_down) in rows.items():
        print(f"{label:8} {kind:8} handshake {up:5} / {down:5}   wire {wire_up:5} / {wire_down:5}")


# ---- 8. an independent scanner: sslyze sees what the probe sees ----------------------------------------


def test_sslyze_agrees_on_aws_alb_listeners(tmp_path) -> None:
    """sslyze (versions, suites, its verdicts) against lbsim's probe on a classic, a PQ and a TLS 1.3-only
    ALB policy, as the built-in suite cross-checks the default lab's listeners."""
    from simulator.harness.scenario import start

    server = LabPKI().server("localhost", "127.0.0.1")
    names = ["ELBSecurityPolicy-2016-08", PQ_POLICY, "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09"]
    lab = start({
        "profile": "aws-alb",
        "certificates": [{"name": "web", "cert": server.chain_pem.decode(), "key": server.key_pem.decode()}],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [{"name": f"policy-{i}", "port": 0, "server_certificate": "web", "tls_policy": name,
                       "backend_servers": ["app"], "health_check": {"enabled": False}} for i, name in enumerate(names)],
    }, time_scale=0.01, out_dir=tmp_path / "lab")
    try:
        checks = lab.sslyze_cross_check()
    finally:
        lab.stop()
    assert set(checks) == {"policy-0", "policy-1", "policy-2"}
    for name, check in checks.items():
        assert check["error"] is None and not check["differences"] and check["verdicts_agree"], (name, check)


def test_trust_store_input_errors_name_the_field_and_change_nothing() -> None:
    from simulator.certs.truststore import TrustStore
    from simulator.errors import LbsimError

    ca, other, namesake = LabPKI(), LabPKI(name="other CA"), LabPKI()
    with pytest.raises(LbsimError) as e:  # a client certificate is no CA
        TrustStore.create("t", ca.client("someone").cert_pem, field="trust_stores[0]")
    assert (e.value.code, e.value.field) == ("InvalidCaCertificatesBundle", "trust_stores[0].ca_bundle")
    with pytest.raises(LbsimError) as e:
        TrustStore.create("t", b"not pem", field="trust_stores[0]")
    assert e.value.code == "InvalidCaCertificatesBundle"
    store = TrustStore.create("t", ca.ca_pem, [ca.crl()])
    before = (store.revision, dict(store.revocations))
    with pytest.raises(LbsimError) as e:  # one bad CRL in the batch: none is added
        store.add_revocations([ca.crl(), other.crl()])
    assert (e.value.code, e.value.field) == ("InvalidRevocationContent", "revocations[1]")
    assert "not in the trust store" in e.value.message
    with pytest.raises(LbsimError) as e:  # the CA's name, another key
        store.add_revocations([namesake.crl()])
    assert e.value.code == "InvalidRevocationContent" and "did not sign it" in e.value.message
    with pytest.raises(LbsimError) as e:
        store.add_revocations([b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"])
    assert e.value.code == "InvalidRevocationContent"
    with pytest.raises(LbsimError) as e:
        store.remove_revocations([1, 99])
    assert e.value.code == "RevocationIdNotFound"
    assert (store.revision, dict(store.revocations)) == before
    with pytest.raises(LbsimError) as e:
        store.replace_bundle(ca.client("x").cert_pem)
    assert e.value.code == "InvalidCaCertificatesBundle" and store.revision == before[0]


def test_trust_store_api_errors(alb: AlbLab) -> None:
    api = alb.running.api
    status, body = api("POST", "/v1/trust-stores", {"name": "clients", "ca_bundle": alb.pki.ca_pem.decode()})
    assert status == 409 and body["error"]["code"] == "DuplicateTrustStoreName", body
    assert api("GET", "/v1/trust-stores/nope")[1]["error"]["code"] == "TrustStoreNotFound"
    status, body = api("POST", "/v1/trust-stores", {"name": "spare", "ca_bundle": alb.other.ca_pem.decode()})
    assert status == 201 and body["revision"] == 1
    assert "spare" in {t["name"] for t in api("GET", "/v1/trust-stores")[1]["trust_stores"]}
    assert api("DELETE", "/v1/trust-stores/spare")[0] == 204  # unused: deletable
    # A listener created through the API on a trust store the lab does not have is refused, naming the field.
    status, body = api("POST", "/v1/listeners", {"port": 0, "profile": "aws-alb", "server_certificate": "alb-rsa",
                                                 "mtls_mode": "verify", "trust_store": "spare"})
    assert status == 400 and body["error"]["field"] == "listener.trust_store", body


def test_passthrough_on_a_resumed_connection(alb: AlbLab) -> None:
    full = alb.probe("alb-passthrough", "valid")
    resumed = alb.probe("alb-passthrough", "valid", session=full.session)
    assert resumed.resumed
    pem = urllib.parse.unquote(echo(resumed)["x-amzn-mtls-clientcert"])
    assert x509.load_pem_x509_certificates(pem.encode())[0] == x509.load_pem_x509_certificate(alb.clients["valid"][0])
