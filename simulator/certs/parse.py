"""PEM in, parsed objects out.

Three steps, each raising only `LbsimError`: `read_field` (size limit, then normalise line endings and
blanks), `split_pem` (armored blocks, strict about their framing), `load_certificate` /
`load_private_key` (through `cryptography`). `cert_meta` turns a certificate into JSON-safe metadata.
The error messages here are neutral; `validate` rewords them per vendor profile.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from simulator.errors import LbsimError

MAX_FIELD_BYTES = 64 * 1024

# Label -> private key format. Anything else ending in "PRIVATE KEY" is a key we cannot take.
KEY_FORMATS = {
    "RSA PRIVATE KEY": "pkcs1",
    "EC PRIVATE KEY": "sec1",
    "PRIVATE KEY": "pkcs8",
    "ENCRYPTED PRIVATE KEY": "pkcs8-encrypted",
    "DSA PRIVATE KEY": "dsa",
}

_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----$")
_END = re.compile(r"^-----END ([A-Z0-9][A-Z0-9 ]*)-----$")
_BASE64_TEXT = re.compile(rb"^[A-Za-z0-9+/=\s]+$")


@dataclass(frozen=True)
class PemBlock:
    """One armored block: its label, RFC 1421 headers (``Proc-Type`` ...) and decoded body."""

    label: str
    der: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_private_key(self) -> bool:
        return self.label.endswith("PRIVATE KEY")

    @property
    def is_encrypted(self) -> bool:
        return self.label == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in self.headers.get("Proc-Type", "")

    def pem(self) -> bytes:
        """The block re-armored canonically: LF line endings, 64 columns, headers dropped."""
        body = base64.encodebytes(self.der).replace(b"\n", b"")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        label = self.label.encode()
        return b"\n".join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"]) + b"\n"


@dataclass(frozen=True)
class CertMeta:
    """What describe shows about a certificate: metadata only, never key material."""

    fingerprint: str  # vendor style: colon hex SHA-1, upper case
    fingerprint_sha256: str
    subject: str
    issuer: str
    sans: list[str]
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str  # "RSA" | "ECDSA" | "Ed25519" | ...
    key_size: int
    is_ca: bool
    self_signed: bool
    signature_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["not_before"] = iso(self.not_before)
        out["not_after"] = iso(self.not_after)
        return out


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_field(data: bytes | str | None, field: str) -> bytes:
    """Bytes of one input field, size-checked before anything else, with CRLF/CR turned into LF,
    blanks around each line removed and a UTF-8 byte order mark dropped. ``None`` becomes ``b""``."""
    if data is None:
        return b""
    if isinstance(data, str):
        # Check the size first: encoding a huge string is already work done for an attacker.
        if len(data) > MAX_FIELD_BYTES:
            raise _too_large(field, len(data))
        data = data.encode("utf-8", "surrogateescape")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LbsimError("NotPem", f"expected PEM text, got {type(data).__name__}", field=field)
    data = bytes(data)
    if len(data) > MAX_FIELD_BYTES:
        raise _too_large(field, len(data))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"\n".join(line.strip(b" \t") for line in lines).strip(b"\n")


def _too_large(field: str, size: int) -> LbsimError:
    return LbsimError(
        "InputTooLarge",
        f"the {field} field is larger than 64 KiB (the limit is {MAX_FIELD_BYTES} bytes per field)",
        field=field,
        details={"size": size, "limit": MAX_FIELD_BYTES},
    )


def sniff(data: bytes) -> str:
    """Why `data` is not PEM, as a short phrase: empty, DER (binary ASN.1), base64 without armor, ..."""
    if not data.strip():
        return "empty"
    if any(b < 9 or 13 < b < 32 or b > 126 for b in data[:256]):
        return "der" if data[:1] == b"\x30" else "binary"
    if _BASE64_TEXT.match(data):
        try:
            raw = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw[:1] == b"\x30":
            return "base64"
    return "garbage"


NOT_PEM_DETAIL = {
    "empty": "the content is empty",
    "der": "the content is binary (DER or PKCS#12), not PEM text",
    "base64": "the content is base64 without the -----BEGIN/-----END armor lines",
    "binary": "the content is binary, not PEM text",
    "garbage": "no -----BEGIN ...----- block was found",
}


def split_pem(data: bytes, field: str) -> list[PemBlock]:
    """Every armored block in `data` (already normalised by `read_field`), in order.

    Text between blocks is ignored, as OpenSSL does (``Bag Attributes`` from ``openssl pkcs12``).
    A block that is not closed, closed with another label, nested, or not valid base64 is `NotPem`.
    """
    kind = None if b"-----BEGIN " in data or b"-----END " in data else sniff(data)
    if kind is not None:
        raise LbsimError("NotPem", NOT_PEM_DETAIL[kind], field=field, details={"looks_like": kind})
    text = data.decode("latin-1")  # PEM is ASCII; stray bytes outside blocks must not crash us
    blocks: list[PemBlock] = []
    label: str | None = None
    body: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if label is None:
            if begin:
                label, body = begin.group(1), []
            elif end:
                raise _broken(field, f"line {number}: -----END {end.group(1)}----- without a BEGIN line")
            continue
        if begin:
            raise _broken(field, f"line {number}: a new BEGIN line inside the {label} block (truncated block?)")
        if end:
            if end.group(1) != label:
                raise _broken(field, f"line {number}: BEGIN {label} is closed by END {end.group(1)}")
            blocks.append(_decode_block(label, body, field))
            label = None
            continue
        body.append(line)
    if label is not None:
        raise _broken(field, f"the {label} block has no -----END {label}----- line (truncated?)")
    if not blocks:
        raise LbsimError("NotPem", NOT_PEM_DETAIL["garbage"], field=field, details={"looks_like": "garbage"})
    return blocks


def _broken(field: str, detail: str) -> LbsimError:
    return LbsimError("NotPem", detail, field=field, details={"looks_like": "broken"})


def _decode_block(label: str, lines: list[str], field: str) -> PemBlock:
    headers: dict[str, str] = {}
    # RFC 1421 headers ("Proc-Type: 4,ENCRYPTED", "DEK-Info: ...") come first, then a blank line.
    while lines and ":" in lines[0]:
        name, _, value = lines.pop(0).partition(":")
        headers[name.strip()] = value.strip()
    body = "".join(lines).encode("ascii", "replace")
    try:
        der = binascii.a2b_base64(body, strict_mode=True) if body else b""
    except (binascii.Error, ValueError):
        raise LbsimError("NotPem", f"the {label} block is not valid base64", field=field,
                         details={"looks_like": "broken", "label": label}) from None
    if not der:
        raise LbsimError("NotPem", f"the {label} block is empty", field=field,
                         details={"looks_like": "broken", "label": label})
    return PemBlock(label, der, headers)


def load_certificate(block: PemBlock, field: str, index: int) -> x509.Certificate:
    """Parse a CERTIFICATE block and touch every lazily parsed part, so a malformed extension
    fails here and not later in describe or in the TLS layer."""
    try:
        cert = x509.load_der_x509_certificate(block.der)
        cert_meta(cert)
        cert.public_key()
    except LbsimError:
        raise
    except Exception as e:  # noqa: BLE001 - cryptography raises ValueError, UnsupportedAlgorithm, ...
        raise LbsimError("MalformedCertificate", f"certificate {index + 1} cannot be parsed ({_why(e)})",
                         field=field, details={"index": index}) from None
    return cert


def load_private_key(block: PemBlock, field: str) -> Any:
    """Parse an unencrypted private key block (the caller has rejected encrypted ones).

    An RSA key is proven by a signature that verifies with its public half (about 1 ms) rather than by
    cryptography's full consistency check, which tests p and q for primality and costs as much as generating
    a key (about 40 ms on this kind of machine, per upload)."""
    try:
        key = serialization.load_pem_private_key(block.pem(), password=None, unsafe_skip_rsa_key_validation=True)
    except Exception as e:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm
        raise LbsimError("MalformedPrivateKey", f"the {block.label} block cannot be parsed ({_why(e)})",
                         field=field) from None
    if isinstance(key, rsa.RSAPrivateKey) and not _signs(key):
        raise LbsimError("MalformedPrivateKey", f"the {block.label} block is not a consistent RSA key (a signature "
                         "made with it does not verify with its public key)", field=field)
    return key


def load_known_key(pem: bytes) -> Any:
    """A private key this lab made or has already checked (its store's, its PKI's), without the ~40 ms
    RSA consistency check: see `load_private_key`."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def _signs(key: rsa.RSAPrivateKey) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    message = b"lbsim key check"
    try:
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _why(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def key_type_and_size(key: Any) -> tuple[str, int, str | None]:
    """("RSA", 2048, None), ("ECDSA", 256, "secp256r1"), ("Ed25519", 256, None), ... for a public
    or private key."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return "RSA", key.key_size, None
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return "ECDSA", key.curve.key_size, key.curve.name
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "Ed25519", 256, None
    if isinstance(key, (ed448.Ed448PublicKey, ed448.Ed448PrivateKey)):
        return "Ed448", 456, None
    if isinstance(key, (dsa.DSAPublicKey, dsa.DSAPrivateKey)):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def spki(key: Any) -> bytes:
    """SubjectPublicKeyInfo DER of a public key (or of a private key's public half)."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def cert_meta(cert: x509.Certificate) -> CertMeta:
    key_type, key_size, _ = key_type_and_size(cert.public_key())
    try:
        sans = [_general_name(n) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
    except x509.ExtensionNotFound:
        sans = []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        sig_hash = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - unknown signature OID
        sig_hash = None
    serial = f"{cert.serial_number:X}"
    return CertMeta(
        fingerprint=colon_hex(cert.fingerprint(hashes.SHA1())),  # a fingerprint, not a signature: SHA-1 is the vendor format
        fingerprint_sha256=colon_hex(cert.fingerprint(hashes.SHA256())),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        serial=serial if len(serial) % 2 == 0 else "0" + serial,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        is_ca=is_ca,
        self_signed=cert.issuer == cert.subject,
        signature_hash=sig_hash.name if sig_hash is not None else None,
    )


def _general_name(name: x509.GeneralName) -> str:
    value = getattr(name, "value", name)
    if isinstance(value, x509.Name):
        return value.rfc4514_string()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
