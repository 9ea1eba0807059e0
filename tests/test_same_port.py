"""Two load balancers, each with an HTTPS listener on the SAME port (each on its own 127.0.0.x address), made
through Alibaba's own SDK: each address serves its own certificate, the management API tells them apart, the
connection log names the right listener, and stopping one leaves the other serving."""

from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace

import pytest
from alibabacloud_slb20140515 import models as m

from helpers import wait_for
from simulator.errors import LbsimError
from simulator.faces.console.traffic import TrafficPages
from simulator.harness.scenario import ScenarioLab
from simulator.net import free_port_on
from test_vendor_api_tencent import clb_models, served, tc  # noqa: F401
from test_vendor_api_tencent import fingerprint as tencent_fingerprint
from test_vendor_api_aliyun import fingerprint, listener_status, new_lb, peer_certificate, serves, slb, upload_server  # noqa: F401
from vendor_lab import vendor_lab  # noqa: F401


def two_listeners_on(slb, vendor_lab, lbs, port: int):
    """On each of two load balancers a started HTTPS listener on `port`, each with its own certificate."""
    made = []
    for name, lb, server in zip(("left", "right"), lbs, ("i-web-1", "i-web-2")):
        cert, _ = upload_server(slb, vendor_lab, f"same-port-{name}-{port}")
        slb.add_backend_servers(m.AddBackendServersRequest(region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id,
                                                           backend_servers=json.dumps([{"ServerId": server, "Weight": "100"}])))
        slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
            region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1,
            backend_server_port=80, sticky_session="off", health_check="on", health_check_uri="/health",
            health_check_interval=1, server_certificate_id=cert.server_certificate_id))
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
    # Each load balancer's health status lists its own backend on the shared port, not the other's.
    for lb, server in ((left, "i-web-1"), (right, "i-web-2")):
        health = wait_for(lambda: [(s.server_id, s.listener_port) for s in slb.describe_health_status(
            m.DescribeHealthStatusRequest(region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port)
        ).body.backend_servers.backend_server if s.server_health_status == "normal"], timeout=15)
        assert health == [(server, port)]

    # The scenario harness reaches each by name or address:port; the shared port alone is refused as ambiguous.
    scenario = ScenarioLab(vendor_lab.running)
    for lb, cert in ((left, left_cert), (right, right_cert)):
        name = vendor_lab.lab.listener_at(lb.load_balancer_id, port).name
        assert scenario.address(name) == lb.address and scenario.address(f"{lb.address}:{port}") == lb.address
        assert scenario.probe(name).ok and scenario.probe(f"{lb.address}:{port}").ok
        assert scenario.connections(name) and {r["listener_address"] for r in scenario.connections(name)} == {lb.address}
    with pytest.raises(KeyError, match="shared"):
        scenario.probe(port)

    # The console's traffic page has a section per listener (address:port), not one per port.
    traffic = str(TrafficPages(SimpleNamespace(lab=vendor_lab.lab)).charts())
    for lb in (left, right):
        assert f'id="traffic-{lb.address}-{port}"' in traffic and f"{lb.address}:{port}" in traffic

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


def test_two_tencent_load_balancers_share_a_port(tc, vendor_lab):  # noqa: F811
    """The same through Tencent's own SDK: two CLBs, one port, two certificates, tasks that finish."""
    pki = vendor_lab.certs
    made = []
    for name in ("one", "two"):
        site = pki.server(f"{name}.example.com")
        made.append((*tc.create_lb(f"same-port-{name}"), site, tc.upload(site, alias=f"same-port-{name}")))
    port = free_port_on(*(vip for _, vip, _, _ in made))
    lids = []
    for lb_id, vip, site, cert_id in made:
        lid, task = tc.create_listener(lb_id, port, cert_id)
        assert tc.wait(task)[-1] == 0
        lids.append(lid)
    for (lb_id, vip, site, _), host in zip(made, ("one.example.com", "two.example.com")):
        assert served(vip, port, host, pki.ca_pem)[0] == tencent_fingerprint(site)
        (listener,) = tc.listeners(lb_id)
        assert listener.Port == port
    (one, one_vip, _, _), (two, two_vip, two_site, _) = made
    status, err = vendor_lab.running.api("GET", f"/v1/listeners/{port}")
    assert status == 409 and err["error"]["code"] == "AmbiguousListener"
    r = clb_models.DeleteListenerRequest()
    r.LoadBalancerId, r.ListenerId = one, lids[0]
    tc.wait(tc.clb.DeleteListener(r).RequestId)
    assert tc.listeners(one) == [] and [l.ListenerId for l in tc.listeners(two)] == [lids[1]]
    with pytest.raises(OSError):
        socket.create_connection((one_vip, port), timeout=2).close()
    assert served(two_vip, port, "two.example.com", pki.ca_pem)[0] == tencent_fingerprint(two_site)
    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [one, two]
    tc.clb.DeleteLoadBalancer(r)
    assert not vendor_lab.lab.registry.on_port(port)
