"""Backend faults: a backend that resets, closes, sends garbage, truncates, hangs, or disappears under
load. Clients get the vendor's 502/504, health checks take the backend out and bring it back, and no
client connection or descriptor leaks. A lab of its own (we break its backends). Wall time: about 10 s.
"""

from __future__ import annotations

import pytest

from simulator.model.config import io_timeout
from simulator.harness.running import RunningLab
from simulator.tools.soak import FAULTS, Footprint, SteadyClient, backend_faults, settle, start_reliability_lab, wait_for


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    running = start_reliability_lab(tmp_path_factory.mktemp("reliability-backends"))
    yield running
    running.stop()


@pytest.mark.parametrize("fault, status", FAULTS)
@pytest.mark.parametrize("listener, server", [("aliyun-one-way", "Tengine"), ("tencent-one-way", "stgw")])
def test_a_faulty_answer_is_the_vendors_502_or_504(lab: RunningLab, listener: str, server: str, fault: str, status: int) -> None:
    got, body, headers = lab.get(listener, f"/x?fault={fault}", timeout=30)
    assert got == status and headers["server"] == server
    assert f"{status} ".encode() in body and b"mitmproxy" not in body
    assert lab.get(listener, "/after")[0] == 200  # the next client is fine


def test_a_hanging_backend_costs_request_timeout_not_more(lab: RunningLab) -> None:
    import time

    spec = lab.listener("aliyun-one-way").active.spec
    limit = io_timeout(spec.request_timeout, lab.config.time_scale)
    started = time.monotonic()
    assert lab.get("aliyun-one-way", "/hang?fault=hang", timeout=30)[0] == 504
    assert limit <= time.monotonic() - started < limit + 1.5


def test_a_status_from_the_backend_is_passed_through_not_replaced(lab: RunningLab) -> None:
    status, body, headers = lab.get("aliyun-one-way", "/x?status=503")
    assert status == 503 and headers["x-backend"] in ("web-1", "web-2")


def test_outage_under_load_then_recovery_without_leaks(lab: RunningLab) -> None:
    baseline = settle(lab, Footprint.now(lab))
    result = backend_faults(lab, listener="tencent-one-way", workers=6)
    assert result.failures == []
    outage = result.details["outage"][0]
    assert outage["served"] > 50 and outage["failed_after_detected"] == 0
    assert outage["failed_until_detected"] < outage["served"]
    after = settle(lab, baseline)
    assert lab.api("GET", "/v1/connections?limit=0")[1]["active"] == 0
    assert after.growth(baseline)[1] <= 2, (baseline, after)


def test_every_backend_down_is_502_from_the_listener_then_service_returns(lab: RunningLab) -> None:
    for name in ("web-1", "web-2"):
        lab.api("POST", f"/v1/backends/{name}/health", {"down": True})
    try:
        listener = lab.listener("aliyun-one-way")
        wait_for(lambda: not any(b.healthy for b in listener.active.backends), 10)
        status, body, headers = lab.get("aliyun-one-way", "/nobody-home")
        assert status == 502 and headers["server"] == "Tengine"
    finally:
        for name in ("web-1", "web-2"):
            lab.api("POST", f"/v1/backends/{name}/health", {"down": False})
    wait_for(lambda: all(b.healthy for b in lab.listener("aliyun-one-way").active.backends), 10)
    steady = SteadyClient(lab.port("aliyun-one-way"), lab.ssl_context())
    steady.start()
    wait_for(lambda: steady.ok >= 20, 10)
    steady.stop()
    assert steady.failures == []
