"""Key hygiene: no private key material in anything a lab run writes or answers.

A lab run with every kind of traffic (one-way and mutual handshakes, refused client certificates,
certificate uploads with keys through the API, a replacement, uploads that must fail), then reports over
its log. Scanned: every API answer, every log line (DEBUG and up, lbsim and mitmproxy), the connection
log, the traffic reports, the certificate store (keys are stored encrypted), everything else under the
lab's directory, and everything under pytest's temporary directories so far. What counts as key material:
a PEM private-key header, the DER of the lab's actual keys (PKCS#1, PKCS#8, SEC1) or its base64 as it
would appear in PEM lines, and the private number itself (hex and decimal). Files made only of PEM blocks
are inputs (the lab PKI written for clients, keys tests hand to lbsim) and are allowed to hold keys,
except in the store. Wall time: about 5 s.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
from pathlib import Path

import pytest

from simulator.certs import LabPKI
from simulator.cli import main as lbsim
from simulator.policies.probe import probe
from simulator.tools.soak import (PEM_KEY, files_to_scan, forget_records, is_key_input, key_needles, scan_for_keys,
                            start_reliability_lab)


class AllLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A lab run with everything that could leak a key; what it answered, logged and wrote."""
    out = tmp_path_factory.mktemp("reliability-keys")
    logs = AllLogs()
    logs.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    answers: list[str] = []
    extra = LabPKI(key_type="rsa", name="lbsim hygiene CA")
    try:
        lab = start_reliability_lab(out)
        try:
            def api(method: str, path: str, body: object = None) -> object:
                status, answer = lab.api(method, path, body)
                answers.append(json.dumps(answer))
                return status, answer

            files = lab.files
            # Traffic of every kind.
            for listener in ("aliyun-one-way", "tencent-one-way"):
                assert lab.get(listener, "/hygiene")[0] == 200
            assert lab.get("aliyun-mutual", "/hygiene", client="valid")[0] == 200
            for client in ("expired", "untrusted", "not_yet_valid"):
                result = probe("127.0.0.1", lab.port("aliyun-mutual"), cafile=files["ca"],
                               client_cert_pem=Path(files[f"client-{client}"]).read_bytes(),
                               client_key_pem=Path(files[f"client-{client}-key"]).read_bytes())
                assert not result.ok
            with socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way"))) as s:
                s.sendall(Path(files["server-rsa-key"]).read_bytes())  # a key sent as a "ClientHello"
            # Keys through the control plane: uploads, a replacement, and uploads that must fail.
            issued, other = extra.server("hygiene.lbsim.test"), extra.server("other.lbsim.test")
            status, info = api("POST", "/v1/certificates", {"type": "server", "name": "hygiene",
                                                           "cert": issued.chain_pem.decode(), "key": issued.key_pem.decode()})
            assert status == 201
            assert api("PUT", f"/v1/certificates/{info['id']}", {"cert": other.chain_pem.decode(), "key": other.key_pem.decode()})[0] == 200
            failing = [
                {"type": "server", "name": "mismatch", "cert": issued.chain_pem.decode(), "key": other.key_pem.decode()},
                {"type": "server", "name": "key-as-cert", "cert": other.key_pem.decode(), "key": other.key_pem.decode()},
                {"type": "server", "name": "broken-key", "cert": issued.chain_pem.decode(), "key": other.key_pem.decode()[:300]},
                {"type": "ca", "name": "ca-with-key", "cert": extra.ca_pem.decode(), "key": other.key_pem.decode()},
            ]
            for body in failing:
                assert api("POST", "/v1/certificates", body)[0] >= 400
            for path in ("/health", "/v1/certificates", f"/v1/certificates/{info['id']}", "/v1/listeners",
                         f"/v1/listeners/{lab.port('aliyun-mutual')}", "/v1/connections", "/v1/traffic?connections=1",
                         "/v1/backends"):
                assert api("GET", path)[0] == 200
            # Reports over the run, through the CLI.
            log_file = lab.lab.connection_log_path
            reports = out / "reports"
            reports.mkdir()
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert lbsim(["report", "traffic", "--log", str(log_file), "--csv", str(reports / "traffic.csv"),
                              "--jsonl", str(reports / "traffic.jsonl")]) == 0
                assert lbsim(["report", "traffic", "--api", lab.api_url, "--json"]) == 0
            answers.append(printed.getvalue())
            key_files = [files[k] for k in files if k.endswith("-key")]
            (out / "extra.key").write_bytes(other.key_pem)  # (an input: pure PEM; scanned for below anyway)
            key_files += [str(out / "extra.key")]
            forget_records(lab)
        finally:
            lab.stop()
    finally:
        root.removeHandler(logs)
        root.setLevel(old_level)
    return {"out": out, "answers": answers, "logs": logs.lines, "needles": key_needles(key_files),
            "store": lab.lab.store.home if hasattr(lab.lab.store, "home") else out / "store",
            "basetemp": tmp_path_factory.getbasetemp()}


def test_the_needles_find_the_keys_where_they_are(run: dict) -> None:
    """The scanner is not blind: it finds each key in its own file, in base64 and DER disguises."""
    import base64

    from cryptography.hazmat.primitives import serialization

    for key_file, needles in run["needles"].items():
        pem = Path(key_file).read_bytes()
        assert scan_for_keys({"pem": pem}, {key_file: needles})
        key = serialization.load_pem_private_key(pem, None)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        assert scan_for_keys({"json": json.dumps({"k": base64.b64encode(der).decode()}).encode()}, {key_file: needles})
        assert scan_for_keys({"blob": b"\x00" * 7 + der + b"\x00"}, {key_file: needles})
        assert is_key_input(pem) and not is_key_input(b"log line\n" + pem)


def test_no_api_answer_or_log_line_holds_key_material(run: dict) -> None:
    texts = {f"api answer {i}": a.encode() for i, a in enumerate(run["answers"])}
    texts.update({f"log line {i}": line.encode() for i, line in enumerate(run["logs"])})
    assert len(run["answers"]) > 10 and any(" refused: " in line for line in run["logs"])  # the refused clients were logged
    assert scan_for_keys(texts, run["needles"]) == []


def test_no_file_the_lab_wrote_holds_key_material(run: dict) -> None:
    out: Path = run["out"]
    written = files_to_scan([out])
    assert any(p.endswith("connections.jsonl") for p in written) and any("/reports/" in p for p in written)
    assert scan_for_keys(written, run["needles"]) == []


def test_the_store_keeps_keys_only_encrypted(run: dict) -> None:
    store = Path(run["store"])
    stored = files_to_scan([store], skip_inputs=False)  # even a pure-PEM file may not hold a key here
    assert stored, f"nothing stored under {store}"
    assert scan_for_keys(stored, run["needles"]) == []


def test_no_pytest_temporary_file_holds_key_material_outside_key_files(run: dict) -> None:
    """Every test so far in this session: outputs (not pure-PEM inputs) hold no private key."""
    written = files_to_scan([Path(run["basetemp"])])
    hits = [h for h in scan_for_keys(written, run["needles"])]
    hits += [f"{path}: a PEM private key" for path, data in written.items() if PEM_KEY.search(data)
             and f"{path}: a PEM private key" not in hits]
    assert hits == []
