"""Aliyun certificate table and Tencent FAQ "How many HTTPS certificates can a listener bind to?":
two-way (mutual) authentication needs a server certificate and a CA certificate uploaded to the load balancer,
the client certificate is installed on clients and may be signed by a self-signed CA; "If the authentication
fails, the connection will be rejected." Tencent: "HTTPS two-way authentication is provided" for users such as
financial service providers."""

import pytest

from simulator.harness.scenario import ApiError

STATEMENT = ("Mutual authentication needs a server certificate and a CA certificate on the load balancer; clients "
             "hold certificates, which a self-signed CA may sign (aliyun certificate table, tencent FAQ 4 and 8)")


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
def test_mutual_needs_server_and_ca_certificate(lab, pki, profile):
    servers, clients = pki(), pki(name="self-signed client CA")  # a self-signed CA of the user's own
    server = lab.upload_server_certificate(f"mutual-server-{profile}", servers.server("localhost"), profile=profile)
    client_ca = lab.upload_ca_certificate(f"mutual-ca-{profile}", clients.ca_pem, profile=profile)
    assert client_ca["type"] == "ca" and client_ca["subject"] == client_ca["issuer"]  # self-signed

    # The CA slot takes a CA certificate, and a mutual listener still needs its server certificate.
    with pytest.raises(ApiError) as wrong_slot:
        lab.add_listener({"profile": profile, "server_certificate": server["name"], "ca_certificate": server["name"]})
    assert wrong_slot.value.status == 400 and wrong_slot.value.field.endswith("ca_certificate")
    with pytest.raises(ApiError) as no_server:
        lab.add_listener({"profile": profile, "ca_certificate": client_ca["name"]})
    assert no_server.value.field.endswith("server_certificate")

    listener = lab.add_listener({"profile": profile, "server_certificate": server["name"], "ca_certificate": client_ca["name"]})
    assert lab.listener(listener.port)["mutual"] is True
    ca_file = lab.write_file(f"mutual-{profile}-ca.pem", servers.ca_pem)

    # A client certificate installed on the client, signed by that self-signed CA, gets in.
    alice = clients.client("alice")
    response = lab.request(listener, "/mutual", client=alice, verify=ca_file)
    assert response.status == 200
    record = lab.connection_for(response)
    assert record["tls_verify_status"] == "Success" and "CN=alice" in record["client_cert_subject"]
    # The backend learns who the client was (Alibaba ALB's header names; CLB's are unconfirmed).
    assert response.echo and "alice" in str(response.echo["headers"])

    # If the authentication fails, the connection is rejected: no certificate, or one from another CA.
    for client, status in ((None, "Failed:NoClientCertificate"), (clients.other_ca().client("mallory"), "Failed:ClientCertUntrusted")):
        r = lab.probe(listener, client=client, http_request=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert not r.ok and r.http_response is None, r
        assert lab.connection_for(r)["tls_verify_status"] == status
