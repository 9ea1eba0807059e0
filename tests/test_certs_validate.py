"""Every validation rule, under both vendor profiles, on inputs generated here (no committed keys)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from functools import lru_cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, ed25519, padding, rsa

from simulator.certs import MAX_FIELD_BYTES, check
from simulator.certs.mint import cert_pem, key_pem, make_cert
from simulator.errors import LbsimError

PROFILES = ("aliyun-slb", "tencent-clb")
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return request.param


# --- generated inputs, cached per session: key generation is the slow part ----------------------

@lru_cache(maxsize=None)
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@lru_cache(maxsize=None)
def ec_key(curve: str = "secp256r1", n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(),
                                    "secp521r1": ec.SECP521R1()}[curve])


@lru_cache(maxsize=None)
def root() -> tuple[x509.Certificate, Any]:
    key = rsa_key(2048, 100)
    return make_cert("lab root", key, ca=True), key


@lru_cache(maxsize=None)
def intermediate() -> tuple[x509.Certificate, Any]:
    key = rsa_key(2048, 101)
    return make_cert("lab intermediate", key, issuer=root(), ca=True), key


def server(key: Any = None, issuer: tuple[x509.Certificate, Any] | None = None, **kw: Any) -> x509.Certificate:
    return make_cert("www.example.com", key or rsa_key(), issuer=issuer or intermediate(),
                     sans=["www.example.com"], **kw)


def good_chain() -> bytes:
    return cert_pem(server(), intermediate()[0], root()[0])


def good_key() -> bytes:
    return key_pem(rsa_key(), "traditional")


def codes(result: Any) -> list[str]:
    return [f.code for f in result.findings]


def only(result: Any, code: str, severity: str = "error") -> Any:
    """The result holds exactly one finding, `code`, of `severity`."""
    assert [(f.code, f.severity) for f in result.findings] == [(code, severity)], result.findings
    return result.findings[0]


def pem_block(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


# --- the baseline: what both vendors accept -------------------------------------------------------

def test_a_good_rsa_chain_and_pkcs1_key_pass_with_no_finding(profile: str) -> None:
    result = check(profile, "server", good_chain(), good_key())
    assert result.ok and result.findings == []
    assert result.chain_length == 3
    assert result.info is not None and result.info.subject.startswith("CN=www.example.com")
    json.dumps(result.to_dict())  # JSON-safe


def test_a_good_ca_passes(profile: str) -> None:
    assert check(profile, "ca", cert_pem(root()[0])).findings == []


def test_crlf_trailing_spaces_bom_and_text_between_blocks_are_accepted(profile: str) -> None:
    noisy = b"\xef\xbb\xbfBag Attributes\n    friendlyName: www\n" + good_chain()
    noisy = noisy.replace(b"\n", b"   \t\r\n")
    key = good_key().replace(b"\n", b" \r\n")
    assert check(profile, "server", noisy, key).findings == []
    assert check(profile, "server", noisy.decode("latin-1"), key.decode()).findings == []  # str works too


def test_unknown_profile_and_type_are_caller_errors() -> None:
    with pytest.raises(LbsimError) as e:
        check("gcp-lb", "server", good_chain(), good_key())  # aws-alb became a profile
    assert e.value.code == "UnknownProfile"
    with pytest.raises(LbsimError) as e:
        check("aliyun-slb", "client", good_chain(), good_key())
    assert e.value.code == "InvalidCertificateType"


# --- size and format ------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["cert", "key"])
def test_input_over_64_kib_is_rejected_before_parsing(profile: str, field: str) -> None:
    big = b"x" * (MAX_FIELD_BYTES + 1)  # not PEM either: the size verdict comes first
    cert, key = (big, good_key()) if field == "cert" else (good_chain(), big)
    finding = only(check(profile, "server", cert, key), "InputTooLarge")
    assert finding.field == field


def test_exactly_64_kib_is_not_too_large(profile: str) -> None:
    chain = good_chain()
    padded = chain + b"#" * (MAX_FIELD_BYTES - len(chain))  # text after the blocks is ignored
    assert len(padded) == MAX_FIELD_BYTES
    assert check(profile, "server", padded, good_key()).ok


def _der() -> bytes:
    return server().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("content, looks_like", [
    ("der", "der"),
    ("base64", "base64"),
    (b"hello, this is not a certificate", "garbage"),
    (b"\x00\x01\x02\xff binary", "binary"),
])
def test_not_pem_certificate(profile: str, content: Any, looks_like: str) -> None:
    if content == "der":
        content = _der()
    elif content == "base64":
        content = base64.encodebytes(_der())
    result = check(profile, "server", content, good_key())
    finding = only(result, "NotPem")
    assert finding.field == "cert"
    assert "openssl x509 -inform DER" in finding.hint
    if profile == "aliyun-slb":
        assert finding.message.startswith("The specified Server Certificate format is invalid")


def test_not_pem_key_has_the_vendor_conversion_hint(profile: str) -> None:
    der_key = rsa_key().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
    finding = only(check(profile, "server", good_chain(), der_key), "NotPem")
    assert finding.field == "key"
    if profile == "aliyun-slb":
        assert finding.message.startswith("The format of the private key content is invalid")
        assert "openssl rsa -inform DER" in finding.hint and "-traditional" in finding.hint
    else:
        assert "openssl pkey -inform DER" in finding.hint


@pytest.mark.parametrize("mangle", [
    lambda pem: pem.rsplit(b"-----END", 1)[0],  # truncated: no END line
    lambda pem: pem.replace(b"END CERTIFICATE", b"END X509 CRL", 1),  # mismatched labels
    lambda pem: pem.replace(b"-----BEGIN CERTIFICATE-----\n", b"", 1),  # END without BEGIN
    lambda pem: pem.replace(b"\n", b"\n!!!!\n", 2),  # not base64 inside the block
    lambda pem: b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",  # empty block
])
def test_broken_pem_framing_is_not_pem(profile: str, mangle: Any) -> None:
    finding = only(check(profile, "server", mangle(good_chain()), good_key()), "NotPem")
    assert finding.field == "cert"


def test_malformed_certificate_and_private_key(profile: str) -> None:
    garbage = pem_block("CERTIFICATE", b"\x30\x03\x02\x01\x01")
    assert codes(check(profile, "server", garbage, good_key())) == ["MalformedCertificate"]
    bad_key = pem_block("RSA PRIVATE KEY", b"\x30\x03\x02\x01\x01")
    finding = only(check(profile, "server", good_chain(), bad_key), "MalformedPrivateKey")
    assert finding.field == "key"


def test_an_inconsistent_rsa_key_is_malformed(profile: str) -> None:
    """A key whose private exponents do not match its public half parses, but signs nothing that verifies."""
    good = rsa_key().private_numbers()
    broken = rsa.RSAPrivateNumbers(good.p, good.q, good.d + 2, good.dmp1 + 2, good.dmq1, good.iqmp, good.public_numbers)
    pem = key_pem(broken.private_key(unsafe_skip_rsa_key_validation=True), "traditional")
    finding = only(check(profile, "server", good_chain(), pem), "MalformedPrivateKey")
    assert finding.field == "key" and "consistent" in finding.message


def test_unexpected_pem_blocks(profile: str) -> None:
    csr = pem_block("CERTIFICATE REQUEST", b"\x30\x00")
    assert only(check(profile, "server", good_chain() + csr, good_key()), "UnexpectedPemBlock").field == "cert"
    public = rsa_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    result = check(profile, "server", good_chain(), good_key() + public)
    assert only(result, "UnexpectedPemBlock").field == "key"
    result = check(profile, "server", good_chain(), good_key() + cert_pem(root()[0]))
    assert only(result, "UnexpectedPemBlock").field == "key"


# --- the seed's and the vendors' own rules --------------------------------------------------------

@lru_cache(maxsize=None)
def dh_params() -> bytes:
    params = dh.generate_parameters(generator=2, key_size=512)
    return params.parameter_bytes(serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3)


@pytest.mark.parametrize("field", ["cert", "key"])
def test_dh_parameters_are_rejected_with_the_ecdhe_hint(profile: str, field: str) -> None:
    cert, key = good_chain(), good_key()
    if field == "cert":
        cert += dh_params()
    else:
        key = dh_params() + key
    finding = only(check(profile, "server", cert, key), "DhParametersNotSupported")
    assert finding.field == field and "ECDHE" in finding.hint and "BEGIN DH PARAMETERS" in finding.message


def test_key_that_does_not_match_the_certificate(profile: str) -> None:
    other = key_pem(rsa_key(2048, 1))
    finding = only(check(profile, "server", good_chain(), other), "KeyCertificateMismatch")
    assert finding.field == "key"
    if profile == "aliyun-slb":
        assert finding.message.startswith("The certificate and private key that you upload do not match")


@pytest.mark.parametrize("fmt", ["traditional", "pkcs8"])
def test_encrypted_private_key_is_rejected_with_the_decrypt_hint(profile: str, fmt: str) -> None:
    encrypted = key_pem(rsa_key(), fmt, password=b"secret")  # type: ignore[arg-type]
    assert (b"Proc-Type: 4,ENCRYPTED" in encrypted) == (fmt == "traditional")
    finding = only(check(profile, "server", good_chain(), encrypted), "EncryptedPrivateKey")
    expected = "openssl rsa -in encrypted.pem -traditional" if profile == "aliyun-slb" else "openssl pkey -in"
    assert expected in finding.hint


def test_pkcs8_rsa_key_aliyun_rejects_tencent_accepts(profile: str) -> None:
    result = check(profile, "server", good_chain(), key_pem(rsa_key(), "pkcs8"))
    if profile == "aliyun-slb":
        finding = only(result, "Pkcs8NotSupported")
        assert "openssl rsa -in key.pem -traditional" in finding.hint
    else:
        assert result.findings == []


@pytest.mark.parametrize("fmt", ["traditional", "pkcs8"])
@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1"])
def test_ecdsa_certificate_aliyun_rejects_tencent_accepts(profile: str, curve: str, fmt: str) -> None:
    key = ec_key(curve)
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key, fmt))  # type: ignore[arg-type]
    if profile == "aliyun-slb":
        only(result, "UnsupportedKeyType")  # and not Pkcs8NotSupported: converting would not help
    else:
        assert result.findings == []


def test_ecdsa_curve_outside_the_table(profile: str) -> None:
    key = ec_key("secp521r1")
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key))
    only(result, "UnsupportedKeyType" if profile == "aliyun-slb" else "UnsupportedKeySize")


def test_ed25519_certificate_is_rejected_by_both(profile: str) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key, "pkcs8"))
    assert codes(result) == ["UnsupportedKeyType"]


@pytest.mark.parametrize("bits, aliyun, tencent", [
    (1024, True, True),
    (2048, True, True),
    (3072, False, True),
    (4096, True, True),
])
def test_rsa_key_sizes(profile: str, bits: int, aliyun: bool, tencent: bool) -> None:
    key = rsa_key(bits)
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key))
    accepted = aliyun if profile == "aliyun-slb" else tencent
    if accepted and bits < 2048:
        finding = only(result, "WeakKeyAccepted", "warning")  # accepted, but not without a word
        assert finding.field == "cert" and f"{bits}-bit RSA key: {profile} accepts it" in finding.message
        assert "2048 bits or more" in finding.hint
    elif accepted:
        assert result.findings == []
    else:
        only(result, "UnsupportedKeySize")


def test_strict_refuses_a_weak_but_accepted_rsa_key(profile: str) -> None:
    key = rsa_key(1024)
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key), strict=True)
    assert not result.ok
    only(result, "WeakKeyAccepted", "error")


def test_a_1024_bit_intermediate_or_ca_is_weak_but_accepted(profile: str) -> None:
    weak_ca = (make_cert("weak intermediate", rsa_key(1024, 7), issuer=root(), ca=True), rsa_key(1024, 7))
    result = check(profile, "server", cert_pem(server(issuer=weak_ca), weak_ca[0]), good_key())
    assert result.ok
    assert only(result, "WeakKeyAccepted", "warning").message.startswith("Certificate 2 has a 1024-bit RSA key")
    result = check(profile, "ca", cert_pem(weak_ca[0], root()[0]))
    assert result.ok and only(result, "WeakKeyAccepted", "warning").message.startswith("Certificate 1 ")
    assert not check(profile, "ca", cert_pem(weak_ca[0]), strict=True).ok


def _prime(bits: int) -> int:
    while True:
        n = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if all(pow(a, n - 1, n) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)) and n % 65537 != 1:
            return n


@lru_cache(maxsize=None)
def weak_rsa_key(bits: int = 512) -> rsa.RSAPrivateKey:
    """cryptography refuses to generate RSA keys under 1024 bits; build one from primes."""
    p, q = _prime(bits // 2), _prime(bits // 2)
    e, phi = 65537, (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def test_rsa_key_under_1024_bits_is_weak(profile: str) -> None:
    key = weak_rsa_key()
    result = check(profile, "server", cert_pem(server(key), intermediate()[0]), key_pem(key))
    only(result, "WeakKey")  # not UnsupportedKeySize as well
    weak_ca = make_cert("weak ca", key, ca=True)
    only(check(profile, "ca", cert_pem(weak_ca)), "WeakKey")


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _seq(body: bytes) -> bytes:
    return b"\x30" + _der_len(len(body)) + body


SHA256_RSA = bytes.fromhex("2a864886f70d01010b")
WEAK_OIDS = {"md5": bytes.fromhex("2a864886f70d010104"), "sha1": bytes.fromhex("2a864886f70d010105")}


def resign(cert: x509.Certificate, signer: rsa.RSAPrivateKey, digest: str) -> x509.Certificate:
    """`cert` re-signed with MD5 or SHA-1, which cryptography 46 refuses to sign with: swap the
    algorithm OID (same length) in the TBS, sign it, and assemble the DER by hand."""
    oid = WEAK_OIDS[digest]
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(SHA256_RSA) == 1
    tbs = tbs.replace(SHA256_RSA, oid)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.MD5() if digest == "md5" else hashes.SHA1())
    algorithm = _seq(b"\x06\x09" + oid + b"\x05\x00")
    bits = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    return x509.load_der_x509_certificate(_seq(tbs + algorithm + bits))


def test_md5_signature_is_rejected(profile: str) -> None:
    leaf = resign(server(), intermediate()[1], "md5")
    finding = only(check(profile, "server", cert_pem(leaf, intermediate()[0]), good_key()), "WeakSignature")
    assert "md5" in finding.message
    only(check(profile, "ca", cert_pem(resign(root()[0], root()[1], "md5"))), "WeakSignature")


def test_sha1_signature_is_a_warning(profile: str) -> None:
    leaf = resign(server(), intermediate()[1], "sha1")
    result = check(profile, "server", cert_pem(leaf, intermediate()[0]), good_key())
    only(result, "Sha1Signature", "warning")
    assert result.ok
    assert not check(profile, "server", cert_pem(leaf, intermediate()[0]), good_key(), strict=True).ok


# --- chain ----------------------------------------------------------------------------------------

def test_chain_out_of_order(profile: str) -> None:
    result = check(profile, "server", cert_pem(server(), root()[0], intermediate()[0]), good_key())
    assert "out of order" in only(result, "ChainOrder").message


def test_leaf_must_come_first(profile: str) -> None:
    only(check(profile, "server", cert_pem(intermediate()[0], server()), good_key()), "ChainOrder")


def test_unrelated_certificate_in_chain(profile: str) -> None:
    stranger = make_cert("stranger.example", rsa_key(2048, 2))  # not a CA: it cannot be an ancestor
    assert "unrelated" in only(check(profile, "server", cert_pem(server(), stranger), good_key()), "ChainOrder").message


def test_repeated_certificate_in_chain(profile: str) -> None:
    self_signed = make_cert("self", rsa_key())
    result = check(profile, "server", cert_pem(self_signed, self_signed), good_key())
    assert "repeats" in only(result, "ChainOrder").message


def test_chain_certificate_with_the_right_name_but_the_wrong_key(profile: str) -> None:
    impostor = make_cert("lab intermediate", rsa_key(2048, 3), issuer=root(), ca=True)  # same subject name
    only(check(profile, "server", cert_pem(server(), impostor, root()[0]), good_key()), "ChainSignature")


def test_missing_intermediate_is_a_warning(profile: str) -> None:
    result = check(profile, "server", cert_pem(server()), good_key())
    finding = only(result, "IntermediateMissing", "warning")
    assert finding.message.lower().startswith("intermediate certificate missing")
    assert result.ok
    strict = check(profile, "server", cert_pem(server()), good_key(), strict=True)
    assert not strict.ok and strict.errors[0].code == "IntermediateMissing"


def test_missing_intermediate_between_leaf_and_root(profile: str) -> None:
    """Leaf + root without the intermediate: a gap, the same warning as a lone leaf (not a ChainOrder
    error whose "reorder the chain" hint cannot fix it)."""
    result = check(profile, "server", cert_pem(server(), root()[0]), good_key())
    finding = only(result, "IntermediateMissing", "warning")
    assert finding.message.lower().startswith("intermediate certificate missing")
    assert "CN=lab intermediate" in finding.message and "intermediate" in finding.hint
    assert result.ok
    assert not check(profile, "server", cert_pem(server(), root()[0]), good_key(), strict=True).ok


def test_self_signed_leaf_needs_no_intermediate(profile: str) -> None:
    leaf = make_cert("self", rsa_key())
    assert check(profile, "server", cert_pem(leaf), good_key()).findings == []


# --- what goes in which field ---------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, b"", b"  \r\n"])
def test_server_upload_without_a_key(profile: str, key: Any) -> None:
    assert only(check(profile, "server", good_chain(), key), "MissingPrivateKey").field == "key"


def test_key_without_a_certificate(profile: str) -> None:
    result = check(profile, "server", good_key(), good_key())
    assert codes(result) == ["UnexpectedPrivateKey", "MissingCertificate"]
    if profile == "aliyun-slb":
        assert result.findings[1].message.startswith("No certificate chain is found in the certificate content")


@pytest.mark.parametrize("empty", [b"", b"  \n\t\n", "", None])
def test_key_with_an_empty_certificate_field(profile: str, empty: Any) -> None:
    finding = only(check(profile, "server", empty, good_key()), "MissingCertificate")
    assert finding.field == "cert" and "empty" in finding.message
    assert "DER" not in finding.hint and "BEGIN CERTIFICATE" in finding.hint
    if profile == "aliyun-slb":
        assert finding.message.startswith("No certificate chain is found in the certificate content")


def test_key_pasted_into_the_certificate_field(profile: str) -> None:
    result = check(profile, "server", good_key() + good_chain(), None)
    assert codes(result) == ["UnexpectedPrivateKey", "MissingPrivateKey"]
    assert "key field" in result.findings[0].hint


def test_two_private_keys(profile: str) -> None:
    only(check(profile, "server", good_chain(), good_key() + key_pem(rsa_key(2048, 1))), "MultiplePrivateKeys")


def test_ca_upload_that_carries_a_key(profile: str) -> None:
    ca_pem = cert_pem(root()[0])
    assert only(check(profile, "ca", ca_pem, key_pem(root()[1])), "UnexpectedPrivateKey").field == "key"
    assert only(check(profile, "ca", ca_pem + key_pem(root()[1])), "UnexpectedPrivateKey").field == "cert"


def test_ca_upload_must_be_a_ca(profile: str) -> None:
    finding = only(check(profile, "ca", cert_pem(server())), "NotACertificateAuthority")
    assert "CA:TRUE" in finding.message
    assert check(profile, "ca", cert_pem(intermediate()[0], root()[0])).findings == []  # a bundle of CAs


def test_unsupported_key_format(profile: str) -> None:
    key = ec_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
    only(check(profile, "server", good_chain(), key), "UnsupportedKeyFormat")


def test_ec_parameters_before_the_key_are_a_warning() -> None:
    key = ec_key()
    params = pem_block("EC PARAMETERS", bytes.fromhex("06082a8648ce3d030107"))  # OID prime256v1
    result = check("tencent-clb", "server", cert_pem(server(key), intermediate()[0]), params + key_pem(key))
    only(result, "EcParametersIgnored", "warning")


# --- time -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, window", [
    ("CertificateExpired", {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)}),
    ("CertificateNotYetValid", {"not_before": NOW + dt.timedelta(days=1), "not_after": NOW + dt.timedelta(days=9)}),
])
def test_validity_window_is_a_warning_unless_strict(profile: str, code: str, window: dict[str, Any]) -> None:
    chain = cert_pem(server(**window), intermediate()[0])
    result = check(profile, "server", chain, good_key())
    assert result.ok
    only(result, code, "warning")
    assert codes(check(profile, "server", chain, good_key(), strict=True)) == [code]
    assert not check(profile, "server", chain, good_key(), strict=True).ok
    ca = make_cert("old ca", rsa_key(), ca=True, **window)
    only(check(profile, "ca", cert_pem(ca)), code, "warning")


def test_now_can_be_given() -> None:
    chain = cert_pem(server(), intermediate()[0])
    later = NOW + dt.timedelta(days=400)
    only(check("aliyun-slb", "server", chain, good_key(), now=later), "CertificateExpired", "warning")


# --- the catalogue itself -------------------------------------------------------------------------

FIELDS = {
    "InputTooLarge": "cert key", "NotPem": "cert key", "MalformedCertificate": "cert", "MalformedPrivateKey": "key",
    "UnexpectedPemBlock": "cert key", "DhParametersNotSupported": "cert key", "MissingCertificate": "cert",
    "UnexpectedPrivateKey": "cert key", "MissingPrivateKey": "key", "MultiplePrivateKeys": "key",
    "EncryptedPrivateKey": "key", "UnsupportedKeyFormat": "key", "Pkcs8NotSupported": "key",
    "UnsupportedKeyType": "cert", "UnsupportedKeySize": "cert", "WeakKey": "cert", "WeakKeyAccepted": "cert",
    "WeakSignature": "cert",
    "KeyCertificateMismatch": "key", "ChainOrder": "cert", "ChainSignature": "cert",
    "NotACertificateAuthority": "cert", "Sha1Signature": "cert", "IntermediateMissing": "cert",
    "CertificateExpired": "cert", "CertificateNotYetValid": "cert", "EcParametersIgnored": "key",
    "KeyTooLarge": "key", "NotX509v3": "cert",
}


def test_every_rule_has_a_hint_and_is_documented(profile: str) -> None:
    from pathlib import Path

    from simulator.certs.validate import RULES, finding_for

    assert set(FIELDS) == set(RULES)
    for code, fields in FIELDS.items():
        for field in fields.split():
            finding = finding_for(profile, "server", code, "detail", field)
            assert finding.hint and finding.severity == RULES[code].severity, (code, field)
    docs = (Path(__file__).parent.parent / "docs" / "certificates.md").read_text()
    assert [code for code in RULES if f"`{code}`" not in docs] == []


# --- aws-alb: ACM's import rules ------------------------------------------------------------------


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + der_len(len(body)) + body


def v1_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """A self-signed X.509 v1 certificate (cryptography only builds v3: drop the version field and re-sign)."""
    v3 = make_cert("v1.example.com", key, ca=False)
    tbs = v3.tbs_certificate_bytes
    # TBSCertificate ::= SEQUENCE { [0] EXPLICIT version, serial, ... }: skip the header, then the [0] field.
    header = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    body = tbs[header:]
    assert body[:2] == b"\xa0\x03"
    tbs_v1 = der_tlv(0x30, body[5:])
    signature = key.sign(tbs_v1, padding.PKCS1v15(), hashes.SHA256())
    algorithm = der_tlv(0x30, der_tlv(0x06, bytes.fromhex("2a864886f70d01010b")) + b"\x05\x00")  # sha256WithRSA
    cert = der_tlv(0x30, tbs_v1 + algorithm + der_tlv(0x03, b"\x00" + signature))
    assert x509.load_der_x509_certificate(cert).version == x509.Version.v1
    return pem_block("CERTIFICATE", cert)


def test_aws_alb_accepts_what_acm_imports() -> None:
    assert check("aws-alb", "server", good_chain(), good_key()).findings == []
    for bits in (1024, 2048, 3072, 4096):
        key = rsa_key(bits)
        chain = cert_pem(server(key), intermediate()[0])
        assert check("aws-alb", "server", chain, key_pem(key, "pkcs8")).ok, bits
    for curve in ("secp256r1", "secp384r1", "secp521r1"):
        key = ec_key(curve)
        chain = cert_pem(server(key), intermediate()[0])
        assert check("aws-alb", "server", chain, key_pem(key, "sec1")).ok, curve


def test_aws_alb_rejects_other_sizes_curves_and_types() -> None:
    key = rsa_key(1536)
    f = only(check("aws-alb", "server", cert_pem(server(key), intermediate()[0]), key_pem(key)), "UnsupportedKeySize")
    assert "1024, 2048, 3072, 4096" in f.message and "P-521" in f.hint
    key = ec_key("secp521r1")
    assert check("aws-alb", "server", cert_pem(server(key), intermediate()[0]), key_pem(key)).ok  # tencent refuses it
    assert not check("tencent-clb", "server", cert_pem(server(key), intermediate()[0]), key_pem(key)).ok
    ed = ed25519.Ed25519PrivateKey.generate()
    assert "UnsupportedKeyType" in codes(check("aws-alb", "server", cert_pem(server(ed)), key_pem(ed, "pkcs8")))


def test_aws_alb_private_key_field_at_most_5120_bytes() -> None:
    key = good_key()
    # What `openssl pkcs12 -nocerts` writes before the key: Bag Attributes text, here padded past the limit.
    padded = b"Bag Attributes\n    friendlyName: " + b"x" * (5121 - len(key) - 34) + b"\n" + key
    assert len(padded) == 5121
    f = only(check("aws-alb", "server", good_chain(), padded), "KeyTooLarge")
    assert f.message.startswith("The private key must be no larger than 5 KB (5,120 bytes): ") and f.field == "key"
    exact = b"x" * (5120 - len(key) - 1) + b"\n" + key
    assert len(exact) == 5120 and check("aws-alb", "server", good_chain(), exact).ok
    assert check("aliyun-slb", "server", good_chain(), padded).ok  # no such limit there


def test_aws_alb_requires_x509_v3() -> None:
    key = rsa_key(2048, 7)
    v1 = v1_certificate(key)
    f = only(check("aws-alb", "server", v1, key_pem(key)), "NotX509v3")
    assert f.message == "You can import only X.509 version 3 SSL/TLS certificates: the server certificate is X.509 v1"
    assert check("tencent-clb", "server", v1, key_pem(key, "pkcs8")).ok


@pytest.mark.parametrize("code, window", [
    ("CertificateExpired", {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)}),
    ("CertificateNotYetValid", {"not_before": NOW + dt.timedelta(days=1), "not_after": NOW + dt.timedelta(days=9)}),
])
def test_aws_alb_validity_window_is_an_error(code: str, window: dict[str, Any]) -> None:
    result = check("aws-alb", "server", cert_pem(server(**window), intermediate()[0]), good_key())
    f = only(result, code, "error")
    assert f.message.startswith("The current time must be between the Not Before and Not After certificate fields: ")


def test_aws_alb_chain_order_and_mismatch_wording() -> None:
    out_of_order = cert_pem(server(), root()[0], intermediate()[0])
    f = only(check("aws-alb", "server", out_of_order, good_key()), "ChainOrder")
    assert f.message.startswith("Each certificate in the chain must directly certify the one preceding: ")
    f = only(check("aws-alb", "server", good_chain(), key_pem(rsa_key(2048, 3))), "KeyCertificateMismatch")
    assert f.message.startswith("You must enter the private key that matches the certificate you are importing")
    encrypted = rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"secret"))
    f = only(check("aws-alb", "server", good_chain(), encrypted), "EncryptedPrivateKey")
    assert f.message.startswith("The private key must be unencrypted")


def test_aws_alb_lbsim_cert_check(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main

    (tmp_path / "chain.pem").write_bytes(cert_pem(server(**{"not_before": NOW - dt.timedelta(days=30),
                                                            "not_after": NOW - dt.timedelta(days=1)}),
                                                  intermediate()[0]))
    (tmp_path / "key.pem").write_bytes(good_key())
    args = ["cert", "check", "--cert", str(tmp_path / "chain.pem"), "--key", str(tmp_path / "key.pem")]
    assert main([*args, "--profile", "aws-alb"]) == 1
    assert "CertificateExpired" in capsys.readouterr().out
    assert main([*args, "--profile", "aliyun-slb"]) == 0  # a warning there
