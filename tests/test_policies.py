"""TLS policies as data: the vendor tables, resolving config specs, custom-policy limits, suite knowledge.

No sockets here (see test_policies_tls.py); the few handshakes run on memory BIOs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from simulator.errors import LbsimError
from simulator.policies import POLICIES, PROFILES, TLS13_SUITES, VERSIONS, Policy, expand, resolve_policy, suite_info
from simulator.policies import tables
from simulator.policies.context import build_server_context, tls_verify_status
from simulator.policies.testing import handshake_in_memory
from simulator.policies.suites import openssl_suites

CLASSIC = [
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA256", "AES256-SHA256",
    "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
]  # fmt: skip
STRICT = [
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
]  # fmt: skip
STRICT13_TLS12 = [
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
]  # fmt: skip
STRICT13_TLS13 = [
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
]  # fmt: skip

# vendor-facts.md, transcribed independently of simulator/policies/tables.py
VENDOR_FACTS = {
    "tls_cipher_policy_1_0": (["TLSv1", "TLSv1.1", "TLSv1.2"], CLASSIC, []),
    "tls_cipher_policy_1_1": (["TLSv1.1", "TLSv1.2"], CLASSIC, []),
    "tls_cipher_policy_1_2": (["TLSv1.2"], CLASSIC, []),
    "tls_cipher_policy_1_2_strict": (["TLSv1.2"], STRICT, []),
    "tls_cipher_policy_1_2_strict_with_1_3": (["TLSv1.2", "TLSv1.3"], STRICT13_TLS12, STRICT13_TLS13),
}
SEED_STRING = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-CHACHA20-POLY1305:kEDH+AESGCM:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
    "ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128:AES256:AES:HIGH:!aNULL:!eNULL:"
    "!EXPORT:!DES:!RC4:!MD5:!PSK"
)


def raises(code: str, spec, profile: str = "aliyun-slb", field: str = "tls_policy") -> LbsimError:
    with pytest.raises(LbsimError) as info:
        resolve_policy(profile, spec, field=field)
    assert info.value.code == code, info.value
    return info.value


# --- the tables --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENDOR_FACTS)
def test_aliyun_named_policies_exactly_as_vendor_facts(name: str) -> None:
    versions, tls12, tls13 = VENDOR_FACTS[name]
    p = resolve_policy("aliyun-slb", name)
    assert (p.name, list(p.versions), list(p.ciphers), list(p.tls13_ciphersuites)) == (name, versions, tls12, tls13)
    assert p.profile == "aliyun-slb" and not p.custom


def test_profile_defaults() -> None:
    assert resolve_policy("aliyun-slb", None).name == "tls_cipher_policy_1_0"
    assert resolve_policy("aliyun-slb", "default") is resolve_policy("aliyun-slb", None)
    t = resolve_policy("tencent-clb", None)
    assert t.name == "tencent_default" and resolve_policy("tencent-clb", "default") is t
    assert t.versions == ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    assert t.cipher_string == SEED_STRING
    assert t.ciphers == expand(SEED_STRING)
    assert t.tls13_ciphersuites == ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
    assert PROFILES["aliyun-slb"].sni is False and PROFILES["tencent-clb"].sni is True


def test_tencent_default_expansion_as_openssl_expands_it() -> None:
    # The seed string starts with its explicit suites, then OpenSSL fills in kEDH+AESGCM, AES, HIGH...
    t = POLICIES["tencent_default"]
    assert t.ciphers[:7] == (
        "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-CHACHA20-POLY1305",
    )  # fmt: skip
    assert len(t.ciphers) == 77  # OpenSSL 3.0 (system `openssl ciphers`) and 3.5 agree
    for name in t.ciphers:
        info = suite_info(name)
        assert not info.anonymous and not info.null_encryption and "PSK" not in name and "DES-CBC" not in name
    # listed, but never negotiable here: DHE (no DH parameters), DSS, SRP
    rsa = {s for suites in t.negotiable("RSA").values() for s in suites}
    assert not {s for s in rsa if s.startswith(("DHE-", "SRP-"))}
    assert "DHE-RSA-AES128-GCM-SHA256" in t.ciphers and "SRP-RSA-AES-128-CBC-SHA" in t.ciphers


def test_des_cbc3_is_listed_but_unavailable_in_this_openssl() -> None:
    p = POLICIES["tls_cipher_policy_1_0"]
    assert "DES-CBC3-SHA" in p.ciphers
    assert p.unavailable == ("DES-CBC3-SHA",)
    assert "DES-CBC3-SHA" not in openssl_suites()  # cryptography's OpenSSL: no-weak-ssl-ciphers
    assert all("DES-CBC3-SHA" not in suites for suites in p.negotiable("RSA").values())
    assert "DES-CBC3-SHA" not in p.openssl_cipher_list()


def test_negotiable_matrix_for_aliyun_policies() -> None:
    sha1 = ["ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA", "AES128-SHA", "AES256-SHA"]
    n = POLICIES["tls_cipher_policy_1_0"].negotiable("RSA")
    assert n == {"TLSv1": sha1, "TLSv1.1": sha1, "TLSv1.2": CLASSIC[:-1]}
    assert POLICIES["tls_cipher_policy_1_1"].negotiable("RSA") == {"TLSv1.1": sha1, "TLSv1.2": CLASSIC[:-1]}
    # an ECDSA certificate: the classic and strict policies have nothing for it
    for name in ("tls_cipher_policy_1_0", "tls_cipher_policy_1_1", "tls_cipher_policy_1_2", "tls_cipher_policy_1_2_strict"):
        assert POLICIES[name].negotiable("ECDSA") == {}
    s13 = POLICIES["tls_cipher_policy_1_2_strict_with_1_3"]
    assert s13.negotiable("RSA") == {"TLSv1.2": [c for c in STRICT13_TLS12 if "-RSA-" in c], "TLSv1.3": STRICT13_TLS13}
    assert s13.negotiable("ECDSA") == {"TLSv1.2": [c for c in STRICT13_TLS12 if "ECDSA" in c], "TLSv1.3": STRICT13_TLS13}
    with pytest.raises(ValueError):
        s13.negotiable("DSA")


def test_policy_to_dict_is_json() -> None:
    d = POLICIES["tls_cipher_policy_1_0"].to_dict()
    assert json.loads(json.dumps(d))["unavailable"] == ["DES-CBC3-SHA"]


# --- resolving names ---------------------------------------------------------------------------------


def test_unknown_policy_names_the_field_and_the_choices() -> None:
    err = raises("UnknownPolicy", "tls_1_9", field="listeners[1].tls_policy")
    assert err.field == "listeners[1].tls_policy"
    assert err.message.startswith(
        "unknown policy 'tls_1_9'; expected one of tls_cipher_policy_1_0, tls_cipher_policy_1_1, tls_cipher_policy_1_2, "
        "tls_cipher_policy_1_2_strict, tls_cipher_policy_1_2_strict_with_1_3, or a custom policy"
    )
    assert str(err).startswith("listeners[1].tls_policy: UnknownPolicy: unknown policy 'tls_1_9'")


def test_a_policy_of_the_other_vendor_is_refused() -> None:
    err = raises("UnknownPolicy", "tls_cipher_policy_1_2", profile="tencent-clb")
    assert "defined for aliyun-slb" in err.message and "tencent_default" in err.message
    raises("UnknownPolicy", "tencent_default", profile="aliyun-slb")


def test_unknown_profile_and_bad_types() -> None:
    with pytest.raises(LbsimError) as info:
        resolve_policy("gcp-lb", None)  # aws-alb became a profile
    assert info.value.code == "UnknownProfile" and "aliyun-slb, tencent-clb" in info.value.message
    raises("InvalidPolicy", 12)
    raises("InvalidPolicy", ["tls_cipher_policy_1_0"])


def test_a_resolved_policy_passes_through() -> None:
    p = POLICIES["tls_cipher_policy_1_2"]
    assert resolve_policy("aliyun-slb", p) is p


# --- custom policies: aliyun (ALB CreateSecurityPolicy limits) ---------------------------------------


def test_aliyun_custom_policy() -> None:
    p = resolve_policy(
        "aliyun-slb",
        {"name": "mine", "TLSVersions": ["TLSv1.3", "TLSv1.2"], "Ciphers": ["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]},
    )
    assert p.custom and p.name == "mine" and p.profile == "aliyun-slb"
    assert p.versions == ("TLSv1.2", "TLSv1.3")  # oldest first whatever the order given
    assert p.ciphers == ("ECDHE-RSA-AES128-GCM-SHA256",) and p.tls13_ciphersuites == ("TLS_AES_128_GCM_SHA256",)
    q = resolve_policy("aliyun-slb", {"versions": "TLSv1.0 TLSv1.2", "ciphers": "ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256"})
    assert q.versions == ("TLSv1", "TLSv1.2") and q.negotiable("RSA") == {
        "TLSv1": ["ECDHE-RSA-AES128-SHA"],
        "TLSv1.2": ["ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256"],
    }


def test_aliyun_custom_limits() -> None:
    err = raises("PolicyLimit", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA"] * 33})
    assert "at most 32 cipher suites" in err.message and err.field == "tls_policy.ciphers"
    err = raises("PolicyLimit", {"versions": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "TLSv1.2"], "ciphers": ["AES128-SHA"]})
    assert "at most 4 TLS versions" in err.message
    # every one of the 24 allowed suites at once is fine (within 32)
    p = resolve_policy("aliyun-slb", {"versions": list(VERSIONS), "ciphers": list(tables.ALIYUN_CUSTOM_SUITES)})
    assert len(p.ciphers) + len(p.tls13_ciphersuites) == 24


def test_aliyun_custom_only_the_vendors_suites() -> None:
    err = raises("UnsupportedCipher", {"versions": ["TLSv1.2"], "ciphers": ["ECDHE-RSA-CHACHA20-POLY1305"]}, field="listeners[0].tls_policy")
    assert err.field == "listeners[0].tls_policy.ciphers[0]" and "not available in aliyun-slb custom policies" in err.message
    raises("UnsupportedCipher", {"versions": ["TLSv1.2"], "ciphers": "HIGH"})  # names, not OpenSSL strings


def test_aliyun_custom_version_rules() -> None:
    # the vendor's rule: each suite must be supported by one of the listed versions
    err = raises("InvalidPolicy", {"versions": ["TLSv1"], "ciphers": ["AES128-SHA", "AES128-GCM-SHA256"]})
    assert "'AES128-GCM-SHA256' needs TLSv1.2" in err.message and err.hint
    raises("InvalidPolicy", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA", "TLS_AES_128_GCM_SHA256"]})
    # ours: each listed version must have a suite
    err = raises("InvalidPolicy", {"versions": ["TLSv1", "TLSv1.2"], "ciphers": ["AES128-GCM-SHA256"]})
    assert err.message.startswith("TLSv1 is listed but no cipher suite")
    raises("InvalidPolicy", {"versions": ["TLSv1.2", "TLSv1.3"], "ciphers": ["AES128-GCM-SHA256"]})
    err = raises("unsupported_version", {"versions": ["TLSv1.2", "SSLv3"], "ciphers": ["AES128-SHA"]})
    assert err.field == "tls_policy.versions[1]"
    raises("InvalidPolicy", {"versions": ["TLSv1.2", "tlsv1.2"], "ciphers": ["AES128-SHA"]})
    raises("InvalidPolicy", {"ciphers": ["AES128-SHA"]})  # aliyun: versions are required
    raises("InvalidPolicy", {"versions": ["TLSv1.2"]})  # and ciphers
    raises("InvalidPolicy", {"versions": [], "ciphers": ["AES128-SHA"]})


def test_custom_policy_field_errors() -> None:
    err = raises("InvalidPolicy", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA"], "cipher": "x"})
    assert err.field == "tls_policy.cipher"
    raises("InvalidPolicy", {"versions": ["TLSv1.2"], "ciphers": ["AES128-SHA"], "Ciphers": ["AES256-SHA"]})
    err = raises("UnsupportedCipher", {"versions": ["TLSv1.3"], "ciphers": [], "tls13_ciphersuites": ["TLS_AES_512"]})
    assert err.field == "tls_policy.tls13_ciphersuites[0]"


@settings(max_examples=150, deadline=None)
@given(
    versions=st.lists(st.sampled_from(["TLSv1", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]), max_size=5),
    ciphers=st.lists(st.sampled_from(tables.ALIYUN_CUSTOM_SUITES + ("HIGH", "RC4-SHA")), max_size=36),
)
def test_aliyun_custom_policy_is_refused_or_consistent(versions: list[str], ciphers: list[str]) -> None:
    try:
        p = resolve_policy("aliyun-slb", {"versions": versions, "ciphers": ciphers})
    except LbsimError as e:
        assert e.field and e.field.startswith("tls_policy") and e.code
        return
    assert 1 <= len(p.versions) <= 4 and len(p.ciphers) + len(p.tls13_ciphersuites) <= 32
    assert set(p.ciphers) | set(p.tls13_ciphersuites) <= set(tables.ALIYUN_CUSTOM_SUITES)
    for v in p.versions:
        assert p.suites_for(v), v
    for s in (*p.ciphers, *p.tls13_ciphersuites):
        assert set(suite_info(s).versions) & set(p.versions)
    for kt in ("RSA", "ECDSA"):
        for v, suites in p.negotiable(kt).items():
            assert v in p.versions and set(suites) <= set(p.suites_for(v))


# --- custom policies: tencent (ssl_protocols / ssl_ciphers) -------------------------------------------


def test_tencent_custom_policy_nginx_style() -> None:
    p = resolve_policy(
        "tencent-clb",
        {"ssl_protocols": "TLSv1.2 TLSv1.3", "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"},
    )
    assert p.versions == ("TLSv1.2", "TLSv1.3") and p.ciphers == ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384")
    assert p.tls13_ciphersuites == ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
    assert p.cipher_string == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    # leaving fields out: the vendor's documented defaults
    d = resolve_policy("tencent-clb", {})
    assert d.versions == ("TLSv1", "TLSv1.1", "TLSv1.2") and d.ciphers == expand(SEED_STRING) and not d.tls13_ciphersuites
    e = resolve_policy("tencent-clb", {"versions": ["TLSv1.3"], "tls13_ciphersuites": "TLS_AES_128_CCM_SHA256"})
    assert e.tls13_ciphersuites == ("TLS_AES_128_CCM_SHA256",)


def test_tencent_cipher_strings_are_expanded_without_anonymous_or_null_suites() -> None:
    high = expand("HIGH")
    assert any(n.startswith(("ADH-", "AECDH-")) for n in high)
    p = resolve_policy("tencent-clb", {"versions": ["TLSv1.2"], "ciphers": "HIGH"})
    assert p.ciphers == tuple(n for n in high if not n.startswith(("ADH-", "AECDH-")))
    n = resolve_policy("tencent-clb", {"versions": ["TLSv1.2"], "ciphers": "ALL:COMPLEMENTOFALL"})
    assert not any(suite_info(c).null_encryption or suite_info(c).anonymous for c in n.ciphers)


def test_tencent_cipher_string_typos_are_refused() -> None:
    err = raises("UnsupportedCipher", {"ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA257:AES128-SHA"}, profile="tencent-clb")
    assert "'ECDHE-RSA-AES128-GCM-SHA257' matches no cipher suite" in err.message and err.field == "tls_policy.ssl_ciphers"
    raises("UnsupportedCipher", {"ssl_ciphers": ["ADH-AES128-SHA"]}, profile="tencent-clb")
    raises("UnsupportedCipher", {"ssl_ciphers": ["NULL-SHA"]}, profile="tencent-clb")
    raises("UnsupportedCipher", {"ssl_ciphers": ["NOT-A-SUITE"]}, profile="tencent-clb")
    raises("InvalidPolicy", {"ssl_ciphers": "!aNULL"}, profile="tencent-clb")  # matches nothing


def test_tencent_legacy_suites_are_kept_but_unavailable() -> None:
    p = resolve_policy("tencent-clb", {"ssl_protocols": "TLSv1 TLSv1.2", "ssl_ciphers": "DES-CBC3-SHA:AES128-SHA"})
    assert p.ciphers == ("AES128-SHA", "DES-CBC3-SHA") and p.unavailable == ("DES-CBC3-SHA",)
    q = resolve_policy("tencent-clb", {"ssl_protocols": ["TLSv1.2"], "ssl_ciphers": ["ECDHE-RSA-AES128-SHA", "DES-CBC3-SHA"]})
    assert q.unavailable == ("DES-CBC3-SHA",) and q.negotiable("RSA") == {"TLSv1.2": ["ECDHE-RSA-AES128-SHA"]}


# --- what OpenSSL knows ------------------------------------------------------------------------------


def _openssl_catalogue() -> dict[str, str]:
    """name -> minimum version, straight from OpenSSL's own tables (test-only use of the binding)."""
    lib, ffi = SSL._lib, SSL._ffi  # type: ignore[attr-defined]
    ctx = SSL.Context(SSL.TLS_METHOD)
    conn = SSL.Connection(ctx, None)
    out = {}
    for code in range(0x10000):
        c = lib.SSL_CIPHER_find(conn._ssl, bytes([code >> 8, code & 0xFF]))
        if c != ffi.NULL:
            out[ffi.string(lib.SSL_CIPHER_get_name(c)).decode()] = ffi.string(lib.SSL_CIPHER_get_version(c)).decode()
    return out


