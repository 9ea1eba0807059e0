"""Two load balancers, each with an HTTPS listener on the SAME port (each on its own 127.0.0.x address), made
through Alibaba's own SDK: each address serves its own certificate, the management API tells them apart, the
connection log names the right listener, and stopping one leaves the other serving."""

from __future__ import annotations

import os

import pytest
from alibabacloud_slb20140515 import models as m

from helpers import wait_for
from simulator.errors import LbsimError
from simulator.net import free_port_on
from test_vendor_api_aliyun import fingerprint, listener_status, new_lb, peer_certificate, serves, slb, upload_server  # noqa: F401
from vendor_lab import vendor_lab  # noqa: F401


def two_listeners_on(slb, vendor_lab, lbs, port: int):
    """On each of two load balancers a started HTTPS listener on `port`, each with its own certificate."""
    made = []
    for name, lb in zip(("left", "right"), lbs):
        cert, _ = upload_server(slb, vendor_lab, f"same-port-{name}-{port}")
        slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
            region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1,
            backend_server_port=80, sticky_session="off", health_check="off",
            server_certificate_id=cert.server_certificate_id))
        slb.start_load_balancer_listener(m.StartLoadBalancerListenerRequest(
            region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port))
        made.append((lb, cert))
    return made


def check_two_on_one_port(slb, vendor_lab, lbs, port: int) -> None:
    (left, left_cert), (right, right_cert) = two_listeners_on(slb, vendor_lab, lbs, port)
    assert left.address != right.address
    for lb in (left, right):
        wait_for(lambda: listener_status(slb, lb.load_balancer_id, port) == "running", timeout=15)
    # Real handshakes: each address answers with its own load balancer's certificate.
    assert fingerprint(peer_certificate(vendor_lab, left.address, port)) == left_cert.fingerprint
    assert fingerprint(peer_certificate(vendor_lab, right.address, port)) == right_cert.fingerprint
    assert left_cert.fingerprint != right_cert.fingerprint

    # The management API lists both; the port alone is ambiguous and says which names to use.
    api = vendor_lab.running.api
    status, body = api("GET", "/v1/listeners")
    mine = sorted((l["address"], l["lb_id"]) for l in body["listeners"] if l["port"] == port)
    assert mine == sorted([(left.address, left.load_balancer_id), (right.address, right.load_balancer_id)])
    status, err = api("GET", f"/v1/listeners/{port}")
    keys = sorted([f"{left.address}:{port}", f"{right.address}:{port}"])
    assert status == 409 and err["error"]["code"] == "AmbiguousListener", err
    assert err["error"]["details"]["choices"] == keys and all(k in err["error"]["message"] for k in keys)
    status, view = api("GET", f"/v1/listeners/{right.address}:{port}")
    assert status == 200 and view["lb_id"] == right.load_balancer_id and view["key"] == f"{right.address}:{port}"

    # The connection log names the listener each handshake reached (name, address and port).
    status, body = api("GET", "/v1/connections?limit=50")
    seen = {(r["listener_address"], r["listener"]) for r in body["connections"] if r["listener_port"] == port}
    names = {lb.address: vendor_lab.lab.listener_at(lb.load_balancer_id, port).name for lb in (left, right)}
    assert seen == set(names.items())
    traffic = {(t["listener_port"], t["listener_address"]) for t in vendor_lab.lab.ledger.summary()}
    assert {(port, left.address), (port, right.address)} <= traffic

    # Stopping one leaves the other serving; deleting it too.
    slb.stop_load_balancer_listener(m.StopLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=left.load_balancer_id, listener_port=port))
    assert not serves(left.address, port)
    assert fingerprint(peer_certificate(vendor_lab, right.address, port)) == right_cert.fingerprint
    slb.delete_load_balancer_listener(m.DeleteLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=left.load_balancer_id, listener_port=port))
    status, view = api("GET", f"/v1/listeners/{port}")  # unambiguous again
    assert status == 200 and view["lb_id"] == right.load_balancer_id
    assert fingerprint(peer_certificate(vendor_lab, right.address, port)) == right_cert.fingerprint
    slb.delete_load_balancer_listener(m.DeleteLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=right.load_balancer_id, listener_port=port))
    assert not serves(right.address, port)


def test_two_load_balancers_share_a_high_port(slb, vendor_lab):
    lbs = [new_lb(slb, "same-port-a"), new_lb(slb, "same-port-b")]
    check_two_on_one_port(slb, vendor_lab, lbs, free_port_on(*(lb.address for lb in lbs)))


def test_two_load_balancers_share_443(slb, vendor_lab):
    lbs = [new_lb(slb, "https-a"), new_lb(slb, "https-b")]
    if os.geteuid() == 0:  # CI (make test) runs as root
        check_two_on_one_port(slb, vendor_lab, lbs, 443)
        return
    # Without root 443 cannot be bound: the lab says so, naming both addresses and the fix.
    two_listeners_on(slb, vendor_lab, lbs, 443)
    with pytest.raises(LbsimError) as failed:
        wait_for(lambda: vendor_lab.running.call(vendor_lab.lab._sync_servers()) and False, timeout=15)
    assert failed.value.code == "ListenFailed" and "root" in (failed.value.hint or "")
    assert all(f"{lb.address}:443" in failed.value.message for lb in lbs)
