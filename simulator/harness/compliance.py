"""Compliance verdicts for a listener, judged only from what a client observed on the wire.

    obs = observe_with_probe("127.0.0.1", port, name="shop")      # versions x suites, served certificate
    verdicts = evaluate(obs)                                       # {"pci-dss-4.0": Verdict(...), ...}
    verdicts["pci-dss-4.0"].passed, verdicts["pci-dss-4.0"].evidence
    sslyze_observations([Target("shop", "127.0.0.1", port)])      # the same, seen by an independent scanner

Nothing here reads a listener's configuration: a verdict is only as good as the probe that fed it, which is
the point (a misconfigured or buggy listener is judged by what it really accepts). Each baseline is a data
table naming its source; each verdict lists its evidence: what broke which rule, or what was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from simulator.policies.probe import accepted_suites  # noqa: F401  (the report's and sslyze's scans use it here)

# Versions in OpenSSL's spelling, oldest first (SSL ones only ever come from sslyze).
VERSION_ORDER = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

# --- Mozilla Server Side TLS, guidelines 6.0 ---------------------------------------------------------------
# Source: https://ssl-config.mozilla.org/guidelines/6.0.json (mozilla/ssl-config-generator,
# src/static/guidelines/6.0.json), the newest published version. Against 5.7 (the file sslyze 6 bundles) the
# fields judged here differ in one place: intermediate's TLS 1.2 ciphers lose the three DHE suites (5.8
# dropped kDHE). tests/test_compliance.py checks this table against sslyze's 5.7 file plus exactly that change.
# 6.0's tls_curves (X25519MLKEM768 first) are not judged: the probe does not enumerate key-exchange groups.
# OpenSSL suite names.
MOZILLA_VERSION = "6.0"
MOZILLA_SOURCE = "Mozilla Server Side TLS guidelines 6.0 (https://ssl-config.mozilla.org/guidelines/6.0.json)"
MOZILLA_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
MOZILLA: dict[str, dict[str, Any]] = {
    "modern": {
        "tls_versions": ("TLSv1.3",),
        "ciphers": (),
        "ciphersuites": MOZILLA_TLS13,
        "certificate_types": ("ecdsa",),
        "certificate_curves": ("prime256v1", "secp384r1"),
        "certificate_signatures": ("ecdsa-with-SHA256", "ecdsa-with-SHA384", "ecdsa-with-SHA512"),
        "rsa_key_size": None,
        "maximum_certificate_lifespan": 90,
    },
    "intermediate": {
        "tls_versions": ("TLSv1.2", "TLSv1.3"),
        "ciphers": (
            "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        ),
        "ciphersuites": MOZILLA_TLS13,
        "certificate_types": ("ecdsa", "rsa"),
        "certificate_curves": ("prime256v1", "secp384r1"),
        "certificate_signatures": ("sha256WithRSAEncryption", "ecdsa-with-SHA256", "ecdsa-with-SHA384", "ecdsa-with-SHA512"),
        "rsa_key_size": 2048,
        "maximum_certificate_lifespan": 366,
    },
}  # fmt: skip

# Mozilla's "old" profile (for clients back to Windows XP/Java 6) as guidelines 5.7 publish it: 6.0 dropped the
# profile. Used only to place a TLS policy on Mozilla's scale (:func:`mozilla_policy_level`), never as a
# baseline verdict: what a policy allows is judged, not the certificate (old wants RSA, 366 days at most).
# Source: https://ssl-config.mozilla.org/guidelines/5.7.json (the file sslyze 6 bundles; tests compare).
MOZILLA_OLD_SOURCE = "Mozilla Server Side TLS guidelines 5.7, profile old (https://ssl-config.mozilla.org/guidelines/5.7.json)"
MOZILLA_OLD: dict[str, Any] = {
    "tls_versions": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ciphers": (
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
        "DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256", "AES128-GCM-SHA256", "AES256-GCM-SHA384",
        "AES128-SHA256", "AES256-SHA256", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
    ),
    "ciphersuites": MOZILLA_TLS13,
}  # fmt: skip
MOZILLA_LEVELS = ("modern", "intermediate", "old")

# --- NIST SP 800-52 Rev. 2 (August 2019) -------------------------------------------------------------------
# Source: NIST SP 800-52r2 §3.1 (servers shall support TLS 1.2, shall support TLS 1.3 from 1 January 2024,
# and, for government-only applications, shall not support TLS 1.1/1.0/SSL), §3.3.1.1 (TLS 1.2 suites for
# ECDSA, RSA and DSA certificates; static-DH ones omitted: OpenSSL has none; RSA key transport is not
# listed), §3.3.1.2 (TLS 1.3 suites: no ChaCha20), §3.2 (server certificates: RSA >= 2048, ECDSA P-256+).
NIST_SOURCE = "NIST SP 800-52 Rev. 2 (2019), sections 3.1, 3.2, 3.3.1"
NIST_VERSIONS = ("TLSv1.2", "TLSv1.3")
NIST_REQUIRED_VERSIONS = ("TLSv1.2", "TLSv1.3")
NIST_TLS12_SUITES = (
    # ECDSA certificates
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-CCM",
    "ECDHE-ECDSA-AES256-CCM", "ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES256-CCM8", "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
    # RSA certificates (ephemeral key exchange only)
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA", "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-AES128-CCM", "DHE-RSA-AES256-CCM", "DHE-RSA-AES128-CCM8",
    "DHE-RSA-AES256-CCM8", "DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256", "DHE-RSA-AES128-SHA",
    "DHE-RSA-AES256-SHA",
    # DSA certificates
    "DHE-DSS-AES128-GCM-SHA256", "DHE-DSS-AES256-GCM-SHA384", "DHE-DSS-AES128-SHA256", "DHE-DSS-AES256-SHA256",
    "DHE-DSS-AES128-SHA", "DHE-DSS-AES256-SHA",
)  # fmt: skip
NIST_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256")
NIST_CURVES = ("secp256r1", "secp384r1", "secp521r1")
NIST_SIGNATURE_HASHES = ("sha224", "sha256", "sha384", "sha512")

# --- PCI DSS v4.0 (March 2022) ----------------------------------------------------------------------------
# Source: PCI DSS v4.0 Requirement 4.2.1 ("strong cryptography" for cardholder data in transit) with the
# PCI SSC guidance that SSL and early TLS are not strong cryptography (only TLS 1.2+), and the Glossary's
# "strong cryptography" (112-bit effective strength: RSA >= 2048, ECC >= 224; no 3DES, RC4, export, NULL).
PCI_SOURCE = "PCI DSS v4.0 Requirement 4.2.1 and Glossary 'Strong Cryptography'; PCI SSC guidance on SSL/early TLS"
PCI_MIN_VERSION = "TLSv1.2"
PCI_RSA_MIN = 2048
PCI_EC_MIN = 224

BASELINES = ("mozilla-modern", "mozilla-intermediate", "pci-dss-4.0", "nist-sp-800-52r2")
TITLES = {
    "mozilla-modern": "Mozilla modern",
    "mozilla-intermediate": "Mozilla intermediate",
    "pci-dss-4.0": "PCI DSS 4.0",
    "nist-sp-800-52r2": "NIST SP 800-52 Rev. 2",
}
SOURCES = {
    "mozilla-modern": MOZILLA_SOURCE,
    "mozilla-intermediate": MOZILLA_SOURCE,
    "pci-dss-4.0": PCI_SOURCE,
    "nist-sp-800-52r2": NIST_SOURCE,
}

# cryptography's curve names -> the ANSI names Mozilla uses
_MOZILLA_CURVE = {"secp256r1": "prime256v1", "secp384r1": "secp384r1", "secp521r1": "secp521r1"}


@dataclass
class Observation:
    """What a client saw of one listener: accepted suites per version and the certificate served."""

    listener: str
    versions: dict[str, list[str]]
    certificate: x509.Certificate | None = None
    source: str = "lbsim probe"

    def accepted(self) -> list[tuple[str, str]]:
        """(version, suite) pairs, oldest version first."""
        return [(v, s) for v in sorted(self.versions, key=_version_rank) for s in self.versions[v]]


@dataclass
class Verdict:
    """One baseline's verdict on one listener, with the evidence behind it.

    A listener fails a baseline for two different reasons, kept apart because they have different owners:
    its TLS policy (versions and suites: the vendor's table, chosen per listener) and the certificate it
    serves (key, signature, lifetime: whoever issued it). `policy_findings` and `certificate_findings`
    split `evidence` (on a fail, their concatenation) that way."""

    baseline: str
    passed: bool
    evidence: list[str] = field(default_factory=list)
    policy_findings: list[str] = field(default_factory=list)
    certificate_findings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return SOURCES[self.baseline]

    @classmethod
    def of(cls, baseline: str, policy: list[str], certificate: list[str], checked: list[str]) -> Verdict:
        """A fail with the findings of each kind, or a pass whose evidence says what was checked."""
        if policy or certificate:
            return cls(baseline, False, policy + certificate, policy, certificate)
        return cls(baseline, True, checked)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": "pass" if self.passed else "fail", "evidence": list(self.evidence),
                "policy": "fail" if self.policy_findings else "pass",
                "certificate": "fail" if self.certificate_findings else "pass",
                "policy_findings": list(self.policy_findings), "certificate_findings": list(self.certificate_findings)}


def _version_rank(version: str) -> int:
    return VERSION_ORDER.index(version) if version in VERSION_ORDER else len(VERSION_ORDER)


# --- what a suite is made of (by name, so sslyze's legacy names work too) ---------------------------------

def weaknesses(suite: str) -> list[str]:
    """Why a suite is not strong cryptography: 3DES, single DES, RC4, export, NULL, anonymous, MD5."""
    parts = suite.upper().replace("_", "-").split("-")
    out = []
    if "DES-CBC3" in suite.upper() or "3DES" in parts:
        out.append("3DES")
    elif "DES" in parts:
        out.append("single DES")
    if any(p.startswith("RC4") for p in parts):
        out.append("RC4")
    if parts[0].startswith("EXP"):
        out.append("export")
    if "NULL" in parts and not suite.startswith("TLS_"):
        out.append("NULL encryption")
    if parts[0] in ("ADH", "AECDH") or "ANON" in parts:
        out.append("anonymous key exchange")
    if parts[-1] == "MD5":
        out.append("MD5")
    return out


def _signature_name(cert: x509.Certificate) -> str:
    """OpenSSL's long name of the signature algorithm (what Mozilla's tables use)."""
    name = getattr(cert.signature_algorithm_oid, "_name", None)
    return name or cert.signature_algorithm_oid.dotted_string


def _lifespan_days(cert: x509.Certificate) -> int:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).days


def _describe_key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__


# --- the baselines --------------------------------------------------------------------------------------

def _no_handshake(obs: Observation) -> list[str]:
    return [] if obs.versions else ["no TLS version negotiated: nothing to judge, and nothing a client could use"]


def mozilla(obs: Observation, profile: str) -> Verdict:
    """Mozilla's server-side TLS profile `profile` ("modern" or "intermediate")."""
    table = MOZILLA[profile]
    name = f"mozilla-{profile}"
    broken = _no_handshake(obs) + _mozilla_policy_findings(obs, table, name)
    return Verdict.of(name, broken, _mozilla_certificate(obs.certificate, table, name),
                      _checked(obs, f"every version and suite is in {name}'s lists"))


