"""`lbsim cert ...` through `simulator.cli.main`, and once through the installed `lbsim` script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    assert main(["cert", "mint", "--out", str(out), "--server", "localhost,127.0.0.1", "--intermediate",
                 "--clients", "valid,expired,not_yet_valid,other_ca"]) == 0
    ecc = out / "ecc"
    assert main(["cert", "mint", "--out", str(ecc), "--key-type", "ecdsa", "--json"]) == 0
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LBSIM_KEK", "00" * 32)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def _keys(pki_dir: Path) -> list[str]:
    lines = []
    for path in pki_dir.rglob("*.key.pem"):
        lines += [line for line in path.read_text().splitlines() if len(line) >= 40]
    return lines


def test_check_accepts_and_rejects_with_exit_codes(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain, key = str(pki_dir / "server-localhost.chain.pem"), str(pki_dir / "server-localhost.key.pem")
    for profile in ("aliyun-slb", "tencent-clb"):
        code, out, _ = run(capsys, "cert", "check", "--profile", profile, "--cert", chain, "--key", key)
        assert code == 0 and f"{profile} would accept" in out
    # wrong key and missing intermediate: one line per finding, then the verdict
    code, out, _ = run(capsys, "cert", "check", "--cert", str(pki_dir / "server-localhost.cert.pem"),
                       "--key", str(pki_dir / "client-valid.key.pem"))
    lines = out.splitlines()[5:]  # after what was checked (test_check_text_shows_what_was_checked)
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith("error: KeyCertificateMismatch: key: The certificate and private key that you "
                               "upload do not match") and "(hint: " in lines[0]
    assert lines[1].startswith("warning: IntermediateMissing: cert: ")
    assert lines[2] == "aliyun-slb would reject this server certificate: 1 error(s), 1 warning(s)"
    # ECDSA: tencent yes, aliyun no
    ecc = ["--cert", str(pki_dir / "ecc" / "server-localhost.chain.pem"),
           "--key", str(pki_dir / "ecc" / "server-localhost.key.pem")]
    assert run(capsys, "cert", "check", "--profile", "tencent-clb", *ecc)[0] == 0
    code, out, _ = run(capsys, "cert", "check", "--profile", "aliyun-slb", *ecc)
    assert code == 1
    # The message says what aliyun-slb accepts; the hint says how to get it, without saying it again.
    finding = next(line for line in out.splitlines() if line.startswith("error: UnsupportedKeyType: cert: "))
    assert finding.count("RSA certificates only") == 1 and "openssl req -new -newkey rsa:2048" in finding


def test_check_text_shows_what_was_checked(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Text mode names the certificate it judged, as `--json` does under `info`."""
    chain, key = str(pki_dir / "server-localhost.chain.pem"), str(pki_dir / "server-localhost.key.pem")
    code, out, _ = run(capsys, "cert", "check", "--cert", chain, "--key", key)
    _, data = run_json(capsys, "cert", "check", "--cert", chain, "--key", key)
    info = data["info"]
    fields = dict(line.split(":", 1) for line in out.splitlines()[:5])
    assert list(fields) == ["subject", "SANs", "issuer", "validity", "key"]
    assert fields["subject"].strip() == info["subject"] and fields["SANs"].strip() == ", ".join(info["sans"])
    assert fields["issuer"].strip().startswith(info["issuer"]) and "3 certificate(s) in the file" in fields["issuer"]
    assert info["not_before"][:10] in fields["validity"] and info["not_after"][:10] in fields["validity"]
    assert "(90 days; " in fields["validity"]  # a lab server certificate lives as long as a public CA's
    assert fields["key"].strip() == f"{info['key_type']}-{info['key_size']}, signed with {info['signature_hash']}"
    assert out.splitlines()[-1].startswith("aliyun-slb would accept")
    code, out, _ = run(capsys, "cert", "check", "--type", "ca", "--cert", str(pki_dir / "client-expired.cert.pem"))
    assert "expired 1 day(s) ago" in out and "validity:" in out


def test_check_json_strict_and_ca(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "cert", "check", "--cert", str(pki_dir / "server-localhost.cert.pem"),
                          "--key", str(pki_dir / "server-localhost.key.pem"))
    assert code == 0 and data["ok"] is True
    assert [f["code"] for f in data["findings"]] == ["IntermediateMissing"]
    assert data["info"]["sans"] == ["localhost", "127.0.0.1"] and data["info"]["chain_length"] == 1
    code, data = run_json(capsys, "cert", "check", "--strict", "--cert", str(pki_dir / "server-localhost.cert.pem"),
                          "--key", str(pki_dir / "server-localhost.key.pem"))
    assert code == 1 and data["findings"][0]["severity"] == "error"
    assert run(capsys, "cert", "check", "--type", "ca", "--cert", str(pki_dir / "ca.pem"))[0] == 0
    code, out, _ = run(capsys, "cert", "check", "--type", "ca", "--cert", str(pki_dir / "client-valid.cert.pem"))
    assert code == 1 and "NotACertificateAuthority" in out


