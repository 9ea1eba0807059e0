"""What metering costs, as a benchmark smoke: metered and plain TLS server work interleaved in one run.

Speed is not asserted here (a shared 2-core machine makes timed unit tests flaky and the standard forbids
them): the figures are printed, and the listener-level ratio (metering on vs off through mitmproxy) is
produced by `lbsim bench` and recorded in docs/metering.md with its command. This test checks the benchmark
runs, measures both sides, and that metering stays within the same order of magnitude of TLS work.
"""

from __future__ import annotations

import pytest

from simulator.metering import bench


@pytest.mark.slow
def test_metering_cost_benchmark_runs_and_prints_same_run_ratios() -> None:
    for version in ("TLSv1.2", "TLSv1.3"):
        r = bench.run(connections=30, requests=300, version=version)
        print(version, r)
        for kind in ("new_connection", "keep_alive_request"):
            assert r[kind]["plain_us"] > 0 and r[kind]["metered_us"] > 0
        # Sanity, not speed: the meter must not multiply the work of a full handshake.
        assert r["new_connection"]["tls_ratio"] < 3


@pytest.mark.slow
def test_listener_benchmark_with_metering_on_and_off_runs_in_one_run() -> None:
    """The short form of `python -m simulator.metering.listener_bench` (figures in docs/metering.md)."""
    from simulator.metering import listener_bench

    result = listener_bench.run(rounds=1, duration=1.0, connections=8)
    print(result)
    for shape in ("new_connections", "keepalive_requests"):
        row = result[shape]
        assert row["rate_on"] > 0 and row["rate_off"] > 0 and row["cpu_ms_on"] > 0 and row["cpu_ms_off"] > 0
        assert row["rate_ratio"] == pytest.approx(row["rate_on"] / row["rate_off"], rel=0.01)