def _mozilla_policy_findings(obs: Observation, table: Mapping[str, Any], name: str) -> list[str]:
    """What the observed versions and suites break of a Mozilla profile's tls_versions/ciphers/ciphersuites."""
    broken = []
    allowed_versions = table["tls_versions"]
    for version in sorted(obs.versions, key=_version_rank):
        if version not in allowed_versions:
            broken.append(f"{version} accepted: {name} allows {', '.join(allowed_versions)} only (tls_versions)")
    for version, suite in obs.accepted():
        if version not in allowed_versions:
            continue  # already reported with its version
        if version == "TLSv1.3":
            if suite not in table["ciphersuites"]:
                broken.append(f"{version} suite {suite} accepted: not in {name}'s ciphersuites")
        elif suite not in table["ciphers"]:
            broken.append(f"{version} suite {suite} accepted: not in {name}'s ciphers")
    return broken


def mozilla_policy_level(obs: Observation) -> str | None:
    """The strictest Mozilla profile whose TLS versions and suites cover everything the listener accepted:
    "modern", "intermediate", "old" (guidelines 5.7), or None (beyond old, or no handshake at all). The
    certificate is not looked at: this places the listener's TLS policy on Mozilla's scale."""
    if not obs.versions:
        return None
    tables = {"modern": MOZILLA["modern"], "intermediate": MOZILLA["intermediate"], "old": MOZILLA_OLD}
    return next((level for level in MOZILLA_LEVELS if not _mozilla_policy_findings(obs, tables[level], level)), None)


