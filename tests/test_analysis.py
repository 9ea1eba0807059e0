"""simulator.tools.analysis: the notebooks' data functions, on a real small measurement (one lab, every
variant, real keep-alive clients) and on constructed records whose answers are known by hand."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from simulator.tools import analysis
from simulator.harness.running import RunningLab, start_lab
from simulator.metering import billing

REQUESTS = (1, 3)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> analysis.Results:
    """Every variant at 1 and 3 requests per connection, and two short connection-rate steps (~3 s)."""
    return analysis.collect_overhead(tmp_path_factory.mktemp("overhead"), requests=REQUESTS, rates=(10, 30),
                                     rate_seconds=0.5)


def sweep(results: analysis.Results) -> pd.DataFrame:
    df = results.connections
    return df[df["experiment"] == "sweep"]


# ---- the real measurement --------------------------------------------------------------------------------

def test_every_client_is_matched_to_its_metered_record(measured: analysis.Results) -> None:
    df = measured.connections
    assert len(df) == len(measured.records) == df["experiment"].notna().sum()  # nothing unmatched
    s = sweep(measured)
    assert len(s) == len(analysis.VARIANTS) * len(REQUESTS)
    assert (df["experiment"] == "warmup").sum() == sum(v.resumed for v in analysis.VARIANTS)
    assert (s["requests"] == s["case_requests"]).all()  # the listener counted what the client sent
    assert (s["resumed"] == s["case_resumed"].astype(bool)).all()
    assert (s["tls_version"] == s["case_version"]).all()
    assert s["handshake_complete"].all() and (s["tls_verify_status"] == "Success").all()
    # resumed variants really resumed, full ones did not
    for v in analysis.VARIANTS:
        rows = s[s["variant"] == v.label]
        assert len(rows) == len(REQUESTS) and (rows["resumed"] == v.resumed).all(), v.label
    # mutual listeners saw the client certificate; ECDSA listeners negotiated ECDSA suites in TLS 1.2
    assert s[s["mutual"]]["client_cert_subject"].notna().all()
    assert s[~s["mutual"]]["client_cert_subject"].isna().all()
    tls12 = s[s["tls_version"] == "TLSv1.2"]
    assert (tls12["tls_cipher"].str.contains("ECDSA") == (tls12["key_type"] == "ECDSA")).all()


def test_bytes_add_up_and_billing_follows_the_models(measured: analysis.Results) -> None:
    df = measured.connections
    for d in ("client_to_lb", "lb_to_client"):
        parts = sum(df[f"{d}_{c}"] for c in ("handshake", "record_overhead", "payload", "closure"))
        assert (parts == df[f"{d}_wire"]).all()
    for _, row in df.iterrows():
        rec = measured.records[row["record_index"]]
        assert rec["client"] == row["client"] and rec["time"] == row["time"]
        for m in analysis.MODELS:
            b = billing.billed(m, rec)
            assert (row[f"billed_{m}"], row[f"wire_{m}"]) == (b["billed_bytes"], b["wire_bytes"])
    # the response size asked for arrives: every request's LB->client payload holds >= 1024 body bytes
    s = sweep(measured)
    assert (s["lb_to_client_payload"] >= 1024 * s["requests"]).all()


def test_overhead_falls_with_requests_and_resumption_and_ecdsa_help(measured: analysis.Results) -> None:
    for model in analysis.MODELS:
        curve = analysis.overhead_curve(measured.connections, model)
        assert len(curve) == len(analysis.VARIANTS) * len(REQUESTS)
        for _, g in curve.groupby("variant"):
            g = g.sort_values("requests")
            assert g["overhead_pct"].is_monotonic_decreasing and (g["overhead_pct"] > 0).all()
            assert math.isclose(g["ratio"].iloc[0], 1 + g["overhead_pct"].iloc[0] / 100)
    hs = analysis.handshake_sizes(measured.connections).set_index("variant")
    for version in ("TLS 1.2", "TLS 1.3"):
        for key in ("RSA", "ECDSA"):
            full, resumed = hs.loc[f"{version} {key} full one-way"], hs.loc[f"{version} {key} resumed one-way"]
            assert resumed["lb_to_client"] < full["lb_to_client"] / 2  # no certificate chain on resumption
            mutual = hs.loc[f"{version} {key} full mutual"]
            assert mutual["client_to_lb"] > full["client_to_lb"] + 900  # the client's chain and signature
        assert hs.loc[f"{version} ECDSA full one-way"]["lb_to_client"] < hs.loc[f"{version} RSA full one-way"]["lb_to_client"] - 500


def test_handshakes_are_near_the_reference_figures(measured: analysis.Results) -> None:
    """vendor-facts §4 was measured on the same kind of machine: within 20% (tickets differ in size)."""
    cmp_ = analysis.handshake_comparison(measured.connections)
    assert len(cmp_) == len(analysis.REFERENCE_HANDSHAKES)
    assert cmp_["measured_client_to_lb"].notna().all()
    for col in ("diff_client_to_lb_pct", "diff_lb_to_client_pct"):
        assert (cmp_[col].dropna().abs() < 20).all(), cmp_[["case", col]]


def test_billed_vs_actual_cases_and_conclusions(measured: analysis.Results) -> None:
    ba = analysis.billed_vs_actual(measured.connections)
    cases = list(dict.fromkeys(ba["case"]))
    assert cases == ["1 request, full handshake", "1 request, resumed", "3 requests (keep-alive), full handshake"]
    for m in analysis.MODELS:
        r = ba[ba["model"] == m].set_index("case")["ratio"]
        assert r.iloc[0] > r.iloc[1] > 1 and r.iloc[0] > r.iloc[2] > 1
    text = analysis.conclusions(measured)
    joined = "\n".join(text)
    full = ba[(ba["model"] == "aliyun-slb")].set_index("case")["ratio"]
    assert f"one request per connection: actual is {full.iloc[0]:.2f}x billed" in joined
    assert f"with resumption: actual is {full.iloc[1]:.2f}x billed" in joined
    assert "tencent-clb and aws-alb (both directions billed)" in joined
    assert "Measured rate steps" in joined and "§4" in joined


def test_lcu_from_rate_steps(measured: analysis.Results) -> None:
    steps = measured.steps
    assert steps is not None and list(steps["target_rate"]) == [10, 30]
    meas = analysis.lcu_measured(measured)
    t = meas[meas["model"] == "tencent-clb"].reset_index(drop=True)
    assert list(t["connections"]) == [5, 15]
    for row in t.itertuples():
        # the window is at least count / target rate: the measured rate never exceeds the target
        assert 0 < row.new_connections_per_s <= row.target_rate * 1.001
        assert row.billed_dimension == "new_connections_per_s"
        assert math.isclose(row.lcu, row.new_connections_per_s / 25, rel_tol=1e-3)
    conn = analysis.per_connection(measured.connections)
    assert conn["requests"] == 1 and conn["connections"] == 20
    assert conn["wire_bytes"] > conn["billed_tencent-clb"] > conn["billed_aliyun-slb"] > 1024
    est = analysis.lcu_estimate("tencent-clb", 25, conn)
    assert est == billing.lcu("tencent-clb", new_connections_per_s=25, concurrent_connections=25 * conn["duration_s"],
                              processed_bytes_per_h=25 * conn["billed_tencent-clb"] * 3600, requests_per_s=25)
    curve = analysis.lcu_curve(conn, [1, 25, 1000])
    assert set(curve["model"]) == {"tencent-clb", "aws-alb"}
    assert (curve["processed_lcu_if_wire_billed"] > curve["processed_gb_per_h_lcu"]).all()


def test_results_directory_round_trip(measured: analysis.Results, tmp_path: Path) -> None:
    assert measured.path is not None
    for name in ("connections.jsonl", "traffic.csv", "cases.csv", "steps.csv", "lab.json"):
        assert (measured.path / name).is_file(), name
    again = analysis.load_results(measured.path)
    pd.testing.assert_frame_equal(again.connections, measured.connections)
    # without cases.csv it is read like any lbsim run/load log: intent inferred from the records
    shutil.copy(measured.path / "connections.jsonl", tmp_path / "connections.jsonl")
    plain = analysis.load_results(tmp_path)
    assert not plain.generated and len(plain.connections) == len(measured.connections)
    tls12 = plain.connections[plain.connections["tls_version"] == "TLSv1.2"]
    assert set(tls12["key_type"]) == {"RSA", "ECDSA"}
    assert (plain.connections["mutual"].values == measured.connections["case_mutual"].astype(bool).values).all()
    assert analysis.conclusions(plain)[0].startswith("aliyun-slb (LB->client billed), TLS 1.2 RSA one-way")
    # a report's listeners give the key types the log does not carry
    ports = measured.connections.drop_duplicates("listener_port").set_index("listener_port")["case_key_type"]
    (tmp_path / "report.json").write_text(json.dumps({"listeners": [{"port": int(p), "key_type": k} for p, k in ports.items()]}))
    with_report = analysis.load_results(tmp_path)
    assert (with_report.connections["key_type"].values == measured.connections["case_key_type"].values).all()


def test_load_results_needs_a_connection_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="connections.jsonl"):
        analysis.load_results(tmp_path)


# ---- constructed records --------------------------------------------------------------------------------

def record(port: int, c2l: dict[str, int], l2c: dict[str, int], requests: int = 1, resumed: bool = False,
           version: str = "TLSv1.3", cipher: str = "TLS_AES_128_GCM_SHA256", **extra: Any) -> dict[str, Any]:
    def direction(d: dict[str, int]) -> dict[str, int]:
        full = {"handshake": 0, "record_overhead": 0, "payload": 0, "closure": 0, **d}
        return {"wire": sum(full.values()), **full}

    return {"time": f"2026-01-01T00:00:0{port % 10}.000Z", "client": f"127.0.0.1:{40000 + port}", "listener": "x",
            "listener_port": port, "profile": "aliyun-slb", "billing_model": "aliyun-slb", "tls_protocol": version,
            "tls_cipher": cipher, "requests": requests, "resumed": resumed, "client_cert_subject": None,
            "traffic": {"client_to_lb": direction(c2l), "lb_to_client": direction(l2c), "handshake_complete": True,
                        "resumed": resumed, "tls_version": version, "cipher": cipher, "requests": requests,
                        "started_at": 100.0, "finished_at": 100.5}, **extra}


def test_frame_flattens_traffic_and_bills_every_model() -> None:
    r = record(1, {"handshake": 300, "record_overhead": 22, "payload": 100, "closure": 24},
               {"handshake": 2900, "record_overhead": 44, "payload": 1000})
    df = analysis.connections_frame([r])
    row = df.iloc[0]
    assert row["client_to_lb_wire"] == 446 and row["lb_to_client_wire"] == 3944
    assert row["billed_aliyun-slb"] == 1000 and row["wire_aliyun-slb"] == 3944
    assert row["billed_tencent-clb"] == row["billed_aws-alb"] == 1100 and row["wire_tencent-clb"] == 4390
    assert row["key_type"] == "?" and row["variant"] == "TLS 1.3 full one-way"  # TLS 1.3 suites do not name the certificate type
    curve = analysis.overhead_curve(df, "aliyun-slb")
    assert curve["overhead_pct"].iloc[0] == pytest.approx(294.4)
    b = analysis.wire_breakdown(df).iloc[0]
    assert (b["handshake"], b["record_overhead"], b["payload"], b["closure"], b["wire"]) == (3200, 66, 1100, 24, 4390)


def test_connection_log_lines_that_are_not_connections_are_skipped(tmp_path: Path) -> None:
    r = record(2, {"payload": 10}, {"payload": 20})
    (tmp_path / "connections.jsonl").write_text(json.dumps({"event": "started"}) + "\n\n" + json.dumps(r) + "\n")
    res = analysis.load_results(tmp_path)
    assert len(res.records) == 1 and res.report is None and res.locust == {}
    (tmp_path / "locust").mkdir()
    (tmp_path / "locust" / "run_stats.csv").write_text("Type,Name,Request Count\nGET,/,3\n")
    assert analysis.load_results(tmp_path).locust["run_stats"]["Request Count"].tolist() == [3]


def test_key_type_inference_from_tls12_suites() -> None:
    rs = [record(3, {"payload": 1}, {"payload": 1}, version="TLSv1.2", cipher="ECDHE-ECDSA-AES128-GCM-SHA256"),
          record(4, {"payload": 1}, {"payload": 1}, version="TLSv1.2", cipher="ECDHE-RSA-AES128-GCM-SHA256"),
          record(5, {"payload": 1}, {"payload": 1}, version="TLSv1.2", cipher="AES128-SHA")]
    assert analysis.connections_frame(rs)["key_type"].tolist() == ["ECDSA", "RSA", "RSA"]


def test_break_even_and_reference_tables() -> None:
    # 1 LCU = 25 new connections/s = 1 GB/h: 10**9 / 3600 / 25 bytes per connection
    assert analysis.break_even_bytes("tencent-clb") == pytest.approx(10**9 / 3600 / 25)
    ref = analysis.reference_handshakes()
    assert ref.loc[ref["case"] == "TLS 1.2 ECDHE-RSA, full", ["client_to_lb", "lb_to_client"]].values.tolist() == [[278, 2459]]
    assert analysis.REFERENCE_RECORD_OVERHEAD["TLS 1.3 AEAD"] == 22


def test_policy_matrix_cells() -> None:
    listener = {"name": "l", "tls_matrix": {"expected": {"TLSv1.2": ["A", "B"], "TLSv1.3": ["T"]},
                                            "observed": {"TLSv1.2": ["A", "C"], "TLSv1.3": ["T"]}, "match": False}}
    m = analysis.policy_matrix(listener)
    assert list(m.columns) == ["TLSv1.2", "TLSv1.3"] and list(m.index) == ["A", "C", "T", "B"]
    assert m.loc["A", "TLSv1.2"] == "both" and m.loc["B", "TLSv1.2"] == "expected only"
    assert m.loc["C", "TLSv1.2"] == "observed only" and m.loc["T", "TLSv1.3"] == "both" and m.loc["T", "TLSv1.2"] == ""


# ---- report.json from a live listener -------------------------------------------------------------------

@pytest.fixture(scope="module")
def vendor_timed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The default lab with the vendors' own timers: at the session lab's 0.01 the idle timeout is 0.15 s,
    which can cut an enumeration probe short on a busy machine."""
    with start_lab(out_dir=tmp_path_factory.mktemp("lab1x"), time_scale=1.0) as running:
        yield running


