"""The vendors' TLS security policies, as data.

Sources: ``docs/vendor-facts.md`` (Alibaba's ``TLSCipherPolicy`` table, Tencent's seed cipher string and
``ssl_protocols``) and, for Alibaba custom policies, the ALB ``CreateSecurityPolicy`` parameter reference
(``TLSVersions`` at most 4, ``Ciphers`` at most 32, from the list below). Order is server preference order.
Versions use OpenSSL's spelling (``TLSv1`` is TLS 1.0).
"""

from __future__ import annotations

from simulator.policies.suites import OPENSSL_DEFAULT_TLS13, TLS13_SUITES

ALIYUN = "aliyun-slb"
TENCENT = "tencent-clb"

# --- Alibaba Cloud SLB/CLB: TLSCipherPolicy -------------------------------------------------------

# The 13 suites shared by tls_cipher_policy_1_0, _1_1 and _1_2 (vendor-facts, in the vendor's order).
ALIYUN_CLASSIC_SUITES: tuple[str, ...] = (
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

ALIYUN_STRICT_SUITES: tuple[str, ...] = (
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
)

ALIYUN_STRICT_WITH_13_SUITES: tuple[str, ...] = (
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

# name -> (versions, TLS <= 1.2 suites, TLS 1.3 suites)
ALIYUN_POLICIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "tls_cipher_policy_1_0": (("TLSv1", "TLSv1.1", "TLSv1.2"), ALIYUN_CLASSIC_SUITES, ()),
    "tls_cipher_policy_1_1": (("TLSv1.1", "TLSv1.2"), ALIYUN_CLASSIC_SUITES, ()),
    "tls_cipher_policy_1_2": (("TLSv1.2",), ALIYUN_CLASSIC_SUITES, ()),
    "tls_cipher_policy_1_2_strict": (("TLSv1.2",), ALIYUN_STRICT_SUITES, ()),
    "tls_cipher_policy_1_2_strict_with_1_3": (
        ("TLSv1.2", "TLSv1.3"),
        ALIYUN_STRICT_WITH_13_SUITES,
        (
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_CCM_SHA256",
            "TLS_AES_128_CCM_8_SHA256",
        ),
    ),
}
ALIYUN_DEFAULT = "tls_cipher_policy_1_0"

# Suites an Alibaba custom policy may list (ALB CreateSecurityPolicy "Ciphers"): the TLS 1.0/1.1 ones,
# the TLS 1.2 ones, and the five TLS 1.3 ones. Each must be usable by at least one listed version.
ALIYUN_CUSTOM_SUITES: tuple[str, ...] = (
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
ALIYUN_CUSTOM_MAX_SUITES = 32
ALIYUN_CUSTOM_MAX_VERSIONS = 4

# --- Tencent Cloud CLB ------------------------------------------------------------------------------

# The seed's "What cipher suites are supported by HTTPS?" answer: an OpenSSL cipher string, taken as
# OpenSSL expands it (77 suites with this OpenSSL; DHE, DSS and SRP ones are listed but never negotiate).
TENCENT_DEFAULT_CIPHER_STRING = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-CHACHA20-POLY1305:kEDH+AESGCM:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256:"
    "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
    "ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128:AES256:"
    "AES:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK"
)
# The seed: "The ssl_protocols supported by CLB HTTPS include TLSv1, TLSv1.1, TLSv1.2, and TLSv1.3."
TENCENT_DEFAULT_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# The vendor documents no TLS 1.3 list: OpenSSL's default, as an nginx-based listener would serve.
TENCENT_DEFAULT_TLS13: tuple[str, ...] = OPENSSL_DEFAULT_TLS13
TENCENT_DEFAULT = "tencent_default"
# A custom policy that leaves out ssl_protocols gets the vendor's documented default.
TENCENT_CUSTOM_DEFAULT_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2")
