"""The aws-alb profile, on the session's lab: every named ALB security policy measured like a listener
(versions, suites in server order, and the groups matrix: a TLS 1.3 client offering only a hybrid such as
X25519MLKEM768 succeeds exactly on the -PQ- policies), the mutual-TLS matrix in passthrough and verify mode
(with a revoked certificate and ignore_client_certificate_expiry) on listeners and a trust store the case
creates and removes, and ACM's import rules. Facts and sources: docs/aws-alb.md.

The policy measurements are the session's (`lab.observe_policy`, `lab.observe`): `lbsim run`'s report shows
the same ones, so the ALB's table is probed once per run.
"""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from simulator.certs import check
from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key
from simulator.policies import POLICIES

STATEMENT = ("AWS ALB listeners as AWS documents them: named policies with post-quantum groups, mutual TLS "
             "passthrough and verify (issue: the aws-alb profile; not a seed statement)")
AWS = [name for name, p in POLICIES.items() if p.profile == "aws-alb"]
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def policy_reports(lab, pki):
    """Each ALB policy as the session measured it: on a configured one-way aws-alb listener that uses it, else
    on a temporary one serving the lab's aws-alb certificate (or one this case uploads)."""
    specs = [lab.running.listener(n).active.spec for n in lab.config_listeners()]
    one_way = [s for s in specs if s.profile == "aws-alb" and s.client_verification == "off"]
    if one_way:
        certificate = one_way[0].server_certificate
    else:
        certificate = "alb-scenario"
        lab.upload_server_certificate(certificate, pki().server("localhost", "127.0.0.1"), profile="aws-alb")
    configured = {s.policy.name: s.name for s in one_way}
    return {name: lab.observe(configured[name]) if name in configured
            else lab.observe_policy("aws-alb", name, certificate) for name in AWS}


@pytest.mark.seed(STATEMENT)
def test_aws_alb_policies_versions_suites_and_groups(lab, pki):
    for name, report in policy_reports(lab, pki).items():
        assert report.match, (name, report.differences())
        assert set(report.observed) == set(POLICIES[name].versions), name
        if report.groups is None:  # no TLS 1.3: a hybrid-only client (TLS 1.3 only) cannot connect
            assert "TLSv1.3" not in report.observed and "-PQ-" not in name, name
            continue
        assert report.groups_match, (name, report.groups)
        assert ("X25519MLKEM768" in report.groups["observed"]) == ("-PQ-" in name), name
        assert "X25519" in report.groups["observed"], name  # classic clients get in everywhere


# Who connects -> tls_verify_status, per mutual listener.
MATRIX = {
    "passthrough": {"valid": "Success", "expired": "Success", "revoked": "Success", "untrusted": "Success",
                    None: "Success"},
    "verify": {"valid": "Success", "expired": "Failed:ClientCertExpired", "revoked": "Failed:ClientCertRevoked",
               "untrusted": "Failed:ClientCertUntrusted", None: "Failed:NoClientCertificate"},
    "verify-ignore-expiry": {"valid": "Success", "expired": "Success", "revoked": "Failed:ClientCertRevoked",
                             "untrusted": "Failed:ClientCertUntrusted", None: "Failed:NoClientCertificate"},
}


@pytest.mark.seed(STATEMENT)
def test_aws_alb_mtls_modes(lab, pki):
    servers, clients = pki("ecdsa"), pki("ecdsa")  # ECDSA: quicker to mint than RSA
    people = {"valid": clients.client("valid"), "expired": clients.client("expired", "expired"),
              "revoked": clients.client("revoked"), "untrusted": clients.client("untrusted", "other_ca")}
    lab.upload_server_certificate("alb-mtls", servers.server("localhost", "127.0.0.1"), profile="aws-alb")
    store = "alb-scenario-clients"
    lab.api_ok("POST", "/v1/trust-stores", {"name": store, "ca_bundle": clients.ca_pem.decode(),
                                            "revocations": [clients.crl(people["revoked"]).decode()]})
    base = {"profile": "aws-alb", "server_certificate": "alb-mtls"}
    modes = {"passthrough": {"mtls_mode": "passthrough"},
             "verify": {"mtls_mode": "verify", "trust_store": store},
             "verify-ignore-expiry": {"mtls_mode": "verify", "trust_store": store,
                                      "ignore_client_certificate_expiry": True}}
    handles = {}
    try:
        for mode, fields in modes.items():
            handles[mode] = lab.add_listener({**base, **fields, "name": f"alb-{mode}"})
        for mode, expected in MATRIX.items():
            for who, status in expected.items():
                r = lab.probe(handles[mode], client=people.get(who), http_request=GET)
                record = lab.connection_for(r)
                assert record["tls_verify_status"] == status, (mode, who, record)
                served = (r.http_response or b"").startswith(b"HTTP/1.1 200")
                assert served == (status == "Success"), (mode, who)
                if served and who and mode == "passthrough":
                    assert b"x-amzn-mtls-clientcert" in r.http_response.lower()
    finally:
        for handle in handles.values():
            lab.remove_listener(handle)
        lab.api_ok("DELETE", f"/v1/trust-stores/{store}")


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
