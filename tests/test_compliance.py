"""Compliance verdicts: the baselines as data, the judging on constructed observations, and live listeners
judged from what the probe (and sslyze) observed on the wire."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sslyze
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from simulator.harness import compliance
from simulator.harness.compliance import MOZILLA, NIST_TLS12_SUITES, NIST_TLS13_SUITES, Observation, evaluate, weaknesses
from simulator.policies import POLICIES
from simulator.policies.context import build_server_context
from simulator.policies.suites import LEGACY_SUITES, suite_info
from simulator.policies.testing import TLSTestServer
from simulator.harness.scenario import LabBuilder, mint_pki, self_signed_certificate, start

MOZILLA_JSON = Path(sslyze.__file__).parent / "mozilla_tls_profile" / "5.7.json"


def cert(key_type: str = "rsa", bits: int = 2048, days: int = 90, algorithm: hashes.HashAlgorithm | None = None) -> x509.Certificate:
    key = rsa.generate_private_key(65537, bits) if key_type == "rsa" else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
            .sign(key, algorithm or hashes.SHA256()))


@pytest.fixture(scope="module")
def rsa_cert() -> x509.Certificate:
    return cert()


@pytest.fixture(scope="module")
def ecdsa_cert() -> x509.Certificate:
    return cert("ecdsa")


# --- the tables ----------------------------------------------------------------------------------------------

# What 6.0 (https://ssl-config.mozilla.org/guidelines/6.0.json) changed, in the fields we judge, against the 5.7
# file sslyze bundles: intermediate's TLS 1.2 ciphers lost the DHE suites (5.8 dropped kDHE).
DROPPED_SINCE_5_7 = {"intermediate": {"DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305"}}


def test_mozilla_table_is_the_published_6_0_profile() -> None:
    """Our transcription equals sslyze's bundled 5.7 guidelines plus exactly the published 6.0 changes."""
    published = json.loads(MOZILLA_JSON.read_text())
    assert published["version"] == 5.7
    assert compliance.MOZILLA_VERSION == "6.0" and "guidelines/6.0.json" in compliance.MOZILLA_SOURCE
    for profile, ours in MOZILLA.items():
        theirs = published["configurations"][profile]
        dropped = DROPPED_SINCE_5_7.get(profile, set())
        assert dropped <= set(theirs["ciphers"]["openssl"]), profile
        assert set(ours["ciphers"]) == set(theirs["ciphers"]["openssl"]) - dropped, profile
        assert not any(s.startswith("DHE-") for s in ours["ciphers"]), profile
        for key in ("tls_versions", "ciphersuites", "certificate_types", "certificate_curves", "certificate_signatures"):
            assert set(ours[key]) == set(theirs[key]), (profile, key)
        for key in ("rsa_key_size", "maximum_certificate_lifespan"):
            assert ours[key] == theirs[key], (profile, key)


