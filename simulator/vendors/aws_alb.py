"""AWS Application Load Balancer HTTPS listeners (profile ``aws-alb``), as data: ``PROFILE``.

No behaviour lives here; the policy resolver, certificate checker, config parser, header and error-page
addons and the connection log read the profile. Facts and their public sources: docs/aws-alb.md.

Sources (AWS documentation, read 2026-12; URLs in docs/vendor-facts.md, "AWS Application Load Balancer"):
- ELB "Security policies for your Application Load Balancer" (describe-ssl-policies): policy names, versions,
  ciphers, the PQ policies and their hybrid groups, the defaults (console vs API/CLI/CloudFormation/CDK).
- The AWS CLI's DescribeSslPolicies example (the 18 classic ALB policy names); each policy's suites in
  priority order as DescribeSSLPolicies returns them, checked against moto's copy of that output.
- ELB "Mutual authentication with TLS" (mutual-authentication): modes off/passthrough/verify, trust stores,
  revocation lists, IgnoreClientCertificateExpiry, AdvertiseTrustStoreCaNames, the X-Amzn-Mtls-* headers.
- ELB "Connection logs" (load-balancer-connection-logs): field order and tls_verify_status values.
- ELB "HTTP headers and your Application Load Balancer" (x-forwarded-headers), "Request tracing"
  (X-Amzn-Trace-Id), "Edit load balancer attributes" (idle timeout 1-4000 s, default 60 s; HTTP/2 default on).
- ACM "Prerequisites for importing certificates" and the ImportCertificate API reference: key algorithms,
  X.509 v3, unencrypted key of at most 5,120 bytes, PEM only, the validity window, chain order.
"""

from __future__ import annotations

from simulator.vendors.profile import (
    CLASSIC_GROUPS,
    IN,
    OUT,
    BillingModel,
    Capabilities,
    CertProfile,
    ConnectionLogFormat,
    HeaderDefaults,
    LcuDimensions,
    ListenerLimits,
    MutualTlsModes,
    PolicyRow,
    TlsTable,
    VendorProfile,
)

NAME = "aws-alb"

# --- TLS security policies -----------------------------------------------------------------------------

# The three TLS 1.3 suites every TLS 1.3 ALB policy lists, in AWS's order.
TLS13: tuple[str, ...] = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

# TLS <= 1.2 suites, in the server preference order AWS lists them (OpenSSL names).
_FS_GCM = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
)
_FS_GCM_SHA2 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
)
_EXT1 = _FS_GCM_SHA2 + ("AES128-GCM-SHA256", "AES128-SHA256", "AES256-GCM-SHA384", "AES256-SHA256")
# ELBSecurityPolicy-2016-08's 18 suites (also -TLS-1-2-Ext-2018-06, -TLS13-1-2-Ext2-2021-06, -TLS13-1-0-2021-06).
_CLASSIC = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES128-SHA256",
    "AES128-SHA",
    "AES256-GCM-SHA384",
    "AES256-SHA256",
    "AES256-SHA",
)

# ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06 lists the same 18 but ECDHE-ECDSA-AES256-SHA before ECDHE-RSA-AES256-SHA.
_EXT2 = _CLASSIC[:10] + ("ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA") + _CLASSIC[12:]
# The ECDHE suites of _CLASSIC, in its order (the FS-2018-06 and FS-1-x-2019-08 policies).
_FS = _CLASSIC[:12]

# Key-exchange groups (OpenSSL names). Classic policies: ECDHE on X25519, P-256, P-384 (lbsim's pinned
# set; AWS's page lists no group per classic policy). PQ policies add the three hybrids first: "they support
# both classical and post-quantum ML-KEM key exchange algorithms".
PQ_HYBRID_GROUPS: tuple[str, ...] = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")
PQ_GROUPS: tuple[str, ...] = PQ_HYBRID_GROUPS + CLASSIC_GROUPS