def test_a_1024_bit_rsa_key_is_a_warning_and_strict_refuses_it(tmp_path: Path, home: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key

    ca_key, key = make_key("rsa", 2048), make_key("rsa", 1024)
    ca = make_cert("lab root", ca_key, ca=True)
    (tmp_path / "chain.pem").write_bytes(cert_pem(make_cert("localhost", key, issuer=(ca, ca_key),
                                                            sans=["localhost"]), ca))
    (tmp_path / "key.pem").write_bytes(key_pem(key))
    files = ["--cert", str(tmp_path / "chain.pem"), "--key", str(tmp_path / "key.pem")]
    for profile in ("aliyun-slb", "tencent-clb"):
        code, out, _ = run(capsys, "cert", "check", "--profile", profile, *files)
        findings = [line for line in out.splitlines() if line.startswith(("warning: ", "error: "))]
        assert code == 0 and findings[0].startswith("warning: WeakKeyAccepted: cert: ")
        code, out, _ = run(capsys, "cert", "check", "--profile", profile, "--strict", *files)
        findings = [line for line in out.splitlines() if line.startswith(("warning: ", "error: "))]
        assert code == 1 and findings[0].startswith("error: WeakKeyAccepted: cert: ")
        code, data = run_json(capsys, "cert", "upload-server", "--home", str(home), "--profile", profile,
                              "--strict", "--name", "weak", *files)
        assert code == 1 and data["error"]["code"] == "WeakKeyAccepted"
    assert run_json(capsys, "cert", "list", "--home", str(home))[1] == []  # refused: nothing stored
    code, data = run_json(capsys, "cert", "upload-server", "--home", str(home), "--name", "weak", *files)
    assert code == 0 and [w["code"] for w in data["warnings"]] == ["WeakKeyAccepted"]


def test_check_reads_stdin_and_reports_unreadable_files(pki_dir: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((pki_dir / "ca.pem").read_bytes())))
    assert run(capsys, "cert", "check", "--type", "ca", "--cert", "-")[0] == 0
    code, out, err = run(capsys, "cert", "check", "--cert", str(pki_dir / "nope.pem"))
    # CODE: field: message, like every finding `check` prints.
    assert code == 1 and err.startswith(f"error: FileNotReadable: cert: cannot read {pki_dir / 'nope.pem'}: "), err
    code, data = run_json(capsys, "cert", "check", "--cert", str(pki_dir / "nope.pem"))
    assert code == 1 and data["error"]["code"] == "FileNotReadable"


def test_check_an_oversized_file_without_reading_it_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(b"-" * (10 * 1024 * 1024))
    code, data = run_json(capsys, "cert", "check", "--cert", str(big), "--key", str(big))
    assert code == 1 and [(f["code"], f["field"]) for f in data["findings"]] == [("InputTooLarge", "cert"),
                                                                                ("InputTooLarge", "key")]


def test_store_commands(pki_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = ["--home", str(home)]
    chain, key = str(pki_dir / "server-localhost.chain.pem"), str(pki_dir / "server-localhost.key.pem")
    code, server = run_json(capsys, "cert", "upload-server", *h, "--name", "site", "--cert", chain, "--key", key)
    assert code == 0 and server["chain_length"] == 3 and server["type"] == "server"
    code, ca = run_json(capsys, "cert", "upload-ca", *h, "--name", "clients", "--cert", str(pki_dir / "ca.pem"),
                        "--profile", "tencent-clb")
    assert code == 0 and ca["profile"] == "tencent-clb"

    code, listed = run_json(capsys, "cert", "list", *h)
    assert [c["id"] for c in listed] == [server["id"], ca["id"]]
    code, out, _ = run(capsys, "cert", "list", *h, "--type", "ca")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "TYPE"] and ca["id"] in out
    assert server["id"] not in out

    code, out, _ = run(capsys, "cert", "describe", *h, "site")
    assert code == 0 and f"fingerprint         {server['fingerprint']}" in out

    code, renamed = run_json(capsys, "cert", "rename", *h, server["id"], "site-2")
    assert renamed["name"] == "site-2"
    code, replaced = run_json(capsys, "cert", "replace", *h, "site-2", "--cert", chain)  # keeps the key
    assert code == 0 and (replaced["id"], replaced["revision"]) == (server["id"], 2)

    code, deleted = run_json(capsys, "cert", "delete", *h, "clients")
    assert code == 0 and deleted == {"deleted": ca["id"]}
    code, data = run_json(capsys, "cert", "describe", *h, "clients")
    assert code == 1 and data["error"]["code"] == "CertificateNotFound"

    # everything printed so far: no key material
    outputs = json.dumps([server, ca, listed, renamed, replaced]) + out
    assert "PRIVATE KEY" not in outputs and not [k for k in _keys(pki_dir) if k in outputs]


