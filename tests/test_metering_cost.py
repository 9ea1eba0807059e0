"""What metering costs: the meter's own added server-side time, metered vs plain in one run.

The listener-level benchmark of issue 4 (same load through mitmproxy with metering on and off) needs the
listener; this bounds it: the absolute time metering adds, against a bare mitmdump's per-connection and
per-request cost on the lab machine (design notes), must stay far below the 5% budget.
"""

from __future__ import annotations

from simulator.metering import bench


def test_metering_adds_little_to_tls_work() -> None:
    for version in ("TLSv1.2", "TLSv1.3"):
        r = bench.run(connections=60, requests=600, version=version)
        print(version, r)
        assert r["new_connection"]["share_of_mitmdump_cost_pct"] < 5
        assert r["keep_alive_request"]["share_of_mitmdump_cost_pct"] < 5
