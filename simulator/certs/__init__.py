"""Certificates: vendor-faithful validation, an encrypted store, and a lab PKI.

    from simulator.certs import CertificateStore, LabPKI, check

    pki = LabPKI()
    server = pki.server("localhost")
    check("aliyun-slb", "server", server.chain_pem, server.key_pem).ok   # True
    CertificateStore().upload_server("lab", server.chain_pem, server.key_pem)
"""

from simulator.certs.mint import Issued, LabPKI
from simulator.certs.parse import MAX_FIELD_BYTES, CertMeta
from simulator.certs.store import CertificateStore, CertInfo, Material, default_home
from simulator.certs.validate import PROFILES, RULES, CheckResult, Finding, check

__all__ = [
    "MAX_FIELD_BYTES",
    "PROFILES",
    "RULES",
    "CertInfo",
    "CertMeta",
    "CertificateStore",
    "CheckResult",
    "Finding",
    "Issued",
    "LabPKI",
    "Material",
    "check",
    "default_home",
]
