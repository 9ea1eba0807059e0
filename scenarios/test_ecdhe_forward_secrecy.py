"""Aliyun: "The ECDHE method used by HTTPS listeners supports forward secrecy."

Every configured listener negotiates an ephemeral ECDHE key exchange (or TLS 1.3, always ephemeral) when the
client offers it, prefers it when the client offers everything, and never uses finite-field DHE (no DH
parameters are ever loaded).
"""

import pytest

STATEMENT = "The ECDHE key exchange gives forward secrecy (aliyun notes)"
EPHEMERAL_GROUPS = {"X25519", "prime256v1", "secp384r1", "P-256", "P-384", "x25519"}


@pytest.mark.seed(STATEMENT)
def test_ecdhe_forward_secrecy(lab, lab_listener):
    report = lab.observe(lab_listener)
    assert report.observed, report.note
    client = lab.client_for(lab_listener)
    for version, suites in report.observed.items():
        assert not [s for s in suites if s.startswith(("DHE-", "EDH-"))], f"{version}: finite-field DHE accepted"
        ecdhe = [s for s in suites if s.startswith("ECDHE-") or version == "TLSv1.3"]
        assert ecdhe, f"{lab_listener} {version}: no ECDHE suite"
        # Offered everything, the listener picks a forward-secret suite over plain RSA key exchange.
        best = lab.probe(lab_listener, version=version, client=client)
        assert best.ok and (best.version == "TLSv1.3" or best.cipher.startswith("ECDHE-")), (version, best.cipher)
        assert best.group in EPHEMERAL_GROUPS, best.group
        logged = lab.connection_for(best)
        assert logged["tls_cipher"] == best.cipher and logged["tls_protocol"] == version
