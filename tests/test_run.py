"""`lbsim run` for real (the default lab, the whole built-in suite), a run that must fail, and
`lbsim scenarios run` on the authoring guide's own example."""

from __future__ import annotations

import csv
import os
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from simulator.certs import LabPKI
from simulator.harness.compliance import BASELINES
from simulator.net import free_port
from simulator.harness.run import TRAFFIC_KINDS, traffic_section
from simulator.metering.billing import MODELS
from simulator.harness.scenario import LabBuilder, start

ROOT = Path(__file__).resolve().parent.parent
LBSIM = [sys.executable, "-m", "simulator.cli"]
KINDS = {"none", "valid", "untrusted", "expired", "not_yet_valid", "revoked"}
DEFAULT_LISTENERS = ["aliyun-one-way", "aliyun-mutual", "tencent-one-way", "tencent-mutual", "aws-one-way", "aws-verify",
                     "aws-passthrough"]


def lbsim(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LBSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    out = tmp_path_factory.mktemp("run") / "results"
    started = time.monotonic()
    proc = lbsim("run", "--out", str(out), cwd=ROOT)
    return proc, out, time.monotonic() - started


def test_run_passes_on_the_default_lab(default_run) -> None:
    proc, out, took = default_run
    print(f"lbsim run on the default lab: {took:.1f} s wall")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # Progress while it runs, a summary at the end.
    assert "running " in proc.stdout and re.search(r"\[\s*1/\d+\] PASS", proc.stdout)
    assert re.search(r"\d+ passed, 0 failed(, \d+ xfailed \(known bugs\))? in [\d.]+ s", proc.stdout)
    for name in ("report.json", "report.md", "junit.xml", "connections.jsonl", "traffic.csv", "lab.yaml"):
        assert (out / name).is_file(), name


def test_report_json_schema_and_contents(default_run) -> None:
    _, out, _ = default_run
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"lbsim_version", "started", "duration_s", "lab", "summary", "scenarios", "listeners", "traffic"}
    summary = report["summary"]
    assert summary["failed"] == 0 and summary["total"] == len(report["scenarios"]) >= 60
    assert summary["passed"] + summary["xfailed"] == summary["total"]
    assert report["problems"] == []
    for scenario in report["scenarios"]:
        assert set(scenario) == {"name", "statement", "outcome", "duration_s", "message"}
        assert scenario["statement"], scenario["name"]
        # Only scenarios marked as known bugs (xfail, strict) may fail, with the bug as the message.
        assert scenario["outcome"] == "passed" or (scenario["outcome"] == "xfailed" and "bug:" in scenario["message"])
    assert report["lab"]["source"] == "built-in default lab" and report["lab"]["time_scale"] == 0.01

    listeners = {l["name"]: l for l in report["listeners"]}
    assert list(listeners) == DEFAULT_LISTENERS
    for name, l in listeners.items():
        assert {"name", "port", "profile", "policy", "mutual", "key_type"} <= set(l)
        m = l["tls_matrix"]
        assert m["match"] is True and m["expected"] == m["observed"], name
        rows = {r["client"]: r for r in l["mutual_matrix"]}
        assert set(rows) == KINDS and all(r["ok"] for r in rows.values()), name
        revoked = {"revoked"} if l["profile"] != "aws-alb" else set()  # only the ALB's trust store has the CRL
        assert {r["client"] for r in rows.values() if r["expected"] == "Success"} == (
            {"valid"} | revoked if l["verify_client"] == "on" else {"none", "valid"} | revoked
            if l["verify_client"] == "optional" else KINDS)
        assert l["groups"] is None or l["groups"]["match"], (name, l["groups"])
        assert set(l["compliance"]) == set(BASELINES)
        for verdict in l["compliance"].values():
            assert verdict["verdict"] in ("pass", "fail") and verdict["evidence"]
        assert l["cross_check"]["agrees"] is True, l["cross_check"]
    assert listeners["aliyun-one-way"]["tls_matrix"]["observed"]["TLSv1"]  # tls_cipher_policy_1_0 really allows TLS 1.0
    # The vendor's other named policies, each measured on a temporary listener: the matrix covers the whole table.
    policies = {p["policy"]: p for p in report["policies"]}
    aws = {p for p in policies if p.startswith("ELBSecurityPolicy-")}
    assert set(policies) - aws == {"tls_cipher_policy_1_1", "tls_cipher_policy_1_2", "tls_cipher_policy_1_2_strict"}
    assert len(aws) == 24 - 3  # every ALB policy but the three the default lab's listeners use
    for name, p in policies.items():
        assert p["temporary"] and p["profile"] == ("aws-alb" if name in aws else "aliyun-slb") and not p["mutual"], name
        assert p["tls_matrix"]["match"] is True and p["tls_matrix"]["expected"] == p["tls_matrix"]["observed"], name
        assert p["groups"] is None or p["groups"]["match"], (name, p["groups"])
        # A client offering only the hybrid X25519MLKEM768 gets in exactly on the post-quantum policies.
        if p["groups"] is not None:
            assert ("X25519MLKEM768" in p["groups"]["observed"]) == ("-PQ-" in name), name
    verify = {r["client"]: r for r in listeners["aws-verify"]["mutual_matrix"]}
    assert verify["revoked"]["observed"] == "Failed:ClientCertRevoked" and verify["revoked"]["vendor_status"] == "Failed:ClientCertCrlHit"
    assert "X25519MLKEM768" in listeners["aws-one-way"]["groups"]["observed"]
    assert "TLSv1" not in policies["tls_cipher_policy_1_1"]["tls_matrix"]["observed"]
    assert set(policies["tls_cipher_policy_1_2_strict"]["tls_matrix"]["observed"]) == {"TLSv1.2"}
    assert listeners["aliyun-one-way"]["compliance"]["pci-dss-4.0"]["verdict"] == "fail"
    assert any(e.startswith("TLSv1 accepted") for e in listeners["aliyun-one-way"]["compliance"]["pci-dss-4.0"]["evidence"])
    assert listeners["aliyun-mutual"]["compliance"]["pci-dss-4.0"]["verdict"] == "pass"
    # The lab's PKI is a realistic one (90-day server certificates): no verdict fails on the certificate's
    # lifetime, so a fail is about the policy unless the certificate's key type is the point (modern: ECDSA).
    for entry in [*listeners.values(), *policies.values()]:
        for baseline, verdict in entry["compliance"].items():
            assert not any("lifespan" in f for f in verdict["certificate_findings"]), (entry["name"], baseline)
            assert verdict["evidence"] == verdict["policy_findings"] + verdict["certificate_findings"] or verdict["verdict"] == "pass"
        assert entry["compliance"]["mozilla-intermediate"]["certificate"] == "pass", entry["name"]
    assert listeners["tencent-mutual"]["compliance"]["mozilla-modern"]["certificate"] == "pass"  # ECDSA, 90 days
    assert listeners["aliyun-one-way"]["compliance"]["mozilla-modern"]["certificate"] == "fail"  # RSA
    assert listeners["aliyun-one-way"]["mozilla_policy_level"] == "old"
    assert {p["mozilla_policy_level"] for name, p in policies.items() if name not in aws} == {"old"}
    # DES-CBC3-SHA is in the vendor's table but not in this OpenSSL build: named, never expected.
    assert listeners["aliyun-one-way"]["unavailable"] == ["DES-CBC3-SHA"] and listeners["aliyun-mutual"]["unavailable"] == []
    assert "DES-CBC3-SHA" not in str(listeners["aliyun-one-way"]["tls_matrix"]["expected"])
    # Parametrised cases exist only where their statement applies.
    names = [s["name"] for s in report["scenarios"]]
    assert {n for n in names if "::test_configured_listeners_sni[" in n} == {
        "test_aliyun_no_sni.py::test_configured_listeners_sni[aliyun-one-way]",
        "test_aliyun_no_sni.py::test_configured_listeners_sni[aliyun-mutual]"}
    assert {n.split("[")[1] for n in names if "::test_mutual_matrix[" in n} == {"aliyun-mutual]", "tencent-mutual]",
                                                                             "aws-verify]"}

    traffic = report["traffic"]
    assert {t["listener_port"] for t in traffic["listeners"]} >= {l["port"] for l in listeners.values()}
    cases = {c["case"]: c for c in traffic["comparison"]}
    assert len(cases) == 3
    for case in cases.values():
        assert {"case", "connections", "requests", "wire_bytes", "billed_bytes", "ratio"} <= set(case)
        assert case["wire_bytes"] > case["billed_bytes"] > 0 and case["ratio"] > 1
    assert cases["new connection per request"]["ratio"] > cases["keep-alive: 1 connection"]["ratio"]
    # Per listener and kind of connection: the probes' handshake-only and refused connections apart from
    # those that carried requests, whose overhead is a client's, not the probing's thousands of percent.
    by_kind = traffic["by_kind"]
    configured = [r for r in by_kind if r["listener"] in listeners]
    assert {(r["listener"], r["kind"]) for r in configured} == {
        (name, kind) for name in listeners for kind in ("requests", "handshake_only", "failed")}
    for row in configured:
        if row["kind"] == "requests":
            assert row["requests"] > 0 and row["billed_bytes"] > 0 and 0 < row["overhead_pct"] < 1000, row
        else:
            assert row["requests"] == 0 and row["billed_bytes"] == 0 and row["overhead_pct"] is None, row
    created = [r for r in by_kind if r["listener"] not in listeners]
    assert {r["listener"] for r in created} == {"created by scenarios"} and created[0]["listeners"] > 10
    # By address and port: a scenario's load balancer on another 127.0.0.x may have a listener on the same port.
    per_port = {(t["listener_address"], t["listener_port"]): t for t in traffic["listeners"]}
    for name, l in listeners.items():  # the split adds up to the port's totals
        rows = [r for r in configured if r["listener"] == name]
        for key in ("connections", "requests", "wire_in", "wire_out", "billed_bytes"):
            assert sum(r[key] for r in rows) == per_port[l.get("address") or "127.0.0.1", l["port"]][key], (name, key)