def test_a_dhe_suite_fails_the_current_intermediate_profile(rsa_cert: x509.Certificate) -> None:
    """Under 5.7 this server passed intermediate; under 6.0 its DHE suite is named as the reason it fails."""
    obs = Observation("dhe", {"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256"],
                              "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}, rsa_cert)
    verdict = compliance.evaluate(obs, ["mozilla-intermediate"])["mozilla-intermediate"]
    assert not verdict.passed
    assert verdict.evidence == ["TLSv1.2 suite DHE-RSA-AES128-GCM-SHA256 accepted: not in mozilla-intermediate's ciphers"]
    without = Observation("ecdhe", {"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}, rsa_cert)
    assert compliance.evaluate(without, ["mozilla-intermediate"])["mozilla-intermediate"].passed


def test_every_suite_in_the_tables_is_a_real_suite() -> None:
    for suite in (*NIST_TLS12_SUITES, *NIST_TLS13_SUITES, *MOZILLA["intermediate"]["ciphers"], *MOZILLA["modern"]["ciphersuites"]):
        assert suite_info(suite).name == suite  # KeyError for a typo


@pytest.mark.parametrize("suite, found", [
    ("DES-CBC3-SHA", ["3DES"]), ("ECDHE-RSA-DES-CBC3-SHA", ["3DES"]), ("DES-CBC-SHA", ["single DES"]),
    ("RC4-SHA", ["RC4"]), ("EXP-RC4-MD5", ["RC4", "export", "MD5"]), ("NULL-SHA256", ["NULL encryption"]),
    ("AECDH-NULL-SHA", ["NULL encryption", "anonymous key exchange"]), ("ADH-AES128-SHA", ["anonymous key exchange"]),
    ("ECDHE-RSA-AES128-GCM-SHA256", []), ("AES128-SHA", []), ("TLS_AES_128_GCM_SHA256", []),
    ("CAMELLIA128-SHA", []), ("ECDHE-RSA-CHACHA20-POLY1305", []),
])  # fmt: skip
def test_weaknesses(suite: str, found: list[str]) -> None:
    assert weaknesses(suite) == found


# --- verdicts on constructed observations ----------------------------------------------------------------

def verdicts(versions: dict[str, list[str]], certificate: x509.Certificate | None) -> dict[str, compliance.Verdict]:
    return evaluate(Observation("t", versions, certificate))


def test_a_modern_server(ecdsa_cert: x509.Certificate) -> None:
    v = verdicts({"TLSv1.3": list(compliance.MOZILLA_TLS13)}, ecdsa_cert)
    assert v["mozilla-modern"].passed and v["mozilla-intermediate"].passed and v["pci-dss-4.0"].passed
    nist = v["nist-sp-800-52r2"]
    assert not nist.passed
    assert "TLSv1.2 not accepted: §3.1: servers shall support TLS 1.2" in nist.evidence
    assert any("TLS_CHACHA20_POLY1305_SHA256" in e and "§3.3.1.2" in e for e in nist.evidence)
    # A pass says what it looked at.
    assert any("TLSv1.3: 3 suite(s)" in e for e in v["mozilla-modern"].evidence)


def test_an_intermediate_server(rsa_cert: x509.Certificate) -> None:
    v = verdicts({"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"],
                  "TLSv1.3": ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]}, rsa_cert)
    assert v["mozilla-intermediate"].passed and v["pci-dss-4.0"].passed and v["nist-sp-800-52r2"].passed
    modern = v["mozilla-modern"]
    assert not modern.passed
    assert modern.evidence == [
        "TLSv1.2 accepted: mozilla-modern allows TLSv1.3 only (tls_versions)",
        "certificate key RSA-2048: mozilla-modern wants ecdsa (certificate_types)",
        "certificate signature sha256WithRSAEncryption: not in mozilla-modern's certificate_signatures",
    ]


def test_a_legacy_server(rsa_cert: x509.Certificate) -> None:
    v = verdicts({"TLSv1": ["AES128-SHA"], "TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256", "DES-CBC3-SHA", "RC4-SHA",
                                                        "NULL-SHA256", "ADH-AES128-SHA", "EXP-RC4-MD5"]}, rsa_cert)
    assert not any(x.passed for x in v.values())
    pci = v["pci-dss-4.0"].evidence
    assert pci[0] == ("TLSv1 accepted: PCI DSS 4.0 allows TLSv1.2 and later only "
                      "(SSL/early TLS is not strong cryptography)")
    for suite, weakness in (("DES-CBC3-SHA", "3DES"), ("RC4-SHA", "RC4"), ("NULL-SHA256", "NULL encryption"),
                            ("ADH-AES128-SHA", "anonymous key exchange"), ("EXP-RC4-MD5", "export")):
        assert f"TLSv1.2 suite {suite} accepted: {weakness} is not strong cryptography (Req. 4.2.1)" in pci
    assert not any("ECDHE-RSA-AES128-GCM-SHA256" in e for e in pci)  # a fine suite is not evidence
    nist = v["nist-sp-800-52r2"].evidence
    assert "TLSv1 accepted: §3.1 servers shall not support TLS 1.1, TLS 1.0 or SSL" in nist
    assert "TLSv1.2 suite DES-CBC3-SHA accepted: not an approved suite (§3.3.1.1)" in nist
    assert "TLSv1.3 not accepted: §3.1: servers shall support TLS 1.3 (since 1 January 2024)" in nist
    inter = v["mozilla-intermediate"].evidence
    assert "TLSv1 accepted: mozilla-intermediate allows TLSv1.2, TLSv1.3 only (tls_versions)" in inter
    assert "TLSv1.2 suite RC4-SHA accepted: not in mozilla-intermediate's ciphers" in inter


def sha1_cert(bits: int, days: int) -> x509.Certificate:
    """cryptography refuses to sign with SHA-1; OpenSSL (through pyOpenSSL's legacy API) still does."""
    import warnings

    from OpenSSL import crypto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = crypto.PKey()
        key.generate_key(crypto.TYPE_RSA, bits)
        c = crypto.X509()
        c.get_subject().CN = "t"
        c.set_issuer(c.get_subject())
        c.set_pubkey(key)
        c.set_serial_number(1)
        c.gmtime_adj_notBefore(0)
        c.gmtime_adj_notAfter(days * 86400)
        c.sign(key, "sha1")
    return c.to_cryptography()


