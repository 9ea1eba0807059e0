"""`TencentFace`: the Tencent Cloud API face as the lab's vendor server (simulator.faces.vendorapi) runs it."""

from __future__ import annotations

from typing import Any

from simulator.faces.http import Request
from simulator.faces.tencent.api import CONTENT_TYPE, TencentApi
from simulator.faces.tencent.errors import INTERNAL, TOO_LARGE
from simulator.faces.vendorapi import ReplayGuard, Reply, VendorFace, request_id

PROFILE = "tencent-clb"
# The vendor server's transport refusals (lbsim codes) in Tencent's terms.
TRANSPORT = {"InputTooLarge": TOO_LARGE, "HeadersTooLarge": TOO_LARGE, "BadRequest": "InvalidParameter",
             "LengthRequired": "InvalidParameter", "RequestTimeout": "InvalidParameter", "InternalError": INTERNAL}
HEADERS = {"Content-Type": CONTENT_TYPE}  # exactly: the SDK reads an error body only for this Content-Type


class _Keys:
    """The lab's access keys as the signature check reads them (`keys.get(secret_id)`)."""

    def __init__(self, keys: Any):
        self.keys = keys

    def get(self, secret_id: str, default: str | None = None) -> str | None:
        secret = self.keys.secret(PROFILE, secret_id)
        return default if secret is None else secret


class TencentFace(VendorFace):
    profile = PROFILE
    key_fields = ("secret_id", "secret_key")
    key_prefix = "AKID"
    key_id_length = 32
    hostnames = ("clb.tencentcloudapi.com", "ssl.tencentcloudapi.com")
    default_region = "ap-guangzhou"

    def __init__(self, lab: Any, keys: Any, region: str):
        super().__init__(lab, keys, region)
        # The older HmacSHA1/256 signature carries a Nonce: a replay within the timestamp window is refused.
        guard = ReplayGuard(600)
        self.api = TencentApi(lab, _Keys(keys), region or self.default_region, replay=guard.seen)

    async def handle(self, request: Request) -> Reply:
        host = request.headers.get("host", "")
        body = await self.api.answer(request.method, request.target, request.headers, request.body, host)
        return Reply(200, body, dict(HEADERS))  # Tencent answers errors with HTTP 200 too

    def error_reply(self, code: str, message: str, status: int) -> Reply:
        error = {"Code": TRANSPORT.get(code, code), "Message": f"{message} [lbsim {code}]"}
        return Reply(200, {"Response": {"Error": error, "RequestId": request_id()}}, dict(HEADERS))
