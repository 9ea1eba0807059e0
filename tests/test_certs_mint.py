"""The lab PKI: what it mints passes the vendors' checks and works in a real TLS handshake."""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

from simulator.certs import Issued, LabPKI, check
from simulator.errors import LbsimError


@lru_cache(maxsize=None)
def pki(key_type: str = "rsa") -> LabPKI:
    return LabPKI(key_type)  # type: ignore[arg-type]


def test_rsa_server_passes_both_vendors_with_a_pkcs1_key() -> None:
    for intermediate, length in ((False, 2), (True, 3)):
        s = pki().server("localhost", "127.0.0.1", intermediate=intermediate)
        assert s.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        for profile in ("aliyun-slb", "tencent-clb"):
            result = check(profile, "server", s.chain_pem, s.key_pem)
            assert result.findings == [] and result.chain_length == length
        assert result.info is not None and result.info.sans == ["localhost", "127.0.0.1"]
        assert "PRIVATE" not in repr(s)


def test_ecdsa_server_is_for_tencent_only() -> None:
    s = pki("ecdsa").server("localhost")
    assert s.key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert check("tencent-clb", "server", s.chain_pem, s.key_pem).findings == []
    assert [f.code for f in check("aliyun-slb", "server", s.chain_pem, s.key_pem).findings] == ["UnsupportedKeyType"]
    # an ECC certificate next to an RSA one under the same CA (tencent listeners can hold both)
    mixed = pki().server("localhost", key_type="ecdsa")
    assert check("tencent-clb", "server", mixed.chain_pem, mixed.key_pem).ok


def test_ca_passes_the_ca_check() -> None:
    for profile in ("aliyun-slb", "tencent-clb"):
        assert check(profile, "ca", pki().ca_pem).findings == []


def test_client_states() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    valid, expired, future, stranger = (pki().client("alice", s) for s in  # type: ignore[arg-type]
                                        ("valid", "expired", "not_yet_valid", "other_ca"))
    assert valid.cert.not_valid_before_utc < now < valid.cert.not_valid_after_utc
    assert expired.cert.not_valid_after_utc < now
    assert future.cert.not_valid_before_utc > now
    assert stranger.cert.issuer != pki().ca_cert.subject == valid.cert.issuer
    assert stranger.cert.issuer == pki().other_ca().ca_cert.subject
    with pytest.raises(LbsimError) as e:
        pki().client("alice", "revoked")  # type: ignore[arg-type]
    assert e.value.code == "InvalidClientState"
    with pytest.raises(LbsimError) as e:
        LabPKI("dsa")  # type: ignore[arg-type]
    assert e.value.code == "InvalidKeyType"


def _handshake(server: Issued, ca: LabPKI, client: Issued | None = None, mutual: bool = False) -> None:
    """A real TLS handshake over memory BIOs: the server presents `server`, the client trusts `ca`.
    Raises `ssl.SSLError` when either side refuses the other."""
    with tempfile.TemporaryDirectory() as d:
        files = {name: Path(d, name) for name in ("chain", "key", "client", "client-key")}
        files["chain"].write_bytes(server.chain_pem)
        files["key"].write_bytes(server.key_pem)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(files["chain"], files["key"])
        if mutual:
            sctx.verify_mode = ssl.CERT_REQUIRED
            sctx.load_verify_locations(cadata=ca.ca_pem.decode())
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cadata=ca.ca_pem.decode())
        if client is not None:
            files["client"].write_bytes(client.cert_pem)
            files["client-key"].write_bytes(client.key_pem)
            cctx.load_cert_chain(files["client"], files["client-key"])
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = sctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, conn, out, peer_in in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    conn.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            break
    assert all(done.values()), "the handshake did not finish"
    c.write(b"ping")
    s_in.write(c_out.read())
    assert s.read(4) == b"ping"


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
@pytest.mark.parametrize("intermediate", [False, True])
def test_minted_server_chain_verifies_in_a_real_handshake(key_type: str, intermediate: bool) -> None:
    _handshake(pki(key_type).server("localhost", intermediate=intermediate), pki(key_type))


def test_minted_clients_in_a_mutual_handshake() -> None:
    server = pki().server("localhost")
    _handshake(server, pki(), pki().client("alice", "valid"), mutual=True)
    for state in ("expired", "not_yet_valid", "other_ca"):
        with pytest.raises(ssl.SSLError):
            _handshake(server, pki(), pki().client("mallory", state), mutual=True)  # type: ignore[arg-type]


def test_write_gives_files_ready_for_upload(tmp_path: Path) -> None:
    files = pki().write(tmp_path / "out", servers=["localhost,127.0.0.1", ("*.example.com",)],
                        clients=["valid", "expired", "not_yet_valid", "other_ca"], intermediate=True)
    assert set(files) == {
        "ca", "other-ca",
        "server-localhost.chain", "server-localhost.cert", "server-localhost.key",
        "server-wildcard.example.com.chain", "server-wildcard.example.com.cert", "server-wildcard.example.com.key",
        *(f"client-{s}.{part}" for s in ("valid", "expired", "not_yet_valid", "other_ca") for part in ("cert", "key")),
    }
    for role, path in files.items():
        assert path.is_file() and path.parent == tmp_path / "out"
        assert (path.stat().st_mode & 0o777 == 0o600) == role.endswith(".key")
    for stem in ("server-localhost", "server-wildcard.example.com"):
        chain, key = files[f"{stem}.chain"].read_bytes(), files[f"{stem}.key"].read_bytes()
        assert check("aliyun-slb", "server", chain, key).findings == []
    assert check("aliyun-slb", "ca", files["ca"].read_bytes()).findings == []
    assert check("aliyun-slb", "ca", files["other-ca"].read_bytes()).findings == []
