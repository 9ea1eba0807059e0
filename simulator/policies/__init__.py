"""TLS security policies as data, and the one-per-listener server `SSL.Context` built from them.

    from simulator.policies import Policy, resolve_policy, PROFILES, POLICIES
    from simulator.policies.context import build_server_context, tls_verify_status

Exports load lazily (PEP 562) so that ``simulator.policies.groups`` can be imported, and can pin the ECDHE
groups through ``OPENSSL_CONF``, before anything initialises OpenSSL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KEY_TYPES": "simulator.policies.resolve",
    "POLICIES": "simulator.policies.resolve",
    "PROFILES": "simulator.policies.resolve",
    "Policy": "simulator.policies.resolve",
    "ProfileTLS": "simulator.policies.resolve",
    "resolve_policy": "simulator.policies.resolve",
    "policies_of": "simulator.policies.resolve",
    "tls_of": "simulator.policies.resolve",
    "SuiteInfo": "simulator.policies.suites",
    "TLS13_SUITES": "simulator.policies.suites",
    "VERSIONS": "simulator.policies.suites",
    "expand": "simulator.policies.suites",
    "suite_info": "simulator.policies.suites",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from simulator.policies.resolve import (
        KEY_TYPES, POLICIES, PROFILES, Policy, ProfileTLS, policies_of, resolve_policy, tls_of,
    )
    from simulator.policies.suites import TLS13_SUITES, VERSIONS, SuiteInfo, expand, suite_info


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
