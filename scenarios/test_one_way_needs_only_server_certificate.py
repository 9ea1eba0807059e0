"""Aliyun certificate table: one-way authentication needs only the server certificate, uploaded to SLB;
no client certificate and no CA certificate are required."""

import pytest

from simulator.harness.scenario import ApiError

STATEMENT = "One-way authentication requires only a server certificate uploaded to SLB (aliyun certificate table)"


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
def test_one_way_needs_only_server_certificate(lab, pki, profile):
    ca = pki()
    server = lab.upload_server_certificate(f"one-way-{profile}", ca.server("localhost"), profile=profile)

    # Without a server certificate there is no listener.
    with pytest.raises(ApiError) as refused:
        lab.add_listener({"profile": profile})
    assert refused.value.status == 400 and refused.value.field.endswith("server_certificate")

    listener = lab.add_listener({"profile": profile, "server_certificate": server["name"]})
    # A client with no certificate of its own completes the handshake and is served...
    plain = lab.request(listener, "/one-way", verify=lab.write_file("one-way-ca.pem", ca.ca_pem))
    assert plain.status == 200
    # ...having checked that the server certificate was issued by a centre it trusts (seed): a client that
    # trusts only another CA refuses it.
    stranger = lab.write_file("one-way-other-ca.pem", pki().ca_pem)
    distrusted = lab.probe(listener, cafile=stranger)
    assert not distrusted.ok and distrusted.verify_error, distrusted
    assert any(why in distrusted.verify_error for why in ("self-signed certificate in certificate chain",
                                                          "unable to get local issuer certificate")), distrusted
    assert lab.probe(listener, cafile=lab.write_file("one-way-ca.pem", ca.ca_pem)).ok
    record = lab.connection_for(plain)
    assert record["tls_verify_status"] == "Success" and record["client_cert_subject"] is None
    # ...and a client that has one is never asked for it.
    with_cert = lab.probe(listener, client="untrusted")
    assert with_cert.ok
    assert lab.connection_for(with_cert)["client_cert_subject"] is None
    assert lab.listener(listener.port)["mutual"] is False
