"""Tencent SSL Certificates service (`ssl`, API 2019-12-05) over the lab's certificate store.

Uploads are validated by the store under the `tencent-clb` profile (simulator.certs.validate), so the same
certificate gets the same verdict whether it arrives here, through the management API or the lab file. The
service shows only the store's tencent-clb certificates (the account's own); ids are Tencent-style
(8 letters and digits). No answer ever carries a private key.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from simulator.certs.parse import colon_hex
from simulator.certs.store import CertInfo
from simulator.errors import LbsimError
from simulator.faces.tencent.service import Call, Service
from simulator.faces.tencent.errors import INVALID_VALUE, TencentError, from_lbsim
from simulator.faces.tencent.params import Params

PROFILE = "tencent-clb"
OWNER_UIN = "100000000001"  # the lab's account: a placeholder in Tencent's number format
TYPES = {"SVR": "server", "CA": "ca"}  # Tencent CertificateType -> store type
TENCENT_TYPE = {v: k for k, v in TYPES.items()}
CHINA = dt.timezone(dt.timedelta(hours=8))  # Tencent's API times are GMT+8 "YYYY-MM-DD HH:MM:SS"
MAX_LIMIT = 1000
_CN = re.compile(r"(?:^|,)CN=((?:[^,\\]|\\.)+)")


def tencent_time(value: dt.datetime) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def domain_of(info: CertInfo) -> str:
    """The certificate's main domain: its subject CN, else its first DNS name."""
    m = _CN.search(info.subject)
    if m:
        return m.group(1).replace("\\", "")
    dns = [s for s in info.sans if not s.replace(".", "").isdigit()]
    return dns[0] if dns else ""


def algorithm(info: CertInfo) -> str:
    return "ECC" if info.key_type.upper().startswith("EC") else "RSA"


