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

from simulator.harness.probe import probe
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
    # Every other profile keeps the groups it had.
    assert {p.groups for p in POLICIES.values() if p.profile != "aws-alb"} == {GROUPS}


def test_custom_policies_are_refused_for_aws_alb() -> None:
    with pytest.raises(Exception) as e:
        resolve_policy("aws-alb", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA"]}, field="listeners[0].tls_policy")
    assert e.value.code == "CustomPolicyNotSupported" and e.value.field == "listeners[0].tls_policy"


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
