"""`lbsim bench` in its short form: the harness runs every server under the same load and reports ratios.

No timing thresholds here (the machine is shared; see docs/performance.md for the figures): the test checks
that every server answered every measurement without errors, with the same protocol, and that the report
holds medians and ratios. About 45 s (seven servers start, one of them a baseline checkout; 3 figures x 7
servers + 2 paced x 1 s of load).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest
from helpers import BASELINE_MARK, baseline_copy

import simulator

from simulator.errors import LbsimError
from simulator.tools.bench import (FIGURES, LEAN, PACED, TLS_ONLY, WORKER_PACE, BenchReport, Sample, _parse_h2load, _parse_wrk, baseline_labels,
                                   check_baseline, format_report, https_get, paced_rate, pacing, rsa_sign_rate)
from simulator.cli import main
from simulator.policies.probe import probe

pytestmark = pytest.mark.slow


def test_quick_bench_measures_every_server_and_prints_ratios(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    with baseline_copy("before") as before:
        assert main(["bench", "--quick", "--workers", "2", "--metering-off", "--baseline", str(before),
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "bench.json").read_text())

    targets = report["targets"]
    assert targets == ["lbsim", "lbsim metering off", "lbsim TLS only", "baseline before", "lbsim x2", "mitmdump",
                       "nginx", "nginx x2"], \
        "nginx, h2load: the setup's (apt)"
    assert BASELINE_MARK in (out / "baseline-0" / "server.log").read_text()
    assert BASELINE_MARK not in (out / "lbsim" / "server.log").read_text()
    assert report["tool"] == "h2load"
    # Same certificate, same policy: every server negotiated the same protocol version with wrk's OpenSSL.
    assert {n["protocol"] for n in report["negotiated"].values()} == {"TLSv1.3"}
    for target in targets:
        for figure in FIGURES:
            samples = [s for s in report["samples"] if s["target"] == target and s["figure"] == figure]
            if target == "nginx x2":  # measured at the pace only (below)
                assert samples == [], samples
                continue
            assert len(samples) == 1, (target, figure)
            sample = samples[0]
            assert sample["requests"] > 0 and sample["requests_per_s"] > 0, sample
            assert sample["errors"] == 0 and sample["non_2xx"] == 0, sample
            assert sample["cpu_s"] > 0, f"{target}: the server's CPU time was not measured"
            assert report["medians"][target][figure]["requests_per_s"] == sample["requests_per_s"]
            if target.startswith("lbsim") and figure != "keepalive":  # its connection log says how they shook hands
                assert 0 < sample["handshakes"] <= sample["requests"], sample
                if figure == "new_connections":  # the shim stops h2load's resumption: every handshake is full
                    assert sample["resumed"] == 0, sample
                else:  # by itself h2load resumes each client's previous session
                    assert sample["resumed"] >= sample["handshakes"] // 2, sample

    ratios = {(r["of"], r["to"], r["figure"]): r["ratio"] for r in report["ratios"]}
    for figure in FIGURES:
        assert ("lbsim", "mitmdump", figure) in ratios and ("lbsim", "nginx", figure) in ratios
        assert ("lbsim x2", "lbsim", figure) in ratios
        assert ("lbsim", "lbsim metering off", figure) in ratios  # what metering costs the rate
        assert ("lbsim", "baseline before", figure) in ratios  # what a change did
        assert ("lbsim", "lbsim TLS only", figure) in ratios  # what lbsim's HTTP side costs the rate
    # The two lbsim labs differ in metering only: the one logs each connection's traffic, the other none.
    for lab, metered in (("lbsim", True), ("lbsim-metering-off", False)):
        records = [json.loads(line) for line in (out / lab / "connections.jsonl").read_text().splitlines()]
        assert records and all(("traffic" in r) == metered for r in records), lab
    for line in ("lbsim / lbsim metering off = ", "lbsim / baseline before = ", "lbsim / mitmdump = ", "lbsim / nginx = ", "lbsim x2 / lbsim = ", "the most lbsim x2 could reach",
                 "full handshakes (1 request each)", "resumed handshakes (1 request each)"):
        assert line in printed

    # The paced figure: one process and the workers under the same offered load, and nginx the same way.
    paced = {s["target"]: s for s in report["samples"] if s["figure"] == PACED}
    assert set(paced) == {"lbsim", "lbsim x2", "nginx", "nginx x2"} and report["pace"] > 0
    for sample in paced.values():
        assert sample["requests"] == max(pacing(report["pace"])[0], round(report["pace"] * report["duration_s"])), sample
        assert sample["errors"] == 0 and sample["non_2xx"] == 0 and sample["cpu_s"] > 0, sample
        # Paced batches leave every server idle between them: its processes sleep, and the report counts it.
        assert sample["sleeps"] > 0 and sample["preempted"] >= 0, sample
    # Worker 0 is measured apart: its own CPU and the connections it served (the kernel gives it some of them).
    assert paced["lbsim x2"]["first_cpu_s"] > 0 and 0 < paced["lbsim x2"]["first_requests"] < paced["lbsim x2"]["requests"]
    assert paced["lbsim"]["first_cpu_s"] is None and paced["lbsim"]["first_requests"] is None  # one process: no split
    assert ("lbsim x2", "lbsim", PACED) in ratios and f"(half of one process's rate), full handshakes: {report['pace']}/s" in printed
    # ... and the one process alone at each worker's share of that pace, which the workers' goal cites.
    alone = [s for s in report["samples"] if s["figure"] == WORKER_PACE]
    assert [s["target"] for s in alone] == ["lbsim", "nginx"] * report["rounds"] and 0 < report["worker_pace"] < report["pace"]
    assert all(s["errors"] == 0 and s["cpu_s"] > 0 and s["resumed"] in (0, None) for s in alone), alone
    workers_goal = next(g for g in report["goals"] if g["goal"].startswith("lbsim x2"))
    assert f"at each worker's share of the pace ({report['worker_pace']}/s)" in workers_goal["why"]
    # ... beside what the same spread costs nginx (its master's children counted like lbsim's workers).
    assert "nginx at the same pace spends" in workers_goal["why"] and ("nginx x2", "nginx", PACED) in ratios
    assert "one process slept" in workers_goal["why"] and "nginx's one worker slept" in workers_goal["why"]
    assert "worker 0 spends" in workers_goal["why"]
    assert 0 < report["scaling_ceiling"] <= 2
    assert re.search(r"\| lbsim \| TLSv1\.3 \S+ \| [\d,]+ \(", printed), printed
    assert report["rsa_sign_per_s"] and "RSA-2048 signing limit" in printed
    # Every goal gets a verdict with the measurement behind it.
    assert len(report["goals"]) == 4 and all(" ms" in g["why"] for g in report["goals"])
    # The goals against nginx also say what the TLS path alone reaches: the ceiling of a cheaper HTTP side.
    assert all("its TLS path alone" in g["why"] for g in report["goals"] if "nginx" in g["goal"])
    assert printed.count("goal: ") == 4 and "goal: lbsim / nginx, new TLS connections/s, full handshakes" in printed


def test_a_baseline_that_is_no_lbsim_checkout_is_refused_naming_the_option(tmp_path) -> None:
    with pytest.raises(LbsimError) as refused:
        check_baseline(str(tmp_path))
    assert refused.value.field == "baseline" and "no simulator/cli.py" in str(refused.value)
    assert check_baseline(str(Path(simulator.__file__).parent.parent)) == Path(simulator.__file__).parent.parent.resolve()


def test_baselines_are_labelled_by_commit_and_two_of_one_commit_stay_apart(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("one")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    plain = [tmp_path / "a" / "lbsim", tmp_path / "b" / "lbsim"]  # no git: the folder's name
    for folder in plain:
        folder.mkdir(parents=True)
    assert baseline_labels([repo, repo, *plain]) == [
        f"baseline {rev}", f"baseline {rev} #2", "baseline lbsim", "baseline lbsim #4"]
    (repo / "f.txt").write_text("two")  # uncommitted: not the commit's code any more
    assert baseline_labels([repo]) == [f"baseline {rev}+"]


def test_pacing_is_a_batch_every_50_ms_close_to_the_asked_rate() -> None:
    assert pacing(222) == (11, 50)  # 220/s
    assert pacing(10) == (1, 100)
    assert pacing(3000) == (150, 50)
    for pace in (1, 7, 33, 450, 999):
        batch, period_ms = pacing(pace)
        assert abs(1000 * batch / period_ms - pace) / pace < 0.12, pace
        assert paced_rate(pace) == round(1000 * batch / period_ms)  # what the report states as the pace
    assert paced_rate(222) == 220


def _one_process(rate: float, lbsim_ms: float, others_ms: float, seconds: float = 10) -> Sample:
    n = round(rate * seconds)
    return Sample("lbsim", "new_connections", 1, rate, n, 0, 0, cpu_s=n * lbsim_ms / 1000, duration_s=seconds,
                  client_cpu_s=n * others_ms / 1000)


def test_scaling_ceiling_shares_the_cores_with_the_load_tool() -> None:
    def report(cpus: int, workers: int, *samples: Sample) -> BenchReport:
        return BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": cpus}, ["lbsim"], {}, list(samples), workers=workers)

    # 500/s at 2 ms of lbsim (a whole core) and 0.5 ms of client per connection: two busy cores give 800/s = 1.6x.
    assert report(2, 2, _one_process(500, 2.0, 0.5)).scaling_ceiling() == pytest.approx(1.6)
    # A client that costs nothing leaves both cores to the workers: 2x.
    assert report(2, 2, _one_process(500, 2.0, 0.0)).scaling_ceiling() == 2.0
    # The client's share grows as lbsim gets cheaper: 1 ms against 0.5 ms caps two workers at 1.33x.
    assert report(2, 2, _one_process(1000, 1.0, 0.5)).scaling_ceiling() == pytest.approx(1.333, abs=0.001)
    # With cores to spare, the workers themselves are the limit (N / lbsim's cost).
    assert report(8, 2, _one_process(500, 2.0, 0.5)).scaling_ceiling() == 2.0
    # A round slowed by something else on the machine (lbsim at half a core) does not lift the ceiling: the base
    # is one process at a whole core, 500/s here, so two workers at 800/s are 1.6x, not 800 / 250.
    assert report(2, 2, _one_process(250, 2.0, 0.5)).scaling_ceiling() == pytest.approx(1.6)
    # The median of the rounds; no ceiling without workers.
    assert report(2, 2, _one_process(500, 2.0, 0.0), _one_process(1000, 1.0, 0.5),
                  _one_process(500, 2.0, 2.0)).scaling_ceiling() == pytest.approx(1.333, abs=0.001)
    assert report(2, 1, _one_process(500, 2.0, 0.5)).scaling_ceiling() is None


def test_an_nginx_with_as_many_workers_as_lbsim_is_compared_with_lbsim_when_it_is_the_only_nginx() -> None:
    # `--workers 2 --nginx-workers 2`: the one nginx is "nginx x2", measured in every figure like the rest.
    samples = [Sample(t, "keepalive", 1, rate, rate * 10, 0, 0, cpu_s=10, duration_s=10)
               for t, rate in (("lbsim", 3000), ("lbsim x2", 4000), ("nginx x2", 30000))]
    report = BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": 2}, ["lbsim", "lbsim x2", "nginx x2"], {}, samples,
                         workers=2)
    pairs = {(r["of"], r["to"]): r["ratio"] for r in report.ratios()}
    assert pairs == {("lbsim x2", "lbsim"): pytest.approx(1.333, abs=0.001), ("lbsim", "nginx x2"): 0.1}


def sample(target: str, figure: str, rate: float, ms: float, sleeps: float = 0, preempted: float = 0) -> Sample:
    """Ten seconds at `rate` requests/s, `ms` of server CPU, `sleeps` and `preempted` context switches per request."""
    n = round(rate * 10)
    return Sample(target, figure, 1, rate, n, 0, 0, cpu_s=n * ms / 1000, duration_s=10, sleeps=round(n * sleeps),
                  preempted=round(n * preempted))


def test_goals_say_what_was_measured_and_what_lbsim_would_need() -> None:
    samples = [sample("lbsim", "new_connections", 400, 2.5), sample("nginx", "new_connections", 1000, 0.8),
               sample("lbsim", "keepalive", 1500, 0.5), sample("nginx", "keepalive", 20000, 0.05),
               sample("lbsim", PACED, 200, 2.0, 0.1, 0.5), sample("lbsim x2", PACED, 200, 2.5, 0.5, 1.25),
               sample("lbsim", WORKER_PACE, 100, 2.3), sample("nginx", PACED, 200, 0.8, 1.5),
               sample("nginx x2", PACED, 200, 0.92, 1.8, 0.05), sample("nginx", WORKER_PACE, 100, 0.9)]
    samples[5].first_cpu_s, samples[5].first_requests = 2.6, 1000  # worker 0: 1,000 of the 2,000, 2.6 of the 5 s
    report = BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": 2}, ["lbsim", "lbsim x2", "nginx", "nginx x2"], {}, samples,
                         rsa_sign_per_s=4000, workers=2, pace=200, worker_pace=100)
    goals = {g["goal"].split(":")[0]: g for g in report.goals()}
    full = goals["lbsim / nginx, new TLS connections/s, full handshakes (1 request each)"]
    assert (full["measured"], full["met"]) == (0.4, False)
    # 0.5x would need lbsim's 2.5 ms scaled by 0.4 / 0.5; the signature is 0.25 ms of it.
    assert "2.500 ms" in full["why"] and "0.800 ms" in full["why"] and "0.250 ms" in full["why"] and "2.000 ms" in full["why"]
    keepalive = goals["lbsim / nginx, keep-alive requests/s"]
    assert (keepalive["measured"], keepalive["met"]) == (0.075, True) and "needs" not in keepalive["why"]
    assert not any("resumed" in g for g in goals)  # not measured, no verdict
    workers = goals["lbsim x2 / lbsim, CPU per connection at an equal pace"]
    assert (workers["measured"], workers["met"]) == (1.25, False)
    # What being less busy costs one process by itself, measured at each worker's share of the pace
    assert "at each worker's share of the pace (100/s) spends 2.300 ms, 1.150x its cost at 200/s" in workers["why"]
    # ... and what the same spread costs nginx at that pace: the machine's share of the figure.
    assert ("nginx at the same pace spends 0.800 ms per connection in one worker, 0.920 ms over 2 (1.150x), and 0.900 ms"
            " in one worker at each worker's share (1.125x)") in workers["why"]
    # ... and how often each slept and was preempted per connection at that pace: cache refills no count sees.
    assert ("one process slept 0.10 times and was preempted 0.50 times, the workers 0.50 and 1.25 times"
            in workers["why"])
    assert "nginx's one worker slept 1.50 times and was preempted 0.00 times, its workers 1.80 and 0.05 times" in workers["why"]
    # ... and worker 0 apart from the others: what it does for the lab besides serving.
    assert "worker 0 spends 2.600 ms per connection it serves, the other workers 2.400 ms (1.083x" in workers["why"]
    assert "| lbsim x2 | ? ? | 200 (200) | 400 | 0.50 | 0.00 | - | 0.50 / 1.25 |" in format_report(report)
    assert "| lbsim | ? ? | 400 (400) | 400 | 1.00 | 0.00 | - | - |" in format_report(report)  # not counted
    assert "nginx x2 / nginx = 1.000x (per CPU-second 0.87x)" in format_report(report)
    assert "new TLS connections at each worker's share of that pace, one process, full handshakes: 100/s" in format_report(report)
    assert "goal: lbsim x2 / lbsim, CPU per connection at an equal pace: at most 1.1x: 1.250x, not met" in format_report(report)


def test_goals_cite_what_the_tls_path_alone_reaches() -> None:
    samples = [sample("lbsim", "new_connections", 400, 2.5), sample(TLS_ONLY, "new_connections", 600, 1.6),
               sample("nginx", "new_connections", 1000, 0.8), sample("lbsim", "keepalive", 1500, 0.5),
               sample("nginx", "keepalive", 20000, 0.05)]
    report = BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": 2}, ["lbsim", TLS_ONLY, "nginx"], {}, samples)
    goals = {g["goal"].split(":")[0]: g["why"] for g in report.goals()}
    # 600/s against nginx's 1,000: even a free HTTP side would leave lbsim at 0.6x here.
    assert "its TLS path alone" in goals["lbsim / nginx, new TLS connections/s, full handshakes (1 request each)"]
    assert "spends 1.600 ms and reaches 0.600x nginx" in goals["lbsim / nginx, new TLS connections/s, full handshakes (1 request each)"]
    assert "TLS path alone" not in goals["lbsim / nginx, keep-alive requests/s"]  # not measured there, not cited
    assert "lean prototype" not in goals["lbsim / nginx, keep-alive requests/s"]  # not measured (opt-in), not cited
    ratios = {(r["of"], r["to"], r["figure"]): r["ratio"] for r in report.ratios()}
    assert ratios[("lbsim", TLS_ONLY, "new_connections")] == round(400 / 600, 3)


def test_goals_cite_what_the_lean_prototype_reaches_when_measured() -> None:
    samples = [sample("lbsim", "keepalive", 2000, 0.5), sample(LEAN, "keepalive", 3500, 0.28),
               sample("nginx", "keepalive", 20000, 0.05)]
    report = BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": 2}, ["lbsim", LEAN, "nginx"], {}, samples)
    (goal,) = report.goals()
    assert "the lean prototype) spends 0.280 ms and reaches 0.175x nginx" in goal["why"], goal
    ratios = {(r["of"], r["to"], r["figure"]): r["ratio"] for r in report.ratios()}
    assert ratios[("lbsim", LEAN, "keepalive")] == round(2000 / 3500, 3)  # lbsim against it, as against TLS only


def test_rsa_signing_limit_comes_from_openssl_speed() -> None:
    rate = rsa_sign_rate(seconds=1)
    assert rate is not None and 100 < rate < 100_000


def test_lbsim_target_negotiates_logs_and_announces_close(tmp_path) -> None:
    from simulator.backends import BackendProcess
    from simulator.tools.bench import LbsimServer, mint, running

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



@pytest.mark.parametrize("kind", ["lbsim", "nginx", "lbsim under callgrind"])
def test_a_server_whose_port_was_taken_before_it_bound_starts_on_another(tmp_path, kind) -> None:
    import socket

    from simulator.backends import BackendProcess
    from simulator.tools.bench import LbsimServer, NginxServer, ensure_tools, mint, running
    from simulator.tools.instructions import CountedLab  # its own start timeout: the retry keeps it

    files = mint(tmp_path)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # what a load tool's connection or another bench could hold on the port the server picked
    with taken, BackendProcess(["b"]) as backend:
        if kind == "lbsim":
            server = LbsimServer(tmp_path / kind, files["cert"], files["key"], backend.addresses["b"])
        elif kind == "lbsim under callgrind":
            assert ensure_tools(False, need=("valgrind",))["valgrind"], "make setup installs valgrind"
            server = CountedLab(tmp_path / kind, files["cert"], files["key"], backend.addresses["b"])
        else:
            nginx = ensure_tools(False, need=("nginx",))["nginx"]
            assert nginx, "make setup installs nginx"
            server = NginxServer(tmp_path / kind, nginx, files["cert"], files["key"], backend.addresses["b"])
        server.port = taken.getsockname()[1]
        server.write_config()
        with running([server], str(files["ca"])):
            assert server.port != taken.getsockname()[1]
            assert https_get(server.port, str(files["ca"]))["protocol"] == "TLSv1.3"
        logs = "".join(f.read_text() for f in (tmp_path / kind).glob("*.log"))
        assert "already in use" in logs.lower()  # the first attempt's complaint, kept in its log

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


def test_concurrency_mode_holds_connections_on_lbsim_and_nginx(tmp_path, capsys) -> None:
    """`--concurrency N` in its short form: both servers hold every connection, RSS is read before, held and
    after two rounds, and the handshake rate beside the held connections is measured."""
    assert main(["bench", "--concurrency", "200", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "concurrency.json").read_text())
    results = {r["target"]: r for r in report["results"]}
    assert list(results) == ["lbsim", "nginx"], "nginx: the setup's (apt)"
    for target, r in results.items():
        assert r["errors"] == 0 and [row["held"] for row in r["rounds"]] == [200, 200, 200], r
        assert all(row["rss_held_kib"] > r["rss_start_kib"] for row in r["rounds"]), r
        assert r["per_connection_kib"] > 1 and r["rate_idle"] > 0 and r["rate_held"] > 0, r
    # Every held connection was a real TLS connection with a request: lbsim logged each one when it closed.
    records = [json.loads(line) for line in (tmp_path / "lbsim" / "connections.jsonl").read_text().splitlines()]
    held = [r for r in records if r.get("requests") == 1 and r.get("tls_protocol") == "TLSv1.3"]
    assert len(held) >= 600
    # What OpenSSL alone keeps per idle connection, measured with the same context. (Below lbsim's whole figure
    # at thousands of connections, 24.7 against 35.8 KiB; 200 are too few to order them: one arena's growth
    # moves lbsim's RSS by more than the difference.)
    assert 1 < report["openssl_floor_kib"] < 64
    printed = capsys.readouterr().out
    assert "lbsim / nginx, memory per connection = " in printed and "OpenSSL alone keeps" in printed


def test_the_report_names_the_labs_interpreter_and_how_it_was_configured() -> None:
    from simulator.tools.bench import describe_python, machine_info

    build = machine_info()["python"]
    assert build["version"] == platform.python_version() and build["implementation"] == platform.python_implementation()
    args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    assert build["configured_pgo"] == ("--enable-optimizations" in args)
    assert build["shared_libpython"] == bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    assert describe_python({"version": "3.12.1", "implementation": "CPython", "shared_libpython": True,
                            "configured_pgo": False, "configured_lto": True}) == (
        "CPython 3.12.1, configured with a shared libpython, no --enable-optimizations (PGO), --with-lto")
    report = BenchReport("t", 1, 10, 20, "", "h2load", {"cpus": 2, "python": build}, ["lbsim"], {}, [])
    assert f"the labs' interpreter: {describe_python(build)}" in format_report(report)
