"""Billing models, the per-listener ledger, exports and `lbsim report traffic`, on constructed records
(and once on records from real connections)."""

from __future__ import annotations

import argparse
import csv
import http.server
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from test_metering_harness import CountingClient, LoopbackServer, client_context, server_context

from simulator.errors import LbsimError
from simulator.metering import TrafficLedger, billing
from simulator.metering import cli as mcli


def direction(hs: int, ovh: int, pay: int, clo: int) -> dict[str, int]:
    return {"wire": hs + ovh + pay + clo, "handshake": hs, "record_overhead": ovh, "payload": pay, "closure": clo}


def record(port: int = 443, profile: str = "aliyun-slb", *, model: str | None = None, inbound=(300, 22, 100, 24),
           outbound=(2900, 44, 5000, 0), resumed: bool = False, complete: bool = True, requests: int = 1,
           start: float = 1000.0, end: float = 1001.0, **extra: Any) -> dict[str, Any]:
    return {"time": end, "listener_port": port, "profile": profile, "billing_model": model,
            "traffic": {"client_to_lb": direction(*inbound), "lb_to_client": direction(*outbound),
                        "handshake_complete": complete, "resumed": resumed if complete else None,
                        "tls_version": "TLSv1.3" if complete else None, "cipher": None, "requests": requests,
                        "started_at": start, "finished_at": end}, **extra}


# --- billing ------------------------------------------------------------------------------------------

def test_aliyun_bills_outbound_http_bytes_only() -> None:
    b = billing.billed("aliyun-slb", record())
    assert b["model"] == "aliyun-slb"
    assert b["billed_bytes"] == b["billed_lb_to_client"] == 5000 and b["billed_client_to_lb"] == 0
    assert b["wire_bytes"] == 7944 and b["unbilled_bytes"] == 2944
    assert b["overhead_pct"] == pytest.approx(58.88)


@pytest.mark.parametrize("model", ["tencent-clb", "aws-alb"])
def test_lcu_models_bill_both_directions(model: str) -> None:
    b = billing.billed(model, record()["traffic"])  # a bare traffic dict works too
    assert b["billed_bytes"] == 5100 and b["wire_bytes"] == 446 + 7944
    assert b["overhead_pct"] == pytest.approx(100 * (8390 - 5100) / 5100, abs=1e-3)


def test_handshake_only_connection_bills_nothing() -> None:
    b = billing.billed("aliyun-slb", record(inbound=(300, 0, 0, 0), outbound=(2900, 0, 0, 0), complete=False))
    assert b["billed_bytes"] == 0 and b["overhead_pct"] is None and b["unbilled_bytes"] == 2900


def test_models_are_data_with_vendor_wording() -> None:
    assert set(billing.MODELS) == {"aliyun-slb", "tencent-clb", "aws-alb"}
    assert "larger than the billing traffic" in billing.MODELS["aliyun-slb"].wording
    assert "protocol handshake" in billing.MODELS["tencent-clb"].wording
    assert billing.MODELS["aliyun-slb"].lcu is None
    assert billing.MODELS["aws-alb"].lcu.free_rules == 10
    assert billing.model_for("tencent-clb").billed_directions == ("client_to_lb", "lb_to_client")
    json.dumps(billing.MODELS["tencent-clb"].to_dict())
    with pytest.raises(LbsimError) as e:
        billing.model_for("gcp-lb")
    assert e.value.code == "UnknownBillingModel"


