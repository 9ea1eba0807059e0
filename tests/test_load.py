"""Load profiles (scenarios/load/) through `lbsim load`: real Locust subprocesses against a real lab process.

Each profile runs for 2-3 s against one shared lab (`lbsim up` in a child process, as `lbsim load --api`
uses it). Every run must have no unexpected failure, and Locust's own CSV, the clients' per-connection
records and the listener's connection log must agree on handshakes, wire bytes and billed bytes.
Also through the wrapper: its own lab, `-c lab.yaml`, `--target` with and without `--api`, the custom TLS
arguments (client certificate, TLS 1.3 suites, no tickets), two distributed runs at once, and the
documented master + workers started by hand with plain `locust -f`.
The lean client is also tested on its own (in-process, against the session lab): it verifies the
listener's certificate and hostname, and its byte counts equal the listener's meter.

Wall time about 110 s on 2 shared cores (load average 6-8).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import csv
import io
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from simulator.load import command as load
from simulator.errors import LbsimError
from simulator.net import free_port
from simulator.load.client import ConnectionFailed, Target, TlsConnection, TlsOptions, client_context

REPO = Path(__file__).resolve().parent.parent
_lab_dir = Path("lbsim-out")


@pytest.fixture(scope="module")
def lab_process(tmp_path_factory: pytest.TempPathFactory) -> load.LabProcess:
    """The default lab in its own process, as `lbsim up` runs it (timers at vendor speed)."""
    global _lab_dir
    _lab_dir = tmp_path_factory.mktemp("load-lab")
    lab = load.LabProcess(_lab_dir)
    yield lab
    lab.stop()


def run(out: Path, profile: str, *extra: str, users: int = 3, duration: str = "2s",
        cli: bool = False) -> tuple[int, dict[str, Any], str]:
    """`lbsim load` (in this process, or with `cli` as a user runs it); (exit code, load.json, summary).
    In-process is safe: `simulator.load.command` runs Locust and the lab as child processes, never imports Locust."""
    argv = ["load", profile, "-u", str(users), "-r", str(users), "-t", duration, "--stop-timeout", "5", "-o", str(out), *extra]
    if "--api" in extra:  # a running lab: its PKI is wherever it was started
        argv += ["--pki", str(_lab_dir / "pki")]
    if cli:
        done = subprocess.run([sys.executable, "-m", "simulator.cli", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        code, printed = done.returncode, done.stdout + done.stderr
    else:
        parser = argparse.ArgumentParser()
        load.register(parser.add_subparsers())
        args = parser.parse_args(argv)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = args.func(args)
        printed = buffer.getvalue()
    report_path = out / "load.json"
    assert report_path.exists(), printed + _tail(out / "locust" / "locust.log")
    return code, json.loads(report_path.read_text()), printed


def _tail(path: Path) -> str:
    return path.read_text()[-3000:] if path.exists() else ""


def csv_rows(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (out / "locust" / "locust_stats.csv").open() as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}


def lb_log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "connections.jsonl").read_text().splitlines() if line]


def assert_agrees(code: int, report: dict[str, Any], out: Path, printed: str) -> list[dict[str, Any]]:
    """No unexpected failure; Locust's CSV, the clients and the listener agree; returns the log."""
    assert report["locust"]["failures"] == 0, printed + _tail(out / "locust" / "locust.log")
    checks = report["checks"]
    # With the log: a Locust master that drops a worker's last report (locust#3003) shows there, not in the counts.
    assert checks["ok"], json.dumps(checks, indent=1) + _tail(out / "locust" / "locust.log")
    assert code == 0, printed
    clients = load.read_jsonl(sorted((out / "client").glob("client-*.jsonl")))
    stray = load.strays(lb_log(out), clients)  # port probes by other processes on a shared machine
    assert len(stray) == checks["stray_connections"] <= 3
    records = [r for r in lb_log(out) if r not in stray]
    assert records, "the listener logged nothing"
    # Locust's own CSV (not our summary of it): handshake rows against the listener's log
    rows = csv_rows(out)
    count = lambda name: int(rows.get(("TLS", name), {}).get("Request Count", 0))  # noqa: E731
    assert count("handshake full") == sum(1 for r in records if r["tls_verify_status"] == "Success" and not r["resumed"])
    assert count("handshake resumed") == sum(1 for r in records if r["tls_verify_status"] == "Success" and r["resumed"])
    assert count("handshake rejected") == sum(1 for r in records if r["tls_verify_status"] != "Success")
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    # client-side wire bytes == the listener's per-connection wire counts (the check's own evidence)
    assert checks["connections"]["matched"] == len(records)
    assert checks["connections"]["mismatches"] == 0
    b = checks["bytes"]
    assert b["locust_wire_in"] == b["listener_wire_out"] == sum(r["traffic"]["lb_to_client"]["wire"] for r in records)
    assert b["listener_billed"] == b["billed_from_client_http_bytes"] == sum(r["billed"]["billed_bytes"] for r in records)
    return records


