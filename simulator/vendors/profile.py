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

# Key-exchange groups (OpenSSL names) of a policy that names none: the set lbsim pins process-wide
# (simulator.policies.groups.GROUPS is the same tuple; this layer may not import it).
CLASSIC_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")

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
    groups: tuple[str, ...] = CLASSIC_GROUPS  # key-exchange groups, the server's preference first


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
    custom_policies: bool = True  # False: named policies only, a custom one is refused (AWS ALB)

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
    max_key_bytes: int | None = None  # the private key field's size limit (ACM: 5,120 bytes)
    require_v3: bool = False  # every certificate must be X.509 version 3 (ACM)
    # Codes that are errors under this vendor whatever simulator.certs.validate.RULES says (ACM refuses an
    # expired or not-yet-valid certificate; the others only warn).
    error_codes: frozenset[str] = frozenset()


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
    x_forwarded_port: bool = False  # X-Forwarded-Port: the listener's port (AWS ALB: on)
    amzn_trace_id: bool = False  # X-Amzn-Trace-Id: a request-tracing id, kept or extended (AWS ALB: on)


# --- mutual TLS with trust stores (AWS ALB) ----------------------------------------------------------


@dataclass(frozen=True)
class MutualTlsModes:
    """A vendor whose mutual TLS is a mode (`mtls_mode`: off, passthrough, verify against a trust store)
    instead of a CA certificate on the listener (`ca_certificate`). Field names are the lab file's."""

    modes: tuple[str, ...]
    default: str
    ignore_client_certificate_expiry: bool  # default of `ignore_client_certificate_expiry`
    advertise_trust_store_ca_names: bool  # default of `advertise_trust_store_ca_names`
    passthrough_header: str  # passthrough: the whole client chain, URL-encoded PEM, in this header
    verify_headers: tuple[tuple[str, str], ...]  # verify: (what, header) for what the listener learnt
    # mode -> how the listener treats client certificates, in the words every listener answers with
    # (`ListenerSpec.client_verification`): off (none asked for), on (a valid one required), any (one is asked
    # for and every client is admitted, with or without one).
    verification: Mapping[str, str] = field(default_factory=dict)


# --- connection log ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionLogFormat:
    """The vendor's own connection-log format, written beside lbsim's JSON log (one line per connection,
    space-separated `fields`, absent values ``-``). `status_names` renames lbsim's tls_verify_status values
    where the vendor names the same failure differently."""

    file: str
    fields: tuple[str, ...]
    status_names: Mapping[str, str] = field(default_factory=dict)
    error_codes: tuple[str, ...] = ()  # the failure codes the vendor documents (for reference and tests)


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
    # Load balancer ids the vendor API hands out: (prefix, count of random lowercase letters and digits).
    lb_id_style: tuple[str, int] = ("lb-", 12)
    # Mutual TLS as modes and trust stores (AWS ALB), or None: `ca_certificate` and `ssl_verify_client`.
    mtls: MutualTlsModes | None = None
    # The vendor's own connection-log format written beside the JSON log, or None: the JSON log only.
    connection_log: ConnectionLogFormat | None = None