def test_suite_versions_agree_with_openssl() -> None:
    catalogue = _openssl_catalogue()
    first = {"SSLv3": "TLSv1", "TLSv1.0": "TLSv1", "TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}
    for name in (*openssl_suites(), *TLS13_SUITES):
        assert suite_info(name).versions[0] == first[catalogue[name]], name
    assert "DES-CBC3-SHA" not in catalogue  # not even a name in this build
    with pytest.raises(KeyError):
        suite_info("ECDHE-RSA-AES128-GCM-SHA257")


def _pair(key_type: trustme.KeyType):
    ca = trustme.CA(key_type=key_type)
    leaf = ca.issue_cert("localhost", key_type=key_type)
    chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    return chain, key


def _memory_handshake(server: SSL.Context, client: SSL.Context) -> SSL.Connection | None:
    s, c = SSL.Connection(server, None), SSL.Connection(client, None)
    s.set_accept_state()
    c.set_connect_state()
    try:
        handshake_in_memory(c, s)
    except SSL.Error:
        return None
    return c if c.get_cipher_name() else None


@pytest.mark.parametrize("key_type", [trustme.KeyType.RSA, trustme.KeyType.ECDSA], ids=["RSA", "ECDSA"])
def test_usable_by_server_agrees_with_real_handshakes(key_type: trustme.KeyType) -> None:
    """Every non-anonymous suite OpenSSL has, offered alone to a server listing all of them."""
    chain, key = _pair(key_type)
    kt = "RSA" if key_type is trustme.KeyType.RSA else "ECDSA"
    everything = tuple(n for n in openssl_suites() if not suite_info(n).anonymous)
    policy = Policy("everything", ("TLSv1", "TLSv1.1", "TLSv1.2"), everything, ())
    server = build_server_context(policy, chain, key)
    for version, constant in (("TLSv1.2", SSL.TLS1_2_VERSION), ("TLSv1.1", SSL.TLS1_1_VERSION), ("TLSv1", SSL.TLS1_VERSION)):
        for name in everything:
            if version not in suite_info(name).versions:
                continue
            client = SSL.Context(SSL.TLS_METHOD)
            client.set_min_proto_version(constant)
            client.set_max_proto_version(constant)
            client.set_cipher_list(f"{name}:@SECLEVEL=0".encode())
            done = _memory_handshake(server, client)
            assert (done is not None) == suite_info(name).usable_by_server(kt), (version, name)


def test_groups_pinned_through_openssl_conf_and_set_per_listener() -> None:
    """OPENSSL_CONF, set before OpenSSL starts, pins the process default (lbsim's own clients); a listener's
    context sets its policy's groups itself, whatever the configuration (see groups.py)."""
    script = textwrap.dedent(
        """
        from simulator.policies.groups import pin_groups
        import sys
        if sys.argv[1] == "pin":
            assert pin_groups()
        import trustme
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from OpenSSL import SSL
        from simulator.policies import POLICIES
        from simulator.policies.context import build_server_context
        ca = trustme.CA(key_type=trustme.KeyType.RSA)
        leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
        chain = x509.load_pem_x509_certificates(leaf.cert_chain_pems[0].bytes())
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
        server = build_server_context(POLICIES[sys.argv[2]], chain, key)
        s, c = SSL.Connection(server, None), SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        s.set_accept_state(); c.set_connect_state()
        for _ in range(6):
            for a, b in ((c, s), (s, c)):
                try: a.do_handshake()
                except SSL.WantReadError: pass
                try: b.bio_write(a.bio_read(1 << 16))
                except SSL.WantReadError: pass
        print(c.get_group_name())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    run = lambda arg, policy="tls_cipher_policy_1_2_strict_with_1_3", **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", script, arg, policy], env={**env, **extra}, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout.strip()
    assert run("pin") == "x25519"  # importing simulator pins the groups
    # A configuration of the user's own wins for the client (pin_groups only sets a default): here an empty
    # one, so the client offers OpenSSL 3.5's own preference, X25519MLKEM768, first ...
    assert run("default", "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", OPENSSL_CONF=os.devnull) == "X25519MLKEM768"
    # ... which a listener whose policy lists classic groups only never takes.
    assert run("default", OPENSSL_CONF=os.devnull) == "x25519"


# --- tls_verify_status from texts alone (no connection) ----------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (None, "Success"),
        (SSL.Error([("SSL routines", "", "no shared cipher")]), "Failed:NoSharedCipher"),
        (SSL.Error([("SSL routines", "", "unsupported protocol")]), "Failed:ProtocolVersion"),
        (SSL.Error([("SSL routines", "", "wrong version number")]), "Failed:ProtocolVersion"),
        (SSL.Error([("SSL routines", "", "peer did not return a certificate")]), "Failed:NoClientCertificate"),
        (SSL.Error([("SSL routines", "", "certificate verify failed")]), "Failed:ClientCertUntrusted"),
        (SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")]), "Failed:ServerCertRejected"),
        (SSL.Error([("SSL routines", "", "http request")]), "Failed:NotTLS"),
        (SSL.SysCallError(-1, "Unexpected EOF"), "Failed:ConnectionClosed"),
        (TimeoutError("timed out"), "Failed:Timeout"),
        # mitmproxy's rewordings, as found in data.conn.error
        ("Client and mitmproxy cannot agree on a TLS version to use. You may need to adjust ...", "Failed:ProtocolVersion"),
        (
            "The client may not trust the proxy's certificate for 127.0.0.1:80 "
            "(OpenSSL Error([('SSL routines', '', 'no shared cipher')]))",
            "Failed:NoSharedCipher",
        ),
        ("something else entirely", "Failed:HandshakeError"),
    ],
)
def test_tls_verify_status_from_errors(exc, status: str) -> None:
    assert tls_verify_status(None, exc) == status
