"""The vendors the lab simulates: one module of data per vendor, and a tiny registry.

    from simulator import vendors
    vendors.get("tencent-clb").capabilities.sni      # True
    vendors.names()                                  # ("aliyun-slb", "tencent-clb", "aws-alb")
    vendors.register(my_profile)                     # a vendor defined elsewhere (e.g. in a test)

This is the bottom layer: it imports nothing of lbsim but `simulator.errors`. Everything else asks a
profile what the vendor does and never compares a profile's name. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from simulator.errors import LbsimError
from simulator.vendors import aliyun_slb, aws_alb, tencent_clb
from simulator.vendors.profile import (
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

__all__ = [
    "BillingModel", "Capabilities", "CertProfile", "ConnectionLogFormat", "HeaderDefaults", "LcuDimensions",
    "ListenerLimits", "MutualTlsModes", "PolicyRow", "TlsTable", "VendorProfile", "DEFAULT", "billing_models", "get", "names", "register", "strictest",
    "unregister", "with_capability",
]  # fmt: skip

DEFAULT = aliyun_slb.NAME  # the profile a lab file that names none gets

_PROFILES: dict[str, VendorProfile] = {
    p.name: p for p in (aliyun_slb.PROFILE, tencent_clb.PROFILE, aws_alb.PROFILE)
}
# Billing models that belong to no listener profile: references to compare against (none today).
_REFERENCE_BILLING: tuple[BillingModel, ...] = ()


def get(name: str) -> VendorProfile:
    """The registered profile called `name`, or `UnknownProfile` naming the allowed ones."""
    try:
        return _PROFILES[name]
    except (KeyError, TypeError):
        raise LbsimError("UnknownProfile", f"unknown profile {name!r}; expected one of {', '.join(_PROFILES)}",
                         field="profile", hint="one of: " + ", ".join(_PROFILES)) from None


def names() -> tuple[str, ...]:
    """Every registered profile name, built-in ones first."""
    return tuple(_PROFILES)


def register(profile: VendorProfile) -> VendorProfile:
    """Add a vendor. Its name must be new; `unregister` removes it again (tests do, in a fixture)."""
    if not isinstance(profile, VendorProfile):
        raise TypeError(f"expected a VendorProfile, got {type(profile).__name__}")
    if profile.name in _PROFILES:
        raise LbsimError("ProfileExists", f"a profile called {profile.name!r} is already registered",
                         field="profile", hint="pick another name, or unregister the old one first")
    _PROFILES[profile.name] = profile
    _changed()
    return profile


def unregister(name: str) -> None:
    """Remove a registered profile (a built-in one too: the caller is expected to put it back)."""
    _PROFILES.pop(name, None)
    _changed()


_generation = 0  # how many times the registered profiles changed: what is derived from them is cached by it


def _changed() -> None:
    global _generation
    _generation += 1


def generation() -> int:
    """A number that changes whenever a profile is registered or unregistered (a cache key for what is derived
    from every registered profile)."""
    return _generation


def with_capability(flag: str) -> tuple[str, ...]:
    """Names of the profiles whose `capabilities.<flag>` is on (for error messages that say who can)."""
    return tuple(name for name, p in _PROFILES.items() if getattr(p.capabilities, flag))


def strictest(candidates: Iterable[str] = ()) -> str:
    """The candidate profile whose certificate rules are strictest (`cert_strictness`); with no candidates,
    the strictest registered one. Ties go to the one registered first."""
    pool = [n for n in _PROFILES if n in set(candidates)] or list(_PROFILES)
    return max(pool, key=lambda n: _PROFILES[n].cert_strictness)


def billing_models() -> dict[str, BillingModel]:
    """Every billing model by name: each profile's own, then the reference ones."""
    out: dict[str, BillingModel] = {}
    for model in (*(p.billing for p in _PROFILES.values()), *_REFERENCE_BILLING):
        out.setdefault(model.name, model)
    return out