# ---- one profile each, against the shared lab -------------------------------------------------------------------


def test_keepalive_reuses_one_connection_per_user_with_custom_tls_arguments(lab_process: load.LabProcess, tmp_path: Path) -> None:
    # SNI picks the listener's ECDSA certificate, so the pinned suite must be an ECDSA one.
    code, report, printed = run(tmp_path, "keepalive", "--api", lab_process.api, "--listener", "tencent-one-way",
                                "-a", "sni=ecdsa.lbsim.test", "-a", "tls-version=TLSv1.2",
                                "-a", "ciphers=ECDHE-ECDSA-AES256-GCM-SHA384", "-a", "response-size=2048")
    records = assert_agrees(code, report, tmp_path, printed)
    assert len(records) == 3  # one connection per user
    assert {(r["sni"], r["tls_protocol"], r["tls_cipher"]) for r in records} == {
        ("ecdsa.lbsim.test", "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")}
    assert sum(r["requests"] for r in records) == report["locust"]["requests"] > 30
    # wire > HTTP bytes, but keep-alive amortises the handshake: a few percent of overhead
    rows = report["locust"]["rows"]
    assert 1.0 < rows["WIRE-IN /load"]["bytes"] / rows["GET /load"]["bytes"] < 1.15


def test_new_connections_pay_a_full_handshake_per_request(lab_process: load.LabProcess, tmp_path: Path) -> None:
    code, report, printed = run(tmp_path, "new_connections", "--api", lab_process.api)
    records = assert_agrees(code, report, tmp_path, printed)
    assert len(records) == report["locust"]["requests"] == report["locust"]["handshakes"] > 10
    assert all(r["requests"] == 1 and not r["resumed"] for r in records)
    # the seed's point: with a new connection per small request the LB sends several times the billed bytes
    assert report["traffic"][0]["overhead_pct"] > 100
    assert_checks_can_fail(tmp_path, report["lab"]["port"], records)


def assert_checks_can_fail(out: Path, port: int, records: list[dict[str, Any]]) -> None:
    """The checks could fail: one byte off in one client record, or one missing log record, is caught."""
    rows = load.locust_rows(out / "locust" / "locust_stats.csv")
    clients = load.read_jsonl(sorted((out / "client").glob("client-*.jsonl")))
    assert load.agreement(rows, clients, records, port)["ok"]
    off_by_one = copy.deepcopy(clients)
    off_by_one[0]["received"] += 1
    result = load.agreement(rows, off_by_one, records, port)
    assert not result["ok"] and result["connections"]["mismatches"] == 1
    assert "LB->client wire" in result["connections"]["examples"][0]["problem"]
    missing = load.agreement(rows, clients, records[1:], port)
    assert not missing["handshakes"]["ok"] and not missing["connections"]["ok"]


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_mutual_invalid_certificates_fail_in_the_handshake_as_expected(
        lab_process: load.LabProcess, tmp_path: Path, version: str) -> None:
    code, report, printed = run(tmp_path, "mutual", "--api", lab_process.api, "-a", f"tls-version={version}",
                                "-a", "invalid-share=0.5", "-a", "invalid-kinds=untrusted,expired,not_yet_valid,none",
                                users=4)
    records = assert_agrees(code, report, tmp_path, printed)
    refused = [r for r in records if r["tls_verify_status"] != "Success"]
    served = [r for r in records if r["tls_verify_status"] == "Success"]
    assert len(refused) >= 4 and abs(len(refused) - len(served)) <= 4  # half of each user's connections
    assert {r["tls_verify_status"] for r in refused} == {
        "Failed:ClientCertUntrusted", "Failed:ClientCertExpired", "Failed:ClientCertNotYetValid", "Failed:NoClientCertificate"}
    assert all(r["requests"] == 0 for r in refused)
    assert {r["client_cert_subject"].split(",")[0] for r in served} == {"CN=lbsim-client-valid"}
    assert {r["tls_protocol"] for r in served} == {version}
    rows = csv_rows(tmp_path)
    assert int(rows[("TLS", "handshake rejected")]["Request Count"]) == len(refused)
    assert int(rows[("TLS", "handshake rejected")]["Failure Count"]) == 0  # expected, not errors
    # The summary says so in words: the refusals were the intended ones, nothing else failed.
    assert (f"refusals: {len(refused)} of {len(refused)} were clients meant to be refused (invalid certificates), "
            "refused in the handshake as expected; nothing unexpected failed") in printed, printed