def test_lcu_bills_the_largest_dimension() -> None:
    lcu = billing.lcu("tencent-clb", new_connections_per_s=50, concurrent_connections=1500,
                      processed_bytes_per_h=3 * 10**9, requests_per_s=500)
    assert lcu["dimensions"]["new_connections_per_s"]["lcu"] == 2
    assert lcu["dimensions"]["concurrent_connections"]["lcu"] == 0.5
    assert lcu["dimensions"]["processed_gb_per_h"]["lcu"] == 3
    assert lcu["dimensions"]["rule_evaluations_per_s"]["lcu"] == 0.5
    assert (lcu["lcu"], lcu["billed_dimension"]) == (3, "processed_gb_per_h")
    aws = billing.lcu("aws-alb", new_connections_per_s=0, concurrent_connections=0, processed_bytes_per_h=0,
                      requests_per_s=1000, rules_per_request=12)
    assert aws["dimensions"]["rule_evaluations_per_s"]["value"] == 2000  # 2 rules past the 10 free ones
    assert billing.lcu("aliyun-slb", new_connections_per_s=1, concurrent_connections=1,
                       processed_bytes_per_h=1, requests_per_s=1) is None


# --- ledger -------------------------------------------------------------------------------------------

def make_ledger() -> TrafficLedger:
    ledger = TrafficLedger()
    # :443 aliyun, 10 s window: 3 full, 1 resumed, 1 failed; two overlap
    ledger.add(record(start=1000, end=1004, requests=3))
    ledger.add(record(start=1002, end=1003))
    ledger.add(record(start=1005, end=1006))
    ledger.add(record(start=1006, end=1008, resumed=True, inbound=(500, 22, 100, 24), outbound=(140, 44, 5000, 0)))
    ledger.add(record(start=1009, end=1010, complete=False, requests=0, inbound=(200, 0, 0, 0),
                      outbound=(7, 0, 0, 0)))
    # :8443 tencent (by profile), and :9443 profile aliyun overridden to aws-alb in the config
    ledger.add(record(8443, "tencent-clb", start=0, end=2, requests=100))
    ledger.add(record(9443, "aliyun-slb", model="aws-alb", rules=12, start=0, end=1, requests=10))
    return ledger


def test_summary_per_listener() -> None:
    s = {x["listener_port"]: x for x in make_ledger().summary()}
    a = s[443]
    assert (a["connections"], a["handshakes_full"], a["handshakes_resumed"], a["handshakes_failed"]) == (5, 3, 1, 1)
    assert a["billing_model"] == "aliyun-slb" and a["requests"] == 6
    assert a["window_s"] == 10 and a["new_connections_per_s"] == 0.5 and a["requests_per_s"] == 0.6
    assert a["concurrent_avg"] == pytest.approx(0.9) and a["concurrent_peak"] == 2
    assert a["wire_in"] == 3 * 446 + 646 + 200
    assert a["wire_out"] == 3 * 7944 + 5184 + 7
    assert a["billed_bytes"] == a["billed_out"] == 4 * 5000 and a["billed_in"] == 0
    assert a["overhead_pct"] == pytest.approx(100 * (a["wire_out"] - 20000) / 20000, abs=1e-3)
    assert a["bytes"]["lb_to_client"]["handshake"] == 3 * 2900 + 140 + 7
    assert a["handshake_bytes_mean"]["full"] == {"client_to_lb": 300, "lb_to_client": 2900}
    assert a["handshake_bytes_mean"]["resumed"] == {"client_to_lb": 500, "lb_to_client": 140}
    assert a["lcu"] is None
    t = s[8443]
    assert t["billing_model"] == "tencent-clb" and t["window_s"] == 2
    assert t["billed_bytes"] == 5100 and t["lcu"]["dimensions"]["rule_evaluations_per_s"]["value"] == 50
    assert t["lcu"]["billed_dimension"] == "rule_evaluations_per_s" and t["lcu"]["lcu"] == 0.05
    w = s[9443]
    assert (w["profile"], w["billing_model"]) == ("aliyun-slb", "aws-alb")
    assert w["window_s"] == 1  # at least one second
    assert w["lcu"]["dimensions"]["rule_evaluations_per_s"]["value"] == 20


