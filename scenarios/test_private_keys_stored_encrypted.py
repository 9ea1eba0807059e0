"""Tencent FAQ 12: "CLB HTTPS provides a certificate management system to manage and store user
certificates ... all the private keys uploaded to the certificate management system are stored in an
encrypted manner." """

import pytest

STATEMENT = "Uploaded private keys are stored encrypted (tencent FAQ 12)"


@pytest.mark.seed(STATEMENT)
def test_private_keys_stored_encrypted(lab, pki):
    issued = pki().server("localhost")
    info = lab.upload_server_certificate("at-rest", issued)
    key_body = b"".join(issued.key_pem.splitlines()[1:-1])  # the base64 of the key, without armor
    files = [p for p in lab.store_dir.rglob("*") if p.is_file() and p.name != "kek"]
    assert any(info["id"] in p.name for p in files)
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path
        assert key_body[:64] not in data.replace(b"\n", b""), path
    # The listener still gets the key, decrypted in memory only.
    listener = lab.add_listener({"server_certificate": info["name"]})
    assert lab.probe(listener).ok
    assert "key" not in {k.lower() for k in lab.certificate(info["id"])}  # the API never returns it
