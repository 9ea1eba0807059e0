"""The store: upload, list, describe, rename, replace, delete, quota, encryption at rest, the KEK."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from simulator.certs import CertificateStore, CertInfo, Issued, LabPKI
from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key
from simulator.certs.parse import spki
from simulator.certs.store import default_home, parse_kek
from simulator.errors import LbsimError

KEK = bytes(range(32))


@lru_cache(maxsize=None)
def pki(key_type: str = "rsa") -> LabPKI:
    return LabPKI(key_type)  # type: ignore[arg-type]


def issued(name: str = "localhost", key_type: str = "rsa") -> Issued:
    return _issued(name, key_type)  # one cache key however it is called


@lru_cache(maxsize=None)
def _issued(name: str, key_type: str) -> Issued:
    return pki(key_type).server(name)


@pytest.fixture
def store(tmp_path: Path) -> CertificateStore:
    return CertificateStore(tmp_path / "home", kek=KEK)


def upload(store: CertificateStore, name: str = "site", which: str = "localhost", **kw: Any) -> CertInfo:
    i = issued(which)
    return store.upload_server(name, i.chain_pem, i.key_pem, **kw)


def raises(code: str, fn: Any, *args: Any, **kw: Any) -> LbsimError:
    with pytest.raises(LbsimError) as e:
        fn(*args, **kw)
    assert e.value.code == code, e.value
    return e.value


# --- upload, list, describe -------------------------------------------------------------------

def test_upload_server_returns_the_metadata(store: CertificateStore) -> None:
    info = upload(store)
    cert = issued().cert
    assert re.fullmatch(r"\d{16}_[0-9a-f]{11}_\d{10}_\d{10}", info.id)  # aliyun-shaped id
    assert re.fullmatch(r"([0-9A-F]{2}:){19}[0-9A-F]{2}", info.fingerprint)
    assert info.fingerprint.replace(":", "") == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert len(info.fingerprint_sha256.split(":")) == 32
    assert info.subject.startswith("CN=localhost") and info.issuer == cert.issuer.rfc4514_string()
    assert info.sans == ["localhost"]
    assert int(info.serial, 16) == cert.serial_number
    assert (info.key_type, info.key_size, info.chain_length) == ("RSA", 2048, 2)
    assert (info.type, info.profile, info.revision, info.warnings) == ("server", "aliyun-slb", 1, [])
    assert not info.expired and not info.not_yet_valid
    assert info.not_after == cert.not_valid_after_utc
    d = info.to_dict()
    assert json.loads(json.dumps(d)) == d and d["not_after"].endswith("Z")


def test_tencent_ids_and_ecdsa(store: CertificateStore) -> None:
    i = issued("localhost", "ecdsa")
    info = store.upload_server("ecc", i.chain_pem, i.key_pem, profile="tencent-clb")
    assert re.fullmatch(r"[A-Za-z0-9]{8}", info.id)
    assert (info.key_type, info.key_size) == ("ECDSA", 256)
    raises("UnsupportedKeyType", store.upload_server, "ecc", i.chain_pem, i.key_pem, profile="aliyun-slb")


def test_upload_rejection_carries_every_finding(store: CertificateStore) -> None:
    i = issued()
    err = raises("Pkcs8NotSupported", store.upload_server, "x", i.cert_pem,
                 key_pem(serialization.load_pem_private_key(i.key_pem, None), "pkcs8"))
    assert [f["code"] for f in err.details["findings"]] == ["Pkcs8NotSupported", "IntermediateMissing"]
    assert store.list() == []


def test_upload_ca_list_and_describe(store: CertificateStore) -> None:
    server = upload(store)
    ca = store.upload_ca("clients", pki().ca_pem)
    assert (ca.type, ca.chain_length) == ("ca", 1)
    assert [i.id for i in store.list()] == [server.id, ca.id]
    assert [i.id for i in store.list("ca")] == [ca.id]
    assert store.describe(ca.id) == store.describe("clients")
    raises("InvalidCertificateType", store.list, "client")
    raises("CertificateNotFound", store.describe, "nope")
    raises("NotACertificateAuthority", store.upload_ca, "bad", issued().cert_pem)


def test_list_is_in_upload_order_whatever_the_ids(store: CertificateStore) -> None:
    ids = [store.upload_ca(f"ca{i}", pki().ca_pem, profile="tencent-clb").id for i in range(6)]  # random ids
    store.delete(ids.pop(2))
    ids.append(store.upload_ca("late", pki().ca_pem, profile="tencent-clb").id)
    assert [i.id for i in store.list()] == ids


def test_names_follow_the_vendor_rule_and_need_not_be_unique(store: CertificateStore) -> None:
    a, b = upload(store, "same"), upload(store, "same")
    assert a.id != b.id
    err = raises("AmbiguousName", store.describe, "same")
    assert set(err.details["ids"]) == {a.id, b.id}
    assert store.describe(a.id).name == "same"
    upload(store, "证书-1/a.b_c*")
    for bad in ["", "x" * 81, "has space", "semi;colon", 7]:
        raises("InvalidName", upload, store, bad)
    upload(store, "x" * 80)
    upload(store, "has space", profile="tencent-clb")  # UNCONFIRMED tencent rule allows spaces


def test_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CertificateStore(tmp_path, kek=KEK, quota=2)
    upload(store, "a")
    store.upload_ca("b", pki().ca_pem)
    err = raises("QuotaExceeded", upload, store, "c")
    assert err.details["quota"] == 2
    monkeypatch.setenv("LBSIM_CERT_QUOTA", "3")
    upload(CertificateStore(tmp_path, kek=KEK), "c")
    assert CertificateStore(tmp_path, kek=KEK).quota == 3
    assert CertificateStore(tmp_path / "other", kek=KEK, quota=None).quota == 3
    monkeypatch.delenv("LBSIM_CERT_QUOTA")
    assert CertificateStore(tmp_path / "other", kek=KEK).quota == 100


def test_the_store_persists_across_instances(tmp_path: Path) -> None:
    info = upload(CertificateStore(tmp_path, kek=KEK))
    again = CertificateStore(tmp_path, kek=KEK)
    assert again.describe(info.id) == info
    assert spki(again.material(info.id).key) == spki(issued().cert.public_key())


# --- validity flags ---------------------------------------------------------------------------

def _expired() -> tuple[bytes, bytes]:
    key = make_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = make_cert("old.example.com", key, not_before=now - dt.timedelta(days=90), not_after=now - dt.timedelta(days=1))
    return cert_pem(cert), key_pem(key)


def test_expired_is_accepted_and_flagged_unless_strict(store: CertificateStore) -> None:
    chain, key = _expired()
    info = store.upload_server("old", chain, key)
    assert info.expired and [w.code for w in info.warnings] == ["CertificateExpired"]
    assert store.describe(info.id).to_dict()["expired"] is True
    raises("CertificateExpired", store.upload_server, "old", chain, key, strict=True)


def test_not_yet_valid_is_accepted_and_flagged_unless_strict(store: CertificateStore) -> None:
    key = make_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = make_cert("early.example.com", key, not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=90))
    info = store.upload_server("early", cert_pem(cert), key_pem(key))
    assert info.not_yet_valid and not info.expired
    assert [w.code for w in info.warnings] == ["CertificateNotYetValid"]
    described = store.describe(info.id)
    assert described.not_yet_valid is True and described.to_dict()["not_yet_valid"] is True
    assert store.describe(upload(store).id).not_yet_valid is False
    raises("CertificateNotYetValid", store.upload_server, "early", cert_pem(cert), key_pem(key), strict=True)


def test_expiry_is_computed_at_describe_time(store: CertificateStore) -> None:
    key = make_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = make_cert("soon.example.com", key, not_after=now + dt.timedelta(seconds=2))
    info = store.upload_server("soon", cert_pem(cert), key_pem(key))
    assert not info.expired
    record = next(store.dir.glob("*.json"))
    data = json.loads(record.read_text())
    data["meta"]["not_after"] = "2001-01-01T00:00:00Z"  # as if time had passed
    record.write_text(json.dumps(data))
    assert store.describe(info.id).expired


# --- rename, replace, delete, subscribers ------------------------------------------------------

def test_rename(store: CertificateStore) -> None:
    info = upload(store)
    renamed = store.rename(info.id, "new-name")
    assert (renamed.id, renamed.name, renamed.revision) == (info.id, "new-name", 1)
    assert store.describe("new-name").id == info.id
    raises("InvalidName", store.rename, info.id, "bad name")


def test_replace_keeps_the_id_and_bumps_the_revision(store: CertificateStore) -> None:
    seen: list[str] = []
    store.subscribe(seen.append)
    info = upload(store)
    other = issued("example.com")
    new = store.replace(info.id, other.chain_pem, other.key_pem)
    assert (new.id, new.revision, new.sans) == (info.id, 2, ["example.com"])
    assert new.fingerprint != info.fingerprint
    material = store.material(info.id)
    assert material.revision == 2 and material.chain[0].subject.rfc4514_string().startswith("CN=example.com")
    assert seen == [info.id]
    # a renewal under the same key: no key needed
    key = serialization.load_pem_private_key(other.key_pem, None)
    renewed = make_cert("example.com", key, sans=["example.com"])
    assert store.replace(info.id, cert_pem(renewed)).revision == 3
    # a certificate for another key, without that key: refused, nothing changes
    raises("KeyCertificateMismatch", store.replace, info.id, issued().chain_pem)
    assert store.describe(info.id).revision == 3
    ca = store.upload_ca("ca", pki().ca_pem)
    assert store.replace(ca.id, LabPKI("rsa").ca_pem).revision == 2
    raises("UnexpectedPrivateKey", store.replace, ca.id, pki().ca_pem, issued().key_pem)


def test_delete_is_refused_while_listeners_use_it(store: CertificateStore) -> None:
    seen: list[str] = []
    unsubscribe = store.subscribe(seen.append)
    info = upload(store)
    store.usage = lambda cert_id: ["slb-1:443", "clb-2:8443"] if cert_id == info.id else []
    err = raises("CertificateInUse", store.delete, "site")
    assert err.details["listeners"] == ["clb-2:8443", "slb-1:443"] and "slb-1:443" in err.message
    store.usage = lambda cert_id: []
    store.delete("site")
    raises("CertificateNotFound", store.describe, info.id)
    assert seen == [info.id]
    assert sorted(p.name for p in store.dir.iterdir()) == [".lock"]  # content files went too
    unsubscribe()
    store.delete(upload(store).id)
    assert seen == [info.id]


def test_a_failing_subscriber_does_not_fail_the_store(store: CertificateStore, caplog: Any) -> None:
    def boom(cert_id: str) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(boom)
    info = upload(store)
    store.replace(info.id, issued().chain_pem, issued().key_pem)
    assert "listener bug" in caplog.text


def test_material_of_a_ca_has_no_key_and_reprs_hide_keys(store: CertificateStore) -> None:
    ca = store.upload_ca("ca", pki().ca_pem)
    m = store.material(ca.id)
    assert m.key is None and m.key_pem is None and len(m.chain) == 1
    server = store.material(upload(store).id)
    assert b"PRIVATE KEY" in server.key_pem
    assert "PRIVATE" not in repr(server) and "key=" not in repr(server)


def test_threads_uploading_at_once(store: CertificateStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                upload(store, f"t{n}-{i}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(store.list()) == 20


# --- at rest ----------------------------------------------------------------------------------

def _secrets_of(pem: bytes) -> list[bytes]:
    """Things that must not appear in clear: the PEM label, the DER, every base64 line of the key."""
    key = serialization.load_pem_private_key(pem, None)
    ders = [key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
            for fmt in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8)]
    lines = [line for line in pem.splitlines() if len(line) >= 40]
    return [b"PRIVATE KEY", *ders, *[base64.b64encode(d)[:40] for d in ders], *lines]


def test_no_key_material_in_clear_under_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("LBSIM_KEK", raising=False)
    store = CertificateStore(tmp_path)  # KEK from a key file under the home
    rsa_issued, ec_issued = issued(), issued("localhost", "ecdsa")
    a = store.upload_server("rsa", rsa_issued.chain_pem, rsa_issued.key_pem)
    b = store.upload_server("ec", ec_issued.chain_pem, ec_issued.key_pem, profile="tencent-clb")
    store.replace(a.id, rsa_issued.chain_pem)
    store.rename(b.id, "ec2")
    infos = [i.to_dict() for i in store.list()] + [store.describe(a.id).to_dict()]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in _secrets_of(rsa_issued.key_pem) + _secrets_of(ec_issued.key_pem):
                assert secret not in data, f"{path} holds key material in clear"
    text = json.dumps(infos) + caplog.text
    for secret in _secrets_of(rsa_issued.key_pem) + _secrets_of(ec_issued.key_pem):
        assert secret.decode("latin-1") not in text
    for path in tmp_path.rglob("*"):  # nothing readable by others
        assert path.stat().st_mode & 0o077 == 0, path


def test_key_file_is_created_0600_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LBSIM_KEK", raising=False)
    store = CertificateStore(tmp_path)
    kek_file = tmp_path / "kek"
    store.upload_ca("ca", pki().ca_pem)
    assert not kek_file.exists()  # a CA upload encrypts nothing
    info = upload(store)
    assert kek_file.stat().st_mode & 0o777 == 0o600
    assert len(parse_kek(kek_file.read_text())) == 32
    assert CertificateStore(tmp_path).material(info.id).key is not None  # the next process reads it
    kek_file.chmod(0o644)
    raises("InsecureKekFile", CertificateStore(tmp_path).material, info.id)


def test_kek_from_the_environment_and_a_separate_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LBSIM_KEK", base64.b64encode(KEK).decode())
    info = upload(CertificateStore(tmp_path / "a"))
    assert not (tmp_path / "a" / "kek").exists()
    assert CertificateStore(tmp_path / "a", kek=KEK).material(info.id).key is not None
    monkeypatch.setenv("LBSIM_KEK", KEK.hex())
    assert CertificateStore(tmp_path / "a").material(info.id).key is not None
    monkeypatch.delenv("LBSIM_KEK")
    monkeypatch.setenv("LBSIM_KEK_FILE", str(tmp_path / "secrets" / "kek"))
    upload(CertificateStore(tmp_path / "b"))
    assert (tmp_path / "secrets" / "kek").exists() and not (tmp_path / "b" / "kek").exists()


def test_wrong_or_invalid_kek(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = upload(CertificateStore(tmp_path, kek=KEK))
    raises("KekMismatch", CertificateStore(tmp_path, kek=b"\x01" * 32).material, info.id)
    monkeypatch.setenv("LBSIM_KEK", "not a key")
    raises("InvalidKek", CertificateStore(tmp_path).material, info.id)
    raises("InvalidKek", CertificateStore, tmp_path, kek=b"short")


def test_tampered_or_swapped_ciphertext_fails_authentication(store: CertificateStore) -> None:
    a, b = upload(store, "a"), upload(store, "b", "example.com")
    key_a = next(store.dir.glob(f"{a.id}.r1.key.enc"))
    key_b = next(store.dir.glob(f"{b.id}.r1.key.enc"))
    key_a.write_bytes(key_b.read_bytes())  # the cert id is the associated data: b's key cannot pass as a's
    raises("StoreCorrupt", store.material, a.id)
    box = json.loads(key_b.read_text())
    box["ciphertext"] = base64.b64encode(b"x" * 64).decode()
    key_b.write_text(json.dumps(box))
    raises("StoreCorrupt", store.material, b.id)


def test_store_sweeps_leftovers_and_reports_corruption(store: CertificateStore) -> None:
    info = upload(store)
    (store.dir / ".stale.json.tmp").write_bytes(b"half")
    (store.dir / "ghost.r1.chain.pem").write_bytes(b"orphan of a crashed upload")
    (store.dir / f"{info.id}.r9.key.enc").write_bytes(b"orphan revision")
    assert [i.id for i in store.list()] == [info.id]  # loads fine with leftovers present
    upload(store, "next")
    names = {p.name for p in store.dir.iterdir()}
    assert not {".stale.json.tmp", "ghost.r1.chain.pem", f"{info.id}.r9.key.enc"} & names
    (store.dir / f"{info.id}.json").write_text("{ truncated")
    raises("StoreCorrupt", store.list)
    (store.dir / f"{info.id}.json").unlink()
    chain = store.dir / store._records()[store.describe("next").id]["files"]["chain"]
    chain.write_bytes(chain.read_bytes().replace(b"M", b"N", 1))
    raises("StoreCorrupt", store.material, "next")


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LBSIM_HOME", str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    assert CertificateStore(kek=KEK).home == tmp_path / "h"
    monkeypatch.delenv("LBSIM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "lbsim"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_home() == tmp_path / "user" / ".local" / "share" / "lbsim"


def test_parse_kek_formats() -> None:
    assert parse_kek(KEK.hex()) == KEK
    assert parse_kek(base64.b64encode(KEK).decode() + "\n") == KEK
    assert parse_kek(base64.urlsafe_b64encode(b"\xfb" * 32).decode()) == b"\xfb" * 32
    assert len(parse_kek(base64.b64encode(os.urandom(16)).decode())) == 16
    with pytest.raises(LbsimError):
        parse_kek(base64.b64encode(b"x" * 20).decode())
