"""Aliyun: "It usually takes one to three minutes to activate the HTTPS listener because the uploading,
loading, and validation of certificates take some time. Normally it takes effect in one minute but no longer
exceeds three minutes."

A listener being activated reads `configuring` and does not accept connections until its activation delay
has passed: an aliyun listener from `start` (the API creates it stopped), a tencent listener from creation.
The lab draws the delay as "normally about one minute" (85%: 45-75 s) with a slow tail up to three minutes
(75-180 s), x time_scale (docs/scenarios.md). A change to a running listener keeps the old configuration
serving new connections until the new one activates. The three run side by side so that the scenario waits once.
"""

import time

import pytest

STATEMENT = "Activating an HTTPS listener takes one to three minutes (aliyun notes)"
STATEMENT_NORMALLY = "Normally it takes effect in one minute but no longer exceeds three minutes (aliyun notes)"
LOW, ABOUT_A_MINUTE, HIGH = 45, 75, 180
SLACK = 0.75  # seconds of scheduling noise allowed on a loaded machine (activation is never early)
SAMPLES = 16  # "normally": at least MOST of them within about a minute (the lab's share is 85%: 13.6 expected;
MOST = 9      # fewer than 9 of 16 happens with probability ~5e-4)


@pytest.mark.seed(STATEMENT)
def test_activation_takes_one_to_three_minutes(lab, pki):
    ca = pki()
    for profile in ("aliyun-slb", "tencent-clb"):
        lab.upload_server_certificate(f"activation-{profile}", ca.server("localhost"), profile=profile)
    changing = lab.add_listener({"server_certificate": "activation-aliyun-slb", "tls_policy": "tls_cipher_policy_1_0"})
    assert lab.probe(changing, version="TLSv1").ok

    started, listeners = {}, {}
    for profile in ("aliyun-slb", "tencent-clb"):
        spec = {"profile": profile, "server_certificate": f"activation-{profile}", "activation_delay": None}
        started[profile] = time.monotonic()  # before the call: the delay can only look longer, never shorter
        listeners[profile] = listener = lab.add_listener(spec, start=None, wait=False)  # the vendor's own default
        if profile == "aliyun-slb":  # the API creates aliyun listeners stopped: nothing until `start`
            assert lab.listener(listener.port)["status"] == "stopped"
            assert not lab.probe(listener, timeout=1).ok
            started[profile] = time.monotonic()
            lab.start_listener(listener, wait=False)
    started["change"] = time.monotonic()
    lab.change_listener(changing, wait=False, tls_policy="tls_cipher_policy_1_2", activation_delay=None)
    listeners["change"] = changing

    for key, listener in listeners.items():
        described = lab.listener(listener.port)
        assert described["status"] == "configuring", key
        assert lab.scaled(LOW) - SLACK <= described["activates_in"] <= lab.scaled(HIGH), key
    for profile in ("aliyun-slb", "tencent-clb"):
        assert not lab.probe(listeners[profile], timeout=1).ok, profile  # nothing listens yet
    assert lab.probe(changing, version="TLSv1").ok  # the old policy still serves new connections

    for key, listener in listeners.items():
        lab.wait_running(listener, timeout=lab.scaled(HIGH) + 5)
        took = time.monotonic() - started[key]
        assert lab.scaled(LOW) <= took <= lab.scaled(HIGH) + SLACK, (key, took)
    for profile in ("aliyun-slb", "tencent-clb"):
        assert lab.probe(listeners[profile]).ok
    old = lab.probe(changing, version="TLSv1")  # the new policy (TLS 1.2 only) now refuses TLS 1.0
    assert not old.ok and lab.connection_for(old)["tls_verify_status"] == "Failed:ProtocolVersion"


@pytest.mark.seed(STATEMENT_NORMALLY)
def test_activation_normally_takes_about_one_minute(lab, pki):
    """Many activations at once: every one within three minutes, most within about one (scaled)."""
    ca = pki()
    lab.upload_server_certificate("activation-sample", ca.server("localhost"), profile="tencent-clb")
    # Created through the API directly: the 202 answer's `activates_in` is read on the server right after the
    # draw, so it is the drawn delay (never more), free of this client's round trips, which on a loaded
    # machine are as long as the difference between a normal and a slow draw.
    body = {"profile": "tencent-clb", "server_certificate": "activation-sample", "port": 0,
            "backend_servers": [{"backend": lab.backend_name()}]}  # no activation_delay: the vendor's own
    drawn, started = {}, {}
    try:
        for _ in range(SAMPLES):
            before = time.monotonic()
            created = lab.api_ok("POST", "/v1/listeners", body)  # tencent: activates from creation
            started[created["port"]] = before
            assert created["status"] == "configuring", created
            drawn[created["port"]] = created["activates_in"]
        vendor_seconds = sorted(round(d / lab.time_scale) for d in drawn.values())
        assert all(lab.scaled(LOW) - SLACK <= d <= lab.scaled(HIGH) for d in drawn.values()), vendor_seconds
        normally = sum(1 for d in drawn.values() if d <= lab.scaled(ABOUT_A_MINUTE))
        assert normally >= MOST, f"only {normally} of {SAMPLES} activations within about a minute (vendor s: {vendor_seconds})"
        assert_served_in_time(lab, started)
    finally:
        for port in started:
            lab.remove_listener(port)


def assert_served_in_time(lab, started: dict[int, float]) -> None:
    """They really serve no later than three (scaled) minutes. Polled all at once, so that waiting for one
    does not count against another; measured from before each creation, so the time can only look longer."""
    took, deadline = {}, time.monotonic() + lab.scaled(HIGH) + 10
    while len(took) < len(started) and time.monotonic() < deadline:
        for port in set(started) - set(took):
            if lab.listener(port)["status"] == "running" and lab.probe(port, timeout=1).ok:
                took[port] = time.monotonic() - started[port]
        time.sleep(0.02)
    assert set(took) == set(started), f"not serving: {sorted(set(started) - set(took))}"
    late = {port: round(t, 2) for port, t in took.items() if t > lab.scaled(HIGH) + SLACK * 2}
    assert not late, f"serving only after (s): {late}"
