"""A lab with the vendors' own APIs, for tests that drive it with the vendors' SDKs (docs/vendor-apis.md).

    from vendor_lab import vendor_lab  # noqa: F401  (the fixture, module-scoped)

    def test_x(vendor_lab):
        ep = vendor_lab.endpoints["aliyun-slb"]   # what <out>/endpoints.json holds for that vendor
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator.certs import LabPKI
from simulator.harness.running import RunningLab, start_lab


@dataclass
class VendorLab:
    running: RunningLab
    certs: LabPKI  # mints certificates to upload through the vendor APIs

    @property
    def lab(self):
        return self.running.lab

    @property
    def endpoints(self) -> dict[str, Any]:
        """Read back from <out>/endpoints.json, as a user's script would."""
        return json.loads((self.running.out_dir / "endpoints.json").read_text())

    @property
    def ca_file(self) -> str:
        return self.endpoints["ca"]

    @property
    def out_dir(self) -> Path:
        return self.running.out_dir


@pytest.fixture(scope="module")
def vendor_lab(tmp_path_factory):
    """The built-in default lab (timers 100x faster) with the vendor APIs attached."""
    running = start_lab(out_dir=tmp_path_factory.mktemp("vendor-lab"), time_scale=0.01, vendor_apis=True)
    try:
        yield VendorLab(running, LabPKI(name="vendor api test CA"))
    finally:
        running.stop()
