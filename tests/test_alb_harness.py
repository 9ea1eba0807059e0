"""The harness on aws-alb listeners: whether a listener verifies clients comes from the listener model
(`ListenerSpec.client_verification`, the vendor's mtls modes as data), not from `ca_certificate`. The
default lab's ALB listeners are observed with real handshakes: the mutual matrix of a `verify` listener
(no certificate, valid, expired, not yet valid, revoked by the trust store's CRL, untrusted), with AWS's
`tls_verify_status` read back from the ALB connection log; `passthrough` admitting everyone; the groups
matrix (a client offering only X25519MLKEM768 gets in exactly on the -PQ- policy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.harness.observe import CLIENT_KINDS, expected_status
from simulator.harness.scenario import start

pytestmark = pytest.mark.timeout(180)
HYBRIDS = ["X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024"]


def test_expected_status_follows_mode_revocation_and_expiry() -> None:
    assert expected_status("on", "revoked", revoked=True) == "Failed:ClientCertRevoked"
    assert expected_status("on", "revoked", revoked=False) == "Success"  # no CRL revokes it
    assert expected_status("on", "expired", ignore_expiry=True) == "Success"
    assert expected_status("on", "expired") == "Failed:ClientCertExpired"
    assert expected_status("any", "untrusted") == expected_status("any", "none") == "Success"
    assert expected_status("off", "revoked", revoked=True) == "Success"  # nobody asks for a certificate


def test_default_lab_alb_listeners_observed_by_their_mutual_mode(tmp_path: Path) -> None:
    with start(None, out_dir=tmp_path) as lab:
        specs = {s.name: s for s in lab.running.config.listeners}
        assert {n: s.client_verification for n, s in specs.items() if s.profile == "aws-alb"} == {
            "aws-one-way": "off", "aws-verify": "on", "aws-passthrough": "any"}
        assert specs["aws-verify"].verifies_clients and not specs["aws-passthrough"].verifies_clients

        verify = lab.observe("aws-verify")
        assert (verify.mutual, verify.verify_client, verify.client_cert_refusal) == (True, "on", "handshake")
        assert verify.match and verify.observation is not None  # suites enumerated with a trust-store client
        rows = {r["client"]: r for r in verify.mutual_matrix}
        assert set(rows) == set(CLIENT_KINDS)
        assert all(r["ok"] for r in rows.values()), rows
        assert {k for k, r in rows.items() if r["observed"] == "Success"} == {"valid"}
        assert rows["revoked"]["observed"] == "Failed:ClientCertRevoked"
        assert rows["none"]["observed"] == "Failed:NoClientCertificate"
        # AWS's own log names: the CRL hit under its code, the others as lbsim logs them.
        assert rows["revoked"]["vendor_status"] == "Failed:ClientCertCrlHit"
        assert rows["expired"]["vendor_status"] == "Failed:ClientCertExpired"
        assert rows["untrusted"]["vendor_status"] == "Failed:ClientCertUntrusted"
        assert rows["valid"]["vendor_status"] == "Success"
        assert all(r["answer"].startswith("alert ") for k, r in rows.items() if k != "valid")

        passthrough = lab.observe("aws-passthrough")
        assert (passthrough.mutual, passthrough.verify_client, passthrough.client_cert_refusal) == (True, "any", None)
        assert passthrough.match
        assert {r["client"] for r in passthrough.mutual_matrix} == set(CLIENT_KINDS)
        assert all(r["observed"] == "Success" and r["http_status_200"] and r["ok"] for r in passthrough.mutual_matrix)

        # Groups: the PQ policy takes a hybrid-only client, the classic one refuses it.
        one_way = lab.observe("aws-one-way")
        assert one_way.groups is not None and one_way.groups_match
        assert set(HYBRIDS) <= set(one_way.groups["observed"])
        assert verify.groups is not None and verify.groups_match
        assert not set(HYBRIDS) & set(verify.groups["observed"]) and "X25519" in verify.groups["observed"]
        assert passthrough.groups is None  # ELBSecurityPolicy-2016-08 has no TLS 1.3

        # ignore_client_certificate_expiry: the expired client gets in, the revoked one still does not.
        handle = lab.add_listener({"name": "aws-verify-ignore-expiry", "profile": "aws-alb",
                                   "server_certificate": "lab-rsa", "tls_policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                                   "mtls_mode": "verify", "trust_store": "lab-clients",
                                   "ignore_client_certificate_expiry": True})
        rows = {r["client"]: r for r in lab.observe(handle.name).mutual_matrix}
        assert all(r["ok"] for r in rows.values()), rows
        assert {k for k, r in rows.items() if r["observed"] == "Success"} == {"valid", "expired"}
        assert rows["revoked"]["observed"] == "Failed:ClientCertRevoked"

        # The expectation follows the trust store as it is now: without its CRL, the revoked client is admitted.
        store = lab.api_ok("GET", "/v1/trust-stores/lab-clients")
        for revocation in store["revocations"]:
            lab.api_ok("DELETE", f"/v1/trust-stores/lab-clients/revocations/{revocation['revocation_id']}")
        handle = lab.add_listener({"name": "aws-verify-no-crl", "profile": "aws-alb", "server_certificate": "lab-rsa",
                                   "mtls_mode": "verify", "trust_store": "lab-clients"})
        rows = {r["client"]: r for r in lab.observe(handle.name).mutual_matrix}
        assert rows["revoked"]["expected"] == rows["revoked"]["observed"] == "Success", rows["revoked"]
