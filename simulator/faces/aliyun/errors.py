"""Alibaba Cloud's error codes for the SLB API, as data: the code, its HTTP status and the vendor's wording.

`CONFIRMED` marks codes (and statuses) found in Alibaba's public API reference or in the vendor's own tooling
(the Terraform provider matches on them); the others are lbsim's most plausible choice (docs/vendor-apis.md).
Every error body keeps lbsim's own explanation in `Recommend`, where Alibaba puts its troubleshooting link.
"""

from __future__ import annotations

from simulator.errors import LbsimError
from simulator.faces.vendorapi import VendorError

# code -> (HTTP status, message). The message is Alibaba's wording where known.
ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "MissingSignatureNonce": (400, "SignatureNonce is mandatory for this action."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "MissingParameter": (400, "The input parameter that is mandatory for processing this request is not supplied."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "UnsupportedOperation": (400, "The operation is not supported."),
    "InvalidLoadBalancerId.NotFound": (400, "The specified LoadBalancerId does not exist."),
    "ServerCertificateId.NotFound": (400, "The specified ServerCertificateId does not exist."),
    "CACertificateId.NotFound": (400, "The specified CACertificateId does not exist."),
    "ListenerNotFound": (400, "The specified resource does not exist."),
    "ListenerAlreadyExists": (400, "The specified listener port is already used."),
    "CertificateAndPrivateKeyIsRefered": (400, "The specified certificate is bound to listeners. You cannot delete it."),
    "CACertificateIsRefered": (400, "The specified CA certificate is bound to listeners. You cannot delete it."),
    "InvalidServerCertificate": (400, "The specified Server Certificate format is invalid."),
    "InvalidPrivateKey": (400, "The format of the private key content is invalid."),
    "InvalidCACertificate": (400, "The specified CA certificate is invalid."),
    "QuotaExceeded.ServerCertificate": (400, "The number of certificates exceeds the quota."),
    "QuotaExceeded.LoadBalancer": (400, "The number of load balancers exceeds the quota."),
    "InvalidBackendServers.ServerIdNotExist": (400, "The specified backend server does not exist."),
    "OperationFailed.ListenerPortConflict": (400, "The listener port cannot be bound on this lab."),
    "OperationFailed.ListenerStatusNotSupport": (400, "The operation is not allowed in the current listener status."),
    "InternalError": (500, "The request processing has failed due to some unknown error, exception or failure."),
    "RequestTooLarge": (413, "The request is too large."),
    "BadRequest": (400, "The request could not be parsed."),
    "RequestTimeout": (408, "The request was not received in time."),
}

CONFIRMED = frozenset({
    "InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch", "IncompleteSignature", "InvalidTimeStamp.Expired",
    "SignatureNonceUsed", "InvalidAction.NotFound", "MissingParameter", "InvalidParameter",
    "InvalidLoadBalancerId.NotFound", "ServerCertificateId.NotFound", "CACertificateId.NotFound",
    "ListenerAlreadyExists", "CertificateAndPrivateKeyIsRefered", "InternalError",
})

# lbsim's error codes (simulator.errors.LbsimError, raised by the lab model) -> Alibaba's. Certificate findings
# (simulator.certs.validate) go by the field at fault: the certificate, its private key, a CA certificate.
FROM_LBSIM: dict[str, str] = {
    "LoadBalancerNotFound": "InvalidLoadBalancerId.NotFound",
    "ListenerNotFound": "ListenerNotFound",
    "ListenerExists": "ListenerAlreadyExists",
    "ListenFailed": "OperationFailed.ListenerPortConflict",
    "BackendNotFound": "InvalidBackendServers.ServerIdNotExist",
    "QuotaExceeded": "QuotaExceeded.ServerCertificate",
    "InvalidConfig": "InvalidParameter",
    "InvalidName": "InvalidParameter",
    "AmbiguousName": "InvalidParameter",
    "CertificateNotAccepted": "InvalidServerCertificate",
    "InputTooLarge": "RequestTooLarge",
    "HeadersTooLarge": "RequestTooLarge",
    "LengthRequired": "BadRequest",
}
_KEY_CODES = frozenset({"KeyCertificateMismatch", "MissingPrivateKey", "MalformedPrivateKey", "EncryptedPrivateKey", "UnsupportedKeyFormat",
                        "MultiplePrivateKeys", "UnexpectedPrivateKey"})


class AliyunError(VendorError):
    """An Alibaba-coded refusal. `message` defaults to the vendor's wording; `detail` is lbsim's explanation."""

    def __init__(self, code: str, detail: str | None = None, message: str | None = None, hint: str | None = None):
        status, wording = ERRORS.get(code, (400, code))
        super().__init__(code, message or wording, status, hint)
        self.detail = detail


def from_lbsim(err: LbsimError, certificate_kind: str | None = None) -> AliyunError:
    """The Alibaba error for a refusal of the lab model. `certificate_kind` (server | ca) says what was being
    uploaded, so a validation finding gets the code of the part at fault."""
    code = FROM_LBSIM.get(err.code)
    if code is None and certificate_kind is not None:
        if certificate_kind == "ca":
            code = "InvalidCACertificate"
        else:
            code = "InvalidPrivateKey" if err.code in _KEY_CODES else "InvalidServerCertificate"
    if code is None:
        code = "InvalidParameter"
    detail = f"{err.code}: {err.message}" + (f" (field {err.field})" if err.field else "")
    return AliyunError(code, detail=detail, hint=err.hint)
