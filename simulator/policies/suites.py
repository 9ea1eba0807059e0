"""What the OpenSSL under pyOpenSSL knows about cipher suites, and what each suite needs to negotiate.

pyOpenSSL runs on the OpenSSL statically linked into the ``cryptography`` wheel (3.5.x here), not on the
system's ``openssl``. That build is compiled without the "weak" suites: 3DES (``DES-CBC3-SHA``) and RC4 do
not exist in it at all, whatever the security level. We keep such vendor-listed names in the tables and
mark them unavailable, so the difference is visible instead of silently dropped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from OpenSSL import SSL

# Protocol versions, oldest first, spelled as OpenSSL reports them (SSL_get_version).
VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

OPENSSL_VERSION_CONSTANTS: dict[str, int] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

# Options that switch a single version off, for policies with a gap (e.g. TLSv1 + TLSv1.2 only).
NO_VERSION_OPTIONS: dict[str, int] = {
    "TLSv1": SSL.OP_NO_TLSv1,
    "TLSv1.1": SSL.OP_NO_TLSv1_1,
    "TLSv1.2": SSL.OP_NO_TLSv1_2,
    "TLSv1.3": SSL.OP_NO_TLSv1_3,
}

# The five TLS 1.3 suites of RFC 8446, in OpenSSL's spelling.
TLS13_SUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)

# OpenSSL's default TLS 1.3 list (what nginx serves unless told otherwise).
OPENSSL_DEFAULT_TLS13: tuple[str, ...] = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
)

# Every TLS <= 1.2 suite, including the ones only security level 0 allows.
EVERYTHING = "ALL:COMPLEMENTOFALL"

# Suites upstream OpenSSL has (behind `no-weak-ssl-ciphers` or the legacy provider) that vendors still
# list, with the (kx, auth) their names cannot be parsed into unambiguously.
LEGACY_SUITES: dict[str, tuple[str, str]] = {
    "DES-CBC3-SHA": ("RSA", "RSA"),
    "ECDHE-RSA-DES-CBC3-SHA": ("ECDHE", "RSA"),
    "ECDHE-ECDSA-DES-CBC3-SHA": ("ECDHE", "ECDSA"),
    "DHE-RSA-DES-CBC3-SHA": ("DHE", "RSA"),
    "DHE-DSS-DES-CBC3-SHA": ("DHE", "DSS"),
    "EDH-RSA-DES-CBC3-SHA": ("DHE", "RSA"),
    "EDH-DSS-DES-CBC3-SHA": ("DHE", "DSS"),
    "RC4-SHA": ("RSA", "RSA"),
    "RC4-MD5": ("RSA", "RSA"),
    "ECDHE-RSA-RC4-SHA": ("ECDHE", "RSA"),
    "ECDHE-ECDSA-RC4-SHA": ("ECDHE", "ECDSA"),
}

# OpenSSL name prefix -> (key exchange, authentication); first match wins, so longer prefixes first.
# OpenSSL drops "RSA" from a few names (ECDHE-ARIA128-GCM-SHA256 is ECDHE_RSA), hence "ECDHE-".
_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("ECDHE-ECDSA-", "ECDHE", "ECDSA"),
    ("ECDHE-RSA-", "ECDHE", "RSA"),
    ("ECDHE-PSK-", "ECDHEPSK", "PSK"),
    ("ECDHE-", "ECDHE", "RSA"),
    ("AECDH-", "ECDHE", "NULL"),
    ("DHE-RSA-", "DHE", "RSA"),
    ("EDH-RSA-", "DHE", "RSA"),
    ("DHE-DSS-", "DHE", "DSS"),
    ("EDH-DSS-", "DHE", "DSS"),
    ("DHE-PSK-", "DHEPSK", "PSK"),
    ("ADH-", "DHE", "NULL"),
    ("RSA-PSK-", "RSAPSK", "RSA"),
    ("PSK-", "PSK", "PSK"),
    ("SRP-RSA-", "SRP", "RSA"),
    ("SRP-DSS-", "SRP", "DSS"),
    ("SRP-", "SRP", "SRP"),
    ("GOST", "GOST", "GOST"),
    ("IANA-GOST", "GOST", "GOST"),
    ("LEGACY-GOST", "GOST", "GOST"),
)

_TLS12_ONLY = re.compile(r"GCM|CCM|CHACHA20")


@dataclass(frozen=True)
class SuiteInfo:
    """One cipher suite as a server would see it.

    `kx` is the key exchange (``ECDHE``, ``RSA``, ``DHE``, ``PSK``, ``SRP``... or ``ANY`` for TLS 1.3),
    `auth` what the certificate must be (``RSA``, ``ECDSA``, ``DSS``, ``PSK``, ``NULL`` for anonymous, or
    ``ANY``), `versions` the protocol versions it is defined for, `available` whether this OpenSSL build
    has it at all.
    """

    name: str
    kx: str
    auth: str
    versions: tuple[str, ...]
    null_encryption: bool
    available: bool

    @property
    def anonymous(self) -> bool:
        return self.auth == "NULL"

    def usable_by_server(self, key_type: str) -> bool:
        """Whether a server built by `build_server_context` can choose this suite with a `key_type` cert.

        ECDHE needs a certificate of the suite's signature type; plain RSA key exchange needs an RSA
        certificate; DHE never (we never load DH parameters), nor PSK, SRP or anonymous suites (no
        callbacks, no such policies).
        """
        if not self.available:
            return False
        if self.kx == "ANY":
            return True
        if self.kx == "ECDHE":
            return self.auth == key_type
        if self.kx == "RSA":
            return key_type == "RSA"
        return False


def _versions_for(name: str) -> tuple[str, ...]:
    # AEAD suites and the SHA-256/384 HMAC suites are TLS 1.2 only; OpenSSL's PSK CBC/NULL SHA-256/384
    # suites (RFC 5487) are the exception and work from TLS 1.0. (test_policies checks this against
    # OpenSSL's own tables and real handshakes.)
    if name.startswith("TLS_"):
        return ("TLSv1.3",)
    if name.startswith("IDEA-"):
        return ("TLSv1", "TLSv1.1")  # RFC 5246 dropped IDEA from TLS 1.2; OpenSSL caps it at TLS 1.1
    if _TLS12_ONLY.search(name) or (name.endswith(("SHA256", "SHA384")) and "PSK" not in name):
        return ("TLSv1.2",)
    return ("TLSv1", "TLSv1.1", "TLSv1.2")


def _parse(name: str, available: bool) -> SuiteInfo:
    if name.startswith("TLS_"):
        kx = auth = "ANY"
    elif name in LEGACY_SUITES:
        kx, auth = LEGACY_SUITES[name]
    else:
        kx, auth = next(((k, a) for p, k, a in _PREFIXES if name.startswith(p)), ("RSA", "RSA"))
    return SuiteInfo(
        name=name,
        kx=kx,
        auth=auth,
        versions=_versions_for(name),
        null_encryption="NULL" in name.split("-"),
        available=available,
    )


def expand(cipher_string: str) -> tuple[str, ...]:
    """The TLS <= 1.2 suites `cipher_string` stands for, in order, as this OpenSSL expands it.

    Raises :class:`ValueError` when nothing matches (OpenSSL's "no cipher match").
    """
    return _expand(cipher_string.strip())


@functools.lru_cache(maxsize=256)
def _expand(cipher_string: str) -> tuple[str, ...]:
    ctx = SSL.Context(SSL.TLS_METHOD)
    try:
        ctx.set_cipher_list(cipher_string.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        raise ValueError(f"no cipher suite matches {cipher_string!r}") from e
    names = SSL.Connection(ctx, None).get_cipher_list()
    return tuple(n for n in names if not n.startswith("TLS_"))


@functools.cache
def openssl_suites() -> tuple[str, ...]:
    """Every TLS <= 1.2 suite this OpenSSL can negotiate at security level 0 (about 160)."""
    return expand(EVERYTHING)


def known(name: str) -> bool:
    """A real suite name: in this OpenSSL, a TLS 1.3 suite, or a legacy suite this build lacks."""
    return name in TLS13_SUITES or name in LEGACY_SUITES or name in _available_set()


@functools.cache
def _available_set() -> frozenset[str]:
    return frozenset(openssl_suites()) | frozenset(TLS13_SUITES)


def suite_info(name: str) -> SuiteInfo:
    """What `name` needs; raises :class:`KeyError` for a name that is no suite at all."""
    if not known(name):
        raise KeyError(name)
    return _parse(name, name in _available_set())


def canonical_version(value: str) -> str | None:
    """``"TLSv1.0"``, ``"tlsv1.2"``, ``"TLS1.2"``, ``"1.2"`` -> OpenSSL's spelling, or None if no version."""
    v = value.strip().lower().replace("_", ".")
    v = v.removeprefix("tlsv").removeprefix("tls")
    return {"1": "TLSv1", "1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2", "1.3": "TLSv1.3"}.get(v)
