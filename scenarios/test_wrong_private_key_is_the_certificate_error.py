"""Tencent FAQ 14 "What can I do when a certificate error occurs?": "The error may occur due to incorrect
private key. You need to replace the certificate with a new one that meets business requirements." """

import pytest

from simulator.policies.probe import certificate_fingerprint
from simulator.harness.scenario import ApiError

STATEMENT = "A certificate error usually means a wrong private key; replace the certificate (tencent FAQ 14)"


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
def test_wrong_private_key_is_the_certificate_error(lab, pki, profile):
    ca = pki()
    good, other = ca.server("localhost"), ca.server("localhost")
    with pytest.raises(ApiError) as mismatch:
        lab.upload_server_certificate("wrong-key", good.chain_pem, other.key_pem, profile=profile)
    assert mismatch.value.code == "KeyCertificateMismatch" and mismatch.value.field == "key"
    if profile == "aliyun-slb":
        assert "The certificate and private key that you upload do not match" in mismatch.value.message

    # In use: a replacement with the wrong key is refused and the listener keeps serving the old certificate.
    info = lab.upload_server_certificate(f"right-key-{profile}", good, profile=profile)
    listener = lab.add_listener({"profile": profile, "server_certificate": info["name"]})
    before = lab.probe(listener).server_fingerprint_sha256
    with pytest.raises(ApiError) as still_wrong:
        lab.replace_certificate(info["id"], other.chain_pem, good.key_pem)
    assert still_wrong.value.code == "KeyCertificateMismatch"
    assert lab.probe(listener).server_fingerprint_sha256 == before
    # The fix: replace it with a certificate and its own key.
    lab.replace_certificate(info["id"], other)
    lab.wait_running(listener)
    assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(other.cert)
