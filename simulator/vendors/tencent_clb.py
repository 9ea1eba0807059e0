"""Tencent Cloud CLB HTTPS listeners (profile ``tencent-clb``), as data.

Sources: Tencent's CLB HTTPS FAQ ("What cipher suites are supported by HTTPS?", ``ssl_protocols``),
``CreateListener`` (``SSLMode``, ``SSLVerifyClient``, ``SniSwitch``), ``UploadCertificate`` and the LCU
billing page. UNCONFIRMED values are best guesses, listed in docs/certificates.md and docs/metering.md.
"""

from __future__ import annotations

from simulator.vendors.profile import (
    IN,
    OUT,
    BillingModel,
    Capabilities,
    CertProfile,
    LcuDimensions,
    PolicyRow,
    TlsTable,
    VendorProfile,
)

NAME = "tencent-clb"

# --- TLS ------------------------------------------------------------------------------------------

# The FAQ's answer: an OpenSSL cipher string, taken as OpenSSL expands it (77 suites with the OpenSSL
# under pyOpenSSL; DHE, DSS and SRP ones are listed but never negotiate).
DEFAULT_CIPHER_STRING = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-CHACHA20-POLY1305:kEDH+AESGCM:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256:"
    "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
    "ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128:AES256:"
    "AES:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK"
)
# "The ssl_protocols supported by CLB HTTPS include TLSv1, TLSv1.1, TLSv1.2, and TLSv1.3."
DEFAULT_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# The vendor documents no TLS 1.3 list: OpenSSL's default, as an nginx-based listener would serve.
DEFAULT_TLS13: tuple[str, ...] = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
DEFAULT_POLICY = "tencent_default"
# A custom policy that leaves out ssl_protocols gets the vendor's documented default.
CUSTOM_DEFAULT_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2")

TLS = TlsTable(
    policies=(PolicyRow(DEFAULT_POLICY, DEFAULT_VERSIONS, tls13=DEFAULT_TLS13, cipher_string=DEFAULT_CIPHER_STRING),),
    default_policy=DEFAULT_POLICY,
    custom_suites=None,
    custom_cipher_strings=True,
    max_custom_suites=None,
    max_custom_versions=4,  # every version there is
    custom_default_versions=CUSTOM_DEFAULT_VERSIONS,
    custom_default_ciphers=DEFAULT_CIPHER_STRING,
    custom_default_tls13=DEFAULT_TLS13,
)

# --- certificates ---------------------------------------------------------------------------------

CERTS = CertProfile(
    name=NAME,
    key_types=frozenset({"RSA", "ECDSA"}),
    rsa_sizes=frozenset({1024, 2048, 3072, 4096}),  # UNCONFIRMED
    ec_curves=frozenset({"secp256r1", "secp384r1"}),  # UNCONFIRMED
    key_formats=frozenset({"pkcs1", "sec1", "pkcs8"}),
    # The alias rule is UNCONFIRMED: Alibaba's set, plus spaces.
    name_pattern=r"[A-Za-z0-9\u4e00-\u9fff\-/._* ]{1,80}",
    name_rule="1-80 characters: letters, digits, Chinese characters, spaces, hyphens (-), forward slashes (/), "
    "periods (.), underscores (_) and asterisks (*)",
    id_style="short",
    hints={
        ("NotPem", "key"): "convert DER: openssl pkey -inform DER -in key.der -out key.pem; "
        "from PKCS#12: openssl pkcs12 -in cert.pfx -nocerts -nodes -out key.pem",
        ("EncryptedPrivateKey", "key"): "decrypt it first: openssl pkey -in encrypted.pem -out key.pem "
        "(asks for the passphrase)",
        ("MalformedPrivateKey", "key"): "see what is wrong with: openssl pkey -in key.pem -noout",
        ("UnsupportedKeyFormat", "key"): "export the key as PEM (PKCS#1, SEC1 or PKCS#8), "
        "e.g. openssl pkey -in key -out key.pem",
        ("UnsupportedKeyType", "cert"): "request a certificate for an RSA key or an ECDSA key on P-256 or P-384",
        ("UnsupportedKeySize", "cert"): "use an RSA key of 1024 to 4096 bits (2048 or 3072 usual) "
        "or an ECDSA key on P-256 or P-384",
    },
)

# --- billing --------------------------------------------------------------------------------------

BILLING = BillingModel(
    name=NAME,
    vendor="Tencent Cloud CLB (LCU)",
    billed_directions=(IN, OUT),
    lcu=LcuDimensions(free_rules=0),
    wording=("\"it actually generates more traffic than the billed traffic as some of the traffic is used "
             "for protocol handshake\". LCU model, hourly, the largest of: 25 new connections/s, 3,000 "
             "concurrent connections/min, 1 GB processed traffic (inbound + outbound), 1,000 rule "
             "evaluations/s."),
    unconfirmed=("free rules per request (0 assumed)", "GB = 10**9 bytes"),
)

PROFILE = VendorProfile(
    name=NAME,
    vendor="Tencent Cloud CLB",
    tls=TLS,
    certs=CERTS,
    billing=BILLING,
    # SniSwitch: per-domain certificates, and once on it cannot be turned off; SSLVerifyClient OPTIONAL;
    # CreateListener starts the listener; an RSA and an ECC certificate may share a listener (MultiCertInfo).
    capabilities=Capabilities(sni=True, sni_locked=True, ignore_sni=False, verify_optional=True,
                              create_started=True, dual_certificates=True),
    error_server="stgw",
    api_face="simulator.faces.tencent:TencentFace",  # CLB 2018-03-17 and SSL 2019-12-05 (docs/vendor-apis.md)
    cert_strictness=10,
    lb_id_style=("lb-", 8),  # like lb-0bhf7mj4
)
