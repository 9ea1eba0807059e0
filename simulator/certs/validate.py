"""Would the vendor accept this certificate? One engine; each vendor's rules are data (its profile's
`CertProfile`, in `simulator/vendors/`).

`check(profile, "server" | "ca", cert_pem, key_pem)` never raises for bad input: it returns every
finding (stable code, severity, message in the vendor's own wording where known, one-line fix hint).
The store calls the same code through `evaluate`, which also hands back the parsed objects.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Iterator
from typing import Any, Literal, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from simulator.certs.parse import (
    KEY_FORMATS,
    CertMeta,
    PemBlock,
    cert_meta,
    key_type_and_size,
    load_certificate,
    load_private_key,
    read_field,
    spki,
    split_pem,
)
from simulator import vendors
from simulator.errors import LbsimError
from simulator.vendors.profile import CertProfile

CertType = Literal["server", "ca"]
Severity = Literal["error", "warning"]
CERT_TYPES = ("server", "ca")


class _Profiles(Mapping[str, CertProfile]):
    """`PROFILES`: name -> certificate rules of every registered vendor profile, read live from
    `simulator.vendors` (the rules themselves live in the vendor modules)."""

    def __getitem__(self, name: str) -> CertProfile:
        if name not in vendors.names():
            raise KeyError(name)
        return vendors.get(name).certs

    def __iter__(self) -> Iterator[str]:
        return iter(vendors.names())

    def __len__(self) -> int:
        return len(vendors.names())


PROFILES: Mapping[str, CertProfile] = _Profiles()


@dataclass(frozen=True)
class Rule:
    severity: Severity
    hint: str | None  # default; a profile may override it per field


# Every finding `check` can return. Codes are stable; scripts match on them.
RULES: dict[str, Rule] = {
    "InputTooLarge": Rule("error", "a certificate chain is a few KiB: send only the PEM blocks, the chain in the "
                          "certificate field and the key in the key field"),
    "NotPem": Rule("error", None),  # hint per field, see HINTS
    "MalformedCertificate": Rule("error", "re-export the certificate from its source; "
                                 "openssl x509 -in cert.pem -noout -text shows whether it parses"),
    "MalformedPrivateKey": Rule("error", None),
    "UnexpectedPemBlock": Rule("error", None),
    "DhParametersNotSupported": Rule("error", "remove the DH PARAMETERS block: the listener's ECDHE suites "
                                     "already give forward secrecy"),
    "MissingCertificate": Rule("error", "paste the server certificate (-----BEGIN CERTIFICATE-----) first, "
                               "then its intermediates"),
    "UnexpectedPrivateKey": Rule("error", None),
    "MissingPrivateKey": Rule("error", "a server certificate is uploaded with its private key: fill the key field"),
    "MultiplePrivateKeys": Rule("error", "keep only the key of the server certificate: compare "
                                "openssl x509 -noout -pubkey -in cert.pem with openssl pkey -pubout -in key.pem"),
    "EncryptedPrivateKey": Rule("error", None),
    "UnsupportedKeyFormat": Rule("error", None),
    "Pkcs8NotSupported": Rule("error", "convert to PKCS#1: openssl rsa -in key.pem -traditional -out key-pkcs1.pem "
                              "(OpenSSL 1.x: without -traditional)"),
    "UnsupportedKeyType": Rule("error", None),
    "UnsupportedKeySize": Rule("error", None),
    "WeakKey": Rule("error", "re-issue the certificate for an RSA key of at least 2048 bits"),
    "WeakKeyAccepted": Rule("warning", "re-issue the certificate for an RSA key of 2048 bits or more: the vendor "
                            "takes this size, but it is below every current baseline (NIST, PCI DSS, Mozilla)"),
    "WeakSignature": Rule("error", "re-issue the certificate with a SHA-256 signature"),
    "KeyCertificateMismatch": Rule("error", "the key must belong to the first certificate of the chain: compare "
                                   "openssl x509 -noout -pubkey -in cert.pem with openssl pkey -pubout -in key.pem"),
    "ChainOrder": Rule("error", "order the chain: server certificate, then each issuer in turn "
                       "(intermediates), then optionally the root"),
    "ChainSignature": Rule("error", "the chain holds a certificate with the issuer's name but not its key: "
                           "download the right intermediate from your CA"),
    "NotACertificateAuthority": Rule("error", "upload the CA's own certificate (basicConstraints CA:TRUE), "
                                     "not a server or client certificate"),
    "KeyTooLarge": Rule("error", "send the key alone, without Bag Attributes or other text, as PEM; a key this "
                        "size is larger than any key the vendor imports"),
    "NotX509v3": Rule("error", "re-issue the certificate as X.509 version 3 (any current CA or "
                      "openssl req -x509 does)"),
    "Sha1Signature": Rule("warning", "re-issue the certificate with SHA-256: clients reject SHA-1 signed chains"),
    "IntermediateMissing": Rule("warning", "append the intermediate certificate(s) from your CA after the "
                                "server certificate"),
    "CertificateExpired": Rule("warning", "renew the certificate and put it in place: lbsim cert replace"),
    "CertificateNotYetValid": Rule("warning", "check the clocks, or wait until its not_before date"),
    "EcParametersIgnored": Rule("warning", "harmless: openssl ecparam -genkey writes it; "
                                "openssl ec -in key.pem -out key.pem drops it"),
}

HINTS: dict[tuple[str, str], str] = {
    ("NotPem", "cert"): "PEM is text that starts with -----BEGIN CERTIFICATE-----; convert DER with "
    "openssl x509 -inform DER -in cert.der -out cert.pem, PKCS#12 with openssl pkcs12 -in cert.pfx -nokeys -out cert.pem",
    ("UnexpectedPemBlock", "cert"): "the certificate field takes CERTIFICATE blocks only: server certificate first, "
    "then intermediates",
    ("UnexpectedPemBlock", "key"): "the key field takes exactly one private key block",
    ("UnexpectedPrivateKey", "cert"): "move the private key into the key field",
    ("UnexpectedPrivateKey", "key"): "a CA certificate is uploaded without a private key: remove it",
}

WEAK_SIGNATURE_HASHES = frozenset({"md5", "md4", "md2"})
# Signature OIDs that cryptography cannot even name: md2WithRSA, md4WithRSA, md5WithRSA.
WEAK_SIGNATURE_OIDS = frozenset({"1.2.840.113549.1.1.2", "1.2.840.113549.1.1.3", "1.2.840.113549.1.1.4"})
MIN_RSA_BITS = 1024
# Sizes from MIN_RSA_BITS up to this one are accepted where a profile lists them, with a `WeakKeyAccepted` warning
# (an error under strict=True): NIST SP 800-131A disallows RSA under 2048 bits for signatures since 2014.
STRONG_RSA_BITS = 2048
DH_LABELS = frozenset({"DH PARAMETERS", "X9.42 DH PARAMETERS"})


@dataclass(frozen=True)
class Finding:
    """One reason the vendor would reject (error) or frown at (warning) the input."""

    code: str
    severity: Severity
    message: str
    hint: str | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """The verdict: `ok` is what the vendor would say; `info` describes the first certificate."""

    profile: str
    type: CertType
    findings: list[Finding]
    info: CertMeta | None = None
    chain_length: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        info = None
        if self.info is not None:
            info = {**self.info.to_dict(), "chain_length": self.chain_length}
        return {"ok": self.ok, "profile": self.profile, "type": self.type,
                "findings": [f.to_dict() for f in self.findings], "info": info}

    def raise_for_errors(self) -> None:
        """Raise the first error as `LbsimError`, every finding in ``details["findings"]``."""
        if self.ok:
            return
        first = self.errors[0]
        raise LbsimError(first.code, first.message, field=first.field, hint=first.hint,
                         details={"findings": [f.to_dict() for f in self.findings]})


@dataclass
class Parsed:
    """What the store keeps from an accepted upload (canonical PEM, parsed objects)."""

    chain: list[x509.Certificate]
    chain_pem: bytes
    key: Any = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)


def get_profile(name: str) -> CertProfile:
    try:
        return vendors.get(name).certs
    except LbsimError:
        raise LbsimError("UnknownProfile", f"unknown vendor profile {name!r}", field="profile",
                         hint="one of: " + ", ".join(vendors.names())) from None


def check_type(kind: str) -> CertType:
    if kind not in CERT_TYPES:
        raise LbsimError("InvalidCertificateType", f"certificate type must be server or ca, not {kind!r}",
                         field="type")
    return kind  # type: ignore[return-value]


def check_name(profile: str, name: Any) -> str:
    """A certificate name under the vendor's rule, or `InvalidName`. Names need not be unique."""
    rules = get_profile(profile)
    if not isinstance(name, str) or not re.fullmatch(rules.name_pattern, name):
        raise LbsimError("InvalidName", f"invalid certificate name {name!r}: {rules.name_rule}", field="name",
                         hint="for example: my-site.example.com_2025")
    return name


