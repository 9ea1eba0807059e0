"""Tencent FAQ 8 "How many HTTPS certificates can a listener bind to?": "If HTTPS one-way authentication is
used, only one server certificate can be bound to a listener. If HTTPS mutual authentication is used, one server
certificate and one CA certificate need to be bound to a listener." """

import pytest

from simulator.harness.scenario import ApiError

STATEMENT = "One-way binds exactly one server certificate; mutual one server and one CA certificate (tencent FAQ 8)"


@pytest.mark.seed(STATEMENT)
def test_listener_binds_one_server_certificate_and_at_most_one_ca(lab, pki):
    ca, clients = pki(), pki()
    a = lab.upload_server_certificate("bind-a", ca.server("localhost"))
    b = lab.upload_server_certificate("bind-b", ca.server("localhost"))
    c1 = lab.upload_ca_certificate("bind-ca-1", clients.ca_pem)
    c2 = lab.upload_ca_certificate("bind-ca-2", clients.other_ca().ca_pem)
    for field, value in (("server_certificate", [a["name"], b["name"]]), ("ca_certificate", [c1["name"], c2["name"]])):
        spec = {"server_certificate": a["name"], field: value}
        with pytest.raises(ApiError) as refused:
            lab.add_listener(spec)
        assert refused.value.status == 400 and refused.value.field.endswith(field)

    one_way = lab.add_listener({"server_certificate": a["name"]})
    mutual = lab.add_listener({"server_certificate": a["name"], "ca_certificate": c1["name"]})
    # Whoever connects, the one-way listener presents its one certificate.
    prints = {lab.probe(one_way, sni=name).server_fingerprint_sha256 for name in (None, "localhost", "other.example")}
    assert prints == {a["fingerprint_sha256"].replace(":", "").lower()}
    described = lab.listener(mutual.port)
    assert (described["server_certificate"], described["ca_certificate"]) == (a["name"], c1["name"])
