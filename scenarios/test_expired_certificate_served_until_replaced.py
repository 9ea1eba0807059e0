"""Tencent FAQ 13 "What should I do after the certificate expires?": "You need to manually update the
certificate." Nothing renews it: the listener keeps serving the expired certificate, clients that verify it
fail, and only a replacement by hand fixes it."""

import time

import pytest

from simulator.harness.scenario import self_signed_certificate

STATEMENT = "An expired certificate must be updated manually (tencent FAQ 13)"
LIFETIME = 2.0  # seconds the certificate is valid for after upload


@pytest.mark.seed(STATEMENT)
def test_expired_certificate_served_until_replaced(lab):
    short = self_signed_certificate("localhost", valid_for=LIFETIME)
    trust = lab.write_file("short-lived.pem", short.cert_pem)
    info = lab.upload_server_certificate("short-lived", short)
    assert info["expired"] is False
    listener = lab.add_listener({"server_certificate": info["name"]})
    fresh = lab.probe(listener, cafile=trust)
    assert fresh.ok and fresh.verify_error is None

    # Certificate validity is real time (time_scale does not shorten it): wait until just past not_after.
    expires = short.cert.not_valid_after_utc.timestamp()
    time.sleep(max(0.0, expires - time.time() + 0.3))
    assert lab.certificate(info["id"])["expired"] is True  # the console shows it expired...
    stale = lab.probe(listener)  # ...the listener still serves it...
    assert stale.ok and stale.server_fingerprint_sha256 == fresh.server_fingerprint_sha256
    verifying = lab.probe(listener, cafile=trust)  # ...and a verifying client refuses it
    assert not verifying.ok and "expired" in (verifying.verify_error or "")
    curl = lab.run(["curl", "-sS", "--cacert", trust, f"{listener.url}/"])
    curl.assert_failed(contains="expired")

    renewed = self_signed_certificate("localhost")
    lab.replace_certificate(info["id"], renewed)  # by hand
    lab.wait_running(listener)
    again = lab.probe(listener, cafile=lab.write_file("renewed.pem", renewed.cert_pem))
    assert again.ok and again.server_fingerprint_sha256 != fresh.server_fingerprint_sha256
    assert lab.certificate(info["id"])["expired"] is False