def check(profile: str, type: str, cert_pem: bytes | str | None, key_pem: bytes | str | None = None,
          strict: bool = False, now: dt.datetime | None = None) -> CheckResult:
    """Everything the `profile` vendor would say about uploading this certificate (and key).

    ``strict=True`` turns warnings (expired, intermediate missing, weak but accepted RSA key, ...) into errors.
    """
    return evaluate(profile, type, cert_pem, key_pem, strict=strict, now=now)[0]


class _Findings:
    """Collects findings, worded for one profile and certificate type; drops exact duplicates."""

    def __init__(self, profile: CertProfile, kind: CertType) -> None:
        self.profile = profile
        self.kind = kind
        self.items: list[Finding] = []

    def add(self, code: str, detail: str, field: str) -> None:
        rule = RULES[code]
        p = self.profile
        vendor = (p.wording.get((code, field, self.kind)) or p.wording.get((code, field, "*"))
                  or p.wording.get((code, "*", "*")))
        message = f"{vendor}: {detail}" if vendor else detail[:1].upper() + detail[1:]
        hint = p.hints.get((code, field)) or HINTS.get((code, field)) or rule.hint
        severity = "error" if code in p.error_codes else rule.severity
        finding = Finding(code, severity, message, hint, field)
        if finding not in self.items:
            self.items.append(finding)

    def add_error(self, err: LbsimError) -> None:
        self.add(err.code, err.message, err.field or "cert")


