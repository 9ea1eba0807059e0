"""The vendor-specific parts of the console's forms, in one function.

`vendor_form(profile)` is the only place the console learns what differs between vendors: which TLS policy
names a listener may take, whether it takes a custom policy as protocols plus an OpenSSL cipher string, SNI
domains with their own certificates, `optional` client verification, and the certificate name rule. It reads
the vendor profile (`simulator.vendors`) and asks the lab's own model (`parse_listener`) for the rest, so the
console adds no rule of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from simulator import vendors
from simulator.errors import LbsimError
from simulator.model.config import SCHEDULERS, parse_listener
from simulator.policies import POLICIES, PROFILES as TLS_PROFILES, VERSIONS


@dataclass(frozen=True)
class VendorForm:
    profile: str
    policies: tuple[str, ...]  # named policies, the default first
    default_policy: str
    custom_policy: bool  # a custom policy of protocols and an OpenSSL cipher string (tencent ssl_protocols/ssl_ciphers)
    versions: tuple[str, ...]
    default_versions: tuple[str, ...]
    default_ciphers: str
    sni: bool  # SNI domains with their own certificates
    verify_choices: tuple[str, ...]  # ssl_verify_client values of mutual listeners
    schedulers: tuple[str, ...]
    cert_name_rule: str
    cert_key_types: tuple[str, ...]

    def policy_label(self, name: str) -> str:
        policy = POLICIES[name]
        return f"{name} ({', '.join(policy.versions)})"


def _model_accepts(profile: str, extra: dict) -> bool:
    """Whether the lab's model takes these listener fields on this profile (no certificate lookups)."""
    data = {"port": 0, "profile": profile, "server_certificate": "x", "ca_certificate": "y", **extra}
    try:
        parse_listener(data, "listener", profile, {}, set())
    except LbsimError:
        return False
    return True


@lru_cache(maxsize=None)
def vendor_form(profile: str) -> VendorForm:
    vendor = vendors.get(profile)
    tls, certs = TLS_PROFILES[profile], vendor.certs
    policies = (tls.default_policy, *(p for p in tls.policies if p != tls.default_policy))
    return VendorForm(
        profile=profile,
        policies=policies,
        default_policy=tls.default_policy,
        custom_policy=tls.custom_cipher_strings,
        versions=tuple(VERSIONS),
        default_versions=tuple(tls.custom_default_versions or ()),
        default_ciphers=tls.custom_default_ciphers or "",
        sni=vendor.capabilities.sni,
        verify_choices=tuple(v for v in ("on", "optional") if _model_accepts(profile, {"ssl_verify_client": v})),
        schedulers=SCHEDULERS,
        cert_name_rule=certs.name_rule,
        cert_key_types=tuple(sorted(certs.key_types)),
    )


def profiles() -> tuple[str, ...]:
    return tuple(vendors.names())