def test_refusal_verdict_names_what_failed_unexpectedly() -> None:
    rows = {"TLS handshake rejected": {"requests": 10, "failures": 2}, "TLS handshake failed": {"requests": 1, "failures": 1},
            "GET /": {"requests": 20, "failures": 0}}
    verdict = load.refusal_verdict({"rows": rows, "failures": 3})
    assert verdict == ("refusals: 8 of 10 were clients meant to be refused (invalid certificates), refused in the "
                       "handshake as expected; UNEXPECTED: 2 invalid client(s) served, 1 client(s) that should have "
                       "got in refused or failed")
    assert load.refusal_verdict({"rows": {"GET /": {"requests": 5, "failures": 0}}, "failures": 0}) is None


def test_resumption_mixes_full_and_resumed_handshakes(lab_process: load.LabProcess, tmp_path: Path) -> None:
    code, report, printed = run(tmp_path, "resumption", "--api", lab_process.api, "-a", "full-every=3")
    records = assert_agrees(code, report, tmp_path, printed)
    full = [r for r in records if not r["resumed"]]
    resumed = [r for r in records if r["resumed"]]
    # a fresh session every 3rd connection of each user: per user resumed >= 2 * full - 2
    assert len(full) >= 3 and len(resumed) >= 2 * len(full) - 2 * 3
    summary = report["traffic"][0]["handshake_bytes_mean"]
    assert summary["resumed"]["lb_to_client"] < summary["full"]["lb_to_client"] / 5  # no certificate sent
    # the handshake time: Locust's TLS rows are the handshakes the clients timed, plausible in size
    rows = csv_rows(tmp_path)
    clients = load.read_jsonl(sorted((tmp_path / "client").glob("client-*.jsonl")))
    for name, resumed in (("handshake full", False), ("handshake resumed", True)):
        row = rows[("TLS", name)]
        timed = [c["handshake_ms"] for c in clients if c["outcome"] == "ok" and c["resumed"] == resumed]
        assert int(row["Request Count"]) == len(timed)
        assert 0 < float(row["Min Response Time"]) <= float(row["Max Response Time"]) < 5000  # loopback, a busy machine
        assert float(row["Average Response Time"]) == pytest.approx(sum(timed) / len(timed), rel=0.01)


def test_mixed_sizes_and_uploads(lab_process: load.LabProcess, tmp_path: Path) -> None:
    code, report, printed = run(tmp_path, "mixed", "--api", lab_process.api,
                                "-a", "response-sizes=100:1,5000:1,70000:1", "-a", "request-sizes=0:1,3000:1",
                                "-a", "requests-per-connection=2-4")
    records = assert_agrees(code, report, tmp_path, printed)
    rows = report["locust"]["rows"]
    assert {k.split(" ", 1)[0] for k in rows} >= {"GET", "POST", "TLS", "WIRE-IN", "WIRE-OUT", "HTTP-OUT"}
    assert {"GET /load (70000 B)", "POST /load (5000 B)"} <= set(rows)
    assert all(2 <= r["requests"] <= 4 for r in records)
    assert any(r["resumed"] for r in records)
    assert sum(r["traffic"]["client_to_lb"]["payload"] for r in records) > 3000  # the uploads arrived