def evaluate(profile: str, type: str, cert_pem: bytes | str | None, key_pem: bytes | str | None = None,
             strict: bool = False, now: dt.datetime | None = None) -> tuple[CheckResult, Parsed | None]:
    """`check`, plus the parsed chain and key when the input is acceptable."""
    p, kind = get_profile(profile), check_type(type)
    now = now or dt.datetime.now(dt.timezone.utc)
    out = _Findings(p, kind)

    cert_blocks = _blocks(cert_pem, "cert", out)
    key_blocks: list[PemBlock] | None = []
    if kind == "server" and key_pem is not None:
        key_blocks = _blocks(key_pem, "key", out)
        size = len(key_pem.encode() if isinstance(key_pem, str) else key_pem)
        if p.max_key_bytes is not None and size > p.max_key_bytes:
            out.add("KeyTooLarge", f"the private key field holds {size:,} bytes (at most {p.max_key_bytes:,})", "key")
    elif kind == "ca" and _has_content(key_pem):
        out.add("UnexpectedPrivateKey", "a CA certificate upload carries a private key", "key")
    certs, keys = _sort_blocks(cert_blocks, key_blocks, kind, out)

    chain: list[x509.Certificate] = []
    for index, block in enumerate(certs):
        try:
            chain.append(load_certificate(block, "cert", index))
        except LbsimError as e:
            out.add_error(e)
    complete = bool(chain) and len(chain) == len(certs)

    key = _load_key(keys, p, out) if kind == "server" else None
    if complete:
        metas = [cert_meta(c) for c in chain]
        if p.require_v3:
            for index, cert in enumerate(chain):
                if cert.version != x509.Version.v3:
                    which = "the server certificate" if index == 0 and kind == "server" else f"certificate {index + 1}"
                    out.add("NotX509v3", f"{which} is X.509 {cert.version.name}", "cert")
        if kind == "server":
            _server_rules(chain, metas, key, p, out)
        else:
            _ca_rules(metas, out)
        _signature_rules(chain, metas, out)
        _time_rules(metas if kind == "ca" else metas[:1], now, out)

    findings = out.items
    if strict:
        findings = [replace(f, severity="error") for f in findings]
    info = cert_meta(chain[0]) if chain and complete else None
    result = CheckResult(p.name, kind, findings, info, len(chain) if complete else 0)
    parsed = None
    if result.ok and complete:
        chain_pem = b"".join(b.pem() for b in certs)
        parsed = Parsed(chain, chain_pem, key, keys[0].pem() if key is not None else None)
    return result, parsed


