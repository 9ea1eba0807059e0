"""`lbsim up` as a user runs it: a subprocess, the printed curl commands pasted, then Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from simulator.model.config import load_config

LBSIM = str(Path(sys.executable).with_name("lbsim"))


def test_lbsim_up_prints_working_curl_commands_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([LBSIM, "up", "--out", str(tmp_path / "out"), "--time-scale", "0.01"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: dict[str, str] = {}
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while "connection log" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"lbsim up exited early: {proc.poll()}"
            banner.append(line)
            key = line.split(":", 1)[0].strip()
            lines[key] = line.split(":", 1)[1].strip() if ":" in line else line
        listed = {line.split()[0]: line for line in banner if line.startswith(("aliyun-", "tencent-"))}
        # tencent-mutual verifies clients only optionally; aliyun-mutual always.
        assert " mutual (optional) " in listed["tencent-mutual"] and "(optional)" not in listed["aliyun-mutual"]
        assert " mutual " in listed["aliyun-mutual"] and " one-way " in listed["aliyun-one-way"]
        # tls_cipher_policy_1_0 lists DES-CBC3-SHA, which this OpenSSL build cannot negotiate.
        assert "never negotiates here: DES-CBC3-SHA" in listed["aliyun-one-way"]
        assert "DES-CBC3-SHA" not in listed["aliyun-mutual"]
        for kind in ("one-way", "mutual"):
            command = shlex.split(lines[kind]) + ["-sS", "--max-time", "10"]
            out = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=tmp_path)
            assert out.returncode == 0, (kind, out.stderr)
            assert json.loads(out.stdout)["path"] == "/hello"
        # The console's URL is in the banner, and it shows the lab's listeners.
        page = urllib.request.urlopen(lines["console"] + "listeners", timeout=10).read().decode()
        assert all(name in page for name in ("aliyun-one-way", "tencent-mutual")) and 'data-status="running"' in page
        # The default lab is written out to copy and edit, and loads as it is.
        config = load_config(tmp_path / "out" / "lab.yaml")
        assert [l.name for l in config.listeners] == ["aliyun-one-way", "aliyun-mutual", "tencent-one-way", "tencent-mutual",
                                                      "aws-one-way", "aws-verify", "aws-passthrough"]
        # Refused clients (no certificate, an expired one) are in the connection log, not on the console.
        pki = tmp_path / "out" / "pki"
        mutual_url = shlex.split(lines["mutual"])[-1]
        for extra in ([], ["--cert", str(pki / "client-expired.pem"), "--key", str(pki / "client-expired.key")]):
            for _ in range(3):
                out = subprocess.run(["curl", "--cacert", str(pki / "ca.pem"), *extra, "-sS", "--max-time", "10",
                                      mutual_url], capture_output=True, text=True, timeout=20)
                assert out.returncode != 0, out.stdout
        log_file = tmp_path / "out" / "connections.jsonl"
        deadline = time.monotonic() + 10
        while len(log_file.read_text().splitlines()) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    assert "WARNING" not in rest and "TLS Error" not in rest, rest
    log = [json.loads(l) for l in (tmp_path / "out" / "connections.jsonl").read_text().splitlines()]
    assert len(log) == 8, log
    assert sorted(r["tls_verify_status"] for r in log) == ["Failed:ClientCertExpired"] * 3 + ["Failed:NoClientCertificate"] * 3 + ["Success"] * 2


def test_the_cpu_profiler_option_is_cpu_profile_not_profile() -> None:
    """`--profile` names a vendor profile in every other command; `lbsim up` and `lbsim bench` call the
    CPU profiler's option `--cpu-profile` (the bench passes it on to the `lbsim up` it starts)."""
    import pytest

    from simulator.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["up", "--cpu-profile", "up.html"]).cpu_profile == "up.html"
    assert parser.parse_args(["bench", "--cpu-profile", "prof"]).cpu_profile == "prof"
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--profile", "up.html"])


