"""Policies as values: the vendor tables turned into `Policy` objects, and config specs resolved into them.

A listener's ``tls_policy`` is a vendor policy name, nothing (the profile's default), or a custom
``{versions, ciphers, tls13_ciphersuites}`` checked against the profile's limits. Every mistake is an
:class:`~simulator.errors.LbsimError` naming the field at fault and the allowed values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from simulator import vendors
from simulator.errors import LbsimError
from simulator.policies.groups import GROUPS
from simulator.vendors.profile import VendorProfile
from simulator.policies.suites import (
    LEGACY_SUITES,
    TLS13_SUITES,
    VERSIONS,
    canonical_version,
    expand,
    known,
    suite_info,
)

KEY_TYPES = ("RSA", "ECDSA")


def _key_type(key_type: str) -> str:
    kt = key_type.upper()
    kt = {"EC": "ECDSA", "ECC": "ECDSA"}.get(kt, kt)
    if kt not in KEY_TYPES:
        raise ValueError(f"key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    return kt


@dataclass(frozen=True)
class Policy:
    """A TLS security policy: allowed versions, suites and key-exchange groups, in server preference order.

    `ciphers` are OpenSSL names for TLS <= 1.2, `tls13_ciphersuites` the TLS 1.3 ones, `groups` the
    key-exchange groups (OpenSSL names; every policy without its own list gets the process-wide default,
    X25519, P-256, P-384). A policy lists what the vendor lists; :meth:`negotiable` says what really
    negotiates here with a given certificate type.
    """

    name: str
    versions: tuple[str, ...]
    ciphers: tuple[str, ...]
    tls13_ciphersuites: tuple[str, ...] = ()
    profile: str | None = None
    custom: bool = False
    cipher_string: str | None = None  # the OpenSSL string `ciphers` was expanded from, if any
    groups: tuple[str, ...] = GROUPS  # key-exchange groups, the server's preference first

    def suites_for(self, version: str) -> tuple[str, ...]:
        """The policy's suites defined for `version`, whatever the certificate."""
        if version not in self.versions:
            return ()
        if version == "TLSv1.3":
            return self.tls13_ciphersuites
        return tuple(c for c in self.ciphers if version in suite_info(c).versions)

    def negotiable(self, key_type: str = "RSA") -> dict[str, list[str]]:
        """Version -> suites (server preference order) that really negotiate with a `key_type` certificate.

        ECDHE-ECDSA suites need an ECDSA certificate, ECDHE-RSA and plain RSA key exchange an RSA one;
        DHE/PSK/SRP suites never negotiate (no DH parameters, no PSK or SRP), nor suites this OpenSSL
        build lacks (:attr:`unavailable`). Versions with nothing left are omitted. ``"ECDSA+RSA"`` is a
        listener holding both certificates: a suite either can serve negotiates.
        """
        kts = [_key_type(kt) for kt in key_type.split("+")]
        out: dict[str, list[str]] = {}
        for version in self.versions:
            suites = [s for s in self.suites_for(version) if any(suite_info(s).usable_by_server(kt) for kt in kts)]
            if suites:
                out[version] = suites
        return out

    @property
    def unavailable(self) -> tuple[str, ...]:
        """Suites the policy lists that this OpenSSL build cannot negotiate at all (e.g. DES-CBC3-SHA)."""
        return tuple(s for s in (*self.ciphers, *self.tls13_ciphersuites) if not suite_info(s).available)

    def openssl_cipher_list(self) -> str:
        """The TLS <= 1.2 cipher string for the server context, at security level 0.

        Level 0 because TLS 1.0/1.1 (MD5-SHA1 signatures), SHA-1 and TLS_AES_128_CCM_8_SHA256 are refused
        at any higher level by OpenSSL 3; the explicit suite list, not the level, is what restricts.
        """
        names = [c for c in self.ciphers if suite_info(c).available]
        return ":".join(names or ["DEFAULT"]) + ":@SECLEVEL=0"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("versions", "ciphers", "tls13_ciphersuites", "groups"):
            out[k] = list(out[k])
        out["unavailable"] = list(self.unavailable)
        return out


