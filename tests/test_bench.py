"""`lbsim bench` in its short form: the harness runs every server under the same load and reports ratios.

No timing thresholds here (the machine is shared; see docs/performance.md for the figures): the test checks
that every server answered every measurement without errors, with the same protocol, and that the report
holds medians and ratios. About 30 s (five servers start; 2 figures x 5 servers x 1 s of load).
"""

from __future__ import annotations

import json
import re

import pytest

from simulator.bench import FIGURES, _parse_h2load, _parse_wrk, https_get, rsa_sign_rate
from simulator.cli import main
from simulator.probe import probe

pytestmark = pytest.mark.slow


def test_quick_bench_measures_every_server_and_prints_ratios(tmp_path, capsys) -> None:
    assert main(["bench", "--quick", "--workers", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "bench.json").read_text())

    targets = report["targets"]
    assert targets == ["lbsim", "lbsim x2", "mitmdump", "nginx"], "nginx and h2load come with the setup (apt)"
    assert report["tool"] == "h2load"
    # Same certificate, same policy: every server negotiated the same protocol version with wrk's OpenSSL.
    assert {n["protocol"] for n in report["negotiated"].values()} == {"TLSv1.3"}
    for target in targets:
        for figure in FIGURES:
            samples = [s for s in report["samples"] if s["target"] == target and s["figure"] == figure]
            assert len(samples) == 1, (target, figure)
            sample = samples[0]
            assert sample["requests"] > 0 and sample["requests_per_s"] > 0, sample
            assert sample["errors"] == 0 and sample["non_2xx"] == 0, sample
            assert sample["cpu_s"] > 0, f"{target}: the server's CPU time was not measured"
            assert report["medians"][target][figure]["requests_per_s"] == sample["requests_per_s"]

    ratios = {(r["of"], r["to"], r["figure"]): r["ratio"] for r in report["ratios"]}
    for figure in FIGURES:
        assert ("lbsim", "mitmdump", figure) in ratios and ("lbsim", "nginx", figure) in ratios
        assert ("lbsim x2", "lbsim", figure) in ratios
    for line in ("lbsim / mitmdump = ", "lbsim / nginx = ", "lbsim x2 / lbsim = "):
        assert line in printed
    assert re.search(r"\| lbsim \| TLSv1\.3 \S+ \| [\d,]+ \(", printed), printed
    assert report["rsa_sign_per_s"] and "RSA-2048 signing limit" in printed


def test_rsa_signing_limit_comes_from_openssl_speed() -> None:
    rate = rsa_sign_rate(seconds=1)
    assert rate is not None and 100 < rate < 100_000


def test_lbsim_target_negotiates_logs_and_announces_close(tmp_path) -> None:
    from simulator.backends import BackendProcess
    from simulator.bench import LbsimServer, mint, running

    files = mint(tmp_path)
    with BackendProcess(["b"]) as backend:
        server = LbsimServer(tmp_path / "lbsim", files["cert"], files["key"], backend.addresses["b"])
        with running([server], str(files["ca"])):
            negotiated = https_get(server.port, str(files["ca"]))
            assert negotiated["protocol"] == "TLSv1.3" and negotiated["cipher"].startswith("TLS_")
            # wrk's "new connection" load asks to close: the answer says so (else wrk counts an error each time).
            answer = probe("127.0.0.1", server.port, http_request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = answer.http_response.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 200") and b"\r\nconnection: close" in head, head
            assert server.cpu() > 0
        records = [json.loads(line) for line in (tmp_path / "lbsim" / "connections.jsonl").read_text().splitlines()]
        assert records and all("traffic" in r for r in records)


H2LOAD_OUTPUT = """finished in 3.12s, 192.61 req/s, 31.79KB/s
requests: 600 total, 600 started, 598 done, 590 succeeded, 8 failed, 2 errored, 0 timeout
status codes: 590 2xx, 0 3xx, 0 4xx, 8 5xx
"""
WRK_OUTPUT = """  153 requests in 2.11s, 76.29KB read
  Socket errors: connect 0, read 153, write 0, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:     72.48
"""


def test_load_tool_outputs_are_read_with_their_errors() -> None:
    h2 = _parse_h2load(0, H2LOAD_OUTPUT)
    assert (h2.requests_per_s, h2.requests, h2.errors, h2.non_2xx) == (192.61, 598, 10, 8)
    wrk = _parse_wrk(0, WRK_OUTPUT)
    assert (wrk.requests_per_s, wrk.requests, wrk.errors, wrk.non_2xx) == (72.48, 153, 153, 4)
    # A timed run (-D) can count one more status than requests done (CI saw non_2xx == -1).
    timed = H2LOAD_OUTPUT.replace("598 done, 590 succeeded, 8 failed, 2 errored", "1180 done, 1180 succeeded, 0 failed, 0 errored")
    timed = timed.replace("590 2xx, 0 3xx, 0 4xx, 8 5xx", "1181 2xx, 0 3xx, 0 4xx, 0 5xx")
    assert _parse_h2load(0, timed).non_2xx == 0
    with pytest.raises(RuntimeError):
        _parse_h2load(1, "connect failed")
