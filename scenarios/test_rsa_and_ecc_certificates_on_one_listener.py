"""Tencent: an HTTPS listener can hold an RSA and an ECC certificate at the same time (`MultiCertInfo` in
`CreateListener`); each client gets the certificate it can use. Not a seed statement: the vendor's API.

The lab file's `server_certificates: [rsa, ecc]`. One OpenSSL context holds both, each with its own chain:
in TLS 1.2 the suites a client offers pick the certificate (ECDHE-ECDSA needs the ECC one), in TLS 1.3 the
signature algorithms. The connection log shows the price of each: an RSA-2048 chain and signature are
larger than a P-256 one, so its handshake costs more bytes.
"""

import pytest

from simulator.policies.context import key_type_of

STATEMENT = ("Tencent HTTPS listeners hold an RSA and an ECC certificate at once; each client gets the one it can "
             "use (tencent CreateListener MultiCertInfo; not a seed statement)")

ECDSA_SUITES = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA"
RSA_SUITES = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256"


@pytest.fixture
def dual(lab, pki):
    """A tencent listener with an RSA and an ECC certificate, each from its own CA with an intermediate."""
    rsa_ca, ecc_ca = pki("rsa"), pki("ecdsa")
    lab.upload_server_certificate("dual-rsa", rsa_ca.server("localhost", intermediate=True), profile="tencent-clb")
    lab.upload_server_certificate("dual-ecc", ecc_ca.server("localhost", intermediate=True), profile="tencent-clb")
    listener = lab.add_listener({"profile": "tencent-clb", "server_certificates": ["dual-rsa", "dual-ecc"]})
    listener.ca_file = lab.write_file("dual-ca.pem", rsa_ca.ca_pem + ecc_ca.ca_pem)
    return listener


def handshake_bytes(record):
    return record["traffic"]["lb_to_client"]["handshake"]


@pytest.mark.seed(STATEMENT)
def test_each_client_gets_the_certificate_it_can_use(lab, dual):
    described = lab.listener(dual.port)
    assert described["server_certificates"] == ["dual-rsa", "dual-ecc"]

    # TLS 1.2 with cipher lists: a client limited to ECDSA suites gets the ECC certificate, one limited to
    # RSA suites the RSA one; each chain verifies against its own CA.
    ecc = lab.probe(dual, version="TLSv1.2", ciphers=ECDSA_SUITES, cafile=dual.ca_file)
    rsa = lab.probe(dual, version="TLSv1.2", ciphers=RSA_SUITES, cafile=dual.ca_file)
    assert ecc.ok and rsa.ok, (ecc.error, rsa.error)
    assert key_type_of(ecc.server_chain[0]) == "ECDSA" and ecc.cipher.startswith("ECDHE-ECDSA-")
    assert key_type_of(rsa.server_chain[0]) == "RSA" and rsa.cipher.startswith("ECDHE-RSA-")

    # Metering: the same exchange costs more handshake bytes with the RSA certificate, and the log says so.
    ecc_record, rsa_record = lab.connection_for(ecc), lab.connection_for(rsa)
    assert ecc_record["tls_cipher"] == ecc.cipher and rsa_record["tls_cipher"] == rsa.cipher
    assert handshake_bytes(rsa_record) - handshake_bytes(ecc_record) == rsa.bytes_received - ecc.bytes_received > 300

    # TLS 1.3 with signature algorithms, through the system's OpenSSL 3.0 s_client.
    seen = {}
    for sigalgs, want in (("ECDSA+SHA256:ECDSA+SHA384", "ECDSA"), ("rsa_pss_rsae_sha256:rsa_pss_rsae_sha384", "RSA-PSS")):
        mark = lab.mark()
        out = lab.run(["openssl", "s_client", "-connect", f"127.0.0.1:{dual.port}", "-servername", "localhost",
                       "-tls1_3", "-sigalgs", sigalgs, "-CAfile", dual.ca_file, "-verify_return_error"], input="")
        out.assert_ok(contains=f"Peer signature type: {want}")
        assert "Verify return code: 0 (ok)" in out.output
        lab.wait_log_settled()
        record = lab.connections(dual, since=mark)[-1]
        assert record["tls_protocol"] == "TLSv1.3" and record["tls_verify_status"] == "Success"
        seen[want] = handshake_bytes(record)
    assert seen["RSA-PSS"] > seen["ECDSA"] + 300


@pytest.mark.seed(STATEMENT)
def test_both_certificates_are_in_use_and_aliyun_takes_one(lab, dual, pki):
    from simulator.harness.scenario import ApiError

    # The store counts both as used by the listener: neither can be deleted under it.
    for name in ("dual-rsa", "dual-ecc"):
        with pytest.raises(ApiError) as in_use:
            lab.delete_certificate(name)
        assert in_use.value.code == "CertificateInUse"
    # An aliyun-slb listener holds one server certificate: refused naming the field.
    with pytest.raises(ApiError) as refused:
        lab.add_listener({"profile": "aliyun-slb", "server_certificates": ["dual-rsa", "dual-ecc"]})
    assert refused.value.field == "listener.server_certificates" and "tencent-clb" in refused.value.message
    # Two certificates of one key type are refused too: one RSA and one ECC.
    lab.upload_server_certificate("dual-ecc-2", pki("ecdsa").server("localhost"), profile="tencent-clb")
    with pytest.raises(ApiError) as same_type:
        lab.add_listener({"profile": "tencent-clb", "server_certificates": ["dual-ecc", "dual-ecc-2"]})
    assert same_type.value.field == "listener.server_certificates"
    assert "one RSA and one ECDSA" in same_type.value.message