def _mozilla_certificate(cert: x509.Certificate | None, table: Mapping[str, Any], name: str) -> list[str]:
    if cert is None:
        return []
    out = []
    key = cert.public_key()
    kind = "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa" if isinstance(key, rsa.RSAPublicKey) else "other"
    if kind not in table["certificate_types"]:
        out.append(f"certificate key {_describe_key(cert)}: {name} wants {' or '.join(table['certificate_types'])} (certificate_types)")
    if isinstance(key, rsa.RSAPublicKey) and table["rsa_key_size"] and key.key_size < table["rsa_key_size"]:
        out.append(f"certificate key RSA-{key.key_size}: {name} wants at least {table['rsa_key_size']} bits (rsa_key_size)")
    if isinstance(key, ec.EllipticCurvePublicKey) and _MOZILLA_CURVE.get(key.curve.name, key.curve.name) not in table["certificate_curves"]:
        out.append(f"certificate curve {key.curve.name}: {name} wants {', '.join(table['certificate_curves'])} (certificate_curves)")
    signature = _signature_name(cert)
    if signature not in table["certificate_signatures"]:
        out.append(f"certificate signature {signature}: not in {name}'s certificate_signatures")
    days = _lifespan_days(cert)
    if days > table["maximum_certificate_lifespan"]:
        out.append(f"certificate lifespan {days} days: {name} allows at most {table['maximum_certificate_lifespan']} (maximum_certificate_lifespan)")
    return out


