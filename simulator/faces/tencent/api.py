"""The Tencent Cloud API 3.0 face of a lab: one entry point, `TencentApi.handle`, for the ssl and clb services.

A request is read (JSON body, or flat form/query), its signature verified against the lab's access keys,
routed by `X-TC-Version` (or `Version`) to a service, and answered `{"Response": {..., "RequestId"}}` with
HTTP 200, errors included, as Tencent answers. Nothing raises out of `handle`: an unexpected failure is an
`InternalError` with no stack trace (the log has it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from simulator.errors import LbsimError
from simulator.faces.tencent import signature
from simulator.faces.tencent.errors import (
    AUTH_INVALID,
    AUTH_SIGNATURE,
    INTERNAL,
    INVALID,
    INVALID_ACTION,
    MISSING,
    NO_SUCH_VERSION,
    TOO_LARGE,
    UNSUPPORTED_PROTOCOL,
    TencentError,
    from_lbsim,
    vendor,
)
from simulator.faces.tencent.clb_service import ClbService
from simulator.faces.tencent.params import Params, unflatten
from simulator.faces.tencent.service import Action, Call, Service
from simulator.faces.tencent.ssl_service import SslService

log = logging.getLogger("lbsim.tencent")
CONTENT_TYPE = "application/json"  # exactly: the SDK parses an error body only for this value
MAX_BODY = 1024 * 1024  # Tencent refuses requests over 1 MB (RequestSizeLimitExceeded)
# Parameters of the older signature method that are not the action's own.
_LEGACY_COMMON = ("Action", "Version", "Region", "Timestamp", "Nonce", "SecretId", "Signature", "SignatureMethod",
                  "Token", "Language", "RequestClient")

class TencentApi:
    """`await api.handle(method, target, headers, body, host)` -> (200, "application/json", body bytes)."""

    def __init__(self, lab: Any, keys: Mapping[str, str], region: str = "ap-guangzhou",
                 replay: Callable[[str, str], bool] | None = None):
        self.lab, self.keys, self.region = lab, keys, region
        # replay(secret_id, nonce) -> True when the nonce was seen (the older signature carries a Nonce)
        self.replay = replay or _NonceMemory(signature.MAX_SKEW * 2).seen
        self.ssl = SslService(lab)
        self.clb = ClbService(lab, self.ssl)
        self.services: dict[str, Service] = {s.version: s for s in (self.ssl, self.clb)}

    async def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
                     host: str | None = None) -> tuple[int, str, bytes]:
        answer = await self.answer(method, target, headers, body, host)
        return 200, CONTENT_TYPE, json.dumps(answer, ensure_ascii=False).encode()

    async def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
                     host: str | None = None) -> dict[str, Any]:
        """The whole answer, `{"Response": ...}`, for one request; never raises."""
        request_id = str(uuid.uuid4())
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            answer = await self._handle(method.upper(), target, headers, body, host or headers.get("host", ""),
                                        request_id)
        except TencentError as e:
            log.info("tencent %s refused: %s %s", request_id, e.code, e.message)
            answer = {"Error": {"Code": e.code, "Message": e.text()}}
        except LbsimError as e:  # a model verdict no action translated itself
            err = from_lbsim(e)
            answer = {"Error": {"Code": err.code, "Message": err.text()}}
        except Exception:
            log.exception("tencent %s failed", request_id)
            answer = {"Error": {"Code": INTERNAL, "Message": "the lab failed to handle this request; see its log"}}
        answer["RequestId"] = request_id
        return {"Response": answer}

    async def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes, host: str,
                      request_id: str) -> dict[str, Any]:
        if method not in ("GET", "POST"):
            raise TencentError(UNSUPPORTED_PROTOCOL, f"HTTP method {method} is not supported; use GET or POST")
        if len(body) > MAX_BODY:
            raise TencentError(TOO_LARGE, f"the request body is {len(body)} bytes; the limit is {MAX_BODY}")
        url = urlsplit(target)
        if "authorization" in headers:
            signed = signature.verify_tc3(method, url.path, url.query, headers, body, self.keys)
            action, version = headers.get("x-tc-action", ""), headers.get("x-tc-version", "")
            region = headers.get("x-tc-region", "")
            if method == "GET":
                data = unflatten(signature.form_params(url.query))
            else:
                data = _json(body) if "json" in headers.get("content-type", "") else \
                    unflatten(signature.form_params(body.decode("utf-8", "replace")))
        else:
            flat = signature.form_params(url.query if method == "GET" else body.decode("utf-8", "replace"))
            if not flat:
                raise vendor(AUTH_INVALID, "the request carries neither an Authorization header nor signed "
                             "parameters", hint="use a Tencent Cloud SDK or tccli pointed at this endpoint")
            signed = signature.verify_legacy(method, host, url.path, flat, self.keys)
            if self.replay(signed.secret_id, flat["Nonce"]):
                raise vendor(AUTH_SIGNATURE, "the Nonce was already used by this SecretId within the signature's "
                             "validity", hint="send a new random Nonce with every request")
            action, version, region = flat.get("Action", ""), flat.get("Version", ""), flat.get("Region", "")
            data = unflatten({k: v for k, v in flat.items() if k not in _LEGACY_COMMON})
        if not action:
            raise TencentError(MISSING, "the request is missing the action (X-TC-Action)")
        if not version:
            raise TencentError(MISSING, "the request is missing the API version (X-TC-Version)")
        service = self.services.get(version)
        if service is None:
            raise TencentError(NO_SUCH_VERSION, f"API version {version!r} does not exist here; lbsim serves "
                               + ", ".join(f"{s.name} {v}" for v, s in self.services.items()))
        if signed.service is not None and signed.service != service.name:
            raise vendor(AUTH_SIGNATURE, f"the request was signed for service {signed.service!r}, but version "
                         f"{version} is {service.name!r}")
        handler = service.actions().get(action)
        if handler is None:
            raise vendor(INVALID_ACTION, f"{service.name} {version} has no action {action!r} in lbsim",
                         hint="docs/vendor-apis.md lists the supported actions")
        result = await handler(Params(data), Call(action, region or self.region, signed.secret_id, request_id))
        return result


class _NonceMemory:
    """Nonces seen within `window` seconds, per secret id (for a TencentApi used without the vendor server)."""

    def __init__(self, window: float):
        self.window, self._seen = window, {}

    def seen(self, secret_id: str, nonce: str) -> bool:
        now = time.monotonic()
        if len(self._seen) > 10_000:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.window}
        at = self._seen.get((secret_id, nonce))
        self._seen[(secret_id, nonce)] = now
        return at is not None and now - at < self.window


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise TencentError(INVALID, f"the request body is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(data, dict):
        raise TencentError(INVALID, "the request body must be a JSON object")
    return data
