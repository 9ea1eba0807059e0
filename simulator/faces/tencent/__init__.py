"""Tencent Cloud's own APIs for a lab: the SSL certificate service (2019-12-05) and CLB (2018-03-17), signed
with TC3-HMAC-SHA256, so `tencentcloud-sdk-python-*` and `tccli` drive a lab unchanged (docs/vendor-apis.md).

`TencentApi` is the whole dialect (signature, parameters, actions, errors); `TencentFace` runs it in the lab's
vendor server (simulator.faces.vendorapi)."""

from simulator.faces.tencent.api import TencentApi
from simulator.faces.tencent.face import TencentFace

__all__ = ["TencentApi", "TencentFace"]
