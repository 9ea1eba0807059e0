"""Tencent FAQ 7 "What types of certificates does CLB currently support?": "CLB supports uploading the server
certificate and CA certificate. For server certificate, the certificate content and private key need to be
uploaded; for CA certificate, only the certificate content needs to be uploaded. Both certificates can be
uploaded in PEM encoding format only." (Aliyun: "Upload the server certificate to SLB", "Upload the CA
certificate to SLB".)"""

import json

import pytest

from simulator.harness.scenario import ApiError, der

STATEMENT = "Server certificates are uploaded with their private key, CA certificates without; PEM only (tencent FAQ 7)"
PROFILES = ["aliyun-slb", "tencent-clb"]


def refused(lab, body):
    status, data = lab.api("POST", "/v1/certificates", body)
    assert status == 400, (status, data)
    return data["error"]


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", PROFILES)
def test_server_certificate_is_content_and_key(lab, pki, profile):
    issued = pki().server("localhost")
    missing = refused(lab, {"type": "server", "name": "no-key", "cert": issued.chain_pem.decode(), "profile": profile})
    assert missing["code"] == "MissingField" and missing["field"] == "key"
    info = lab.upload_server_certificate(f"content-and-key-{profile}", issued, profile=profile)
    assert info["type"] == "server" and info["key_type"] == "RSA"
    assert "PRIVATE KEY" not in json.dumps(info) and "key" not in info  # never returned, only described


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", PROFILES)
def test_ca_certificate_is_content_only(lab, pki, profile):
    ca = pki()
    with_key = refused(lab, {"type": "ca", "name": "ca-with-key", "cert": ca.ca_pem.decode(),
                             "key": ca.server("x").key_pem.decode(), "profile": profile})
    assert with_key["code"] == "UnexpectedPrivateKey"
    assert lab.upload_ca_certificate(f"content-only-{profile}", ca.ca_pem, profile=profile)["type"] == "ca"


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", PROFILES)
def test_pem_encoding_only(lab, pki, profile):
    ca = pki()
    issued = ca.server("localhost")
    # DER (binary) content is not PEM: refused for the certificate, the key, and a CA certificate alike.
    cert_der = der(issued.cert_pem).decode("latin-1")
    key_der = der(issued.key_pem).decode("latin-1")
    bad_cert = refused(lab, {"type": "server", "name": "der-cert", "cert": cert_der, "key": issued.key_pem.decode(), "profile": profile})
    assert bad_cert["code"] == "NotPem" and bad_cert["field"] == "cert"
    bad_key = refused(lab, {"type": "server", "name": "der-key", "cert": issued.chain_pem.decode(), "key": key_der, "profile": profile})
    assert bad_key["code"] == "NotPem" and bad_key["field"] == "key"
    bad_ca = refused(lab, {"type": "ca", "name": "der-ca", "cert": der(ca.ca_pem).decode("latin-1"), "profile": profile})
    assert bad_ca["code"] == "NotPem"
    if profile == "aliyun-slb":  # Alibaba's own wording
        assert "The specified Server Certificate format is invalid" in bad_cert["message"]
    # The same certificate in PEM is accepted.
    with pytest.raises(ApiError):
        lab.upload_server_certificate("pem-but-key-der", issued.chain_pem, key_der, profile=profile)
    assert lab.upload_server_certificate(f"pem-{profile}", issued, profile=profile)["chain_length"] == 2