_V10_13 = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_V10_12 = ("TLSv1", "TLSv1.1", "TLSv1.2")
_V11_13 = ("TLSv1.1", "TLSv1.2", "TLSv1.3")
_V11_12 = ("TLSv1.1", "TLSv1.2")
_V12_13 = ("TLSv1.2", "TLSv1.3")
_V12 = ("TLSv1.2",)
_V13 = ("TLSv1.3",)

# Each row: name, versions, TLS <= 1.2 suites, TLS 1.3 suites, key-exchange groups.
POLICIES: tuple[PolicyRow, ...] = (
    PolicyRow("ELBSecurityPolicy-2016-08", _V10_12, _CLASSIC, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-2021-06", _V12_13, _FS_GCM_SHA2, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Res-2021-06", _V12_13, _FS_GCM, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06", _V12_13, _EXT1, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06", _V12_13, _EXT2, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-1-2021-06", _V11_13, _CLASSIC, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-0-2021-06", _V10_13, _CLASSIC, TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-3-2021-06", _V13, (), TLS13, groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-FS-1-2-Res-2020-10", _V12, _FS_GCM, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS-1-2-Ext-2018-06", _V12, _CLASSIC, (), groups=CLASSIC_GROUPS),
    # The older policies DescribeSSLPolicies still lists for Application Load Balancers.
    PolicyRow("ELBSecurityPolicy-TLS-1-2-2017-01", _V12, _EXT1, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS-1-1-2017-01", _V11_12, _CLASSIC, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-FS-2018-06", _V10_12, _FS, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-2015-05", _V10_12, _CLASSIC, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS-1-0-2015-04", _V10_12, _CLASSIC + ("DES-CBC3-SHA",), (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-FS-1-2-Res-2019-08", _V12, _FS_GCM_SHA2, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-FS-1-1-2019-08", _V11_12, _FS, (), groups=CLASSIC_GROUPS),
    PolicyRow("ELBSecurityPolicy-FS-1-2-2019-08", _V12, _FS, (), groups=CLASSIC_GROUPS),
    # The post-quantum policies of 2025-09: each its 2021-06 sibling's versions and suites, plus the hybrids.
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", _V12_13, _FS_GCM, TLS13, groups=PQ_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-PQ-2025-09", _V12_13, _FS_GCM_SHA2, TLS13, groups=PQ_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09", _V12_13, _EXT1, TLS13, groups=PQ_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09", _V12_13, _EXT2, TLS13, groups=PQ_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-3-PQ-2025-09", _V13, (), TLS13, groups=PQ_GROUPS),
    PolicyRow("ELBSecurityPolicy-TLS13-1-0-PQ-2025-09", _V10_13, _CLASSIC, TLS13, groups=PQ_GROUPS),
)
# The API, CLI, CloudFormation and CDK default; the console preselects CONSOLE_DEFAULT_POLICY instead.
DEFAULT_POLICY = "ELBSecurityPolicy-2016-08"
CONSOLE_DEFAULT_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"

TLS = TlsTable(
    policies=POLICIES,
    default_policy=DEFAULT_POLICY,
    # "Application Load Balancers do not support custom security policies."
    custom_policies=False,
    custom_suites=None,
    custom_cipher_strings=False,
    max_custom_suites=None,
    max_custom_versions=4,
)

# --- certificates (ACM import) -------------------------------------------------------------------------

KEY_TYPES = frozenset({"RSA", "ECDSA"})
RSA_SIZES = frozenset({1024, 2048, 3072, 4096})
EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
KEY_FORMATS = frozenset({"pkcs1", "sec1", "pkcs8"})  # any unencrypted PEM private key
MAX_KEY_BYTES = 5120  # "The private key must be no larger than 5 KB (5,120 bytes)."
REQUIRE_X509_V3 = True  # "You can import only X.509 version 3 SSL/TLS certificates."
# "The current time must be between the Not Before and Not After certificate fields.": an error, not a warning.
VALIDITY_ERRORS = frozenset({"CertificateExpired", "CertificateNotYetValid"})
QUOTA = 2500  # ACM's default quota of imported certificates per account and Region (adjustable)
# ACM names imports by ARN, not by name: lbsim keeps its own name rule (a tag-like 1-128 characters).
NAME_PATTERN = r"[A-Za-z0-9\-/._*:@+= ]{1,128}"
NAME_RULE = "1-128 characters: letters, digits, spaces and - / . _ * : @ + ="
# ACM's documented rules, used as the first sentence of lbsim's own detail. AWS does not document its
# ValidationException texts; these are the guideline sentences of the ImportCertificate reference.
WORDING: dict[tuple[str, str, str], str] = {
    ("NotPem", "*", "*"): "The certificate, private key, and certificate chain must be PEM-encoded",
    ("EncryptedPrivateKey", "key", "*"): "The private key must be unencrypted",
    ("KeyTooLarge", "key", "*"): "The private key must be no larger than 5 KB (5,120 bytes)",
    ("KeyCertificateMismatch", "key", "*"): "You must enter the private key that matches the certificate you are importing",
    ("NotX509v3", "cert", "*"): "You can import only X.509 version 3 SSL/TLS certificates",
    ("CertificateExpired", "cert", "*"): "The current time must be between the Not Before and Not After certificate fields",
    ("CertificateNotYetValid", "cert", "*"): "The current time must be between the Not Before and Not After certificate fields",
    ("ChainOrder", "cert", "*"): "Each certificate in the chain must directly certify the one preceding",
}
HINTS: dict[tuple[str, str], str] = {
    ("UnsupportedKeyType", "cert"): "ACM imports RSA (1024-4096 bits) and ECDSA (P-256, P-384, P-521) certificates",
    ("UnsupportedKeySize", "cert"): "use RSA 1024, 2048, 3072 or 4096 bits, or ECDSA on P-256, P-384 or P-521",
    ("EncryptedPrivateKey", "key"): "decrypt it first: openssl pkey -in encrypted.pem -out key.pem",
}

CERTS = CertProfile(
    name=NAME,
    key_types=KEY_TYPES,
    rsa_sizes=RSA_SIZES,
    ec_curves=EC_CURVES,
    key_formats=KEY_FORMATS,
    name_pattern=NAME_PATTERN,
    name_rule=NAME_RULE,
    quota=QUOTA,
    wording=WORDING,
    hints=HINTS,
    max_key_bytes=MAX_KEY_BYTES,
    require_v3=REQUIRE_X509_V3,
    error_codes=VALIDITY_ERRORS,
)

# --- listener ------------------------------------------------------------------------------------------

LIMITS = ListenerLimits(
    idle_timeout=(1, 4000, 60),  # (min, max, default) seconds: the idle_timeout.timeout_seconds attribute
    http2=True,  # routing.http2.enabled defaults to true
)
ERROR_SERVER = "awselb/2.0"  # the Server header of the load balancer's own error pages
# Headers sent to targets, on by default: X-Forwarded-For/-Proto/-Port and the request-tracing header.
HEADERS = HeaderDefaults(x_forwarded_proto=True, x_forwarded_port=True, amzn_trace_id=True)

# --- mutual TLS ----------------------------------------------------------------------------------------

MTLS = MutualTlsModes(
    modes=("off", "passthrough", "verify"),
    default="off",
    ignore_client_certificate_expiry=False,
    advertise_trust_store_ca_names=False,  # AdvertiseTrustStoreCaNames: off unless turned on
    # Passthrough: the whole client chain, URL-encoded PEM, in one header.
    passthrough_header="X-Amzn-Mtls-Clientcert",
    # Verify: what the listener learnt from the leaf (what -> header).
    verify_headers=(
        ("serial", "X-Amzn-Mtls-Clientcert-Serial-Number"),
        ("issuer", "X-Amzn-Mtls-Clientcert-Issuer"),
        ("subject", "X-Amzn-Mtls-Clientcert-Subject"),
        ("validity", "X-Amzn-Mtls-Clientcert-Validity"),
        ("leaf", "X-Amzn-Mtls-Clientcert-Leaf"),
    ),
    # Passthrough "accepts any client certificate, or none"; verify requires one the trust store verifies.
    verification={"off": "off", "passthrough": "any", "verify": "on"},
)

# --- connection log ------------------------------------------------------------------------------------

# One line per connection, space-separated, in this order (AWS "Connection logs": conn_trace_id is field 12,
# tls_keyexchange 13, the load balancer's id 14 and its node's IP 15; the security-policy page also puts the
# key exchange at "log field position 13"). Absent values are "-"; the subject is quoted.
CONNECTION_LOG_FIELDS: tuple[str, ...] = (
    "timestamp",
    "client_ip",
    "client_port",
    "listener_port",
    "tls_protocol",
    "tls_cipher",
    "tls_handshake_latency",
    "leaf_client_cert_subject",
    "leaf_client_cert_validity",
    "leaf_client_cert_serial_number",
    "tls_verify_status",
    "conn_trace_id",
    "tls_keyexchange",
    "elb",
    "ip_address",
)
CONNECTION_LOG_FILE = "aws-alb-connections.log"
# The error codes AWS documents ("Failed:" + code in tls_verify_status).
ERROR_CODES: tuple[str, ...] = (
    "ClientCertMaxChainDepthExceeded",
    "ClientCertMaxSizeExceeded",
    "ClientCertCrlHit",
    "ClientCertCrlProcessingError",
    "ClientCertUntrusted",
    "ClientCertNotYetValid",
    "ClientCertExpired",
    "ClientCertTypeUnsupported",
    "ClientCertInvalid",
    "ClientCertPurposeInvalid",
    "ClientCertRejected",
    "UnmappedConnectionError",
    "ClientCertIncompatible",
)
# lbsim's tls_verify_status (the JSON log) -> AWS's, where AWS names the same failure differently. lbsim's
# other Failed:* values (NoClientCertificate, ProtocolVersion, ...) have no AWS code and are kept as they are.
STATUS_NAMES: dict[str, str] = {
    "Failed:ClientCertRevoked": "Failed:ClientCertCrlHit",
}
CONNECTION_LOG = ConnectionLogFormat(file=CONNECTION_LOG_FILE, fields=CONNECTION_LOG_FIELDS,
                                     status_names=STATUS_NAMES, error_codes=ERROR_CODES)

# --- billing -------------------------------------------------------------------------------------------

BILLING = BillingModel(
    name=NAME,
    vendor="AWS Application Load Balancer",
    billed_directions=(IN, OUT),
    lcu=LcuDimensions(free_rules=10),
    wording=("ProcessedBytes counts HTTP headers and payload, not TLS overhead: \"The number of bytes "
             "processed by the load balancer in Gigabytes (GB) for HTTP(S) requests and responses.\" "
             "Rule evaluations: \"the product of the number of rules processed by your load balancer "
             "and the request rate. The first 10 processed rules are free\"."),
    unconfirmed=("GB = 10**9 bytes",),
)

PROFILE = VendorProfile(
    name=NAME,
    vendor="AWS Application Load Balancer",
    tls=TLS,
    certs=CERTS,
    billing=BILLING,
    limits=LIMITS,
    # Per-domain certificates: a default certificate plus a certificate list chosen by SNI (and SNI cannot be
    # "locked": the list may be emptied again); a new listener serves at once; mutual TLS is `mtls`, not
    # ssl_verify_client; one certificate per key type is not a listener field (SNI lists hold both).
    capabilities=Capabilities(sni=True, sni_locked=False, ignore_sni=False, verify_optional=False,
                              create_started=True, dual_certificates=False),
    headers=HEADERS,
    error_server=ERROR_SERVER,
    cert_strictness=0,  # RSA or ECDSA, any unencrypted PEM: as lenient as tencent-clb
    mtls=MTLS,
    connection_log=CONNECTION_LOG,
)
