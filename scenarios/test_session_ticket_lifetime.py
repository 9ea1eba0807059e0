"""Aliyun: "The session ticket of HTTPS listeners is 300 seconds."

A client resumes its TLS session (ticket, and the session cache for a client without tickets) within the
lifetime and gets a full handshake after it. The lab runs vendor timers `time_scale` times faster, so 300 s
is 3 s at the suite's 0.01.
"""

import time

import pytest

STATEMENT = "The session ticket lifetime is 300 seconds (aliyun notes)"
LIFETIME = 300


WAYS = {  # how a client resumes: TLS 1.2 tickets, TLS 1.2 session IDs (the session cache), TLS 1.3 tickets
    "TLSv1.2 ticket": {"version": "TLSv1.2"},
    "TLSv1.2 session id": {"version": "TLSv1.2", "tickets": False},
    "TLSv1.3 ticket": {"version": "TLSv1.3"},
}


@pytest.mark.seed(STATEMENT)
def test_session_ticket_lifetime_is_300_seconds(lab, pki):
    ca = pki()
    listeners = {}
    for profile, policy in (("aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3"), ("tencent-clb", "tencent_default")):
        lab.upload_server_certificate(f"tickets-{profile}", ca.server("localhost"), profile=profile)
        listeners[profile] = lab.add_listener({"profile": profile, "server_certificate": f"tickets-{profile}",
                                               "tls_policy": policy})
    lifetime = max(1.0, round(lab.scaled(LIFETIME)))  # the lab rounds to whole seconds, at least 1

    # Both profiles and every way of resuming share one wait: the lifetime is the same everywhere.
    started = time.monotonic()
    sessions = {}
    for profile, listener in listeners.items():
        for way, kwargs in WAYS.items():
            first = lab.probe(listener, **kwargs)
            assert first.ok and not first.resumed, (profile, way, first)
            sessions[profile, way] = first.session
            again = lab.probe(listener, session=first.session, **kwargs)
            assert again.resumed, f"{profile} {way}: no resumption within the lifetime"
            assert lab.connection_for(again)["resumed"] is True
    assert time.monotonic() - started < lifetime, "the machine is too slow for this time_scale"

    time.sleep(max(0.0, started + lifetime + 0.5 - time.monotonic()))
    for (profile, way), session in sessions.items():
        late = lab.probe(listeners[profile], session=session, **WAYS[way])
        assert late.ok and not late.resumed, f"{profile} {way}: resumed after {LIFETIME} s (scaled)"
        assert lab.connection_for(late)["resumed"] is False