class SslService(Service):
    """UploadCertificate, DescribeCertificates, DescribeCertificateDetail, ModifyCertificateAlias, DeleteCertificate."""

    name = "ssl"
    version = "2019-12-05"

    def __init__(self, lab: Any):
        self.lab = lab

    def actions(self):
        return {
            "UploadCertificate": self.upload,
            "DescribeCertificates": self.describe_all,
            "DescribeCertificateDetail": self.detail,
            "ModifyCertificateAlias": self.modify_alias,
            "DeleteCertificate": self.delete,
        }

    @property
    def store(self):
        return self.lab.store

    # --- lookups used by the CLB service too -------------------------------------------------------------

    def info(self, cert_id: str, field: str = "CertificateId", want: str | None = None) -> CertInfo:
        """A tencent-clb certificate by id (never by name: Tencent refers by id only)."""
        try:
            info = self.store.describe(cert_id)
        except LbsimError as e:
            raise from_lbsim(e) from None
        if info.id != cert_id or info.profile != PROFILE:
            raise TencentError("FailedOperation.CertificateNotFound", f"{field}: no certificate with id {cert_id!r}",
                               hint="DescribeCertificates lists the ids; upload with UploadCertificate")
        if want is not None and info.type != want:
            raise TencentError(INVALID_VALUE, f"{field}: certificate {cert_id} is a {TENCENT_TYPE[info.type]} "
                               f"certificate; expected {TENCENT_TYPE[want]}")
        return info

    def certificates(self) -> list[CertInfo]:
        return [c for c in self.store.list() if c.profile == PROFILE]

    # --- actions -----------------------------------------------------------------------------------------

    async def upload(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("CertificatePublicKey", "CertificatePrivateKey", "CertificateType", "Alias", "Repeatable"),
                      ignored=("ProjectId", "CertificateUse", "Tags"), refused=("KeyPassword",))
        cert = p.str("CertificatePublicKey", required=True, max_len=512 * 1024)
        key = p.str("CertificatePrivateKey", max_len=64 * 1024)
        kind = TYPES[p.choice("CertificateType", tuple(TYPES), default="SVR")]
        alias = p.str("Alias", max_len=200)
        repeatable = p.bool("Repeatable", True)
        if kind == "server" and not key:
            raise TencentError("MissingParameter", "CertificatePrivateKey is required for an SVR certificate")
        if kind == "ca" and key:
            raise TencentError(INVALID_VALUE, "CertificatePrivateKey: a CA certificate is uploaded without a "
                               "private key", hint="leave CertificatePrivateKey out for CertificateType CA")
        try:
            if not repeatable:  # the same certificate already here: answer its id instead of a copy
                same = self._same(cert, kind)
                if same is not None:
                    return {"CertificateId": same, "RepeatCertId": same}
            name = alias if alias else default_alias(cert)
            if kind == "server":
                info = self.store.upload_server(name, cert, key, profile=PROFILE)
            else:
                info = self.store.upload_ca(name, cert, profile=PROFILE)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {"CertificateId": info.id, "RepeatCertId": ""}

    def _same(self, cert_pem: str, kind: str) -> str | None:
        """The id of a stored certificate of this type with the same leaf (SHA-256 fingerprint), if any."""
        try:
            leaf = x509.load_pem_x509_certificates(cert_pem.encode())[0]
        except Exception:  # not PEM: the upload itself reports what is wrong
            return None
        fingerprint = colon_hex(leaf.fingerprint(hashes.SHA256()))
        for info in self.certificates():
            if info.type == kind and info.fingerprint_sha256 == fingerprint:
                return info.id
        return None

    async def describe_all(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("Offset", "Limit", "SearchKey", "CertificateType", "ExpirationSort", "CertIds", "FilterSource",
                       "CertificateStatus"),
                      ignored=("ProjectId", "Deployable", "Upload", "Renew", "IsSM", "FilterExpiring", "Hostable", "Tags",
                               "IsPendingIssue", "ServiceId"))
        offset = p.int("Offset", 0, 2**31, 0)
        limit = min(p.int("Limit", 0, 2**31, 10), MAX_LIMIT)
        search = (p.str("SearchKey", max_len=256) or "").lower()
        kind = p.choice("CertificateType", tuple(TYPES))
        order = p.choice("ExpirationSort", ("ASC", "DESC"))
        ids = set(p.strs("CertIds", max_items=50))
        source = p.choice("FilterSource", ("upload", "buy"))
        statuses = {int(s) for s in p.strs("CertificateStatus", max_items=20) if str(s).isdigit()}
        now = dt.datetime.now(dt.timezone.utc)
        found = []
        for info in self.certificates():
            if kind and info.type != TYPES[kind]:
                continue
            if ids and info.id not in ids:
                continue
            if source == "buy":
                continue  # every lab certificate was uploaded
            if statuses and _status(info, now) not in statuses:
                continue
            if search and not any(search in s.lower() for s in (info.id, info.name, domain_of(info))):
                continue
            found.append(info)
        if order:
            found.sort(key=lambda c: c.not_after, reverse=order == "DESC")
        else:
            found.reverse()  # newest upload first, as Tencent lists
        page = found[offset:offset + limit]
        return {"TotalCount": len(found), "Certificates": [self._summary(c, now) for c in page]}

    async def detail(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("CertificateId",))
        info = self.info(p.str("CertificateId", required=True))
        try:
            chain = self.store.material(info.id).chain_pem.decode()
        except LbsimError as e:
            raise from_lbsim(e) from None
        out = self._summary(info, dt.datetime.now(dt.timezone.utc))
        for key in ("BoundResource", "Tags", "ProjectInfo", "CertificateExtra", "PackageTypeName"):
            out.pop(key, None)
        out.update({
            "CertificatePublicKey": chain,
            "CertificatePrivateKey": None,  # never returned by lbsim
            "CertFingerprint": info.fingerprint.replace(":", "").lower(),
            "TypeName": "Uploaded certificate",
            "DomainType": None,
            "CertType": None,
        })
        return out

    async def modify_alias(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("CertificateId", "Alias"))
        info = self.info(p.str("CertificateId", required=True))
        alias = p.str("Alias", required=True, max_len=200)
        try:
            self.store.rename(info.id, alias)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {"CertificateId": info.id}

    async def delete(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("CertificateId",), ignored=("IsCheckResource",))
        info = self.info(p.str("CertificateId", required=True))
        try:
            self.store.delete(info.id)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {"DeleteResult": True, "TaskId": None}

    # --- shapes ------------------------------------------------------------------------------------------

    def _summary(self, info: CertInfo, now: dt.datetime) -> dict[str, Any]:
        status = _status(info, now)
        months = max(1, round((info.not_after - info.not_before).days / 30.44))
        users = self.store.users(info.id)
        return {
            "OwnerUin": OWNER_UIN,
            "ProjectId": "0",
            "From": "upload",
            "PackageType": None,
            "CertificateType": TENCENT_TYPE[info.type],
            "ProductZhName": None,
            "Domain": domain_of(info),
            "Alias": info.name,
            "Status": status,
            "StatusMsg": None,
            "StatusName": {1: "Issued", 3: "Expired"}.get(status, "Not yet valid"),
            "VerifyType": None,
            "VulnerabilityStatus": None,
            "CertBeginTime": tencent_time(info.not_before),
            "CertEndTime": tencent_time(info.not_after),
            "ValidityPeriod": str(months),
            "InsertTime": tencent_time(info.created),
            "CertificateId": info.id,
            "SubjectAltName": list(info.sans),
            "IsVip": False,
            "IsDv": False,
            "IsWildcard": domain_of(info).startswith("*."),
            "IsVulnerability": False,
            "RenewAble": False,
            "Deployable": status == 1,
            "BoundResource": ["clb"] if users else [],
            "EncryptAlgorithm": algorithm(info),
            "IsExpiring": info.not_after - now < dt.timedelta(days=30),
        }


def _status(info: CertInfo, now: dt.datetime) -> int:
    """Tencent's Status: 1 = issued (valid), 3 = expired. A not-yet-valid upload is shown as 1 too."""
    return 3 if info.not_after < now else 1


def default_alias(cert_pem: str) -> str:
    """Tencent allows an empty Alias; the store wants a name: the certificate's CN, else 'uploaded'."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem.encode())[0]
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = str(names[0].value) if names else ""
    except Exception:  # the store reports what is wrong with the PEM
        cn = ""
    cn = re.sub(r"[^A-Za-z0-9\-/._* ]", "", cn).strip()[:80]
    return cn or "uploaded"