def test_fasthttp_baseline_keeps_connections_alive_and_verifies_the_listener(lab_process: load.LabProcess, tmp_path: Path) -> None:
    good = tmp_path / "good"
    code, report, printed = run(good, "keepalive_fasthttp", "--api", lab_process.api, users=2)
    assert code == 0 and report["locust"]["failures"] == 0, printed + _tail(good / "locust" / "locust.log")
    assert "checks" not in report  # no TLS or wire rows to compare
    records = lb_log(good)
    assert len(records) == 2 and sum(r["requests"] for r in records) == report["locust"]["requests"] > 2
    # verified, not insecure: against a CA that did not issue the listener's certificate every request fails
    wrong = tmp_path / "wrong-ca"
    code, report, printed = run(wrong, "keepalive_fasthttp", "--api", lab_process.api,
                                "-a", f"ca={_lab_dir / 'pki' / 'client-ca.pem'}", users=2)
    assert code == 1 and report["locust"]["requests"] == report["locust"]["failures"] > 2, printed
    with (wrong / "locust" / "locust_failures.csv").open() as f:
        errors = list(csv.DictReader(f))
    assert errors and all("CERTIFICATE_VERIFY_FAILED" in e["Error"] for e in errors)
    assert sum(int(e["Occurrences"]) for e in errors) == report["locust"]["failures"]
    assert not any(r["tls_verify_status"] == "Success" for r in lb_log(wrong))  # no handshake completed


# ---- custom TLS arguments ---------------------------------------------------------------------------------------------


def test_client_cert_and_key_arguments_present_that_certificate(lab_process: load.LabProcess, tmp_path: Path) -> None:
    """--client-cert/--client-key replace the PKI's valid client: given the expired one (copied under
    other names, so neither the PKI default nor a key beside the certificate could stand in), every
    handshake is refused by the listener, each counted as a failure, and the run fails."""
    pki = _lab_dir / "pki"
    cert, key = tmp_path / "mine" / "expired-cert.pem", tmp_path / "mine" / "expired-key.pem"
    cert.parent.mkdir()
    cert.write_bytes((pki / "client-expired.pem").read_bytes())
    key.write_bytes((pki / "client-expired.key").read_bytes())
    out = tmp_path / "out"
    code, report, printed = run(out, "mutual", "--api", lab_process.api, "-a", f"client-cert={cert}",
                                "-a", f"client-key={key}", "-a", "invalid-share=0", "-a", "tls-version=TLSv1.2", users=2)
    assert code == 1 and not report["checks"]["ok"], printed
    records = lb_log(out)
    assert len(records) >= 4 and {r["tls_verify_status"] for r in records} == {"Failed:ClientCertExpired"}
    assert all(r["requests"] == 0 for r in records)
    rows = csv_rows(out)
    failed = rows[("TLS", "handshake failed")]
    assert int(failed["Request Count"]) == int(failed["Failure Count"]) == len(records)  # every one counted
    assert ("TLS", "handshake full") not in rows and ("GET", "/load") not in rows
    assert report["checks"]["handshakes"]["locust_handshake_failures"] == len(records)
    assert "DIFFER" in printed


def test_tls13_ciphersuites_argument_pins_the_suite(lab_process: load.LabProcess, tmp_path: Path) -> None:
    suite = "TLS_CHACHA20_POLY1305_SHA256"  # not the suite OpenSSL prefers (AES-256-GCM), so only the argument gives it
    code, report, printed = run(tmp_path, "keepalive", "--api", lab_process.api, "--listener", "tencent-one-way",
                                "-a", "tls-version=TLSv1.3",
                                "-a", f"tls13-ciphersuites={suite}", users=2)
    records = assert_agrees(code, report, tmp_path, printed)
    assert {(r["tls_protocol"], r["tls_cipher"]) for r in records} == {("TLSv1.3", suite)}