@dataclass(frozen=True)
class ProfileTLS:
    """What a vendor profile allows: its named policies, its default, and the limits on custom ones.

    A view of one `VendorProfile` (its `tls` table, name and SNI capability) in the shape the resolver
    uses; `tls_of` builds it, and `PROFILES` maps every registered profile to one.
    """

    name: str
    default_policy: str
    policies: tuple[str, ...]
    sni: bool  # per-domain certificates, or one certificate whatever the SNI
    custom_suites: tuple[str, ...] | None  # None: any suite OpenSSL knows
    custom_cipher_strings: bool  # an OpenSSL cipher string, expanded by OpenSSL (tencent ssl_ciphers)
    max_custom_suites: int | None
    max_custom_versions: int
    custom_default_versions: tuple[str, ...] | None  # None: the field is required
    custom_default_ciphers: str | None
    custom_default_tls13: tuple[str, ...]
    custom: bool = True  # whether custom policies exist at all (an ALB takes named policies only)


# One entry per registered profile object: (its ProfileTLS, its named policies). Policies are built on first
# use, since a cipher string is expanded by OpenSSL.
_BUILT: dict[str, tuple[VendorProfile, ProfileTLS, dict[str, Policy]]] = {}


def _built(vp: VendorProfile) -> tuple[ProfileTLS, dict[str, Policy]]:
    hit = _BUILT.get(vp.name)
    if hit is not None and hit[0] is vp:
        return hit[1], hit[2]
    t = vp.tls
    tls = ProfileTLS(
        name=vp.name,
        default_policy=t.default_policy,
        policies=t.names,
        sni=vp.capabilities.sni,
        custom_suites=t.custom_suites,
        custom_cipher_strings=t.custom_cipher_strings,
        max_custom_suites=t.max_custom_suites,
        max_custom_versions=t.max_custom_versions,
        custom_default_versions=t.custom_default_versions,
        custom_default_ciphers=t.custom_default_ciphers,
        custom_default_tls13=t.custom_default_tls13,
        custom=t.custom_policies,
    )
    named = {
        row.name: Policy(
            row.name,
            row.versions,
            expand(row.cipher_string) if row.cipher_string is not None else row.ciphers,
            row.tls13,
            profile=vp.name,
            cipher_string=row.cipher_string,
            groups=row.groups,
        )
        for row in t.policies
    }
    _BUILT[vp.name] = (vp, tls, named)
    return tls, named


def tls_of(profile: str | VendorProfile) -> ProfileTLS:
    """The TLS view of a profile (by name or object); `UnknownProfile` for a name nobody registered."""
    return _built(profile if isinstance(profile, VendorProfile) else _vendor(profile))[0]


def policies_of(profile: str | VendorProfile) -> dict[str, Policy]:
    """The named policies of a profile, built."""
    return _built(profile if isinstance(profile, VendorProfile) else _vendor(profile))[1]


class _Profiles(Mapping[str, ProfileTLS]):
    """`PROFILES`: name -> ProfileTLS of every registered profile, read live from `simulator.vendors`."""

    def __getitem__(self, name: str) -> ProfileTLS:
        if name not in vendors.names():
            raise KeyError(name)
        return tls_of(name)

    def __iter__(self) -> Iterator[str]:
        return iter(vendors.names())

    def __len__(self) -> int:
        return len(vendors.names())


class _Policies(Mapping[str, Policy]):
    """`POLICIES`: every registered profile's named policies by name (the first profile listing a name wins)."""

    def _all(self) -> dict[str, Policy]:
        out: dict[str, Policy] = {}
        for name in vendors.names():
            for key, policy in policies_of(name).items():
                out.setdefault(key, policy)
        return out

    def __getitem__(self, name: str) -> Policy:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


PROFILES: Mapping[str, ProfileTLS] = _Profiles()
POLICIES: Mapping[str, Policy] = _Policies()

# Spellings accepted for the custom policy's fields: ours, Alibaba's API names, Tencent's nginx names.
_CUSTOM_KEYS = {
    "name": "name",
    "versions": "versions",
    "tls_versions": "versions",
    "TLSVersions": "versions",
    "ssl_protocols": "versions",
    "ciphers": "ciphers",
    "Ciphers": "ciphers",
    "ssl_ciphers": "ciphers",
    "tls13_ciphersuites": "tls13",
}


def _err(code: str, message: str, field: str, hint: str | None = None) -> LbsimError:
    return LbsimError(code, message, field=field, hint=hint)


def _vendor(profile: str) -> VendorProfile:
    try:
        return vendors.get(profile)
    except LbsimError:
        raise _err(
            "UnknownProfile",
            f"unknown profile {profile!r}; expected one of {', '.join(vendors.names())}",
            "profile",
        ) from None


def _profile(profile: str) -> ProfileTLS:
    return tls_of(profile)


def _expected(p: ProfileTLS) -> str:
    if not p.custom:
        return ", ".join(p.policies)
    return f"{', '.join(p.policies)}, or a custom policy {{versions, ciphers, tls13_ciphersuites}}"