def test_certificate_rules() -> None:
    weak = sha1_cert(1024, 800)
    v = verdicts({"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}, weak)
    assert "certificate key RSA-1024: strong cryptography needs RSA >= 2048" in v["pci-dss-4.0"].evidence
    inter = v["mozilla-intermediate"].evidence
    assert "certificate key RSA-1024: mozilla-intermediate wants at least 2048 bits (rsa_key_size)" in inter
    assert "certificate lifespan 800 days: mozilla-intermediate allows at most 366 (maximum_certificate_lifespan)" in inter
    assert "certificate signature sha1WithRSAEncryption: not in mozilla-intermediate's certificate_signatures" in inter
    nist = v["nist-sp-800-52r2"].evidence
    assert "certificate key RSA-1024: §3.2 wants RSA >= 2048" in nist
    assert "certificate signed with sha1: §3.2 wants SHA-224 or stronger" in nist


def test_certificate_findings_are_kept_apart_from_policy_findings(rsa_cert: x509.Certificate) -> None:
    """A strict policy with a weak certificate fails on the certificate alone; a loose policy with a good
    certificate fails on the policy alone: `policy_findings` and `certificate_findings` say which."""
    strict = {"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}
    weak = verdicts(strict, sha1_cert(2048, 800))["mozilla-intermediate"]
    assert not weak.passed and weak.policy_findings == []
    assert weak.certificate_findings == weak.evidence and any("lifespan 800 days" in f for f in weak.certificate_findings)
    assert weak.to_dict()["policy"] == "pass" and weak.to_dict()["certificate"] == "fail"
    loose = verdicts({"TLSv1": ["AES128-SHA"], **strict}, rsa_cert)["mozilla-intermediate"]
    assert not loose.passed and loose.certificate_findings == [] and loose.policy_findings == loose.evidence
    assert loose.to_dict()["policy"] == "fail" and loose.to_dict()["certificate"] == "pass"


def test_mozilla_policy_level_places_a_policy_on_mozillas_scale(rsa_cert: x509.Certificate) -> None:
    level = compliance.mozilla_policy_level
    assert level(Observation("m", {"TLSv1.3": list(compliance.MOZILLA_TLS13)}, rsa_cert)) == "modern"  # RSA: policy only
    assert level(Observation("i", {"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]})) == "intermediate"
    assert level(Observation("o", {"TLSv1": ["ECDHE-RSA-AES128-SHA", "DES-CBC3-SHA"], "TLSv1.2": ["AES128-GCM-SHA256"]})) == "old"
    assert level(Observation("x", {"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256", "RC4-SHA"]})) is None
    assert level(Observation("none", {})) is None


def test_mozilla_old_table_is_the_published_5_7_profile() -> None:
    theirs = json.loads(MOZILLA_JSON.read_text())["configurations"]["old"]
    assert set(compliance.MOZILLA_OLD["ciphers"]) == set(theirs["ciphers"]["openssl"])
    for key in ("tls_versions", "ciphersuites"):
        assert set(compliance.MOZILLA_OLD[key]) == set(theirs[key]), key


def test_nothing_negotiated_fails_everything() -> None:
    for verdict in verdicts({}, None).values():
        assert not verdict.passed and verdict.evidence[0].startswith("no TLS version negotiated")


def test_verdict_serialisation_and_unknown_baseline(rsa_cert: x509.Certificate) -> None:
    v = verdicts({"TLSv1.2": ["ECDHE-RSA-AES128-GCM-SHA256"]}, rsa_cert)
    assert v["pci-dss-4.0"].to_dict() == {"verdict": "pass", "evidence": v["pci-dss-4.0"].evidence, "policy": "pass",
                                          "certificate": "pass", "policy_findings": [], "certificate_findings": []}
    assert v["nist-sp-800-52r2"].to_dict()["verdict"] == "fail"
    assert "800-52" in v["nist-sp-800-52r2"].source
    with pytest.raises(KeyError):
        evaluate(Observation("t", {}), ["fips-140"])


def test_compare() -> None:
    a = Observation("x", {"TLSv1.2": ["A", "B"], "TLSv1.3": ["T"]})
    b = Observation("x", {"TLSv1.2": ["B", "A", "C"]}, source="sslyze")
    assert compliance.compare(a, a) == []
    assert compliance.compare(a, b) == ["TLSv1.2: only sslyze saw C", "TLSv1.3: only lbsim probe saw T"]


# --- live: verdicts from the wire --------------------------------------------------------------------------

def test_any_tls_server_is_judged_by_what_it_accepts() -> None:
    """Not a lab listener at all: the judge only ever sees handshakes (here a bare policy context)."""
    pki = mint_pki()
    issued = pki.server("localhost")
    from cryptography.hazmat.primitives import serialization

    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    key = serialization.load_pem_private_key(issued.key_pem, None)
    ctx = build_server_context(POLICIES["tls_cipher_policy_1_1"], chain, key)
    with TLSTestServer(ctx) as server:
        obs = compliance.observe_with_probe("127.0.0.1", server.port, "bare")
    assert set(obs.versions) == {"TLSv1.1", "TLSv1.2"}
    v = evaluate(obs)
    assert "TLSv1.1 accepted: PCI DSS 4.0 allows TLSv1.2 and later only (SSL/early TLS is not strong cryptography)" in v["pci-dss-4.0"].evidence
    assert "TLSv1.2 suite AES128-SHA accepted: not an approved suite (§3.3.1.1)" in v["nist-sp-800-52r2"].evidence


@pytest.fixture(scope="module")
def live():
    """A lab whose listeners are chosen to pass and fail known baselines, with a 90-day RSA certificate."""
    short = self_signed_certificate("localhost")  # 90 days, sha256WithRSAEncryption
    builder = (LabBuilder(time_scale=0.01).server_certificate("ninety-days", short).backend("web")
               .listener("strict", server_certificate="ninety-days", tls_policy="tls_cipher_policy_1_2_strict")
               .listener("modernish", profile="tencent-clb", server_certificate="ninety-days",
                         tls_policy={"versions": ["TLSv1.2", "TLSv1.3"],
                                     "ciphers": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
                                     "tls13_ciphersuites": ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]}))
    lab = start(builder)
    yield lab
    lab.stop()


def test_live_listener_verdicts(live) -> None:
    strict = compliance.observe_with_probe("127.0.0.1", live.port("strict"), "strict")
    assert strict.versions == {"TLSv1.2": list(POLICIES["tls_cipher_policy_1_2_strict"].negotiable("RSA")["TLSv1.2"])}
    v = evaluate(strict)
    assert v["pci-dss-4.0"].passed  # TLS 1.2 only, ECDHE-RSA AES: strong cryptography
    assert not v["nist-sp-800-52r2"].passed
    assert v["nist-sp-800-52r2"].evidence == ["TLSv1.3 not accepted: §3.1: servers shall support TLS 1.3 (since 1 January 2024)"]
    assert not v["mozilla-intermediate"].passed
    assert "TLSv1.2 suite ECDHE-RSA-AES128-SHA accepted: not in mozilla-intermediate's ciphers" in v["mozilla-intermediate"].evidence

    good = compliance.observe_with_probe("127.0.0.1", live.port("modernish"), "modernish")
    v = evaluate(good)
    assert v["mozilla-intermediate"].passed and v["pci-dss-4.0"].passed and v["nist-sp-800-52r2"].passed, \
        {k: x.evidence for k, x in v.items() if not x.passed}
    assert not v["mozilla-modern"].passed


def test_accepted_suites_agrees_with_one_at_a_time_and_with_sslyze(live) -> None:
    """Elimination (our observer), one-suite-at-a-time enumeration, and sslyze in a child process agree."""
    from simulator.policies.probe import enumerate_tls

    scan = compliance.SslyzeScan([compliance.Target(n, "127.0.0.1", live.port(n)) for n in ("strict", "modernish")]).start()
    for name in ("strict", "modernish"):
        port = live.port(name)
        assert compliance.accepted_suites("127.0.0.1", port) == enumerate_tls("127.0.0.1", port)
    results = scan.results()
    for name in ("strict", "modernish"):
        ours = compliance.observe_with_probe("127.0.0.1", live.port(name), name)
        assert results[name].error is None
        assert compliance.compare(ours, results[name].observation) == []
        assert "DES-CBC3-SHA" in {s for v in results[name].rejected.values() for s in v}  # sslyze offered 3DES


def test_sslyze_scan_can_be_cancelled() -> None:
    scan = compliance.SslyzeScan([compliance.Target("nothing", "127.0.0.1", 9)]).start()
    scan.cancel()
    assert scan._proc.returncode is not None