def test_listener_report_on_the_default_lab(vendor_timed_lab: RunningLab) -> None:
    """The default lab's aliyun mutual listener: the observed matrix equals its policy's, every
    client certificate case as expected, and the verdicts follow the observed suites."""
    entry = analysis.listener_report(vendor_timed_lab, "aliyun-mutual")
    assert entry["key_type"] == "RSA" and entry["mutual"] and entry["policy"] == "tls_cipher_policy_1_2_strict_with_1_3"
    m = entry["tls_matrix"]
    assert m["match"] is True and set(m["observed"]) == {"TLSv1.2", "TLSv1.3"}
    assert not any("ECDSA" in s for s in m["observed"]["TLSv1.2"])  # RSA certificate
    mm = {c["client"]: (c["expected"], c["observed"], c["ok"]) for c in entry["mutual_matrix"]}
    assert mm == {k: (v, v, True) for k, v in {  # the listener's own verify status, as in lbsim run's report
        "none": "Failed:NoClientCertificate", "valid": "Success", "untrusted": "Failed:ClientCertUntrusted",
        "expired": "Failed:ClientCertExpired", "not_yet_valid": "Failed:ClientCertNotYetValid",
        "revoked": "Success"}.items()}  # a CA certificate carries no CRL: only the ALB's trust store revokes
    assert set(entry["compliance"]) == {"mozilla-modern", "mozilla-intermediate", "pci-dss-4.0", "nist-sp-800-52r2"}
    assert entry["compliance"]["mozilla-modern"]["verdict"] == "fail"  # it accepts TLS 1.2
    assert any("TLSv1.2" in e for e in entry["compliance"]["mozilla-modern"]["evidence"])
    report = {"listeners": [entry]}
    assert analysis.compliance_table(report).loc["aliyun-mutual", "mozilla-modern"] == "fail"
    assert len(analysis.mutual_table(report)) == 6
    assert set(analysis.compliance_evidence(report)["profile"]) == set(entry["compliance"])