def test_ledger_takes_the_callers_billing_only_for_the_records_model() -> None:
    """The connection log hands the ledger the `billed` it computed (billing once per connection); one of
    another model is not trusted, the ledger bills the record itself."""
    rec = record(model="tencent-clb")
    theirs, mismatched, own = TrafficLedger(), TrafficLedger(), TrafficLedger()
    theirs.add(rec, billing.billed("tencent-clb", rec))
    mismatched.add(rec, billing.billed("aliyun-slb", rec))  # outbound payload only: 5000, not 5100
    own.add(rec)
    assert [x.summary()[0]["billed_bytes"] for x in (theirs, mismatched, own)] == [5100, 5100, 5100]


def test_summary_with_an_explicit_window() -> None:
    a = make_ledger().summary(window_s=3600)[0]
    assert a["window_s"] == 3600 and a["new_connections_per_s"] == pytest.approx(5 / 3600, abs=1e-6)


def test_csv_and_jsonl_exports_round_trip(tmp_path: Path) -> None:
    ledger = make_ledger()
    assert ledger.write_csv(tmp_path / "t.csv") == 7
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == 7 and rows[0]["lb_to_client_wire"] == "7944" and rows[0]["billed_bytes"] == "5000"
    assert {"client_to_lb_handshake", "lb_to_client_record_overhead", "overhead_pct", "cipher"} <= set(rows[0])
    assert ledger.write_jsonl(tmp_path / "t.jsonl") == 7
    with open(tmp_path / "t.jsonl", "a") as f:  # a connection log may also hold other events
        f.write('{"event": "listener_started", "port": 443}\n\n')
    again = TrafficLedger.from_jsonl(tmp_path / "t.jsonl")
    assert again.summary() == ledger.summary()


def test_records_in_the_listener_log_shape() -> None:
    """The connection log's own fields: ISO `time` + `duration`, top-level `requests`; records without
    `traffic` (metering off, or a client gone before its ClientHello was whole) count as unmetered."""
    ledger = TrafficLedger()
    metered = record(requests=0)
    metered["requests"] = 4  # the listener's count wins over the meter's
    ledger.add(metered)
    ledger.add({"time": "2026-01-01T00:00:10.000Z", "duration": 2.5, "listener_port": 443,
                "profile": "aliyun-slb", "billing_model": "aliyun-slb", "requests": 0})
    s = ledger.summary()[0]
    assert (s["connections"], s["unmetered"], s["handshakes_full"], s["requests"]) == (2, 1, 1, 4)
    assert s["wire_out"] == 7944 and s["concurrent_peak"] == 1
    assert len(ledger.rows()) == 1


def test_bad_logs_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(LbsimError) as e:
        TrafficLedger.from_jsonl(tmp_path / "bad.jsonl")
    assert e.value.code == "LogInvalid" and "bad.jsonl:1" in e.value.message
    with pytest.raises(LbsimError) as e:
        TrafficLedger.from_jsonl(tmp_path / "missing.jsonl")
    assert e.value.code == "LogUnreadable"
    with pytest.raises(LbsimError) as e:
        TrafficLedger().add(record(profile=None))  # type: ignore[arg-type]
    assert e.value.code == "NoBillingModel"


def test_ledger_of_real_connections() -> None:
    """Records straight from the meter: totals add up, resumed handshakes are counted."""
    ledger = TrafficLedger()
    with LoopbackServer(server_context()) as srv:
        session = None
        for _ in range(3):
            c = CountingClient(srv.address, client_context(versions=("TLSv1.2", "TLSv1.2")), session=session)
            c.handshake()
            c.request(b"x" * 100, 1000)
            session = c.session()
            c.close()
            ledger.add({"time": 0, "listener_port": 443, "profile": "tencent-clb",
                        "traffic": srv.result().traffic})
    s = ledger.summary()[0]
    assert (s["connections"], s["handshakes_full"], s["handshakes_resumed"]) == (3, 1, 2)
    for d in ("client_to_lb", "lb_to_client"):
        b = s["bytes"][d]
        assert b["wire"] == b["handshake"] + b["record_overhead"] + b["payload"] + b["closure"]
    assert s["billed_bytes"] == s["bytes"]["client_to_lb"]["payload"] + s["bytes"]["lb_to_client"]["payload"]
    assert s["overhead_pct"] > 100  # small requests: the handshakes dominate
    assert s["handshake_bytes_mean"]["resumed"]["lb_to_client"] == 141


