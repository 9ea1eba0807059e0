"""Lab PKI: a CA, server and client certificates, written as PEM files ready for upload.

    pki = LabPKI()                                  # RSA-2048 (aliyun-slb takes nothing else)
    server = pki.server("localhost", "127.0.0.1")   # .chain_pem, .cert_pem, .key_pem (PKCS#1)
    alice = pki.client("alice", state="expired")    # for mutual-TLS scenarios
    pki.write("lab-pki", clients=["valid", "other_ca"])

Built on trustme. `make_key`, `make_cert` and `key_pem` are there for scenarios that need an odd
certificate (wrong key size, expired CA, broken chain) to show a rejection.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from simulator.certs.parse import load_known_key
from simulator.errors import LbsimError

KeyTypeName = Literal["rsa", "ecdsa"]
ClientState = Literal["valid", "expired", "not_yet_valid", "other_ca"]
CLIENT_STATES: tuple[str, ...] = ("valid", "expired", "not_yet_valid", "other_ca")
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
_TRUSTME_KEY_TYPES = {"rsa": trustme.KeyType.RSA, "ecdsa": trustme.KeyType.ECDSA}
# Leaf lifetimes a public CA issues today (CA certificates keep trustme's long life): 90 days for a server
# (Let's Encrypt; Mozilla's modern profile allows at most 90), a year for a client. An hour of backdating
# absorbs clock skew between the lab and its clients.
SERVER_LIFETIME = dt.timedelta(days=90)
CLIENT_LIFETIME = dt.timedelta(days=365)
BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Issued:
    """A certificate with its key, as PEM. `chain_pem` is what a server presents: leaf, intermediates,
    root (vendors accept the optional root); for a client it is the leaf alone."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    cert_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


class LabPKI:
    """A lab certificate authority. RSA by default: trustme itself defaults to ECDSA, which
    aliyun-slb rejects."""

    def __init__(self, key_type: KeyTypeName = "rsa", name: str = "lbsim lab CA") -> None:
        self.key_type = _key_type(key_type)
        self.name = name
        self._ca = trustme.CA(key_type=_TRUSTME_KEY_TYPES[self.key_type], organization_name="lbsim",
                              organization_unit_name=name)
        self._intermediate: trustme.CA | None = None
        self._other: LabPKI | None = None

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate: trust it in clients, upload it as the client CA of mutual listeners."""
        return self._ca.cert_pem.bytes()

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    def server(self, *names: str, intermediate: bool = False, key_type: KeyTypeName | None = None) -> Issued:
        """A server certificate for `names` (DNS names or IP addresses; the first is also the CN),
        issued by the CA or, with ``intermediate=True``, by an intermediate CA under it, valid for 90 days
        (:data:`SERVER_LIFETIME`) from an hour ago."""
        names = names or DEFAULT_SERVER_NAMES
        issuer = self._issuer(intermediate)
        kt = _TRUSTME_KEY_TYPES[_key_type(key_type or self.key_type)]
        not_before = dt.datetime.now(dt.timezone.utc) - BACKDATE
        try:
            leaf = issuer.issue_cert(*names, common_name=names[0], organization_name="lbsim",
                                     organization_unit_name=f"{self.name} server", key_type=kt,
                                     not_before=not_before, not_after=not_before + SERVER_LIFETIME)
        except (ValueError, UnicodeError) as e:
            raise LbsimError("InvalidServerName", f"cannot issue a certificate for {names!r}: {e}",
                             field="server") from None
        pems = [b.bytes() for b in leaf.cert_chain_pems] + [self.ca_pem]
        return Issued(b"".join(pems), _traditional(leaf.private_key_pem.bytes()), pems[0])

    def client(self, common_name: str, state: ClientState = "valid") -> Issued:
        """A client certificate that is valid (for a year, :data:`CLIENT_LIFETIME`), expired, not yet valid,
        or issued by another CA."""
        if state not in CLIENT_STATES:
            raise LbsimError("InvalidClientState", f"unknown client certificate state {state!r}", field="clients",
                             hint="one of: " + ", ".join(CLIENT_STATES))
        if state == "other_ca":
            return self.other_ca().client(common_name)
        now = dt.datetime.now(dt.timezone.utc)
        window: dict[str, Any] = {
            "valid": {"not_before": now - BACKDATE, "not_after": now - BACKDATE + CLIENT_LIFETIME},
            "expired": {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)},
            "not_yet_valid": {"not_before": now + dt.timedelta(days=1), "not_after": now + dt.timedelta(days=365)},
        }[state]
        leaf = self._ca.issue_cert(common_name=common_name, organization_name="lbsim",
                                   organization_unit_name=f"{self.name} client",
                                   key_type=_TRUSTME_KEY_TYPES[self.key_type], **window)
        cert = leaf.cert_chain_pems[0].bytes()
        return Issued(cert, _traditional(leaf.private_key_pem.bytes()), cert)

    def crl(self, *revoked: Issued | x509.Certificate, days: int = 7) -> bytes:
        """A PEM certificate revocation list of this CA revoking `revoked` (valid `days` from now)."""
        now = dt.datetime.now(dt.timezone.utc)
        key = load_known_key(self._ca.private_key_pem.bytes())
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
        for item in revoked:
            cert = item.cert if isinstance(item, Issued) else item
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(now).build())
        crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        return crl.public_bytes(serialization.Encoding.PEM)

    def other_ca(self) -> LabPKI:
        """Another, unrelated CA of the same key type (its clients must be refused)."""
        if self._other is None:
            self._other = LabPKI(self.key_type, name=f"{self.name} (other)")
        return self._other

    def write(self, out_dir: str | os.PathLike[str], servers: Iterable[str | Sequence[str]] = (DEFAULT_SERVER_NAMES,),
              clients: Iterable[str] = (), intermediate: bool = False) -> dict[str, Path]:
        """Write PEM files into `out_dir` and return them by role.

        Each item of `servers` is one certificate: a sequence of names, or a string of comma-separated
        names. Its files are ``server-<first name>.chain.pem`` / ``.cert.pem`` / ``.key.pem``.
        `clients` are states; each gives ``client-<state>.cert.pem`` / ``.key.pem``. Always ``ca.pem``,
        and ``other-ca.pem`` when a client comes from the other CA. Keys are written mode 0600.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {"ca": _write(out / "ca.pem", self.ca_pem)}
        for item in servers:
            names = tuple(n.strip() for n in item.split(",") if n.strip()) if isinstance(item, str) else tuple(item)
            issued = self.server(*names, intermediate=intermediate)
            stem = "server-" + _file_safe((names or DEFAULT_SERVER_NAMES)[0])
            files[f"{stem}.chain"] = _write(out / f"{stem}.chain.pem", issued.chain_pem)
            files[f"{stem}.cert"] = _write(out / f"{stem}.cert.pem", issued.cert_pem)
            files[f"{stem}.key"] = _write(out / f"{stem}.key.pem", issued.key_pem, secret=True)
        for state in clients:
            issued = self.client(f"client-{state}", state)  # type: ignore[arg-type]
            files[f"client-{state}.cert"] = _write(out / f"client-{state}.cert.pem", issued.cert_pem)
            files[f"client-{state}.key"] = _write(out / f"client-{state}.key.pem", issued.key_pem, secret=True)
            if state == "other_ca":
                files["other-ca"] = _write(out / "other-ca.pem", self.other_ca().ca_pem)
        return files

    def _issuer(self, intermediate: bool) -> trustme.CA:
        if not intermediate:
            return self._ca
        if self._intermediate is None:
            # Not create_child_ca(): that one names the intermediate "Testing CA #..." under "trustme".
            self._intermediate = trustme.CA(parent_cert=self._ca, path_length=0, organization_name="lbsim",
                                            organization_unit_name=f"{self.name} intermediate",
                                            key_type=_TRUSTME_KEY_TYPES[self.key_type])
        return self._intermediate


