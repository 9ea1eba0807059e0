"""Aliyun: "The actual traffic is larger than the billing traffic because some traffic is used for the protocol
handshake." and "In the case of a large number of new connections, HTTPS listeners consume more traffic."
Tencent FAQ 5: "If the HTTPS protocol is used, it actually generates more traffic than the billed traffic as
some of the traffic is used for protocol handshake."

Wire bytes are counted exactly by the listener (every TLS byte, both directions); billed bytes follow each
vendor's model (docs/metering.md). The comparison sends the same requests three ways: keep-alive on one
connection, a new connection per request, and a new connection per request resuming the TLS session.
"""

import pytest

STATEMENT_MORE = "Actual traffic exceeds billed traffic because of the handshake (aliyun notes, tencent FAQ 5)"
STATEMENT_NEW = "Many new connections consume more traffic (aliyun notes)"


@pytest.mark.seed(STATEMENT_MORE)
def test_actual_traffic_exceeds_billed(lab, lab_listener):
    response = lab.request(lab_listener, "/billing?size=4096", client=lab.client_for(lab_listener), verify=bool(lab.ca_file))
    assert response.status == 200, lab.explain(lab_listener, response)
    record = lab.connection_for(response)
    traffic, billed = record["traffic"], record["billed"]
    wire = traffic["client_to_lb"]["wire"] + traffic["lb_to_client"]["wire"]
    handshake = traffic["client_to_lb"]["handshake"] + traffic["lb_to_client"]["handshake"]
    assert handshake > 0 and wire > billed["billed_bytes"] > 0
    # What the bill leaves out is at least the handshake.
    assert wire - billed["billed_bytes"] >= handshake
    # The listener's running totals say the same.
    totals = next(t for t in lab.traffic() if t["listener_port"] == lab.port(lab_listener))
    assert totals["wire_in"] + totals["wire_out"] > totals["billed_bytes"]


@pytest.mark.seed(STATEMENT_NEW)
def test_new_connections_consume_more_traffic(lab):
    cases = {c["case"]: c for c in lab.traffic_comparison()}
    keep = cases["keep-alive: 1 connection"]
    fresh = cases["new connection per request"]
    resumed = cases["new connection per request, session resumed"]
    assert keep["requests"] == fresh["requests"] == resumed["requests"]
    assert fresh["connections"] == fresh["requests"] and keep["connections"] == 1
    for case in cases.values():
        assert case["wire_bytes"] > case["billed_bytes"] > 0, case
    # Same requests, same billed bytes (within header jitter), but much more on the wire with new connections.
    assert fresh["wire_bytes"] > 1.5 * keep["wire_bytes"]
    assert fresh["ratio"] > keep["ratio"]
    # Resumed handshakes are shorter than full ones, yet still cost more than keep-alive.
    assert resumed["resumed"] == resumed["connections"] - 1
    assert keep["wire_bytes"] < resumed["wire_bytes"] < fresh["wire_bytes"]
