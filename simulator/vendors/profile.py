"""`VendorProfile`: everything one vendor decides, as one immutable value.

The engines are generic: `simulator.policies` resolves and builds TLS policies, `simulator.certs` validates
certificates, `simulator.model.config` checks listener fields, `simulator.metering.billing` bills bytes. Each
asks the listener's profile (``simulator.vendors.get(name)``) instead of comparing profile names. The data
types the profile is made of live here, at the bottom layer, so that this package imports nothing of lbsim
but the error type; their old homes re-export them (``simulator.certs.validate.CertProfile``,
``simulator.metering.billing.BillingModel``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

IN, OUT = "client_to_lb", "lb_to_client"  # traffic directions, as the meter names them

# --- TLS policies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRow:
    """One named policy of a vendor's table, as the vendor lists it (server preference order).

    Either `ciphers` (OpenSSL names for TLS <= 1.2) or `cipher_string` (an OpenSSL cipher string, expanded by
    OpenSSL when the policy is built: Tencent's default). Versions use OpenSSL's spelling (``TLSv1`` = TLS 1.0).
    """

    name: str
    versions: tuple[str, ...]
    ciphers: tuple[str, ...] = ()
    tls13: tuple[str, ...] = ()
    cipher_string: str | None = None


@dataclass(frozen=True)
class TlsTable:
    """A vendor's named TLS policies, its default, and the limits on custom policies."""

    policies: tuple[PolicyRow, ...]
    default_policy: str
    custom_suites: tuple[str, ...] | None  # suites a custom policy may list; None: any suite OpenSSL knows
    custom_cipher_strings: bool  # a custom policy may give an OpenSSL cipher string (Tencent ssl_ciphers)
    max_custom_suites: int | None
    max_custom_versions: int
    custom_default_versions: tuple[str, ...] | None = None  # None: a custom policy must list versions
    custom_default_ciphers: str | None = None  # None: a custom policy must list ciphers
    custom_default_tls13: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(row.name for row in self.policies)


# --- certificates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertProfile:
    """What one vendor accepts. Values marked UNCONFIRMED in docs/certificates.md are best guesses."""

    name: str
    key_types: frozenset[str]  # of the server certificate
    rsa_sizes: frozenset[int]
    ec_curves: frozenset[str]
    key_formats: frozenset[str]  # see simulator.certs.parse.KEY_FORMATS
    name_pattern: str  # full-match regex for certificate names
    name_rule: str  # the same, in words, for the error message
    quota: int = 100
    # How the vendor's certificate ids look: "account_time" (Alibaba: <account>_<ms hex>_<unix time>_<random>)
    # or "short" (Tencent: 8 letters and digits).
    id_style: Literal["account_time", "short"] = "account_time"
    # (code, field, type) -> the vendor's own sentence, put before our specific detail; "*" matches any.
    wording: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    # (code, field) -> hint overriding simulator.certs.validate.HINTS for this profile.
    hints: Mapping[tuple[str, str], str] = field(default_factory=dict)


# --- billing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LcuDimensions:
    """What one LCU buys per dimension; the hour is billed on the largest dimension.

    `free_rules`: rules per request that are not billed (AWS: the first 10). `bytes_per_gb`: the GB
    the vendors mean is not stated; 10**9 is assumed (UNCONFIRMED, override per model).
    """

    new_connections_per_s: float = 25.0
    concurrent_connections: float = 3000.0
    processed_gb_per_h: float = 1.0
    rule_evaluations_per_s: float = 1000.0
    free_rules: int = 0
    bytes_per_gb: int = 10**9


@dataclass(frozen=True)
class BillingModel:
    """One vendor's way of billing a listener's traffic."""

    name: str
    vendor: str
    billed_directions: tuple[str, ...]  # payload bytes of these directions are billed
    lcu: LcuDimensions | None
    wording: str                         # the vendor's own words (or the seed's)
    unconfirmed: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- listeners --------------------------------------------------------------------------------------

Range = tuple[int, int, int]  # (lowest, highest, default)


@dataclass(frozen=True)
class ListenerLimits:
    """Ranges and defaults of the listener fields the vendor bounds (seconds unless named otherwise)."""

    idle_timeout: Range = (1, 60, 15)
    request_timeout: Range = (1, 180, 60)
    cookie_timeout: Range = (1, 86400, 1000)
    health_interval: Range = (1, 50, 2)
    health_timeout: Range = (1, 300, 5)
    health_threshold: Range = (2, 10, 3)  # healthy and unhealthy
    http2: bool = True  # the lab's default for `http2` when a listener leaves it out (both vendors: on)
    # How a mutual listener refuses a client without a valid certificate when the listener does not say:
    # `handshake` (a TLS alert) or `http_400` (the handshake completes; every request gets nginx's 400 page).
    client_cert_refusal: str = "handshake"


@dataclass(frozen=True)
class Capabilities:
    """What the vendor's HTTPS listener can do, as switches the engines read."""

    sni: bool = False  # per-domain certificates (`sni:` in a listener)
    sni_locked: bool = False  # once SNI is on it cannot be switched off (Tencent SniSwitch)
    ignore_sni: bool = True  # one certificate whatever SNI the client sends (Alibaba CLB)
    verify_optional: bool = False  # `ssl_verify_client: optional` (Tencent SSLVerifyClient OPTIONAL)
    create_started: bool = False  # a new listener starts at once (Tencent) or stays stopped (Alibaba)
    dual_certificates: bool = False  # an RSA and an ECC certificate on one listener (`server_certificates`)


@dataclass(frozen=True)
class HeaderDefaults:
    """The header switches a listener gets when its config leaves them out (`XForwardedFor` is always on)."""

    x_forwarded_proto: bool = True
    slb_ip: bool = False
    slb_id: bool = False
    client_cert: bool = True  # mutual listeners: subject, issuer, fingerprint and verify result


# --- the profile ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VendorProfile:
    """Everything one vendor decides. Build one per vendor module; register extra ones with
    ``simulator.vendors.register`` (see docs/architecture.md, "How to add a vendor").

    `cert_strictness` ranks certificate rules: a certificate that several profiles' listeners use is
    validated under the strictest one (the lab's default certificates go under the strictest registered).
    """

    name: str
    vendor: str  # who, in words
    tls: TlsTable
    certs: CertProfile
    billing: BillingModel
    limits: ListenerLimits = ListenerLimits()
    capabilities: Capabilities = Capabilities()
    headers: HeaderDefaults = HeaderDefaults()
    error_server: str = "lbsim"  # the Server header of the listener's own error pages
    cert_strictness: int = 0
    # "module:Class" of the vendor's own control-plane API (its dialect, in simulator/faces/), or None: a name,
    # not an import, so this data layer never loads a face.
    api_face: str | None = None