def _key_type(name: str) -> KeyTypeName:
    if name not in _TRUSTME_KEY_TYPES:
        raise LbsimError("InvalidKeyType", f"key type must be rsa or ecdsa, not {name!r}", field="key_type")
    return name  # type: ignore[return-value]


def _traditional(pem: bytes) -> bytes:
    """PKCS#1 for RSA (all aliyun-slb reads), SEC1 for ECDSA, whatever trustme's version writes."""
    return key_pem(load_known_key(pem), "traditional")


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("*", "wildcard"))


def _write(path: Path, data: bytes, secret: bool = False) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if secret:
        os.chmod(path, 0o600)  # the file may have existed with wider permissions
    return path


# --- building blocks for odd certificates -------------------------------------------------------

def make_key(key_type: KeyTypeName = "rsa", size: int = 2048, curve: ec.EllipticCurve | None = None) -> Any:
    """A fresh private key: RSA of `size` bits, or ECDSA on `curve` (P-256 by default)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return ec.generate_private_key(curve or ec.SECP256R1())


def make_cert(common_name: str, key: Any, *, issuer: tuple[x509.Certificate, Any] | None = None, ca: bool = False,
              sans: Sequence[str] = (), not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              hash_algorithm: hashes.HashAlgorithm | None = None, serial: int | None = None) -> x509.Certificate:
    """A certificate for `key`, self-signed unless `issuer` = (certificate, private key) is given."""
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lbsim"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(hours=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    algorithm = hash_algorithm if hash_algorithm is not None else hashes.SHA256()
    if not isinstance(signing_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        algorithm = None  # Ed25519/Ed448 sign without a separate hash
    return builder.sign(signing_key, algorithm)  # type: ignore[arg-type]


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: Any, fmt: Literal["traditional", "pkcs1", "sec1", "pkcs8"] = "traditional",
            password: bytes | None = None) -> bytes:
    """`key` as PEM: traditional (PKCS#1 for RSA, SEC1 for EC) or PKCS#8, optionally encrypted."""
    private_format = serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else \
        serialization.PrivateFormat.TraditionalOpenSSL
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, private_format, encryption)