def test_list_flags_expired_and_not_yet_valid(pki_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The FLAGS column, on the minted client certificates (expired, not yet valid, valid) uploaded as server
    certificates: both time problems are warnings, so the uploads succeed and list flags them."""
    h = ["--home", str(home)]
    for state in ("expired", "not_yet_valid", "valid"):
        code, _, _ = run(capsys, "cert", "upload-server", *h, "--profile", "tencent-clb", "--name", state,
                         "--cert", str(pki_dir / f"client-{state}.cert.pem"),
                         "--key", str(pki_dir / f"client-{state}.key.pem"))
        assert code == 0
    code, out, _ = run(capsys, "cert", "list", *h)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[-1] == "FLAGS"
    flags = {row.split()[1]: row.split()[-1] for row in rows}
    assert flags["expired"].split(",")[0] == "expired" and "not-yet-valid" not in flags["expired"]
    assert flags["not_yet_valid"].split(",")[0] == "not-yet-valid" and "expired" not in flags["not_yet_valid"]
    assert "expired" not in flags["valid"] and "not-yet-valid" not in flags["valid"]


def test_rejected_upload_prints_every_finding(pki_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "cert", "upload-server", "--home", str(home), "--name", "bad",
                         "--cert", str(pki_dir / "server-localhost.cert.pem"),
                         "--key", str(pki_dir / "client-valid.key.pem"), "--strict")
    assert code == 1 and out == ""
    assert "KeyCertificateMismatch" in err and "IntermediateMissing" in err
    code, data = run_json(capsys, "cert", "upload-server", "--home", str(home), "--name", "bad name",
                          "--cert", str(pki_dir / "server-localhost.chain.pem"),
                          "--key", str(pki_dir / "server-localhost.key.pem"))
    assert code == 1 and data["error"]["code"] == "InvalidName"
    code, data = run_json(capsys, "cert", "upload-server", "--home", str(home), "--name", "ecc",
                          "--cert", str(pki_dir / "ecc" / "server-localhost.chain.pem"),
                          "--key", str(pki_dir / "ecc" / "server-localhost.key.pem"))
    assert code == 1 and data["error"]["code"] == "UnsupportedKeyType"
    assert [f["code"] for f in data["error"]["details"]["findings"]] == ["UnsupportedKeyType"]


def test_mint_rejects_unknown_client_states(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "cert", "mint", "--out", str(tmp_path), "--clients", "valid,revoked")
    assert code == 1 and data["error"]["code"] == "InvalidClientState"
    assert not list(tmp_path.iterdir())


def test_the_installed_lbsim_script(pki_dir: Path) -> None:
    lbsim = Path(sys.executable).parent / "lbsim"
    ok = subprocess.run([str(lbsim), "cert", "check", "--profile", "aliyun-slb",
                         "--cert", str(pki_dir / "server-localhost.chain.pem"),
                         "--key", str(pki_dir / "server-localhost.key.pem")], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "aliyun-slb would accept this server certificate" in ok.stdout
    bad = subprocess.run([str(lbsim), "cert", "check", "--cert", str(pki_dir / "ca.pem"),
                          "--key", str(pki_dir / "server-localhost.key.pem"), "--json"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and not json.loads(bad.stdout)["ok"]


def test_top_level_help_is_written_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    """`lbsim --help`: what lbsim is, each command with its purpose, where to start and where the docs are."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "simulates the HTTPS listeners of cloud load balancers" in out and "aliyun-slb" in out and "tencent-clb" in out
    for command in ("cert", "up", "run", "scenarios", "load", "report", "bench"):
        assert re.search(rf"^    {command}\b", out, re.M), command
    assert "start here:" in out and "docs/run.md" in out and "README.md" in out
    assert "dispatcher" not in out and "concern" not in out  # the developers' notes stay in the module docstring