def pci_dss(obs: Observation) -> Verdict:
    """PCI DSS 4.0: nothing below TLS 1.2; no 3DES, RC4, export, NULL or anonymous suites; 112-bit keys."""
    name = "pci-dss-4.0"
    broken = _no_handshake(obs)
    minimum = _version_rank(PCI_MIN_VERSION)
    for version in sorted(obs.versions, key=_version_rank):
        if _version_rank(version) < minimum:
            broken.append(f"{version} accepted: PCI DSS 4.0 allows {PCI_MIN_VERSION} and later only (SSL/early TLS is not strong cryptography)")
    for version, suite in obs.accepted():
        for weakness in weaknesses(suite):
            broken.append(f"{version} suite {suite} accepted: {weakness} is not strong cryptography (Req. 4.2.1)")
    certificate = []
    cert = obs.certificate
    if cert is not None:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < PCI_RSA_MIN:
            certificate.append(f"certificate key RSA-{key.key_size}: strong cryptography needs RSA >= {PCI_RSA_MIN}")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < PCI_EC_MIN:
            certificate.append(f"certificate key {_describe_key(cert)}: strong cryptography needs ECC >= {PCI_EC_MIN} bits")
    return Verdict.of(name, broken, certificate, _checked(obs, "TLS 1.2+ only, no 3DES/RC4/export/NULL/anonymous suite"))


