"""What metering costs, as benchmark smokes: both benchmarks run and measure both sides in one run.

Speed is not asserted here (a shared 2-core machine makes timed unit tests flaky): the figures are
printed, and the recorded ones are in docs/metering.md ("Cost") with the commands that produced them:
`python -m simulator.tools.metering_bench` (the meter's own cost in the TLS work, metered and plain connections
interleaved) and `python -m simulator.tools.listener_bench` (the lab process's CPU per connection and
per request through real listeners, metering on and off in paired rounds, with a confidence interval).
"""

from __future__ import annotations

import pytest

from simulator.tools import listener_bench
from simulator.tools import metering_bench as bench


@pytest.mark.slow
def test_metering_cost_benchmark_runs_and_prints_same_run_ratios() -> None:
    for version in ("TLSv1.2", "TLSv1.3"):
        r = bench.run(connections=30, requests=300, version=version)
        print(version, r)
        for kind in ("new_connection", "keep_alive_request", "connection_record"):
            assert r[kind]["plain_us"] > 0 and r[kind]["metered_us"] > 0
        # Sanity, not speed: the meter must not multiply the work of a full handshake.
        assert r["new_connection"]["tls_ratio"] < 3


@pytest.mark.slow
def test_listener_benchmark_with_metering_on_and_off_runs_in_one_run() -> None:
    """The short form of `python -m simulator.tools.listener_bench`: three paired rounds over two pairs of
    freshly started labs (2 + 1, each pair after a warm-up round)."""
    result = listener_bench.run(rounds=3, connections=10, requests=40, clients=4, pairs=2)
    print(result)
    for shape in ("new_connections", "keepalive_requests"):
        row = result[shape]
        assert row["rounds"] == 3 and len(row["pair_ratios"]) == 2
        assert min(row["cpu_us_on"], row["cpu_us_off"], row["rate_on"], row["rate_off"]) > 0
        assert row["cpu_ratio_low"] <= row["cpu_ratio"] <= row["cpu_ratio_high"]


def test_median_interval_is_the_binomial_order_statistics() -> None:
    """n = 20 at 95%: the 6th and 15th smallest (P(Bin(20, 1/2) <= 5) = 2.07% <= 2.5% < P(<= 6) = 5.77%)."""
    values = [float(v) for v in (20, 3, 17, 8, 1, 12, 15, 6, 10, 19, 2, 14, 5, 18, 9, 11, 4, 16, 7, 13)]
    assert listener_bench.median_interval(values) == (6.0, 15.0)
    assert listener_bench.median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0)  # too few rounds: the whole range
    assert listener_bench.median_interval([5.0] * 9) == (5.0, 5.0)
