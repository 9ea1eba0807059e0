"""The aws-alb profile, in a lab of its own: every named ALB security policy probed (versions, and a TLS 1.3
client offering only the hybrid X25519MLKEM768 succeeds exactly on the -PQ- policies), the mutual-TLS
matrix in passthrough and verify mode (with a revoked certificate and ignore_client_certificate_expiry),
and ACM's import rules. Facts and sources: docs/aws-alb.md.
"""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from simulator.certs import check
from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key
from simulator.policies import POLICIES
from simulator.policies.suites import VERSIONS

STATEMENT = ("AWS ALB listeners as AWS documents them: named policies with post-quantum groups, mutual TLS "
             "passthrough and verify (issue: the aws-alb profile; not a seed statement)")
AWS = [name for name, p in POLICIES.items() if p.profile == "aws-alb"]


@pytest.fixture
def alb(lab_factory, pki):
    servers, clients = pki(), pki()
    server = servers.server("localhost", "127.0.0.1")
    people = {"valid": clients.client("valid"), "expired": clients.client("expired", "expired"),
              "revoked": clients.client("revoked"), "untrusted": clients.client("untrusted", "other_ca")}
    off = {"enabled": False}
    listeners = [{"name": f"policy-{i}", "port": 0, "server_certificate": "alb", "tls_policy": name,
                  "backend_servers": ["web"], "health_check": off} for i, name in enumerate(AWS)]
    listeners += [
        {"name": "passthrough", "port": 0, "server_certificate": "alb", "mtls_mode": "passthrough",
         "backend_servers": ["web"], "health_check": off},
        {"name": "verify", "port": 0, "server_certificate": "alb", "mtls_mode": "verify", "trust_store": "clients",
         "backend_servers": ["web"], "health_check": off},
        {"name": "verify-ignore-expiry", "port": 0, "server_certificate": "alb", "mtls_mode": "verify",
         "trust_store": "clients", "ignore_client_certificate_expiry": True, "backend_servers": ["web"],
         "health_check": off},
    ]
    lab = lab_factory({
        "profile": "aws-alb",
        "certificates": [{"name": "alb", "cert": server.chain_pem.decode(), "key": server.key_pem.decode()}],
        "trust_stores": [{"name": "clients", "ca_bundle": clients.ca_pem.decode(),
                          "revocations": [clients.crl(people["revoked"]).decode()]}],
        "backends": [{"name": "web", "port": 0}],
        "listeners": listeners,
    })
    return lab, people


# Who connects -> tls_verify_status, per mutual listener. One lab serves the whole file: `lbsim run` stays short.
MATRIX = {
    "passthrough": {"valid": "Success", "expired": "Success", "revoked": "Success", "untrusted": "Success",
                    None: "Success"},
    "verify": {"valid": "Success", "expired": "Failed:ClientCertExpired", "revoked": "Failed:ClientCertRevoked",
               "untrusted": "Failed:ClientCertUntrusted", None: "Failed:NoClientCertificate"},
    "verify-ignore-expiry": {"valid": "Success", "expired": "Success", "revoked": "Failed:ClientCertRevoked",
                             "untrusted": "Failed:ClientCertUntrusted", None: "Failed:NoClientCertificate"},
}


@pytest.mark.seed(STATEMENT)
def test_aws_alb_policies_and_mtls_modes(alb):
    lab, people = alb
    for i, name in enumerate(AWS):
        policy, listener = POLICIES[name], f"policy-{i}"
        for version in VERSIONS:
            r = lab.probe(listener, version=version)
            assert r.ok == (version in policy.versions), (name, version, r.error)
        pq = lab.probe(listener, version="TLSv1.3", groups=["X25519MLKEM768"])
        assert pq.ok == ("-PQ-" in name), (name, pq.error)
        if pq.ok:
            assert lab.connection_for(pq)["tls_keyexchange"] == "X25519MLKEM768"
    for listener, expected in MATRIX.items():
        for who, status in expected.items():
            r = lab.probe(listener, client=people.get(who), http_request=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            record = lab.connection_for(r)
            assert record["tls_verify_status"] == status, (listener, who, record)
            served = (r.http_response or b"").startswith(b"HTTP/1.1 200")
            assert served == (status == "Success"), (listener, who)
            if served and who and listener == "passthrough":
                assert b"x-amzn-mtls-clientcert" in r.http_response.lower()


@pytest.mark.seed(STATEMENT)
def test_aws_alb_acm_import_rules(pki):
    ca = pki()
    server = ca.server("localhost")
    assert check("aws-alb", "server", server.chain_pem, server.key_pem).ok
    p521 = make_key("ecdsa", curve=ec.SECP521R1())
    fresh = cert_pem(make_cert("new.example.com", p521))
    assert check("aws-alb", "server", fresh, key_pem(p521, "pkcs8")).ok  # ACM imports P-521 ...
    assert not check("tencent-clb", "server", fresh, key_pem(p521, "pkcs8")).ok  # ... tencent's table lacks it
    key = make_key("ecdsa")
    now = dt.datetime.now(dt.timezone.utc)
    old = make_cert("old.example.com", key, not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1))
    result = check("aws-alb", "server", cert_pem(old), key_pem(key, "pkcs8"))
    assert [f.code for f in result.errors] == ["CertificateExpired"]  # a warning under the other profiles
    assert check("tencent-clb", "server", cert_pem(old), key_pem(key, "pkcs8")).ok
