"""Alibaba Cloud's two RPC signatures, verified as the SDKs compute them.

* **ACS3-HMAC-SHA256** (the current `alibabacloud-slb20140515` on `alibabacloud-tea-openapi`,
  `Utils.get_authorization`): ``Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b>,Signature=<hex>``
  over the canonical request ``METHOD \\n /path \\n sorted query (values percent-encoded, '~' kept) \\n
  "name:value\\n" per signed header \\n signed header names \\n x-acs-content-sha256``; the string to sign is
  ``ACS3-HMAC-SHA256 \\n hex(sha256(canonical request))`` and the signature ``hex(hmac_sha256(secret, it))``.
  The action and version travel in ``x-acs-action`` and ``x-acs-version``; ``x-acs-date`` and
  ``x-acs-signature-nonce`` bound replays.
* **HMAC-SHA1 over the query** (`aliyun-python-sdk-core`'s `rpc_signature_composer`, and the tea SDK with
  ``signature_algorithm="v2"``): every parameter but ``Signature`` (query and form body together), sorted,
  ``percent(k)=percent(v)`` joined by ``&``; the string to sign is ``METHOD&%2F&percent(that)``, the signature
  ``base64(hmac_sha1(secret + "&", it))``. ``Timestamp`` and ``SignatureNonce`` bound replays.

Percent-encoding is RFC 3986 (``quote(v, safe="~")``): space as ``%20``, ``*`` as ``%2A``, ``~`` kept.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from simulator.faces.aliyun.errors import AliyunError
from simulator.faces.http import Request
from simulator.faces.vendorapi import AccessKeys, ReplayGuard

PROFILE = "aliyun-slb"
MAX_SKEW = 15 * 60  # seconds a request's time may be off (Alibaba: 15 minutes)
ACS3 = "ACS3-HMAC-SHA256"


def percent(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


@dataclass(frozen=True)
class Signed:
    """Who signed a request, and how."""

    key_id: str
    method: str  # ACS3-HMAC-SHA256 | HMAC-SHA1
    action: str | None
    version: str | None


def verify(request: Request, path: str, params: list[tuple[str, str]], keys: AccessKeys, nonces: ReplayGuard,
           now: float) -> Signed:
    """Check the request's signature and freshness; raise the vendor's error otherwise. `params` are the query's
    and the form body's parameters, blank values kept."""
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("ACS3-"):
        return _verify_acs3(request, path, params, authorization, keys, nonces, now)
    return _verify_rpc(request, params, keys, nonces, now)


def _secret(keys: AccessKeys, key_id: str) -> str:
    secret = keys.secret(PROFILE, key_id)
    if secret is None:
        raise AliyunError("InvalidAccessKeyId.NotFound", detail=f"the lab has no access key {key_id!r}",
                          hint="use the access key `lbsim up` printed (or <out>/endpoints.json)")
    return secret


def _mismatch(to_sign: str) -> AliyunError:
    """The vendor's message carries the server's string to sign after a colon: the legacy SDK compares it with its
    own and, when they are equal (only the secret is wrong), reports `InvalidAccessKeySecret` instead."""
    return AliyunError("SignatureDoesNotMatch", message="Specified signature is not matched with our calculation. "
                       f"server string to sign is:{to_sign}", hint="check the AccessKeySecret")


def _fresh(stamp: str, field: str, now: float) -> None:
    try:
        when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise AliyunError("InvalidTimeStamp.Format", detail=f"{field} {stamp[:40]!r} is not YYYY-MM-DDThh:mm:ssZ (UTC)")
    if abs(now - when) > MAX_SKEW:
        raise AliyunError("InvalidTimeStamp.Expired", detail=f"{field} {stamp} is more than 15 minutes from the "
                          "lab's clock", hint="sign requests with the current UTC time")


def _nonce(nonces: ReplayGuard, key_id: str, nonce: str | None) -> None:
    if not nonce:
        raise AliyunError("MissingSignatureNonce", detail="a signed request carries a SignatureNonce")
    if nonces.seen(key_id, nonce):
        raise AliyunError("SignatureNonceUsed", detail=f"nonce {nonce[:64]!r} was used within the last 15 minutes",
                          hint="every request needs a fresh SignatureNonce")


def _verify_acs3(request: Request, path: str, params: list[tuple[str, str]], authorization: str, keys: AccessKeys,
                 nonces: ReplayGuard, now: float) -> Signed:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ACS3:
        raise AliyunError("IncompleteSignature", detail=f"signature algorithm {algorithm!r} is not supported; "
                          f"the lab verifies {ACS3} and HMAC-SHA1")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    key_id, signed_headers, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
    if not key_id or not signed_headers or not signature:
        raise AliyunError("IncompleteSignature", detail="the Authorization header needs Credential, SignedHeaders "
                          "and Signature")
    secret = _secret(keys, key_id)
    names = signed_headers.split(";")
    for required in ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                     "x-acs-content-sha256"):
        if required not in names or required not in request.headers:
            raise AliyunError("IncompleteSignature", detail=f"the signed headers lack {required}")
    payload_hash = hashlib.sha256(request.body).hexdigest()
    if not hmac.compare_digest(request.headers["x-acs-content-sha256"], payload_hash):
        raise AliyunError("SignatureDoesNotMatch", detail="x-acs-content-sha256 is not the SHA-256 of the body")
    query = "&".join(f"{k}={percent(v)}" for k, v in sorted(_query_only(request)))
    headers = "".join(f"{name}:{request.headers.get(name, '').strip()}\n" for name in names)
    canonical = f"{request.method}\n{path or '/'}\n{query}\n{headers}\n{signed_headers}\n{payload_hash}"
    to_sign = f"{ACS3}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise _mismatch(to_sign)
    _fresh(request.headers["x-acs-date"], "x-acs-date", now)
    _nonce(nonces, key_id, request.headers["x-acs-signature-nonce"])
    return Signed(key_id, ACS3, request.headers["x-acs-action"], request.headers["x-acs-version"])


def _query_only(request: Request) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(request.target).query, keep_blank_values=True)


def _verify_rpc(request: Request, params: list[tuple[str, str]], keys: AccessKeys, nonces: ReplayGuard,
                now: float) -> Signed:
    given = dict(params)
    key_id, signature = given.get("AccessKeyId"), given.get("Signature")
    if not key_id or not signature:
        raise AliyunError("MissingParameter", detail="a request is signed: AccessKeyId and Signature (HMAC-SHA1, "
                          "query string) or an ACS3-HMAC-SHA256 Authorization header", message="The input parameter "
                          f"\"{'AccessKeyId' if not key_id else 'Signature'}\" that is mandatory for processing this "
                          "request is not supplied.")
    method = given.get("SignatureMethod", "")
    if method != "HMAC-SHA1" or given.get("SignatureVersion", "1.0") != "1.0":
        raise AliyunError("IncompleteSignature", detail=f"SignatureMethod {method!r} / SignatureVersion "
                          f"{given.get('SignatureVersion')!r}: the lab verifies HMAC-SHA1 1.0 and ACS3-HMAC-SHA256")
    secret = _secret(keys, key_id)
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(p for p in params if p[0] != "Signature"))
    to_sign = f"{request.method}&%2F&{percent(canonical)}"
    expected = base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise _mismatch(to_sign)
    _fresh(given.get("Timestamp", ""), "Timestamp", now)
    _nonce(nonces, key_id, given.get("SignatureNonce"))
    return Signed(key_id, "HMAC-SHA1", given.get("Action"), given.get("Version"))