def test_no_tickets_resumes_tls12_by_session_id(lab_process: load.LabProcess, tmp_path: Path) -> None:
    code, report, printed = run(tmp_path, "resumption", "--api", lab_process.api, "-a", "tls-version=TLSv1.2",
                                "-a", "no-tickets", "-a", "full-every=3", users=2)
    records = assert_agrees(code, report, tmp_path, printed)
    assert sum(r["resumed"] for r in records) >= 2  # resumed all the same: by session ID
    # No ticket was issued: a full handshake with tickets receives a NewSessionTicket message more.
    clients = load.read_jsonl(sorted((tmp_path / "client").glob("client-*.jsonl")))
    without = {c["handshake_received"] for c in clients if c["outcome"] == "ok" and not c["resumed"]}
    port = report["lab"]["port"]
    with_tickets = TlsConnection(Target.parse(f"https://localhost:{port}"),
                                 client_context(TlsOptions(cafile=str(_lab_dir / "pki" / "ca.pem"), version="TLSv1.2")))
    with_tickets.connect()
    with_tickets.close()
    assert not with_tickets.record.resumed and len(without) == 1
    assert with_tickets.record.handshake_received - without.pop() > 100


# ---- the wrapper's own lab, distributed Locust ----------------------------------------------------------------------


def test_load_starts_its_own_lab_and_writes_the_results_directory(tmp_path: Path) -> None:
    code, report, printed = run(tmp_path, "new_connections", users=2, cli=True)
    assert_agrees(code, report, tmp_path, printed)
    for name in ("connections.jsonl", "traffic.csv", "load.json", "locust/locust_stats.csv",
                 "locust/locust_stats_history.csv", "locust/locust_failures.csv",
                 "locust/report.html", "lab/pki/ca.pem", "lab/up.log"):
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "client").glob("client-*.jsonl"))
    with (tmp_path / "traffic.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(lb_log(tmp_path))
    assert report["lab"]["started_by_load"] and report["cpu"]["lab_pct"] is not None
    assert "handshakes  full" in printed and "OK" in printed
    assert "stopping lab" in (tmp_path / "lab" / "up.log").read_text()  # stopped cleanly, not killed


def test_load_starts_the_lab_of_a_yaml_with_its_pki_beside_it(lab_process: load.LabProcess, tmp_path: Path) -> None:
    """`-c lab.yaml`: that lab is started (its one listener exists nowhere else) and the PKI defaults to
    pki/ beside the YAML, where the CA and the client certificates of the mutual profile come from."""
    data = yaml.safe_load((_lab_dir / "lab.yaml").read_text())
    mutual = next(l for l in data["listeners"] if l["name"] == "aliyun-mutual")
    data["listeners"] = [{**mutual, "name": "yaml-mutual"}]
    data["certificates"] = [c for c in data["certificates"] if c["name"] != "lab-ecdsa"]  # Alibaba: RSA only
    config = tmp_path / "my-lab" / "lab.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(data))
    shutil.copytree(_lab_dir / "pki", config.parent / "pki")
    out = tmp_path / "out"
    code, report, printed = run(out, "mutual", "-c", str(config), "--listener", "yaml-mutual",
                                "-a", "invalid-share=0.5", users=2)
    records = assert_agrees(code, report, out, printed)
    assert report["lab"]["listener"] == "yaml-mutual" and report["lab"]["started_by_load"]
    assert f"--pki {config.parent / 'pki'} " in " ".join(report["command"]) + " "
    assert {r["tls_verify_status"] for r in records} > {"Success"}  # and refusals of the invalid half
    assert "stopping lab" in (out / "lab" / "up.log").read_text()


def test_a_lab_yaml_that_does_not_start_is_reported_with_the_labs_own_error(lab_process: load.LabProcess, tmp_path: Path) -> None:
    data = yaml.safe_load((_lab_dir / "lab.yaml").read_text())
    data["listeners"] = [l for l in data["listeners"] if l["name"] == "aliyun-one-way"]  # lab-ecdsa left on an Alibaba lab
    config = tmp_path / "lab.yaml"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(LbsimError) as error:
        load.LabProcess(tmp_path / "lab", str(config))
    assert "the lab exited with code" in error.value.message and error.value.field == "config"
    assert "certificates[1].cert" in error.value.hint and "RSA" in error.value.hint


def test_target_url_without_api_skips_the_checks_and_with_api_checks(lab_process: load.LabProcess, tmp_path: Path) -> None:
    port = load.listener_port(lab_process.api, "aliyun-one-way")
    url = f"https://localhost:{port}"
    alone = tmp_path / "alone"
    code, report, printed = run(alone, "new_connections", "--target", url, "--pki", str(_lab_dir / "pki"), users=2)
    assert code == 0 and report["locust"]["failures"] == 0, printed
    assert report["locust"]["handshakes"] == report["locust"]["requests"] > 4
    assert "checks" not in report and "checks: skipped" in printed
    assert report["lab"] == {"api": None, "listener": str(port), "port": port, "started_by_load": False}
    assert not (alone / "lab").exists() and lb_log(alone) == []  # no lab started, no log to collect
    collected = tmp_path / "collected"
    code, report, printed = run(collected, "new_connections", "--target", url, "--api", lab_process.api, users=2)
    records = assert_agrees(code, report, collected, printed)
    assert {r["listener_port"] for r in records} == {port} and len(records) == report["locust"]["handshakes"]


def test_two_distributed_runs_at_once_each_get_their_own_loopback_master(lab_process: load.LabProcess, tmp_path: Path) -> None:
    """Two `--processes 2` runs side by side: each master binds 127.0.0.1 on a port of its own (not Locust's
    default *:5557, which the two would share), and each run's workers join their own master. The test takes
    no port itself (5557 may be another job's on a shared machine); the next test takes the probed one."""
    outs = {name: tmp_path / name for name in ("aliyun-one-way", "tencent-one-way")}  # one listener each: no shared log
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = {name: pool.submit(run, out, "resumption", "--api", lab_process.api, "--listener", name,
                                  "--processes", "2", users=4, cli=True) for name, out in outs.items()}
        results = {name: future.result() for name, future in runs.items()}
    masters = set()
    for name, (code, report, printed) in results.items():
        assert_agrees(code, report, outs[name], printed)
        roles = sorted(p["role"] for p in report["cpu"]["locust_processes"])
        assert roles == ["MasterRunner", "WorkerRunner", "WorkerRunner"]
        assert len(list((outs[name] / "client").glob("client-*.jsonl"))) == 2  # each worker wrote its own records
        command = report["command"]
        option = lambda flag: command[command.index(flag) + 1]  # noqa: E731
        assert option("--master-bind-host") == option("--master-host") == "127.0.0.1"
        assert option("--master-bind-port") == option("--master-port") != "5557"
        masters.add(option("--master-port"))
    assert len(masters) == 2


def test_a_master_port_taken_before_locust_binds_it_is_replaced(
        lab_process: load.LabProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The free port is probed before Locust binds it; if another process takes it meanwhile, the master
    fails to bind and the run is retried on a fresh port instead of failing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = taken.getsockname()[1]
        ports = iter([blocked])
        real = load.free_port
        monkeypatch.setattr(load, "free_port", lambda: next(ports, None) or real())
        code, report, printed = run(tmp_path, "keepalive", "--api", lab_process.api, "--processes", "2", users=2)
    assert_agrees(code, report, tmp_path, printed)
    command = report["command"]
    assert command[command.index("--master-port") + 1] != str(blocked)  # the second port probed


def test_manual_master_and_workers_with_a_shipped_profile(lab_process: load.LabProcess, tmp_path: Path) -> None:
    """docs/load.md's master + workers by hand: plain `locust -f` with a shipped profile, the listener by
    name through --lab-api, every lbsim argument given to the master only. The workers run from a
    directory without lbsim-out/pki, so they can only verify the listener with the master's --pki."""
    profile = str(REPO / "scenarios" / "load" / "new_connections.py")
    locust = [sys.executable, "-m", "locust", "-f", profile]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    worker_logs = [tmp_path / f"worker-{i}.log" for i in range(2)]  # files, not pipes nobody reads meanwhile
    started = time.time()
    for _ in range(load.MASTER_BIND_ATTEMPTS):  # as `lbsim load` does: the probed port may be taken before the bind
        port = free_port()
        master = subprocess.Popen(
            [*locust, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--headless", "-u", "4", "-r", "4", "-t", "2s", "--expect-workers", "2", "--stop-timeout", "5",
             "--csv", str(tmp_path / "locust" / "locust"), "--lab-api", lab_process.api, "--listener", "aliyun-one-way",
             "--pki", str(_lab_dir / "pki"), "--client-log", str(tmp_path / "client")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers: list[subprocess.Popen] = []
        try:
            for log in worker_logs:
                with log.open("w") as out:
                    workers.append(subprocess.Popen(
                        [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                        cwd=workdir, stdout=out, stderr=subprocess.STDOUT))
            output = master.communicate(timeout=90)[0]
            if master.returncode != 0 and "Socket bind failure" in output:
                continue  # the workers, waiting for a master that never came, are killed below
            for worker in workers:
                worker.wait(30)
        finally:
            for proc in (master, *workers):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        break
    assert master.returncode == 0, output[-3000:]
    assert all(w.returncode == 0 for w in workers), [log.read_text()[-2000:] for log in worker_logs]
    assert len(list((tmp_path / "client").glob("client-*.jsonl"))) == 2  # the master's --client-log reached both
    listener = load.listener_port(lab_process.api, "aliyun-one-way")
    load.wait_logged(lab_process.api)
    lb = load.api_connections(lab_process.api, listener, started)
    rows = load.locust_rows(tmp_path / "locust" / "locust_stats.csv")
    clients = load.read_jsonl(sorted((tmp_path / "client").glob("client-*.jsonl")))
    checks = load.agreement(rows, clients, lb, listener)
    assert checks["ok"], json.dumps(checks, indent=1)
    assert checks["handshakes"]["locust"]["handshake full"] == len(clients) > 4


# ---- the lean client on its own ---------------------------------------------------------------------------------------


def test_client_counts_equal_the_listeners_meter(lab: Any) -> None:
    target = Target.parse(f"https://localhost:{lab.port('aliyun-one-way')}")
    conn = TlsConnection(target, client_context(TlsOptions(cafile=lab.ca_file)))
    conn.connect()
    first = conn.request("GET", "/hello?size=3000")
    second = conn.request("POST", "/hello?size=10", body=b"y" * 5000)
    rest = conn.close()
    assert first.status == second.status == 200 and first.body_length == 3000
    rec = conn.record
    assert first.wire_sent + second.wire_sent + rest[0] == rec.sent
    assert first.wire_received + second.wire_received + rest[1] == rec.received
    record = _lab_record(lab, "aliyun-one-way", rec)
    t = record["traffic"]
    assert (t["client_to_lb"]["wire"], t["lb_to_client"]["wire"]) == (rec.sent, rec.received)
    assert (t["client_to_lb"]["payload"], t["lb_to_client"]["payload"]) == (rec.http_sent, rec.http_received)
    assert t["client_to_lb"]["handshake"] == rec.handshake_sent and record["requests"] == 2
    # resumption with the session the connection left behind
    again = TlsConnection(target, client_context(TlsOptions(cafile=lab.ca_file)), session=conn.session)
    again.connect()
    again.close()
    assert again.record.resumed and _lab_record(lab, "aliyun-one-way", again.record)["resumed"]


def test_client_verifies_the_listener_certificate_and_name(lab: Any, tmp_path: Path) -> None:
    port = lab.port("aliyun-one-way")
    stranger = tmp_path / "other-ca.pem"
    stranger.write_bytes(Path(lab.files["client-ca"]).read_bytes())  # a real CA, just not the listener's
    conn = TlsConnection(Target.parse(f"https://localhost:{port}"), client_context(TlsOptions(cafile=str(stranger))))
    with pytest.raises(ConnectionFailed):  # our failure, not the listener refusing us
        conn.connect()
    assert "certificate verify failed" in conn.record.error and conn.record.outcome == "failed"
    wrong_name = TlsConnection(Target.parse(f"https://localhost:{port}"), client_context(TlsOptions(cafile=lab.ca_file)),
                               sni="elsewhere.example")
    with pytest.raises(ConnectionFailed):
        wrong_name.connect()
    assert "certificate verify failed" in wrong_name.record.error
    right_name = TlsConnection(Target.parse(f"https://127.0.0.1:{port}"), client_context(TlsOptions(cafile=lab.ca_file)),
                               sni="lbsim.test")
    right_name.connect()  # the certificate names lbsim.test; no exception
    right_name.close()


def _lab_record(lab: Any, listener: str, rec: Any) -> dict[str, Any]:
    """The listener's record of a load client's connection: its port, and not before it started (ports are
    reused in a long session)."""
    return lab.record_of(SimpleNamespace(local_port=rec.local_port, opened=rec.started), listener, timeout=5)