def resolve_policy(profile: str, spec: str | Mapping[str, Any] | Policy | None, field: str = "tls_policy") -> Policy:
    """The `Policy` a listener of `profile` gets for `spec`.

    `spec` is None (the profile's default), a policy name (``"default"`` names the default), a custom
    policy mapping, or an already resolved `Policy`. `field` is the config path used in errors.
    """
    p = _profile(profile)
    named = policies_of(profile)
    if spec is None:
        return named[p.default_policy]
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        name = spec.strip()
        if name == "default":
            name = p.default_policy
        if name in p.policies:
            return named[name]
        owner = POLICIES[name].profile if name in POLICIES else None
        where = f" for {p.name} (it is defined for {owner})" if owner else ""
        raise _err("UnknownPolicy", f"unknown policy {spec!r}{where}; expected one of {_expected(p)}", field)
    if isinstance(spec, Mapping):
        if not p.custom:
            raise _err("CustomPolicyNotSupported", f"{p.name} listeners take named security policies only; "
                       f"expected one of {_expected(p)}", field)
        return _custom(p, spec, field)
    raise _err(
        "InvalidPolicy",
        f"a TLS policy is a name or a mapping, not {type(spec).__name__}; expected one of {_expected(p)}",
        field,
    )


def _split(value: Any, field: str, what: str) -> list[str]:
    # Lists as lists, or as one string: "TLSv1.2 TLSv1.3", "A:B:C", "A,B".
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,:]+", value) if v]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _err("InvalidPolicy", f"{what} must be a list of names or a string", field)


def _versions(p: ProfileTLS, raw: Any, field: str) -> tuple[str, ...]:
    if raw is None:
        if p.custom_default_versions is None:
            raise _err("InvalidPolicy", f"a custom {p.name} policy needs versions ({', '.join(VERSIONS)})", field)
        return p.custom_default_versions
    items = _split(raw, field, "versions")
    if len(items) > p.max_custom_versions:
        raise _err("PolicyLimit", f"at most {p.max_custom_versions} TLS versions in a {p.name} custom policy, got {len(items)}", field)
    if not items:
        raise _err("InvalidPolicy", f"at least one TLS version is needed; expected some of {', '.join(VERSIONS)}", field)
    out: list[str] = []
    for i, item in enumerate(items):
        v = canonical_version(item)
        if v is None:
            raise _err(
                "unsupported_version",
                f"unknown TLS version {item!r}; expected one of {', '.join(VERSIONS)}",
                f"{field}[{i}]",
            )
        if v in out:
            raise _err("InvalidPolicy", f"TLS version {item!r} is listed twice", f"{field}[{i}]")
        out.append(v)
    return tuple(v for v in VERSIONS if v in out)  # oldest first, like the vendor tables


def _check_suite(p: ProfileTLS, name: str, field: str) -> None:
    if p.custom_suites is not None and name not in p.custom_suites:
        raise _err(
            "UnsupportedCipher",
            f"cipher suite {name!r} is not available in {p.name} custom policies; expected one of "
            f"{', '.join(p.custom_suites)}",
            field,
        )
    if not known(name):
        raise _err("UnsupportedCipher", f"unknown cipher suite {name!r} (OpenSSL names, e.g. ECDHE-RSA-AES128-GCM-SHA256)", field)
    info = suite_info(name)
    if info.anonymous or info.null_encryption:
        raise _err("UnsupportedCipher", f"cipher suite {name!r} is anonymous or unencrypted; listeners never offer it", field)


def _cipher_string(p: ProfileTLS, text: str, field: str) -> tuple[str, ...]:
    # Every positive element must match something, as a typo would otherwise vanish silently.
    legacy: list[str] = []
    for token in re.split(r"[\s,:]+", text.strip()):
        if not token or token[0] in "!-+@":
            continue
        if token in LEGACY_SUITES:
            legacy.append(token)  # a real suite this OpenSSL build lacks: kept, reported as unavailable
            continue
        try:
            expand(token)
        except ValueError:
            raise _err("UnsupportedCipher", f"{token!r} matches no cipher suite in {text!r}", field) from None
    try:
        names = expand(text)
    except ValueError:
        names = ()
    # Anonymous and NULL suites would really negotiate; no vendor offers them, so they never get in.
    names = tuple(n for n in names if not (suite_info(n).anonymous or suite_info(n).null_encryption))
    return names + tuple(n for n in legacy if n not in names)


