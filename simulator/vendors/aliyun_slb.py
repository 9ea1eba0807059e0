"""Alibaba Cloud SLB/CLB HTTPS listeners (profile ``aliyun-slb``), as data.

Sources: Alibaba's ``CreateLoadBalancerHTTPSListener`` and ``TLSCipherPolicy`` references, the certificate
upload API (``UploadServerCertificate``, ``SetServerCertificateName``) and its error messages, the ALB
``CreateSecurityPolicy`` reference for custom policies (``TLSVersions`` at most 4, ``Ciphers`` at most 32,
from the list below), and the pay-by-traffic billing page. Suites are in server preference order.
"""

from __future__ import annotations

from simulator.vendors.profile import (
    OUT,
    BillingModel,
    Capabilities,
    CertProfile,
    PolicyRow,
    TlsTable,
    VendorProfile,
)

NAME = "aliyun-slb"

# --- TLS: TLSCipherPolicy -------------------------------------------------------------------------

# The 13 suites shared by tls_cipher_policy_1_0, _1_1 and _1_2 (in the vendor's order).
CLASSIC_SUITES: tuple[str, ...] = (
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA256",
    "AES256-SHA256",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
)

STRICT_SUITES: tuple[str, ...] = (
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
)

STRICT_WITH_13_SUITES: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
)

# The five TLS 1.3 suites of RFC 8446, all of which the vendor lists.
TLS13_SUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)

POLICIES: tuple[PolicyRow, ...] = (
    PolicyRow("tls_cipher_policy_1_0", ("TLSv1", "TLSv1.1", "TLSv1.2"), CLASSIC_SUITES),
    PolicyRow("tls_cipher_policy_1_1", ("TLSv1.1", "TLSv1.2"), CLASSIC_SUITES),
    PolicyRow("tls_cipher_policy_1_2", ("TLSv1.2",), CLASSIC_SUITES),
    PolicyRow("tls_cipher_policy_1_2_strict", ("TLSv1.2",), STRICT_SUITES),
    PolicyRow("tls_cipher_policy_1_2_strict_with_1_3", ("TLSv1.2", "TLSv1.3"), STRICT_WITH_13_SUITES, TLS13_SUITES),
)
DEFAULT_POLICY = "tls_cipher_policy_1_0"

# Suites an Alibaba custom policy may list (ALB CreateSecurityPolicy "Ciphers"): the TLS 1.0/1.1 ones,
# the TLS 1.2 ones, and the five TLS 1.3 ones. Each must be usable by at least one listed version.
CUSTOM_SUITES: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA256",
    "AES256-SHA256",
    *TLS13_SUITES,
)
CUSTOM_MAX_SUITES = 32
CUSTOM_MAX_VERSIONS = 4

TLS = TlsTable(
    policies=POLICIES,
    default_policy=DEFAULT_POLICY,
    custom_suites=CUSTOM_SUITES,
    custom_cipher_strings=False,
    max_custom_suites=CUSTOM_MAX_SUITES,
    max_custom_versions=CUSTOM_MAX_VERSIONS,
)

# --- certificates ---------------------------------------------------------------------------------

_CERT = "The specified Server Certificate format is invalid"
_KEY = "The format of the private key content is invalid"

CERTS = CertProfile(
    name=NAME,
    key_types=frozenset({"RSA"}),
    rsa_sizes=frozenset({1024, 2048, 4096}),
    ec_curves=frozenset(),
    key_formats=frozenset({"pkcs1"}),
    # SetServerCertificateName: 1-80 characters of letters, digits, Chinese characters and - / . _ *
    name_pattern=r"[A-Za-z0-9\u4e00-\u9fff\-/._*]{1,80}",
    name_rule="1-80 characters: letters, digits, Chinese characters, hyphens (-), forward slashes (/), "
    "periods (.), underscores (_) and asterisks (*)",
    id_style="account_time",
    wording={
        ("NotPem", "cert", "server"): _CERT,
        ("MalformedCertificate", "cert", "server"): _CERT,
        ("UnexpectedPemBlock", "cert", "server"): _CERT,
        ("DhParametersNotSupported", "cert", "server"): _CERT,
        ("MissingCertificate", "cert", "*"): "No certificate chain is found in the certificate content",
        ("NotPem", "key", "*"): _KEY,
        ("MalformedPrivateKey", "key", "*"): _KEY,
        ("UnexpectedPemBlock", "key", "*"): _KEY,
        ("DhParametersNotSupported", "key", "*"): _KEY,
        ("EncryptedPrivateKey", "key", "*"): _KEY,
        ("Pkcs8NotSupported", "key", "*"): _KEY,
        ("UnsupportedKeyFormat", "key", "*"): _KEY,
        ("MultiplePrivateKeys", "key", "*"): _KEY,
        ("KeyCertificateMismatch", "key", "*"): "The certificate and private key that you upload do not match",
    },
    hints={
        ("NotPem", "key"): "convert DER: openssl rsa -inform DER -in key.der -traditional -out key.pem; "
        "from PKCS#12: openssl pkcs12 -in cert.pfx -nocerts -nodes | openssl rsa -traditional -out key.pem",
        ("EncryptedPrivateKey", "key"): "decrypt it first: openssl rsa -in encrypted.pem -traditional -out key.pem "
        "(asks for the passphrase, writes PKCS#1)",
        ("MalformedPrivateKey", "key"): "see what is wrong with: openssl rsa -in key.pem -check -noout",
        ("UnsupportedKeyFormat", "key"): "export the key as PKCS#1 PEM (-----BEGIN RSA PRIVATE KEY-----), "
        "e.g. openssl rsa -in key -traditional -out key.pem",
        # The message already says what aliyun-slb accepts: the hint says only how to get it.
        ("UnsupportedKeyType", "cert"): "request a certificate for a new RSA key: "
        "openssl req -new -newkey rsa:2048 -nodes -keyout key.pem -out req.csr",
        ("UnsupportedKeySize", "cert"): "use an RSA key of 1024, 2048 or 4096 bits (2048 is the usual choice)",
    },
)

# --- billing --------------------------------------------------------------------------------------

BILLING = BillingModel(
    name=NAME,
    vendor="Alibaba Cloud SLB/CLB (pay-by-traffic)",
    billed_directions=(OUT,),
    lcu=None,
    wording=("Pay-by-traffic bills outbound traffic (LB -> client) only. \"The actual traffic is larger "
             "than the billing traffic because some traffic is used for the protocol handshake. In the "
             "case of a large number of new connections, HTTPS listeners consume more traffic.\""),
)

PROFILE = VendorProfile(
    name=NAME,
    vendor="Alibaba Cloud SLB/CLB",
    tls=TLS,
    certs=CERTS,
    billing=BILLING,
    # No SNI on CLB HTTPS listeners: one certificate whatever the client asks; a new listener is `stopped`
    # until started; every mutual client is verified.
    capabilities=Capabilities(sni=False, sni_locked=False, ignore_sni=True, verify_optional=False,
                              create_started=False, dual_certificates=False),
    error_server="Tengine",
    api_face="simulator.faces.aliyun:AliyunFace",  # SLB API 2014-05-15 (docs/vendor-apis.md)
    cert_strictness=20,  # RSA + PKCS#1 only: the strictest rules
    lb_id_style=("lb-bp1", 18),  # like lb-bp1b6c719dfa08exfuca5
)
