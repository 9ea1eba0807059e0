"""Alibaba Cloud SLB's API (2014-05-15, RPC style) over a running lab: one request in, one JSON answer out."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlsplit

from simulator.errors import LbsimError
from simulator.faces.aliyun.actions import Actions, Params
from simulator.faces.aliyun.errors import ERRORS, AliyunError, from_lbsim
from simulator.faces.aliyun.signature import MAX_SKEW, verify
from simulator.faces.http import Request
from simulator.faces.vendorapi import AccessKeys, ReplayGuard, Reply, VendorFace, request_id

logger = logging.getLogger(__name__)
VERSION = "2014-05-15"
HEAD_LIMIT = 64 * 1024  # the SDK puts certificates and keys in the query string


class AliyunFace(VendorFace):
    """`POST|GET /?Action=...` signed with ACS3-HMAC-SHA256 or HMAC-SHA1; answers `{..., "RequestId"}` or the
    vendor's error `{RequestId, HostId, Code, Message, Recommend}` with its HTTP status."""

    profile = "aliyun-slb"
    key_fields = ("access_key_id", "access_key_secret")
    key_prefix = "LTAI"
    key_id_length = 20
    hostnames = ("slb.aliyuncs.com", "slb.cn-hangzhou.aliyuncs.com")
    default_region = "cn-hangzhou"
    head_limit = HEAD_LIMIT

    def __init__(self, lab, keys: AccessKeys, region: str):
        super().__init__(lab, keys, region)
        self.actions = Actions(lab, region)
        self.nonces = ReplayGuard(2 * MAX_SKEW)

    async def handle(self, request: Request) -> Reply:
        rid = request_id().upper()
        host = request.headers.get("host", "slb.aliyuncs.com")
        try:
            return Reply(200, {**await self._call(request), "RequestId": rid})
        except AliyunError as e:
            if e.detail:
                logger.info("aliyun-slb API refused: %s: %s", e.code, e.detail)
            return self._error(rid, host, e.code, e.message, e.status, e.detail, e.hint)
        except LbsimError as e:  # a refusal of the model no action translated: still the vendor's shape
            err = from_lbsim(e)
            return self._error(rid, host, err.code, err.message, err.status, err.detail, err.hint)

    async def _call(self, request: Request) -> dict:
        if request.method not in ("GET", "POST"):
            raise AliyunError("InvalidAction.NotFound", detail=f"method {request.method}")
        url = urlsplit(request.target)
        params = parse_qsl(url.query, keep_blank_values=True)
        content_type = request.headers.get("content-type", "")
        if request.body and "application/x-www-form-urlencoded" in content_type:
            try:
                params += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise AliyunError("InvalidParameter", detail="the form body is not UTF-8") from None
        signed = verify(request, url.path, params, self.keys, self.nonces, time.time())
        values = dict(params)
        action = signed.action or values.get("Action")
        version = signed.version or values.get("Version")
        if not action:
            raise AliyunError("MissingParameter", detail="Action is required",
                              message='The input parameter "Action" that is mandatory for processing this request is not supplied.')
        if version != VERSION:
            raise AliyunError("InvalidVersion", detail=f"Version {version!r}: the lab serves SLB {VERSION}")
        handler = self.actions.table.get(action)
        if handler is None:
            raise AliyunError("InvalidAction.NotFound", detail=f"the lab does not serve {action[:64]!r}; it serves "
                              + ", ".join(sorted(self.actions.table)))
        return await handler(Params(values))

    def _error(self, rid: str, host: str, code: str, message: str, status: int, detail: str | None = None,
               hint: str | None = None) -> Reply:
        recommend = "; ".join(x for x in (f"lbsim: {detail}" if detail else None, hint) if x)
        return Reply(status, {"RequestId": rid, "HostId": host, "Code": code, "Message": message,
                              "Recommend": recommend or "lbsim: see docs/vendor-apis.md"})

    def error_reply(self, code: str, message: str, status: int) -> Reply:
        vendor = {"InputTooLarge": "RequestTooLarge", "HeadersTooLarge": "RequestTooLarge"}.get(code, code)
        if vendor not in ERRORS:
            vendor = "InternalError" if status >= 500 else "BadRequest"
        return self._error(request_id().upper(), "slb.aliyuncs.com", vendor, message, status, detail=f"{code}: {message}")