def _blocks(data: bytes | str | None, field: str, out: _Findings) -> list[PemBlock] | None:
    """The PEM blocks of one field; None when the field is unusable (reported already)."""
    try:
        text = read_field(data, field)
        if field == "key" and not text:
            return []
        if not text:  # the vendor's "no certificate chain", not a format problem a DER conversion would fix
            out.add("MissingCertificate", "the certificate field is empty", "cert")
            return None
        return split_pem(text, field)
    except LbsimError as e:
        out.add_error(e)
        return None


def _has_content(data: bytes | str | None) -> bool:
    try:
        return bool(read_field(data, "key"))
    except LbsimError:  # too large or not text: content all the same
        return True


def _sort_blocks(cert_blocks: list[PemBlock] | None, key_blocks: list[PemBlock] | None, kind: CertType,
                 out: _Findings) -> tuple[list[PemBlock], list[PemBlock]]:
    """Certificates from the cert field, keys from the key field; everything misplaced is a finding."""
    certs: list[PemBlock] = []
    keys: list[PemBlock] = []
    for b in cert_blocks or []:
        if b.label == "CERTIFICATE":
            certs.append(b)
        elif b.label in DH_LABELS:
            out.add("DhParametersNotSupported", "the certificate content contains BEGIN DH PARAMETERS", "cert")
        elif b.is_private_key:
            detail = ("the certificate field contains a private key" if kind == "server"
                      else "a CA certificate upload carries a private key")
            out.add("UnexpectedPrivateKey", detail, "cert")
        else:
            out.add("UnexpectedPemBlock", f"the certificate field contains a {b.label} block", "cert")
    for b in key_blocks or []:
        if b.is_private_key:
            keys.append(b)
        elif b.label in DH_LABELS:
            out.add("DhParametersNotSupported", "the private key content contains BEGIN DH PARAMETERS", "key")
        elif b.label == "EC PARAMETERS":
            out.add("EcParametersIgnored", "the EC PARAMETERS block before the key is ignored", "key")
        else:
            out.add("UnexpectedPemBlock", f"the private key field contains a {b.label} block", "key")
    if cert_blocks is not None and not certs:
        out.add("MissingCertificate", "the certificate field holds no CERTIFICATE block", "cert")
    if kind == "ca":
        return certs, []
    if key_blocks is not None and not keys:
        out.add("MissingPrivateKey", "a server certificate upload needs its private key", "key")
    if len(keys) > 1:
        out.add("MultiplePrivateKeys", f"the private key field holds {len(keys)} keys", "key")
    return certs, keys


def _load_key(keys: list[PemBlock], p: CertProfile, out: _Findings) -> Any:
    if len(keys) != 1:
        return None
    block = keys[0]
    if block.is_encrypted:
        out.add("EncryptedPrivateKey", "the private key is encrypted with a passphrase", "key")
        return None
    fmt = KEY_FORMATS.get(block.label)
    if fmt is None:
        out.add("UnsupportedKeyFormat", f"{block.label} is not a PEM private key format the vendor reads", "key")
        return None
    try:
        key = load_private_key(block, "key")
    except LbsimError as e:
        out.add_error(e)
        return None
    key_type = key_type_and_size(key)[0]
    if fmt == "pkcs8" and fmt not in p.key_formats and key_type in p.key_types:
        out.add("Pkcs8NotSupported", "the private key is PKCS#8 (BEGIN PRIVATE KEY); "
                f"{p.name} reads PKCS#1 (BEGIN RSA PRIVATE KEY) only", "key")
    return key