def nist_800_52r2(obs: Observation) -> Verdict:
    """NIST SP 800-52 Rev. 2: TLS 1.2 and 1.3 supported, nothing older, approved suites, approved keys."""
    name = "nist-sp-800-52r2"
    broken = _no_handshake(obs)
    for version in NIST_REQUIRED_VERSIONS:
        if obs.versions and version not in obs.versions:
            rule = "§3.1: servers shall support TLS 1.2" if version == "TLSv1.2" else "§3.1: servers shall support TLS 1.3 (since 1 January 2024)"
            broken.append(f"{version} not accepted: {rule}")
    for version in sorted(obs.versions, key=_version_rank):
        if version not in NIST_VERSIONS:
            broken.append(f"{version} accepted: §3.1 servers shall not support TLS 1.1, TLS 1.0 or SSL")
    for version, suite in obs.accepted():
        if version not in NIST_VERSIONS:
            continue
        approved = NIST_TLS13_SUITES if version == "TLSv1.3" else NIST_TLS12_SUITES
        if suite not in approved:
            section = "§3.3.1.2" if version == "TLSv1.3" else "§3.3.1.1"
            broken.append(f"{version} suite {suite} accepted: not an approved suite ({section})")
    certificate = []
    cert = obs.certificate
    if cert is not None:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            certificate.append(f"certificate key RSA-{key.key_size}: §3.2 wants RSA >= 2048")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in NIST_CURVES:
            certificate.append(f"certificate curve {key.curve.name}: §3.2 wants P-256, P-384 or P-521")
        algorithm = cert.signature_hash_algorithm
        if algorithm is not None and algorithm.name not in NIST_SIGNATURE_HASHES:
            certificate.append(f"certificate signed with {algorithm.name}: §3.2 wants SHA-224 or stronger")
    return Verdict.of(name, broken, certificate,
                      _checked(obs, "TLS 1.2 and 1.3 supported, nothing older, every suite approved"))


def _checked(obs: Observation, conclusion: str) -> list[str]:
    """A pass also says what was looked at."""
    out = [f"{v}: {len(obs.versions[v])} suite(s) accepted" for v in sorted(obs.versions, key=_version_rank)]
    if obs.certificate is not None:
        out.append(f"certificate {_describe_key(obs.certificate)}, {_signature_name(obs.certificate)}, "
                   f"lifespan {_lifespan_days(obs.certificate)} days")
    out.append(conclusion)
    return out


def evaluate(obs: Observation, baselines: Iterable[str] = BASELINES) -> dict[str, Verdict]:
    """Every baseline's verdict on one observation."""
    judges = {
        "mozilla-modern": lambda o: mozilla(o, "modern"),
        "mozilla-intermediate": lambda o: mozilla(o, "intermediate"),
        "pci-dss-4.0": pci_dss,
        "nist-sp-800-52r2": nist_800_52r2,
    }
    out = {}
    for name in baselines:
        if name not in judges:
            raise KeyError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
        out[name] = judges[name](obs)
    return out


# --- observing ----------------------------------------------------------------------------------------------

def observe_with_probe(host: str, port: int, name: str = "", **probe_kwargs: Any) -> Observation:
    """Versions x suites (:func:`accepted_suites`) and the served leaf, as lbsim's probe sees them."""
    from simulator.policies.probe import probe

    versions = accepted_suites(host, port, **probe_kwargs)
    first = probe(host, port, **probe_kwargs)
    return Observation(name or f"{host}:{port}", versions, first.server_chain[0] if first.server_chain else None)


@dataclass(frozen=True)
class Target:
    """One listener for sslyze: where it is, and client credentials for a mutual one."""

    name: str
    host: str
    port: int
    client_cert: str | None = None  # PEM file paths
    client_key: str | None = None
    server_name: str = "localhost"


SSLYZE_VERSIONS = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}


@dataclass
class SslyzeResult:
    """sslyze's view of one target: accepted suites per version, what it saw refused, and why."""

    observation: Observation | None
    rejected: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # suite -> why sslyze counted it as rejected

    def to_dict(self) -> dict[str, Any]:
        return {"versions": self.observation.versions if self.observation else None, "rejected": self.rejected,
                "error": self.error, "reasons": self.reasons}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> SslyzeResult:
        obs = Observation(name, data["versions"], source="sslyze") if data.get("versions") is not None else None
        return cls(obs, data.get("rejected") or {}, data.get("error"), data.get("reasons") or {})


