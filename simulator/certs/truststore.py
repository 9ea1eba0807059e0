"""Trust stores: a CA bundle that verifies client certificates, plus certificate revocation lists.

The resource an ALB listener in mutual-TLS ``verify`` mode points at (``CreateTrustStore``,
``ModifyTrustStore`` replaces the bundle, ``AddTrustStoreRevocations`` / ``RemoveTrustStoreRevocations``
manage the CRLs). Every change bumps `revision`; the lab rebuilds the listeners that use the store, so new
connections see the change and connections already open keep the context they started with.

    store = TrustStore.create("clients", ca_pem)
    [rid] = store.add_revocations([crl_pem])
    store.remove_revocations([rid])
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from simulator.errors import LbsimError

MAX_BUNDLE_BYTES = 1024 * 1024  # generous: a bundle of a few hundred CA certificates


def _text(pem: bytes | str, field: str) -> bytes:
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_BUNDLE_BYTES:
        raise LbsimError("InputTooLarge", f"{len(data):,} bytes; at most {MAX_BUNDLE_BYTES:,}", field=field)
    return data


def parse_ca_bundle(pem: bytes | str, field: str = "ca_bundle") -> list[x509.Certificate]:
    """The CA certificates of a PEM bundle; each must be a CA (basicConstraints CA:TRUE)."""
    data = _text(pem, field)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise LbsimError("InvalidCaCertificatesBundle", "the CA bundle holds no PEM certificate", field=field,
                         hint="a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise LbsimError("InvalidCaCertificatesBundle", f"the CA bundle does not parse: {e}", field=field) from None
    for i, cert in enumerate(certs):
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise LbsimError("InvalidCaCertificatesBundle", f"certificate {i + 1} ({cert.subject.rfc4514_string()}) "
                             "is not a CA: basicConstraints CA:TRUE is missing", field=field,
                             hint="a trust store holds the CAs that issue client certificates, not the clients")
    return certs


def parse_crl(pem: bytes | str, cas: list[x509.Certificate], field: str = "revocations") -> x509.CertificateRevocationList:
    """A PEM CRL signed by one of `cas` (a revocation list from a CA outside the store revokes nothing)."""
    data = _text(pem, field)
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as e:
        raise LbsimError("InvalidRevocationContent", f"not a PEM certificate revocation list: {e}", field=field,
                         hint="a CRL in PEM (-----BEGIN X509 CRL-----); convert DER with openssl crl -inform DER") from None
    issuers = [ca for ca in cas if ca.subject == crl.issuer]
    if not any(crl.is_signature_valid(ca.public_key()) for ca in issuers):  # type: ignore[arg-type]
        raise LbsimError("InvalidRevocationContent",
                         f"the CRL is issued by {crl.issuer.rfc4514_string()}, "
                         + ("which is not in the trust store" if not issuers else "but that CA's key did not sign it"),
                         field=field, hint="add the CRL of a CA in the trust store's bundle")
    return crl


@dataclass
class TrustStore:
    """One trust store. Mutated only through its methods, each of which validates first (a refused change
    changes nothing) and bumps `revision`."""

    name: str
    cas: list[x509.Certificate]
    revocations: dict[int, x509.CertificateRevocationList] = field(default_factory=dict)
    revision: int = 1
    _next_id: int = 1

    @classmethod
    def create(cls, name: str, ca_bundle: bytes | str, revocations: list[bytes | str] | tuple[bytes | str, ...] = (),
               field: str = "trust_store") -> TrustStore:
        if not isinstance(name, str) or not name or len(name) > 32:
            raise LbsimError("InvalidTrustStoreName", f"a trust store name is 1-32 characters, not {name!r}",
                             field=f"{field}.name")
        store = cls(name, parse_ca_bundle(ca_bundle, f"{field}.ca_bundle"))
        store.add_revocations(list(revocations), f"{field}.revocations")
        store.revision = 1
        return store

    @property
    def crls(self) -> list[x509.CertificateRevocationList]:
        return list(self.revocations.values())

    def replace_bundle(self, ca_bundle: bytes | str, field: str = "ca_bundle") -> None:
        """ModifyTrustStore: a new CA bundle; the revocation lists stay."""
        self.cas = parse_ca_bundle(ca_bundle, field)
        self.revision += 1

    def add_revocations(self, pems: list[bytes | str], field: str = "revocations") -> list[int]:
        """AddTrustStoreRevocations: every CRL is checked before any is added; returns their ids."""
        crls = [parse_crl(pem, self.cas, f"{field}[{i}]") for i, pem in enumerate(pems)]
        ids = []
        for crl in crls:
            self.revocations[self._next_id] = crl
            ids.append(self._next_id)
            self._next_id += 1
        if crls:
            self.revision += 1
        return ids

    def remove_revocations(self, ids: list[int], field: str = "revocation_ids") -> None:
        """RemoveTrustStoreRevocations: all the ids must exist, or nothing is removed."""
        missing = [i for i in ids if i not in self.revocations]
        if missing:
            raise LbsimError("RevocationIdNotFound", f"no revocation {missing[0]} in trust store '{self.name}'",
                             field=field, hint=f"its revocations: {sorted(self.revocations) or 'none'}")
        for i in ids:
            del self.revocations[i]
        self.revision += 1

    def to_state(self) -> dict[str, Any]:
        """The whole store as PEM text, for a worker process (`workers: N`) to take as it is (`from_state`)."""
        pem = serialization.Encoding.PEM
        return {"name": self.name, "revision": self.revision, "next_id": self._next_id,
                "cas": [c.public_bytes(pem).decode() for c in self.cas],
                "revocations": {rid: crl.public_bytes(pem).decode() for rid, crl in self.revocations.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrustStore:
        """A copy of worker 0's store: same CAs, revocation ids and revision (so the same listener versions)."""
        return cls(state["name"], [x509.load_pem_x509_certificate(c.encode()) for c in state["cas"]],
                   {int(rid): x509.load_pem_x509_crl(p.encode()) for rid, p in state["revocations"].items()},
                   state["revision"], state["next_id"])

    def to_dict(self) -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        return {
            "name": self.name,
            "revision": self.revision,
            "ca_certificates": [
                {"subject": c.subject.rfc4514_string(), "sha256": c.fingerprint(hashes.SHA256()).hex(),
                 "not_after": c.not_valid_after_utc.isoformat()} for c in self.cas
            ],
            "revocations": [
                {"revocation_id": rid, "issuer": crl.issuer.rfc4514_string(), "revoked": len(crl),
                 "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                 "expired": bool(crl.next_update_utc and crl.next_update_utc < now)}
                for rid, crl in self.revocations.items()
            ],
        }