def test_lbsim_up_prints_and_writes_the_vendor_api_endpoints(tmp_path: Path) -> None:
    """What a script needs to reach the vendors' own APIs: printed, and in <out>/endpoints.json (mode 0600)."""
    import os
    import stat

    from alibabacloud_slb20140515 import models
    from alibabacloud_slb20140515.client import Client
    from alibabacloud_tea_openapi.models import Config

    out = tmp_path / "out"
    proc = subprocess.Popen([LBSIM, "up", "--out", str(out), "--time-scale", "0.01"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = []
    try:
        deadline = time.monotonic() + 60
        while not any(l.startswith("aliyun-slb API:") for l in printed) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"lbsim up exited early: {proc.poll()} {printed}"
            printed.append(line.strip())
        endpoints = json.loads((out / "endpoints.json").read_text())
        assert stat.S_IMODE(os.stat(out / "endpoints.json").st_mode) == 0o600
        api = endpoints["aliyun-slb"]
        line = next(l for l in printed if l.startswith("aliyun-slb API:"))
        assert api["https"] in line and api["access_key_id"] in line and api["access_key_secret"] in line
        assert any(endpoints["ca"] in l for l in printed) and endpoints["management_api"].startswith("http://127.0.0.1:")
        # the console beside it, as printed, and it answers (the default lab has no api.token)
        assert endpoints["console"].startswith("http://127.0.0.1:") and endpoints["console"] != endpoints["management_api"]
        assert any(l.startswith("console: " + endpoints["console"]) for l in printed)
        page = urllib.request.urlopen(endpoints["console"] + "listeners", timeout=10).read().decode()
        assert "tencent-mutual" in page
        slb = Client(Config(access_key_id=api["access_key_id"], access_key_secret=api["access_key_secret"],
                            endpoint=api["https_endpoint"], protocol="https", ca=endpoints["ca"],
                            region_id=api["region"]))
        names = {c.server_certificate_name for c in slb.describe_server_certificates(
            models.DescribeServerCertificatesRequest()).body.server_certificates.server_certificate}
        assert "lab-rsa" in names  # the default lab's certificates, in the one store
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest


def started(args: list[str], cwd: Path) -> subprocess.Popen:
    """`lbsim up ARGS` once it prints its connection log line (it serves by then)."""
    proc = subprocess.Popen([LBSIM, "up", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"lbsim up exited early: {proc.poll()}"
        if line.startswith("connection log"):
            return proc
    proc.kill()
    raise AssertionError("lbsim up did not start within 60 s")


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]


def test_lbsim_up_serves_under_python_O_with_its_workers_and_debug_checks_keep_the_checks(tmp_path: Path) -> None:
    """mitmproxy's debug-only checks cost a keep-alive request 19 % of its CPU: `lbsim up` restarts itself
    (same pid) under -O and starts its workers so; `--debug-checks` keeps them (docs/performance.md)."""
    fast = started(["--out", str(tmp_path / "fast"), "--time-scale", "0.01", "--workers", "2"], tmp_path)
    checked = started(["--out", str(tmp_path / "checked"), "--time-scale", "0.01", "--debug-checks"], tmp_path)
    try:
        assert cmdline(fast.pid)[1:4] == ["-O", "-m", "simulator.cli"] and "up" in cmdline(fast.pid)
        workers = [int(p) for p in Path(f"/proc/{fast.pid}/task/{fast.pid}/children").read_text().split()]
        worker_lines = [cmdline(p) for p in workers if "simulator.runtime.worker" in cmdline(p)]
        assert len(worker_lines) == 1 and worker_lines[0][1] == "-O", worker_lines
        assert "-O" not in cmdline(checked.pid) and "--debug-checks" in cmdline(checked.pid), cmdline(checked.pid)
    finally:
        for proc in (fast, checked):
            proc.send_signal(signal.SIGINT)
        for proc in (fast, checked):
            assert proc.wait(30) == 0


def test_lbsim_up_under_python_O_survives_mutated_hellos_and_serves_on(tmp_path: Path) -> None:
    """Without mitmproxy's debug checks nothing may change for a client: mutated ClientHellos and random bytes
    (simulator.tools.fuzz) each end in a close or a reset, the lab logs no crash, and it still answers."""
    proc = started(["--out", str(tmp_path / "out"), "--time-scale", "0.01"], tmp_path)
    try:
        assert cmdline(proc.pid)[1] == "-O"
        endpoints = json.loads((tmp_path / "out" / "endpoints.json").read_text())
        with urllib.request.urlopen(endpoints["management_api"] + "/v1/listeners", timeout=10) as r:
            ports = {l["name"]: l["port"] for l in json.load(r)["listeners"]}
        sent = subprocess.run([sys.executable, "-m", "simulator.tools.fuzz", str(ports["aliyun-one-way"]),
                               "--count", "600", "--concurrency", "64", "--seed", "7"], capture_output=True, text=True, timeout=120)
        stats = json.loads(sent.stdout)
        assert stats["sent"] == 600 and stats["closed"] + stats["reset"] == 600, stats
        ca = tmp_path / "out" / "pki" / "ca.pem"
        for name in ("aliyun-one-way", "tencent-one-way"):
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca),
                                  f"https://localhost:{ports[name]}/after"], capture_output=True, text=True, timeout=20)
            assert out.returncode == 0 and json.loads(out.stdout)["path"] == "/after", (name, out.stderr)
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest and "has crashed" not in rest and "ERROR" not in rest, rest