def _custom(p: ProfileTLS, spec: Mapping[str, Any], field: str) -> Policy:
    fields: dict[str, tuple[str, Any]] = {}
    for key, value in spec.items():
        canon = _CUSTOM_KEYS.get(key)
        if canon is None:
            raise _err(
                "InvalidPolicy",
                f"unknown custom policy field {key!r}; expected versions, ciphers, tls13_ciphersuites, name",
                f"{field}.{key}",
            )
        if canon in fields:
            raise _err("InvalidPolicy", f"{key!r} repeats {fields[canon][0]!r}", f"{field}.{key}")
        fields[canon] = (key, value)

    def where(canon: str, default: str) -> str:
        return f"{field}.{fields[canon][0] if canon in fields else default}"

    name = fields.get("name", ("name", "custom"))[1]
    if not isinstance(name, str) or not name.strip():
        raise _err("InvalidPolicy", "a custom policy name must be a non-empty string", where("name", "name"))

    versions = _versions(p, fields.get("versions", (None, None))[1], where("versions", "versions"))

    cipher_field = where("ciphers", "ciphers")
    raw_ciphers = fields["ciphers"][1] if "ciphers" in fields else p.custom_default_ciphers
    if raw_ciphers is None:
        raise _err("InvalidPolicy", f"a custom {p.name} policy needs ciphers", cipher_field)
    cipher_string: str | None = None
    tls12: list[str] = []
    tls13: list[str] = []
    if isinstance(raw_ciphers, str) and p.custom_cipher_strings:
        cipher_string = raw_ciphers
        tls12 = list(_cipher_string(p, raw_ciphers, cipher_field))
    else:
        items = _split(raw_ciphers, cipher_field, "ciphers")
        if p.max_custom_suites is not None and len(items) > p.max_custom_suites:
            raise _err(
                "PolicyLimit",
                f"at most {p.max_custom_suites} cipher suites in a {p.name} custom policy, got {len(items)}",
                cipher_field,
            )
        for i, name_ in enumerate(items):
            _check_suite(p, name_, f"{cipher_field}[{i}]")
            bucket = tls13 if name_.startswith("TLS_") else tls12
            if name_ in bucket:
                raise _err("InvalidPolicy", f"cipher suite {name_!r} is listed twice", f"{cipher_field}[{i}]")
            bucket.append(name_)

    tls13_field = where("tls13", "tls13_ciphersuites")
    if "tls13" in fields:
        for i, name_ in enumerate(_split(fields["tls13"][1], tls13_field, "tls13_ciphersuites")):
            if name_ not in TLS13_SUITES:
                raise _err(
                    "UnsupportedCipher",
                    f"unknown TLS 1.3 suite {name_!r}; expected one of {', '.join(TLS13_SUITES)}",
                    f"{tls13_field}[{i}]",
                )
            if name_ not in tls13:
                tls13.append(name_)
    elif not tls13 and "TLSv1.3" in versions:
        tls13 = list(p.custom_default_tls13)

    total = len(tls12) + len(tls13)
    if p.max_custom_suites is not None and total > p.max_custom_suites:
        raise _err("PolicyLimit", f"at most {p.max_custom_suites} cipher suites in a {p.name} custom policy, got {total}", cipher_field)
    if total == 0:
        raise _err("InvalidPolicy", "a custom policy needs at least one cipher suite", cipher_field)

    # The vendor rule: every listed suite must be usable by one of the listed versions ... (an OpenSSL
    # string is a filter, not a list: whatever it expands to that the versions cannot use is inert)
    for suite in (*(() if cipher_string is not None else tls12), *tls13):
        need = suite_info(suite).versions
        if not set(need) & set(versions):
            raise _err(
                "InvalidPolicy",
                f"cipher suite {suite!r} needs {' or '.join(need)}, which the policy does not list",
                tls13_field if suite in tls13 and "tls13" in fields else cipher_field,
                hint=f"add {need[-1]} to versions or remove the suite",
            )
    policy = Policy(
        name.strip(),
        versions,
        tuple(tls12),
        tuple(tls13),
        profile=p.name,
        custom=True,
        cipher_string=cipher_string,
    )
    # ... and ours: every listed version must have a suite, or the version could never negotiate.
    for v in versions:
        if not policy.suites_for(v):
            raise _err(
                "InvalidPolicy",
                f"{v} is listed but no cipher suite of the policy works with it",
                where("versions", "versions"),
                hint="TLS 1.0/1.1 need a CBC-SHA suite (e.g. ECDHE-RSA-AES128-SHA); TLSv1.3 a TLS_ suite",
            )
    return policy
