"""The vendors' TLS policy tables under their old names, for code written before `simulator.vendors`.

The tables themselves live in the vendor modules (`simulator/vendors/aliyun_slb.py`, `tencent_clb.py`);
these names are the same objects, not copies.
"""

from __future__ import annotations

from simulator.vendors import aliyun_slb, tencent_clb

ALIYUN = aliyun_slb.NAME
TENCENT = tencent_clb.NAME

ALIYUN_CLASSIC_SUITES = aliyun_slb.CLASSIC_SUITES
ALIYUN_STRICT_SUITES = aliyun_slb.STRICT_SUITES
ALIYUN_STRICT_WITH_13_SUITES = aliyun_slb.STRICT_WITH_13_SUITES
# name -> (versions, TLS <= 1.2 suites, TLS 1.3 suites)
ALIYUN_POLICIES = {row.name: (row.versions, row.ciphers, row.tls13) for row in aliyun_slb.POLICIES}
ALIYUN_DEFAULT = aliyun_slb.DEFAULT_POLICY
ALIYUN_CUSTOM_SUITES = aliyun_slb.CUSTOM_SUITES
ALIYUN_CUSTOM_MAX_SUITES = aliyun_slb.CUSTOM_MAX_SUITES
ALIYUN_CUSTOM_MAX_VERSIONS = aliyun_slb.CUSTOM_MAX_VERSIONS

TENCENT_DEFAULT_CIPHER_STRING = tencent_clb.DEFAULT_CIPHER_STRING
TENCENT_DEFAULT_VERSIONS = tencent_clb.DEFAULT_VERSIONS
TENCENT_DEFAULT_TLS13 = tencent_clb.DEFAULT_TLS13
TENCENT_DEFAULT = tencent_clb.DEFAULT_POLICY
TENCENT_CUSTOM_DEFAULT_VERSIONS = tencent_clb.CUSTOM_DEFAULT_VERSIONS