# --- CLI ----------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lbsim")
    sub = p.add_subparsers(dest="command", required=True)
    other = sub.add_parser("report").add_subparsers(dest="report", required=True)
    other.add_parser("tls")  # another concern's report must survive
    mcli.register(sub)
    return p


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    args = parser().parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_report_traffic_table_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_ledger().write_jsonl(tmp_path / "conn.jsonl")
    out = run_cli(["report", "traffic", "--log", str(tmp_path / "conn.jsonl"), "--csv", str(tmp_path / "o.csv"),
                   "--jsonl", str(tmp_path / "o.jsonl")], capsys)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PORT", "PROFILE", "MODEL", "CONNS"]
    assert lines[1].split()[:4] == ["443", "aliyun-slb", "aliyun-slb", "5"]
    assert "29,023" in lines[1] and "-" == lines[1].split()[-1]
    assert "LB->client: wire 29,023 = handshake 8,847" in out
    assert len(list(csv.DictReader(open(tmp_path / "o.csv")))) == 7
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 7
    js = json.loads(run_cli(["report", "traffic", "--log", str(tmp_path / "conn.jsonl"), "--json"], capsys))
    assert [x["listener_port"] for x in js] == [443, 8443, 9443]
    assert parser().parse_args(["report", "tls"]).report == "tls"


def test_report_traffic_needs_a_source() -> None:
    args = parser().parse_args(["report", "traffic"])
    with pytest.raises(LbsimError) as e:
        args.func(args)
    assert e.value.code == "NoTrafficSource"


def test_report_traffic_from_the_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = make_ledger()

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the contract: GET /v1/traffic[?connections=1], bearer token
            assert self.path.startswith("/v1/traffic")
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body: dict[str, Any] = {"listeners": ledger.summary()}
            if "connections=1" in self.path:
                body["connections"] = list(ledger.records)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://%s:%d" % srv.server_address
        out = run_cli(["report", "traffic", "--api", url, "--token", "s3cret"], capsys)
        assert out.splitlines()[1].split()[:4] == ["443", "aliyun-slb", "aliyun-slb", "5"]
        run_cli(["report", "traffic", "--api", url + "/", "--token", "s3cret", "--csv", str(tmp_path / "a.csv")],
                capsys)
        args = parser().parse_args(["report", "traffic", "--api", url, "--token", "wrong"])
        with pytest.raises(LbsimError) as e:
            args.func(args)
        assert e.value.code == "ApiError" and "401" in e.value.message
        assert len(list(csv.DictReader(open(tmp_path / "a.csv")))) == 7
    finally:
        srv.shutdown()
        srv.server_close()
    args = parser().parse_args(["report", "traffic", "--api", url])
    with pytest.raises(LbsimError) as e:
        args.func(args)
    assert e.value.code == "ApiUnreachable"


@pytest.mark.slow
def test_the_docs_example_report_runs_through_real_listeners(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m simulator.tools.metering_example` (docs/metering.md's example table), shortened: 3 requests each."""
    from simulator.tools import metering_example as example

    assert example.main(["--connections", "3", "--size", "100"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:5]}
    # PORT PROFILE MODEL CONNS NEW/S FULL RESUMED FAILED REQS ...: 3 full, 1 full + 2 resumed, 1 keep-alive
    assert sorted((r[1], r[3], r[5], r[6], r[8]) for r in rows.values()) == [
        ("aliyun-slb", "1", "1", "0", "3"), ("aliyun-slb", "3", "1", "2", "3"), ("aliyun-slb", "3", "3", "0", "3"),
        ("tencent-clb", "3", "3", "0", "3")]
    shapes = {line.split()[0]: line for line in out.splitlines()
              if line.split()[:1] and line.split()[0] in example.SHAPES}
    assert "TLSv1.3" in shapes["tencent-full"] and "TLSv1.2, the LB sends" in shapes["full"]
