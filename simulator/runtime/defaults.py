"""The built-in default lab: a minted PKI, one one-way and one mutual listener per profile (the ALB: one per
mutual-TLS mode), two mock backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.certs import LabPKI
from simulator.model.config import LabConfig, parse_config

SERVER_NAMES = ("localhost", "127.0.0.1", "lbsim.test", "*.lbsim.test")
CLIENT_STATES = ("valid", "expired", "not_yet_valid")


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path.resolve())  # absolute: valid from lab.yaml in another folder and from any cwd


def mint_default_pki(pki_dir: Path) -> dict[str, str]:
    """RSA and ECDSA server certificates, a client CA with valid/expired/not-yet-valid/revoked clients and a
    CRL revoking the revoked one (`crl`, for the ALB's trust store), and a stranger."""
    files: dict[str, str] = {}
    rsa = LabPKI(key_type="rsa")
    ecdsa = LabPKI(key_type="ecdsa")
    clients = LabPKI(key_type="rsa", name="lbsim lab client CA")
    stranger = LabPKI(key_type="rsa", name="lbsim untrusted CA")
    files["ca"] = write(pki_dir / "ca.pem", rsa.ca_pem + ecdsa.ca_pem)  # what clients trust
    for label, pki in (("rsa", rsa), ("ecdsa", ecdsa)):
        issued = pki.server(*SERVER_NAMES)
        files[f"server-{label}"] = write(pki_dir / f"server-{label}.pem", issued.chain_pem)
        files[f"server-{label}-key"] = write(pki_dir / f"server-{label}.key", issued.key_pem)
    files["client-ca"] = write(pki_dir / "client-ca.pem", clients.ca_pem)
    for state in CLIENT_STATES:
        issued = clients.client(f"lbsim-client-{state}", state=state)
        files[f"client-{state}"] = write(pki_dir / f"client-{state}.pem", issued.chain_pem)
        files[f"client-{state}-key"] = write(pki_dir / f"client-{state}.key", issued.key_pem)
    revoked = clients.client("lbsim-client-revoked")  # valid, but the CRL revokes it
    files["client-revoked"] = write(pki_dir / "client-revoked.pem", revoked.chain_pem)
    files["client-revoked-key"] = write(pki_dir / "client-revoked.key", revoked.key_pem)
    files["crl"] = write(pki_dir / "client-ca.crl.pem", clients.crl(revoked, days=365))
    issued = stranger.client("lbsim-client-untrusted")
    files["client-untrusted"] = write(pki_dir / "client-untrusted.pem", issued.chain_pem)
    files["client-untrusted-key"] = write(pki_dir / "client-untrusted.key", issued.key_pem)
    return files


def default_lab_data(files: dict[str, str], time_scale: float = 1.0) -> dict[str, Any]:
    """The default lab as the YAML a user would write (also written to `lab.yaml` beside the PKI)."""
    backends = [{"backend": "web-1", "weight": 100}, {"backend": "web-2", "weight": 100}]
    fast = {"interval": 2, "healthy_threshold": 2, "unhealthy_threshold": 2}
    return {
        "profile": "aliyun-slb",
        "time_scale": time_scale,
        "certificates": [
            {"name": "lab-rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]},
            {"name": "lab-ecdsa", "type": "server", "cert": files["server-ecdsa"], "key": files["server-ecdsa-key"]},
            {"name": "lab-client-ca", "type": "ca", "cert": files["client-ca"]},
        ],
        # The ALB verifies clients against a trust store (the same client CA) whose CRL revokes client-revoked.
        "trust_stores": [{"name": "lab-clients", "ca_bundle": files["client-ca"], "revocations": [files["crl"]]}],
        "backends": [{"name": "web-1", "port": 0}, {"name": "web-2", "port": 0}],
        "listeners": [
            {"name": "aliyun-one-way", "port": 0, "profile": "aliyun-slb", "server_certificate": "lab-rsa",
             "backend_servers": backends, "health_check": fast, "headers": {"slb_ip": True, "slb_id": True},
             "http2": False},  # both vendors default to HTTP/2 on: these three show a listener with it off
            {"name": "aliyun-mutual", "port": 0, "profile": "aliyun-slb", "server_certificate": "lab-rsa",
             "ca_certificate": "lab-client-ca", "tls_policy": "tls_cipher_policy_1_2_strict_with_1_3",
             "backend_servers": backends, "health_check": fast, "http2": False},
            {"name": "tencent-one-way", "port": 0, "profile": "tencent-clb", "server_certificate": "lab-rsa",
             "sni": {"ecdsa.lbsim.test": "lab-ecdsa"}, "http2": True, "backend_servers": backends, "health_check": fast},
            {"name": "tencent-mutual", "port": 0, "profile": "tencent-clb", "server_certificate": "lab-ecdsa",
             "ca_certificate": "lab-client-ca", "ssl_verify_client": "optional", "backend_servers": backends,
             "health_check": fast, "http2": False},
            # AWS ALB: the console's post-quantum default policy one-way, and both mutual-TLS modes on other
            # policies (each configured policy spares the report a temporary listener).
            {"name": "aws-one-way", "port": 0, "profile": "aws-alb", "server_certificate": "lab-rsa",
             "tls_policy": "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", "backend_servers": backends,
             "health_check": fast},
            {"name": "aws-verify", "port": 0, "profile": "aws-alb", "server_certificate": "lab-rsa",
             "tls_policy": "ELBSecurityPolicy-TLS13-1-2-2021-06", "mtls_mode": "verify", "trust_store": "lab-clients",
             "backend_servers": backends, "health_check": fast},
            {"name": "aws-passthrough", "port": 0, "profile": "aws-alb", "server_certificate": "lab-ecdsa",
             "mtls_mode": "passthrough", "backend_servers": backends, "health_check": fast},  # the API's default policy
        ],
    }


def default_lab(out_dir: Path, time_scale: float = 1.0) -> tuple[LabConfig, dict[str, str]]:
    """Mint the PKI under `out_dir/pki` and return the default lab's configuration and the PEM file paths."""
    files = mint_default_pki(Path(out_dir) / "pki")
    return parse_config(default_lab_data(files, time_scale), base_dir=str(out_dir)), files
