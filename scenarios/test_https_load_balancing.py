"""Aliyun: "To meet security requirements of data transmission, Server Load Balancer supports HTTPS load balancing."

Every configured listener terminates HTTPS and spreads requests over its healthy backends.
"""

import pytest

STATEMENT = "Server Load Balancer supports HTTPS load balancing (aliyun intro)"


@pytest.mark.seed(STATEMENT)
def test_https_listener_balances_requests_over_backends(lab, lab_listener):
    backends = lab.listener(lab_listener)["backend_servers"]
    healthy = {b["name"] for b in backends if b["healthy"] and b["weight"] > 0}
    assert healthy, f"{lab_listener} has no healthy backend"
    seen = set()
    with lab.connection(lab_listener, client=lab.client_for(lab_listener), verify=bool(lab.ca_file)) as conn:
        for _ in range(2 * len(healthy)):
            response = conn.request("/balance")
            assert response.status == 200, lab.explain(lab_listener, response)
            assert response.tls_version in ("TLSv1.2", "TLSv1.3", "TLSv1.1", "TLSv1")
            seen.add(response.backend)
    mock = {b["name"] for b in lab.api_ok("GET", "/v1/backends")["backends"] if b["managed"]}
    if healthy <= mock:  # mock backends name themselves in X-Backend; your own servers may not
        assert seen == healthy  # weighted round robin reaches every healthy backend, one connection or not
