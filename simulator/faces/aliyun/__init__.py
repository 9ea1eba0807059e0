"""Alibaba Cloud SLB's own API (version 2014-05-15) over a lab: `signature` (ACS3-HMAC-SHA256 and HMAC-SHA1),
`actions` (each a translation into the lab's model), `errors` (the vendor's codes as data). docs/vendor-apis.md."""

from simulator.faces.aliyun.face import AliyunFace

__all__ = ["AliyunFace"]
