"""Scenarios that need an optional extra: skipped, saying which extra brings what they need.

A plain `pip install lbsim` runs the built-in suite without the vendors' SDKs; the scenarios that drive the
vendor APIs through those SDKs then report "skipped: needs lbsim[vendor-sdks]" instead of failing. With the
extra installed (`make setup` installs it) they run.
"""

from __future__ import annotations

from types import ModuleType

import pytest

VENDOR_SDKS = "needs the vendors' SDKs: pip install 'lbsim[vendor-sdks]'"


def vendor_sdk(module: str) -> ModuleType:
    """Import a vendor SDK module for a scenario, or skip the scenario (or, at module level, the file)."""
    return pytest.importorskip(module, reason=VENDOR_SDKS)
