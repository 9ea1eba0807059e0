"""Tencent Cloud API 3.0 errors: `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`, always HTTP 200.

Codes come from Tencent's public "Common Error Codes" list and from the error-code tables the official SDKs
ship (`tencentcloud/ssl/v20191205/errorcodes.py`, `tencentcloud/clb/v20180317/errorcodes.py`). Where Tencent
does not say which code a situation gets, the choice is lbsim's and docs/vendor-apis.md marks it.

Every lbsim error a Tencent action can meet is translated by ONE table, `LBSIM_TO_TENCENT`: validation lives
in the model (certificate store, `parse_listener`, `Lab`), this module only renames its verdicts. The
message keeps lbsim's field and hint beside the vendor code, so a user learns what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import LbsimError

# Codes lbsim uses, with what Tencent's common list says of them (our wording, after Tencent's).
AUTH_INVALID = "AuthFailure.InvalidAuthorization"  # "Authorization in the request header is invalid"
AUTH_SECRET_ID = "AuthFailure.SecretIdNotFound"  # the key does not exist
AUTH_SIGNATURE = "AuthFailure.SignatureFailure"  # the signature does not match
AUTH_EXPIRED = "AuthFailure.SignatureExpire"  # timestamp more than five minutes from the server's time
INVALID_ACTION = "InvalidAction"  # the API does not exist
NO_SUCH_VERSION = "NoSuchVersion"  # the API version does not exist
MISSING = "MissingParameter"
INVALID = "InvalidParameter"
INVALID_VALUE = "InvalidParameterValue"
UNKNOWN_PARAMETER = "UnknownParameter"
NOT_FOUND = "ResourceNotFound"
FAILED = "FailedOperation"
IN_USE = "ResourceInUse"
LIMIT = "LimitExceeded"
UNSUPPORTED = "UnsupportedOperation"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"  # only GET and POST
TOO_LARGE = "RequestSizeLimitExceeded"
INTERNAL = "InternalError"

# Tencent's own message for the errors whose wording its documentation shows; others get lbsim's sentence.
VENDOR_WORDING = {
    AUTH_SIGNATURE: "The provided credentials could not be validated. Please check your signature is correct.",
    AUTH_EXPIRED: "Signature expired. Timestamp and server time cannot differ by more than 5 minutes.",
    AUTH_SECRET_ID: "The SecretId is not found, please ensure that your SecretId is correct.",
    INVALID_ACTION: "The API does not exist.",
}


@dataclass
class TencentError(Exception):
    """An error answered in Tencent's shape. `hint` is lbsim's advice, appended to the message."""

    code: str
    message: str
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")

    def text(self) -> str:
        return f"{self.message} (lbsim hint: {self.hint})" if self.hint else self.message


def vendor(code: str, detail: str | None = None, hint: str | None = None) -> TencentError:
    """An error with Tencent's own sentence for `code` (when known), then lbsim's detail."""
    base = VENDOR_WORDING.get(code)
    message = f"{base} {detail}" if base and detail else (base or detail or code)
    return TencentError(code, message, hint)


# lbsim error code -> Tencent code, for the certificate store, the lab model and the listener validation.
# SSL-service codes are those of the ssl SDK's errorcodes.py; CLB ones those of the clb SDK's.
LBSIM_TO_TENCENT: dict[str, str] = {
    # certificate content (simulator.certs.validate): the ssl service's parse / match codes
    "InputTooLarge": "FailedOperation.CertificateParseError",
    "NotPem": "FailedOperation.CertificateParseError",
    "MalformedCertificate": "FailedOperation.CertificateParseError",
    "MissingCertificate": "FailedOperation.CertificateParseError",
    "UnexpectedPemBlock": "FailedOperation.CertificateParseError",
    "DhParametersNotSupported": "FailedOperation.CertificateParseError",
    "MalformedPrivateKey": "FailedOperation.CertificateParseError",
    "MultiplePrivateKeys": "FailedOperation.CertificateParseError",
    "UnsupportedKeyFormat": "FailedOperation.CertificateParseError",
    "EncryptedPrivateKey": "FailedOperation.CertificateParseError",
    "UnexpectedPrivateKey": "FailedOperation.CertificateParseError",
    "MissingPrivateKey": MISSING,
    "KeyCertificateMismatch": "FailedOperation.CertificateMismatch",
    "ChainOrder": "FailedOperation.CertificateInvalid",
    "ChainSignature": "FailedOperation.CertificateInvalid",
    "IntermediateMissing": "FailedOperation.CertificateInvalid",
    "NotACertificateAuthority": "FailedOperation.CertificateInvalid",
    "UnsupportedKeyType": "FailedOperation.CertificateInvalid",
    "UnsupportedKeySize": "FailedOperation.CertificateInvalid",
    "WeakKey": "FailedOperation.CertificateInvalid",
    "CertificateExpired": "FailedOperation.CertificateInvalid",
    "CertificateNotYetValid": "FailedOperation.CertificateInvalid",
    "CertificateNotAccepted": "FailedOperation.CertificateInvalid",
    "InvalidName": INVALID_VALUE,
    "InvalidCertificateType": INVALID_VALUE,
    # the store
    "CertificateNotFound": "FailedOperation.CertificateNotFound",
    "AmbiguousName": "FailedOperation.CertificateNotFound",
    "CertificateInUse": "FailedOperation.DeleteResourceFailed",
    "QuotaExceeded": LIMIT,
    # listeners (simulator.model.config, simulator.runtime.lab)
    "InvalidConfig": INVALID_VALUE,
    "UnknownPolicy": INVALID_VALUE,
    "ListenerExists": "InvalidParameter.PortCheckFailed",
    "ListenerNotFound": "InvalidParameter.ListenerIdNotFound",
    "LoadBalancerNotFound": "InvalidParameter.LBIdNotFound",
    "SniCannotBeTurnedOff": INVALID_VALUE,
    "ListenFailed": "InvalidParameter.PortCheckFailed",
    "PortInUse": "InvalidParameter.PortCheckFailed",
    "BackendNotFound": INVALID_VALUE,
    "InstanceNotFound": INVALID_VALUE,
}


def from_lbsim(err: LbsimError, default: str = INVALID_VALUE) -> TencentError:
    """Translate a model verdict: the Tencent code from the table, lbsim's own code, field and message kept."""
    code = LBSIM_TO_TENCENT.get(err.code)
    if code is None:
        code = NOT_FOUND if err.code.endswith("NotFound") else default
    where = f"{err.field}: " if err.field else ""
    return TencentError(code, f"{where}{err.message} [lbsim {err.code}]", err.hint)