def test_results_directory_files(default_run) -> None:
    _, out, _ = default_run
    report = json.loads((out / "report.json").read_text())
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == report["summary"]["total"] and int(suite.get("failures")) == 0
    records = [json.loads(line) for line in (out / "connections.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) > 100 and all("tls_verify_status" in r for r in records)
    with open(out / "traffic.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"listener_port", "billing_model", "billed_bytes"} <= set(rows[0])
    md = (out / "report.md").read_text()
    for heading in ("## Scenarios", "## TLS policy matrix", "## Mutual authentication matrix", "## Compliance",
                    "## Traffic: wire against billed"):
        assert heading in md
    assert "`tls_cipher_policy_1_2_strict_with_1_3`" in md and "Failed:ClientCertExpired" in md
    assert not re.search(r"\bNone\b", md), [line for line in md.splitlines() if re.search(r"\bNone\b", line)][:5]
    # One group, one row per kind of connection and billing model (not one per listener the scenarios made).
    assert "(created by a scenario)" not in md and md.count("| created by scenarios (") <= len(TRAFFIC_KINDS) * len(MODELS)
    assert "n/a¹" in md and "\n¹ Nothing billed" in md
    assert "Not negotiated here: `DES-CBC3-SHA`" in md and "cannot connect here" in md
    assert "| aliyun-one-way | `tls_cipher_policy_1_0` | old | ✗ both | ✗ policy | ✗ policy | ✗ policy |" in md
    lab = yaml.safe_load((out / "lab.yaml").read_text())
    assert [l["name"] for l in lab["listeners"]] == DEFAULT_LISTENERS
    assert "Failed:ClientCertRevoked (Failed:ClientCertCrlHit)" in md


def write_lab(folder: Path) -> Path:
    """A YAML lab of the user's own: a listener on the legacy default policy, and one whose backend is down."""
    pki = LabPKI()
    issued = pki.server("localhost", "127.0.0.1")
    (folder / "site.pem").write_bytes(issued.chain_pem)
    (folder / "site.key").write_bytes(issued.key_pem)
    lab = {
        "profile": "aliyun-slb",
        "certificates": [{"name": "site", "cert": "site.pem", "key": "site.key"}],
        "backends": [{"name": "app", "port": 0}, {"name": "gone", "address": f"127.0.0.1:{free_port()}"}],
        "listeners": [
            {"name": "legacy", "port": 0, "server_certificate": "site", "backend_servers": ["app"]},
            {"name": "dead-backend", "port": 0, "server_certificate": "site", "backend_servers": ["gone"],
             "tls_policy": "tls_cipher_policy_1_2", "health_check": {"enabled": False}},
        ],
    }
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump(lab))
    return path


def test_run_fails_when_a_listener_violates_an_expectation(tmp_path: Path) -> None:
    config = write_lab(tmp_path)
    out = tmp_path / "results"
    proc = lbsim("run", "-c", str(config), "--out", str(out), "--format", "html", "--require", "legacy=pci-dss-4.0",
                 "-k", "compliance_verdicts or balances", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    failed = {s["name"]: s["message"] for s in report["scenarios"] if s["outcome"] == "failed"}
    assert set(failed) == {
        "test_compliance_baselines.py::test_compliance_verdicts[legacy]",  # required PCI DSS, accepts TLS 1.0
        "test_https_load_balancing.py::test_https_listener_balances_requests_over_backends[dead-backend]",  # 502
    }, failed
    assert "pci-dss-4.0" in failed["test_compliance_baselines.py::test_compliance_verdicts[legacy]"]
    assert "502" in failed["test_https_load_balancing.py::test_https_listener_balances_requests_over_backends[dead-backend]"]
    assert report["summary"]["passed"] == 2 and report["summary"]["failed"] == 2
    assert report["lab"]["source"] == str(config)
    # The matrices are reported even for scenarios that were not selected; the dead backend shows there too.
    dead = next(l for l in report["listeners"] if l["name"] == "dead-backend")
    assert dead["tls_matrix"]["match"] is True
    assert not all(r["ok"] for r in dead["mutual_matrix"]) and any("dead-backend" in p for p in report["problems"])
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<h2>Compliance</h2>" in html
    assert "FAILED test_compliance_baselines.py::test_compliance_verdicts[legacy]" in proc.stdout


def test_a_statement_about_mutual_listeners_is_skipped_on_a_lab_without_one(tmp_path: Path) -> None:
    """`@pytest.mark.lab_listeners(mutual=True)`: a lab of one-way listeners gets one skipped case saying
    why, not a pass that checked nothing; the aliyun SNI scenario runs on both aliyun listeners."""
    config = write_lab(tmp_path)
    junit = tmp_path / "junit.xml"
    proc = lbsim("scenarios", "run", str(ROOT / "scenarios"), "-c", str(config), "--junit", str(junit), "--", "-k",
                 "mutual_matrix or configured_listeners_sni", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"test_mutual_matrix[no-such-listener]", "test_configured_listeners_sni[legacy]",
                          "test_configured_listeners_sni[dead-backend]"}
    skipped = cases["test_mutual_matrix[no-such-listener]"].find("skipped")
    assert skipped is not None and "the lab has no mutual listener" in skipped.get("message"), ET.tostring(cases["test_mutual_matrix[no-such-listener]"])
    assert all(cases[n].find("skipped") is None and cases[n].find("failure") is None
               for n in ("test_configured_listeners_sni[legacy]", "test_configured_listeners_sni[dead-backend]"))


def extract_examples(markdown: str) -> dict[str, str]:
    """The files the authoring guide shows, each after an `<!-- example: NAME -->` marker."""
    return dict(re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```", markdown, re.S))


def run_example(markdown: str, where: Path) -> ET.Element:
    """Write the example files of `markdown` to `where`, run them with `lbsim scenarios run`: the JUnit suite."""
    files = extract_examples(markdown)
    assert set(files) == {"my_client.py", "test_my_client.py"}
    where.mkdir(exist_ok=True)
    for name, text in files.items():
        (where / name).write_text(text)
    junit = where.parent / f"{where.name}-junit.xml"
    proc = lbsim("scenarios", "run", str(where), "--junit", str(junit), cwd=where.parent, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    return suite


def test_scenarios_run_the_authoring_guide_example(tmp_path: Path) -> None:
    suite = run_example((ROOT / "docs" / "scenarios.md").read_text(), tmp_path / "guide")
    assert {c.get("name") for c in suite.iter("testcase")} == {
        "test_my_client_gets_through_the_mutual_listener", "test_my_client_reports_an_expired_certificate",
        "test_my_client_survives_a_certificate_rotation", "test_an_old_tls_stack_is_refused_by_a_strict_policy"}


def test_scenarios_run_exit_code_follows_failures(tmp_path: Path) -> None:
    (tmp_path / "test_wrong.py").write_text(
        "def test_wrong_expectation(lab):\n"
        "    assert lab.probe('aliyun-mutual').ok  # no client certificate: the mutual listener refuses\n")
    junit = tmp_path / "junit.xml"
    proc = lbsim("scenarios", "run", str(tmp_path / "test_wrong.py"), "--junit", str(junit), cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"


def test_the_resumption_scenarios_pass_with_two_workers(tmp_path: Path) -> None:
    """`workers: 2`: a ticket or session issued by one process must resume on the other, so the built-in
    resumption and traffic scenarios (which resume on purpose) pass with connections spread over both."""
    out = tmp_path / "results"
    proc = lbsim("run", "--workers", "2", "-k", "session_ticket or resum or traffic", "--out", str(out), "-q", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["lab"]["workers"] == 2
    assert report["summary"]["passed"] >= 5 and report["summary"]["failed"] == 0, report["summary"]
    records = [json.loads(line) for line in (out / "connections.jsonl").read_text().splitlines()]
    resumed_by = {r.get("worker", 0) for r in records if r["resumed"]}
    assert resumed_by == {0, 1}, f"resumptions served by workers {resumed_by}: both must resume"
    assert "lbsim-worker" not in proc.stderr  # the workers take worker 0's log levels (mitmproxy quiet)


def test_the_sdk_rotations_under_load_pass_when_run_from_another_directory(tmp_path: Path) -> None:
    """`lbsim run` where a user runs it (not the checkout), results in the default relative `lbsim-out/run`:
    the steady Locust load runs in a directory of its own and must still find the scenario's CA and client
    files, and the profiles' `common` module (a checkout's scenarios/load/, or a wheel's copy)."""
    proc = lbsim("run", "-k", "rotation_script", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "lbsim-out" / "run" / "report.json").read_text())
    passed = {s["name"].split("::")[-1] for s in report["scenarios"] if s["outcome"] == "passed"}
    assert {"test_rotation_script_through_the_aliyun_sdk_under_load", "test_rotation_script_under_steady_load"} <= passed


def write_mutual_lab(folder: Path) -> tuple[Path, Path, Path]:
    """A YAML lab with only a mutual listener (the seed's financial users), its own client CA, and a client
    certificate from that CA: (lab.yaml, client.pem, client.key)."""
    pki = LabPKI()
    issued = pki.server("localhost", "127.0.0.1")
    client = pki.client("finance-app")
    files = {"site.pem": issued.chain_pem, "site.key": issued.key_pem, "client-ca.pem": pki.ca_pem,
             "client.pem": client.chain_pem, "client.key": client.key_pem}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    lab = {
        "profile": "aliyun-slb",
        "certificates": [{"name": "site", "cert": "site.pem", "key": "site.key"},
                         {"name": "clients", "type": "ca", "cert": "client-ca.pem"}],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [{"name": "bank", "port": 0, "server_certificate": "site", "ca_certificate": "clients",
                       "tls_policy": "tls_cipher_policy_1_2_strict", "backend_servers": ["app"]}],
    }
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump(lab))
    return path, folder / "client.pem", folder / "client.key"


def test_run_on_a_mutual_only_lab_writes_the_full_report(tmp_path: Path) -> None:
    """No one-way listener: with the lab's client certificate the traffic comparison goes through the mutual
    listener; without one the report is still written and says why the comparison was skipped."""
    config, cert, key = write_mutual_lab(tmp_path)
    out = tmp_path / "with-client"
    proc = lbsim("run", "-c", str(config), "--out", str(out), "--client-cert", str(cert), "--client-key", str(key),
                 "-k", "traffic", "-q", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["passed"] == 2 and report["summary"]["failed"] == 0, report["scenarios"]
    cases = {c["case"]: c for c in report["traffic"]["comparison"]}
    assert len(cases) == 3 and {c["listener"] for c in cases.values()} == {"bank"}
    assert cases["new connection per request"]["ratio"] > cases["keep-alive: 1 connection"]["ratio"]
    assert "skipped" not in report["traffic"]
    assert report["listeners"][0]["tls_matrix"]["match"] is True

    out = tmp_path / "without-client"
    proc = lbsim("run", "-c", str(config), "--out", str(out), "-k", "new_connections", "-q", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("report.json", "report.md", "junit.xml", "connections.jsonl", "traffic.csv"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["traffic"]["comparison"] == [] and "--client-cert" in report["traffic"]["skipped"]
    assert [s["outcome"] for s in report["scenarios"]] == ["failed"]
    assert "needs a one-way listener, or a mutual listener" in report["scenarios"][0]["message"]
    assert "**Comparison skipped:**" in (out / "report.md").read_text()


def test_the_report_skips_the_traffic_comparison_only_without_a_listener_for_it(tmp_path: Path) -> None:
    """`traffic_section` calls the comparison skipped only when no listener can carry it (mutual listeners
    and no client certificate). A listener that cannot serve it (here its one backend is down: 502) is a
    failure: `error` in the section and a line in `problems`, which makes `lbsim run` exit 1."""
    pki = LabPKI(key_type="rsa")
    down = free_port()  # nothing listens there
    broken = (LabBuilder().server_certificate("web", pki.server("localhost")).backend("app", f"127.0.0.1:{down}")
              .listener("shop", server_certificate="web", health_check={"enabled": False}))
    with start(broken, out_dir=tmp_path / "broken") as lab:
        problems: list[str] = []
        traffic = traffic_section(lab, problems)
    assert "skipped" not in traffic and traffic["comparison"] == []
    assert traffic["error"].startswith("AssertionError: shop: 502"), traffic["error"]
    assert problems == [f"traffic comparison failed: {traffic['error']}"]

    mutual = (LabBuilder().server_certificate("web", pki.server("localhost")).ca_certificate("clients", pki.ca_pem)
              .backend("app").listener("bank", server_certificate="web", ca_certificate="clients"))
    with start(mutual, out_dir=tmp_path / "mutual") as lab:
        problems = []
        traffic = traffic_section(lab, problems)
    assert "error" not in traffic and traffic["comparison"] == [] and problems == []
    assert "needs a one-way listener" in traffic["skipped"] and "bank" in traffic["skipped"]


def test_scenarios_run_the_documented_order_on_a_yaml_mutual_lab(tmp_path: Path) -> None:
    """`lbsim scenarios run PATH -c LAB --client-cert C --client-key K --junit FILE -- PYTEST-OPTIONS`: the
    usage order the README documents. The mutual matrix needs the session's client certificate (without it,
    the `valid` row cannot be probed and the scenario fails), and `-k` after `--` reaches pytest."""
    config, cert, key = write_mutual_lab(tmp_path)
    junit = tmp_path / "junit.xml"
    proc = lbsim("scenarios", "run", str(ROOT / "scenarios"), "-c", str(config), "--client-cert", str(cert),
                 "--client-key", str(key), "--junit", str(junit), "--", "-k", "mutual_matrix or balances", "-p",
                 "no:cacheprovider", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert {c.get("name") for c in suite.iter("testcase")} == {
        "test_mutual_matrix[bank]", "test_https_listener_balances_requests_over_backends[bank]"}
    assert suite.get("failures") == "0" and suite.get("errors") == "0"

    # The same without the client certificate: the matrix cannot show the trusted client getting in.
    proc = lbsim("scenarios", "run", str(ROOT / "scenarios"), "-c", str(config), "--", "-k", "mutual_matrix",
                 cwd=tmp_path, timeout=300)
    assert proc.returncode == 1 and "bank: no client certificate from its CA" in proc.stdout, proc.stdout[-3000:]


def test_scenarios_list_names_each_scenario_and_its_statement(tmp_path: Path) -> None:
    config, _, _ = write_mutual_lab(tmp_path)
    # Documented order, options after the path, pytest's own after `--`; the lab from $LBSIM_LAB_CONFIG.
    proc = subprocess.run([*LBSIM, "scenarios", "list", str(ROOT / "scenarios"), "--junit", str(tmp_path / "j.xml"),
                           "--", "-k", "mutual_matrix or new_connections"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LBSIM_LAB_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = dict(line.split(None, 1) for line in proc.stdout.strip().splitlines())
    matrix = "test_mutual_refuses_clients_without_valid_certificate.py::test_mutual_matrix[bank]"  # the YAML's listener
    traffic = "test_actual_traffic_exceeds_billed.py::test_new_connections_consume_more_traffic"
    assert set(rows) == {matrix, traffic}, rows
    assert rows[traffic] == "Many new connections consume more traffic (aliyun notes)"
    assert "client" in rows[matrix]
    # The whole built-in suite on the default lab: every scenario with its seed statement.
    proc = lbsim("scenarios", "list", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 60 and all(len(line.split(None, 1)) == 2 for line in lines), lines
    assert any(line.startswith("test_mutual_refuses_clients_without_valid_certificate.py::test_mutual_matrix[aliyun-mutual] ")
               for line in lines)
    check_seed_coverage(dict(line.split(None, 1) for line in lines))


def check_seed_coverage(collected: dict[str, str]) -> None:
    """scenarios/seed_coverage.yaml against what the suite collects: every scenario the table lists exists,
    and every collected scenario carries the seed marker of the table entry that lists it."""
    table = yaml.safe_load((ROOT / "scenarios" / "seed_coverage.yaml").read_text())
    statement_of = {}
    for entry in table:
        assert entry["statement"] and entry["scenarios"], entry
        for scenario in entry["scenarios"]:
            assert scenario not in statement_of, f"{scenario} listed twice"
            statement_of[scenario] = entry["statement"]
    by_function: dict[str, set[str]] = {}
    for node, statement in collected.items():
        by_function.setdefault(re.sub(r"\[.*\]$", "", node), set()).add(statement)
    assert set(statement_of) - set(by_function) == set(), "listed in seed_coverage.yaml but not collected"
    assert set(by_function) - set(statement_of) == set(), "collected but missing from seed_coverage.yaml"
    for function, statements in by_function.items():
        assert statements == {statement_of[function]}, (function, statements)


LAB_FACTORY_SCENARIO = '''
import socket
import time

from simulator.harness.scenario import LabBuilder

PORTS = []


def test_an_own_lab_from_the_factory(lab_factory, pki):
    ca = pki()
    own = lab_factory(LabBuilder().server_certificate("web", ca.server("localhost")).backend("app")
                      .listener("shop", server_certificate="web", tls_policy="tls_cipher_policy_1_2"))
    PORTS.append(own.port("shop"))
    assert own.time_scale == 0.01 and own.ca_file is None
    response = own.request("shop", "/hello", verify=False)
    assert response.status == 200 and response.echo["path"] == "/hello"
    assert own.probe("shop", version="TLSv1.1").ok is False  # the builder's policy, not the default lab's
    first = own.probe("shop", version="TLSv1.2")
    started = time.monotonic()
    own.fast_forward(150)  # half the 300 s ticket lifetime: 1.5 s here
    assert time.monotonic() - started >= 1.5  # (no upper bound: that would test the scheduler)
    assert own.probe("shop", version="TLSv1.2", session=first.session).resumed
    own.fast_forward(200)  # 350 s after the ticket was issued: expired
    assert not own.probe("shop", version="TLSv1.2", session=first.session).resumed


def test_the_factory_stopped_its_lab():
    assert PORTS
    try:
        socket.create_connection(("127.0.0.1", PORTS[0]), timeout=1).close()
    except OSError:
        return
    raise AssertionError(f"port {PORTS[0]} still accepts connections after the test")
'''


def test_lab_factory_fixture_and_fast_forward(tmp_path: Path) -> None:
    (tmp_path / "test_factory.py").write_text(LAB_FACTORY_SCENARIO)
    junit = tmp_path / "junit.xml"
    proc = lbsim("scenarios", "run", str(tmp_path / "test_factory.py"), "--junit", str(junit), "--", "-q",
                 cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and suite.get("errors") == "0"


def test_scenarios_run_the_readme_example(tmp_path: Path) -> None:
    """The README's scenario-authoring example, client included, runs as it stands."""
    section = (ROOT / "README.md").read_text().split("## Scenario authoring", 1)[1].split("\n## ", 1)[0]
    suite = run_example(section, tmp_path / "readme")
    assert {c.get("name") for c in suite.iter("testcase")} == {
        "test_my_client_presents_its_certificate", "test_my_client_is_refused_without_a_certificate"}
