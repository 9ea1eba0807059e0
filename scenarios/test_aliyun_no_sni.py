"""Aliyun: "Currently, Server Load Balancer HTTPS listeners do not support SNI (Server Name Indication). You
can use TCP listeners instead, and configure SNI on the backend ECS instances."

An aliyun listener serves its one certificate whatever name the client sends, and SNI cannot be configured
on it; a tencent listener (which does support SNI) picks a per-domain certificate, for contrast. TCP listeners
are not simulated (lbsim models HTTPS listeners only).
"""

import pytest

from simulator.policies.probe import certificate_fingerprint
from simulator.harness.scenario import ApiError

STATEMENT = "Aliyun HTTPS listeners do not support SNI: one certificate whatever the client sends (aliyun notes)"
NAMES = (None, "a.example.com", "b.example.com", "unknown.example.org")


@pytest.mark.seed(STATEMENT)
def test_aliyun_serves_one_certificate_whatever_the_sni(lab, pki):
    ca = pki()
    a, b = ca.server("a.example.com"), ca.server("b.example.com")
    lab.upload_server_certificate("sni-a", a)
    lab.upload_server_certificate("sni-b", b, profile="tencent-clb")

    with pytest.raises(ApiError) as refused:
        lab.add_listener({"profile": "aliyun-slb", "server_certificate": "sni-a", "sni": {"b.example.com": "sni-b"}})
    assert refused.value.field.endswith("sni") and "SNI" in refused.value.message

    aliyun = lab.add_listener({"profile": "aliyun-slb", "server_certificate": "sni-a"})
    for name in NAMES:
        r = lab.probe(aliyun, sni=name)
        assert r.ok and r.server_fingerprint_sha256 == certificate_fingerprint(a.cert), name
        if name:
            assert lab.connection_for(r)["sni"] == name  # the name arrived; it just selects nothing

    tencent = lab.add_listener({"profile": "tencent-clb", "server_certificate": "sni-a", "sni": {"b.example.com": "sni-b"}})
    assert lab.probe(tencent, sni="b.example.com").server_fingerprint_sha256 == certificate_fingerprint(b.cert)
    assert lab.probe(tencent, sni="a.example.com").server_fingerprint_sha256 == certificate_fingerprint(a.cert)


def fingerprint(lab, certificate_name):
    return lab.certificate(certificate_name)["fingerprint_sha256"].replace(":", "").lower()


@pytest.mark.seed(STATEMENT)
@pytest.mark.lab_listeners(profile="aliyun-slb")  # the statement is about aliyun; tencent's SNI is the contrast above
def test_configured_listeners_sni(lab, lab_listener):
    """Each configured aliyun listener serves its one certificate whatever name the client sends."""
    described = lab.listener(lab_listener)
    assert not described["sni"]
    client = lab.client_for(lab_listener)
    default = fingerprint(lab, described["server_certificate"])
    seen = {name: lab.probe(lab_listener, sni=name, client=client).server_fingerprint_sha256 for name in NAMES}
    assert seen == dict.fromkeys(NAMES, default)