def _server_rules(chain: list[x509.Certificate], metas: list[CertMeta], key: Any, p: CertProfile,
                  out: _Findings) -> None:
    leaf = metas[0]
    _, _, curve = key_type_and_size(chain[0].public_key())
    if leaf.key_type not in p.key_types:
        out.add("UnsupportedKeyType", f"the server certificate has an {leaf.key_type} key; {p.name} accepts "
                + " and ".join(sorted(p.key_types)) + " certificates only", "cert")
    elif leaf.key_type == "RSA" and leaf.key_size >= MIN_RSA_BITS and leaf.key_size not in p.rsa_sizes:
        out.add("UnsupportedKeySize", f"the server certificate has a {leaf.key_size}-bit RSA key; {p.name} "
                "accepts " + ", ".join(str(s) for s in sorted(p.rsa_sizes)) + " bits", "cert")
    elif leaf.key_type == "ECDSA" and curve not in p.ec_curves:
        out.add("UnsupportedKeySize", f"the server certificate's ECDSA key is on {curve}; {p.name} accepts "
                + ", ".join(sorted(p.ec_curves)), "cert")
    for index, meta in enumerate(metas):
        which = "the server certificate" if index == 0 else f"certificate {index + 1}"
        if meta.key_type == "RSA" and meta.key_size < MIN_RSA_BITS:
            out.add("WeakKey", f"{which} has a {meta.key_size}-bit RSA key (minimum {MIN_RSA_BITS})", "cert")
        elif index > 0 or meta.key_size in p.rsa_sizes:  # a leaf size off the table is UnsupportedKeySize
            _weak_but_accepted(meta, which, p, out)

    if key is not None and spki(key) != spki(chain[0].public_key()):
        owner = next((i for i, c in enumerate(chain) if spki(c.public_key()) == spki(key)), None)
        if owner is not None:  # the right certificate, in the wrong place
            out.add("ChainOrder", f"the private key belongs to certificate {owner + 1}: the server certificate "
                    "must come first", "cert")
        else:
            out.add("KeyCertificateMismatch", "the private key does not belong to the first certificate of the "
                    "chain", "key")
    if not any(f.code == "ChainOrder" for f in out.items):
        _chain_rules(chain, metas, out)
    if len(chain) == 1 and not leaf.self_signed:
        out.add("IntermediateMissing", f"intermediate certificate missing: the issuer ({leaf.issuer}) of the "
                "server certificate is not in the chain", "cert")


def _chain_rules(chain: list[x509.Certificate], metas: list[CertMeta], out: _Findings) -> None:
    """Each certificate must be followed by its issuer, and the issuer's key must have signed it.
    An issuer absent from the chain, followed by a CA (leaf + root), is a gap: intermediate missing."""
    for i in range(len(chain) - 1):
        child, parent = chain[i], chain[i + 1]
        if metas[i].fingerprint_sha256 == metas[i + 1].fingerprint_sha256:
            out.add("ChainOrder", f"certificate {i + 2} repeats certificate {i + 1}", "cert")
            return
        if child.issuer != parent.subject:
            present = any(c.subject == child.issuer for c in chain)
            if not present and metas[i + 1].is_ca:
                which = "the server certificate" if i == 0 else f"certificate {i + 1}"
                out.add("IntermediateMissing", f"intermediate certificate missing: the issuer ({metas[i].issuer}) "
                        f"of {which} is not in the chain; certificate {i + 2} ({metas[i + 1].subject}) comes "
                        "after the gap", "cert")
                continue
            detail = (f"certificate {i + 2} ({metas[i + 1].subject}) is not the issuer of certificate {i + 1} "
                      f"(issued by {metas[i].issuer})")
            detail += "; the chain is out of order" if present else "; it is unrelated: remove it"
            out.add("ChainOrder", detail, "cert")
            return
        if not signed_by(child, parent):
            out.add("ChainSignature", f"certificate {i + 2} ({metas[i + 1].subject}) has the issuer's name but "
                    f"did not sign certificate {i + 1}", "cert")
            return


def signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made `child`'s signature. Done by hand because
    `verify_directly_issued_by` refuses MD5/SHA-1, which we want to report as such instead."""
    try:
        pub = issuer.public_key()
        # cryptography gives no parameters for md5WithRSAEncryption: that is PKCS#1 v1.5 too.
        params = child.signature_algorithm_parameters or padding.PKCS1v15()
        if isinstance(pub, rsa.RSAPublicKey) and isinstance(params, (padding.PKCS1v15, padding.PSS)):
            pub.verify(child.signature, child.tbs_certificate_bytes, params, child.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            pub.verify(child.signature, child.tbs_certificate_bytes, params)
        elif isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            pub.verify(child.signature, child.tbs_certificate_bytes)
        else:
            return False
    except Exception:  # noqa: BLE001 - InvalidSignature, UnsupportedAlgorithm, mismatched types
        return False
    return True


def _ca_rules(metas: list[CertMeta], out: _Findings) -> None:
    for index, meta in enumerate(metas):
        if not meta.is_ca:
            out.add("NotACertificateAuthority", f"certificate {index + 1} ({meta.subject}) is not a CA: "
                    "basicConstraints CA:TRUE is missing", "cert")
        if meta.key_type == "RSA" and meta.key_size < MIN_RSA_BITS:
            out.add("WeakKey", f"certificate {index + 1} has a {meta.key_size}-bit RSA key "
                    f"(minimum {MIN_RSA_BITS})", "cert")
        else:
            _weak_but_accepted(meta, f"certificate {index + 1}", out.profile, out)


def _weak_but_accepted(meta: CertMeta, which: str, p: CertProfile, out: _Findings) -> None:
    """An RSA key the vendor takes (1024 bits on both profiles) but nobody should use any more: say so."""
    if meta.key_type == "RSA" and MIN_RSA_BITS <= meta.key_size < STRONG_RSA_BITS:
        out.add("WeakKeyAccepted", f"{which} has a {meta.key_size}-bit RSA key: {p.name} accepts it, but RSA "
                f"under {STRONG_RSA_BITS} bits is weak", "cert")


def _signature_rules(chain: list[x509.Certificate], metas: list[CertMeta], out: _Findings) -> None:
    for index, (cert, meta) in enumerate(zip(chain, metas)):
        which = "the server certificate" if index == 0 else f"certificate {index + 1}"
        if meta.signature_hash in WEAK_SIGNATURE_HASHES or cert.signature_algorithm_oid.dotted_string in \
                WEAK_SIGNATURE_OIDS:
            out.add("WeakSignature", f"{which} is signed with {meta.signature_hash or 'MD2/MD4/MD5'}", "cert")
        elif meta.signature_hash == "sha1":
            out.add("Sha1Signature", f"{which} is signed with SHA-1", "cert")


def _time_rules(metas: list[CertMeta], now: dt.datetime, out: _Findings) -> None:
    for meta in metas:
        for code, detail in time_flags(meta, now):
            out.add(code, detail, "cert")


def time_flags(meta: CertMeta, now: dt.datetime) -> list[tuple[str, str]]:
    """("CertificateExpired", detail) and/or ("CertificateNotYetValid", detail) for `meta` at `now`.
    Computed at every describe: a certificate that was fine at upload expires later."""
    flags = []
    if meta.not_after < now:
        flags.append(("CertificateExpired", f"the certificate {meta.subject} expired on "
                                            f"{meta.not_after:%Y-%m-%d %H:%M:%S} UTC"))
    if meta.not_before > now:
        flags.append(("CertificateNotYetValid", f"the certificate {meta.subject} is not valid before "
                                                f"{meta.not_before:%Y-%m-%d %H:%M:%S} UTC"))
    return flags


def finding_for(profile: str, kind: CertType, code: str, detail: str, field: str) -> Finding:
    """A single finding worded for `profile` (the store uses it for time flags computed at describe)."""
    out = _Findings(get_profile(profile), kind)
    out.add(code, detail, field)
    return out.items[0]
