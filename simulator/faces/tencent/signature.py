"""Verify Tencent Cloud API 3.0 signatures exactly as the official SDK computes them.

TC3-HMAC-SHA256 (the SDK's default; `tencentcloud/common/abstract_client.py` `_get_tc3_signature`):

    CanonicalRequest = Method \\n / \\n CanonicalQuery \\n "content-type:<ct>\\nhost:<host>\\n" \\n
                       "content-type;host" \\n hex(SHA256(payload))
    StringToSign     = "TC3-HMAC-SHA256" \\n X-TC-Timestamp \\n <date>/<service>/tc3_request \\n hex(SHA256(CR))
    SigningKey       = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request")
    Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/<service>/tc3_request,
                   SignedHeaders=content-type;host, Signature=hex(HMAC(SigningKey, StringToSign))

POST signs the JSON body (canonical query empty); GET signs the raw query string (payload empty). A request
sent with `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` signs that literal instead of the body.

The older HmacSHA1 / HmacSHA256 method (`ClientProfile(signMethod="HmacSHA256")`) puts every parameter,
`SecretId`, `Timestamp`, `Nonce` and `Signature` in a form body (or query):
`Signature = base64(HMAC(SecretKey, Method + Host + Path + "?" + sorted "k=v" joined by "&"))`.

Both refuse a timestamp more than five minutes away from the lab's clock (`AuthFailure.SignatureExpire`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qsl

from simulator.faces.tencent.errors import (
    AUTH_EXPIRED,
    AUTH_INVALID,
    AUTH_SECRET_ID,
    AUTH_SIGNATURE,
    MISSING,
    TencentError,
    vendor,
)

ALGORITHM = "TC3-HMAC-SHA256"
MAX_SKEW = 300  # seconds: Tencent refuses timestamps more than five minutes off
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z0-9]+)/tc3_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Signed:
    """What a verified request proved: who signed it and for which service (None: the old method has no scope)."""

    secret_id: str
    service: str | None
    method: str  # "TC3-HMAC-SHA256" | "HmacSHA256" | "HmacSHA1"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def check_timestamp(raw: str | None, now: float | None = None) -> int:
    if raw is None or raw == "":
        raise TencentError(MISSING, "the request is missing the timestamp (X-TC-Timestamp or Timestamp)")
    try:
        ts = int(raw)
    except ValueError:
        raise TencentError(AUTH_INVALID, f"the timestamp {raw[:32]!r} is not an integer of seconds") from None
    now = time.time() if now is None else now
    if abs(now - ts) > MAX_SKEW:
        raise vendor(AUTH_EXPIRED, f"(request {ts}, lab clock {int(now)})",
                     hint="sync the client's clock; the SDK signs with the current time")
    return ts


def verify_tc3(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
               keys: Mapping[str, str], now: float | None = None) -> Signed:
    """Check a TC3-HMAC-SHA256 request; headers are lower-cased. Raises TencentError."""
    auth = headers.get("authorization", "")
    m = _AUTH.match(auth.strip())
    if not m:
        raise vendor(AUTH_INVALID, "Authorization in the request header is invalid: expected "
                     "'TC3-HMAC-SHA256 Credential=<SecretId>/<date>/<service>/tc3_request, "
                     "SignedHeaders=content-type;host, Signature=<64 hex>'")
    secret_id, date, service, signed, signature = m["id"], m["date"], m["service"], m["signed"], m["sig"]
    ts = check_timestamp(headers.get("x-tc-timestamp"), now)
    if time.strftime("%Y-%m-%d", time.gmtime(ts)) != date:
        raise vendor(AUTH_SIGNATURE, f"the credential date {date} is not the UTC date of X-TC-Timestamp {ts}")
    secret_key = keys.get(secret_id)
    if secret_key is None:
        raise vendor(AUTH_SECRET_ID, hint="use the secret id `lbsim up` printed (endpoints.json)")
    names = signed.split(";")
    if "content-type" not in names or "host" not in names:
        raise vendor(AUTH_INVALID, "SignedHeaders must include content-type and host")
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in names)
    if method == "GET":
        canonical_query, payload = query, b""
    else:
        canonical_query, payload = "", body
    if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
        payload = b"UNSIGNED-PAYLOAD"
    canonical = "\n".join([method, path or "/", canonical_query, canonical_headers, signed,
                           hashlib.sha256(payload).hexdigest()])
    to_sign = "\n".join([ALGORITHM, str(ts), f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    expected = tc3_signature(secret_key, date, service, to_sign)
    if not hmac.compare_digest(expected, signature):
        raise vendor(AUTH_SIGNATURE, hint="check the secret key; the body must be sent exactly as signed")
    return Signed(secret_id, service, ALGORITHM)


_DIGESTS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}


def verify_legacy(method: str, host: str, path: str, params: Mapping[str, str], keys: Mapping[str, str],
                  now: float | None = None) -> Signed:
    """Check the older HmacSHA1/HmacSHA256 signature over the flat parameters (form body or query)."""
    sign_method = params.get("SignatureMethod") or "HmacSHA1"
    digest = _DIGESTS.get(sign_method)
    if digest is None:
        raise vendor(AUTH_INVALID, f"unknown SignatureMethod {sign_method!r}; expected HmacSHA1 or HmacSHA256")
    for name in ("SecretId", "Signature", "Nonce"):
        if not params.get(name):
            raise TencentError(MISSING, f"the request is missing the parameter {name}")
    check_timestamp(params.get("Timestamp"), now)
    secret_key = keys.get(params["SecretId"])
    if secret_key is None:
        raise vendor(AUTH_SECRET_ID, hint="use the secret id `lbsim up` printed (endpoints.json)")
    # The SDK writes keys with "_" as "." and joins raw (unencoded) values, sorted by key.
    items = {k.replace("_", "."): v for k, v in params.items() if k != "Signature"}
    text = "&".join(f"{k}={items[k]}" for k in sorted(items))
    to_sign = f"{method}{host}{path or '/'}?{text}"
    expected = base64.b64encode(hmac.new(secret_key.encode(), to_sign.encode(), digest).digest()).decode()
    if not hmac.compare_digest(expected, params["Signature"]):
        raise vendor(AUTH_SIGNATURE, hint="check the secret key")
    return Signed(params["SecretId"], None, sign_method)


def form_params(text: str) -> dict[str, str]:
    """`a=1&b=2` into a dict (the last of repeated keys wins), blanks kept."""
    return dict(parse_qsl(text, keep_blank_values=True))
