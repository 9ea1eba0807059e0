"""Aliyun: "The session ticket of HTTPS listeners is 300 seconds."

A client resumes its TLS session within the lifetime and gets a full handshake after it: TLS 1.2 tickets,
TLS 1.3 tickets, and (nginx's session cache, same timeout) TLS 1.2 session IDs for clients without
tickets. The lab runs vendor timers `time_scale` times faster, so 300 s is 3 s at the suite's 0.01.
"""

import gc
import time

import pytest

STATEMENT = "The session ticket lifetime is 300 seconds (aliyun notes)"
LIFETIME = 300
TICKETS = {"TLSv1.2 ticket": {"version": "TLSv1.2"}, "TLSv1.3 ticket": {"version": "TLSv1.3"}}
PROFILES = (("aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3"), ("tencent-clb", "tencent_default"))


def listeners_for(lab, ca):
    out = {}
    for profile, policy in PROFILES:
        lab.upload_server_certificate(f"tickets-{profile}", ca.server("localhost"), profile=profile)
        out[profile] = lab.add_listener({"profile": profile, "server_certificate": f"tickets-{profile}", "tls_policy": policy})
    return out


@pytest.mark.seed(STATEMENT)
def test_session_ticket_lifetime_is_300_seconds(lab, pki):
    listeners = listeners_for(lab, pki())
    lifetime = max(1.0, round(lab.scaled(LIFETIME)))  # the lab rounds to whole seconds, at least 1

    # Both profiles and both versions share one wait. A session's age counts from its full handshake.
    created, sessions, verified = {}, {}, 0
    for profile, listener in listeners.items():
        for way, kwargs in TICKETS.items():
            created[profile, way] = time.monotonic()
            first = lab.probe(listener, **kwargs)
            assert first.ok and not first.resumed, (profile, way, first)
            sessions[profile, way] = first.session
            again = lab.probe(listener, session=first.session, **kwargs)
            if time.monotonic() - created[profile, way] < lifetime:  # a loaded machine may take longer
                assert again.resumed, f"{profile} {way}: no resumption within the lifetime"
                assert lab.connection_for(again)["resumed"] is True
                verified += 1
    assert verified, "no resumption attempt happened within the lifetime: raise --lbsim-time-scale"

    time.sleep(max(0.0, max(created.values()) + lifetime + 0.5 - time.monotonic()))
    for (profile, way), session in sessions.items():
        late = lab.probe(listeners[profile], session=session, **TICKETS[way])
        assert late.ok and not late.resumed, f"{profile} {way}: resumed after {LIFETIME} s (scaled)"
        assert lab.connection_for(late)["resumed"] is False


@pytest.mark.seed(STATEMENT)
def test_session_id_resumption_after_the_connection_closed(lab, pki):
    """A TLS 1.2 client without tickets resumes by session ID on its next connection, as with nginx's cache."""
    listeners = listeners_for(lab, pki())
    for attempt in range(3):
        firsts = {profile: lab.probe(listener, version="TLSv1.2", tickets=False) for profile, listener in listeners.items()}
        for first in firsts.values():
            assert first.ok and not first.resumed
            lab.connection_for(first)  # the listener has closed its side
        time.sleep(0.05)
        gc.collect()  # what a long-running server does sooner or later: free the closed connections
        for profile, first in firsts.items():
            again = lab.probe(listeners[profile], version="TLSv1.2", tickets=False, session=first.session)
            assert again.ok and again.resumed, f"{profile} attempt {attempt}: session ID not resumed"