def sslyze_observations(targets: Sequence[Target], network_timeout: int = 5, connections: int | None = None,
                        servers: int | None = None) -> dict[str, SslyzeResult]:
    """Scan every target with sslyze (its own nassl OpenSSL builds, legacy suites included). `connections`
    and `servers` cap its concurrency (default: sslyze's own, 5 connections per server, 10 servers)."""
    from sslyze import (
        ClientAuthenticationCredentials,
        ScanCommand,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )

    commands = {ScanCommand(field_name) for field_name in SSLYZE_VERSIONS.values()}
    by_port = {}
    requests = []
    for t in targets:
        creds = None
        if t.client_cert and t.client_key:
            creds = ClientAuthenticationCredentials(certificate_chain_path=Path(t.client_cert), key_path=Path(t.client_key))
        config = ServerNetworkConfiguration(tls_server_name_indication=t.server_name, tls_client_auth_credentials=creds,
                                            network_timeout=network_timeout)
        requests.append(ServerScanRequest(server_location=ServerNetworkLocation(t.server_name, t.port, ip_address=t.host),
                                          network_configuration=config, scan_commands=commands))
        by_port[t.port] = t
    scanner = Scanner(per_server_concurrent_connections_limit=connections, concurrent_server_scans_limit=servers)
    scanner.queue_scans(requests)
    out: dict[str, SslyzeResult] = {}
    for result in scanner.get_results():
        target = by_port[result.server_location.port]
        if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
            out[target.name] = SslyzeResult(None, error=str(result.connectivity_error_trace or result.scan_status))
            continue
        versions: dict[str, list[str]] = {}
        rejected: dict[str, list[str]] = {}
        reasons: dict[str, str] = {}
        errors = []
        for version, field_name in SSLYZE_VERSIONS.items():
            attempt = getattr(result.scan_result, field_name)
            if attempt.result is None:
                errors.append(f"{version}: {attempt.error_reason}")
                continue
            accepted = [c.cipher_suite.openssl_name for c in attempt.result.accepted_cipher_suites]
            if accepted:
                versions[version] = accepted
            rejected[version] = [c.cipher_suite.openssl_name for c in attempt.result.rejected_cipher_suites]
            reasons.update({f"{version} {c.cipher_suite.openssl_name}": c.error_message
                            for c in attempt.result.rejected_cipher_suites})
        out[target.name] = SslyzeResult(Observation(target.name, versions, source="sslyze"), rejected,
                                        "; ".join(errors) or None, reasons)
    return out


class SslyzeScan:
    """sslyze in a child process, so that it runs beside the lab (one Python process is one core):

        scan = SslyzeScan(targets).start(); ...; results = scan.results()
    """

    def __init__(self, targets: Sequence[Target], connections: int = 1, servers: int = 4):
        # One connection per listener at a time: sslyze's default (5) overloads a lab's single event loop, and
        # on a loaded loop the lab's scaled health checks time out. It is also faster here (no retries).
        self.targets = list(targets)
        self.limits = {"connections": connections, "servers": servers}
        self._proc: Any = None

    def start(self) -> SslyzeScan:
        import json
        import subprocess
        import sys

        payload = json.dumps({"targets": [t.__dict__ for t in self.targets], **self.limits})
        self._proc = subprocess.Popen([sys.executable, "-m", "simulator.harness.compliance"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self._proc.stdin is not None
        self._proc.stdin.write(payload)
        self._proc.stdin.close()
        self._proc.stdin = None  # written and closed: communicate() must not touch it
        return self

    def results(self, timeout: float = 300) -> dict[str, SslyzeResult]:
        import json

        if self._proc is None:
            self.start()
        out, err = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0:
            raise RuntimeError(f"sslyze child failed ({self._proc.returncode}): {err[-2000:]}")
        return {name: SslyzeResult.from_dict(name, data) for name, data in json.loads(out).items()}

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


def _main() -> None:
    """`python -m simulator.harness.compliance` < targets JSON > sslyze results JSON (used by SslyzeScan)."""
    import json
    import sys

    job = json.load(sys.stdin)
    targets = [Target(**t) for t in job["targets"]]
    results = sslyze_observations(targets, connections=job.get("connections"), servers=job.get("servers"))
    json.dump({name: r.to_dict() for name, r in results.items()}, sys.stdout)


def compare(ours: Observation, theirs: Observation) -> list[str]:
    """Differences between two observations' version x suite sets (order ignored), as sentences."""
    out = []
    for version in sorted(set(ours.versions) | set(theirs.versions), key=_version_rank):
        a, b = set(ours.versions.get(version, ())), set(theirs.versions.get(version, ()))
        if a - b:
            out.append(f"{version}: only {ours.source} saw {', '.join(sorted(a - b))}")
        if b - a:
            out.append(f"{version}: only {theirs.source} saw {', '.join(sorted(b - a))}")
    return out


if __name__ == "__main__":
    _main()
