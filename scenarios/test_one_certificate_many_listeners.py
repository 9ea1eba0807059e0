"""Tencent FAQ 9: "A certificate can be applied to one or more cloud load balancers, or multiple listeners."
Tencent FAQ 11: "Is a certificate region-specific? No. ... its installation and deployment are not restricted
by regions." (The lab has no regions: the store is global, and load balancers named after regions share one
certificate.)"""

import pytest

from simulator.policies.probe import certificate_fingerprint
from simulator.harness.scenario import ApiError

STATEMENT_MANY = "One certificate can serve several load balancers and listeners (tencent FAQ 9)"
STATEMENT_REGION = "A certificate is not region-specific (tencent FAQ 11)"


@pytest.mark.seed(STATEMENT_MANY)
def test_one_certificate_many_listeners_and_load_balancers(lab, pki):
    issued = pki().server("localhost")
    info = lab.upload_server_certificate("shared", issued)
    listeners = [
        lab.add_listener({"name": "shop-a", "lb_id": "lb-one", "server_certificate": "shared"}),
        lab.add_listener({"name": "shop-b", "lb_id": "lb-one", "server_certificate": "shared",
                          "tls_policy": "tls_cipher_policy_1_2_strict"}),
        lab.add_listener({"name": "shop-c", "lb_id": "lb-two", "profile": "tencent-clb", "server_certificate": "shared"}),
    ]
    for listener in listeners:
        response = lab.request(listener, "/", verify=False)
        assert response.status == 200
        assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(issued.cert)
    assert {l.port for l in listeners} == {l["port"] for l in lab.listeners() if l["server_certificate"] == "shared"}
    assert lab.request(listeners[2], "/", verify=False).echo["headers"]  # each serves traffic on its own
    with pytest.raises(ApiError) as in_use:
        lab.delete_certificate(info["id"])
    assert all(l.name in in_use.value.message for l in listeners)


@pytest.mark.seed(STATEMENT_REGION)
def test_certificate_not_region_specific(lab, pki):
    issued = pki().server("localhost")
    info = lab.upload_server_certificate("global", issued)
    assert not any("region" in key for key in info)  # nothing ties it to a region
    regions = ("cn-hangzhou", "ap-southeast-1", "eu-central-1")
    for region in regions:
        listener = lab.add_listener({"name": f"web-{region}", "lb_id": f"lb-{region}", "server_certificate": "global",
                                     "headers": {"slb_id": True}})
        response = lab.request(listener, "/", verify=False)
        assert response.status == 200
        assert ["SLB-ID", f"lb-{region}"] in response.echo["headers"]
        assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(issued.cert)
