"""A user's certificate-rotation script, written against Alibaba Cloud's own SDK (`alibabacloud-slb20140515`) and
pointed at the lab by its endpoint alone. Aliyun: "After uploading certificates to SLB, you can manage the
certificates, such as replacing and deleting certificates"; the no-downtime way is to upload the new one, point
the listener at it, and delete the old one once it no longer serves.

The script provisions a load balancer and an HTTPS listener (one-way, then mutual with a client CA), starts it,
and rotates the server certificate twice while a steady Locust load (new TLS connections, client
certificates) runs against the load balancer's own address: no handshake may fail, the old certificate serves
until the activation delay has passed and the new one after it, the old one can then be deleted, and deleting
the one in use is refused with the vendor's code.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time

import pytest

from simulator.harness.extras import vendor_sdk

STATEMENT = "Certificates can be replaced and deleted (aliyun notes); deletion is refused while in use"
USERS, RATE = 4, 5  # users, new connections per second and user


def sha1_fingerprint(der: bytes) -> str:
    digest = hashlib.sha1(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@pytest.mark.seed(STATEMENT)
def test_rotation_script_through_the_aliyun_sdk_under_load(lab, pki, tmp_path):
    vendor_sdk("alibabacloud_slb20140515")  # skips without lbsim[vendor-sdks] (make setup installs it)
    from alibabacloud_slb20140515 import models
    from alibabacloud_slb20140515.client import Client
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from alibabacloud_tea_openapi.models import Config

    from simulator.harness.steady_load import SteadyLoad
    from simulator.net import free_port

    ep = lab.vendor_api("aliyun-slb")  # what <out>/endpoints.json holds
    slb = Client(Config(access_key_id=ep["access_key_id"], access_key_secret=ep["access_key_secret"],
                        endpoint=ep["https_endpoint"], protocol="https", ca=ep["ca"], region_id=ep["region"]))
    ca = pki()
    host = "shop.example.test"
    client_cert = ca.client("rotation-client")
    files = {name: lab.write_file(f"rotation-{name}", data) for name, data in (
        ("ca.pem", ca.ca_pem), ("client.pem", client_cert.chain_pem), ("client.key", client_cert.key_pem))}

    def upload(name: str):
        issued = ca.server(host)
        return slb.upload_server_certificate(models.UploadServerCertificateRequest(
            server_certificate=issued.chain_pem.decode(), private_key=issued.key_pem.decode(),
            server_certificate_name=name)).body

    def served(address: str, port: int, client: bool = False) -> str:
        context = ssl.create_default_context(cafile=files["ca.pem"])
        if client:
            context.load_cert_chain(files["client.pem"], files["client.key"])
        with socket.create_connection((address, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return sha1_fingerprint(tls.getpeercert(binary_form=True))

    def status(lb_id: str, port: int) -> str:
        return slb.describe_load_balancer_httpslistener_attribute(
            models.DescribeLoadBalancerHTTPSListenerAttributeRequest(load_balancer_id=lb_id, listener_port=port)).body.status

    def wait(predicate, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "not within the activation delay"
            time.sleep(0.05)

    # ---- provision: a load balancer, its backends, a one-way HTTPS listener, started ----------------------------
    lb = slb.create_load_balancer(models.CreateLoadBalancerRequest(load_balancer_name="shop")).body
    uploaded = [upload("shop-1")]
    try:
        instances = sorted(lab.running.lab.instance_ids())[:2]  # the lab's backends, as instance ids
        slb.add_backend_servers(models.AddBackendServersRequest(
            load_balancer_id=lb.load_balancer_id, backend_servers=json.dumps([{"ServerId": i} for i in instances])))
        port = free_port(lb.address)
        slb.create_load_balancer_httpslistener(models.CreateLoadBalancerHTTPSListenerRequest(
            load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1, sticky_session="off",
            health_check="on", server_certificate_id=uploaded[0].server_certificate_id))
        assert status(lb.load_balancer_id, port) == "stopped"
        slb.start_load_balancer_listener(models.StartLoadBalancerListenerRequest(
            load_balancer_id=lb.load_balancer_id, listener_port=port))
        wait(lambda: status(lb.load_balancer_id, port) == "running")
        assert served(lb.address, port) == uploaded[0].fingerprint

        # ---- then mutual: the client CA through the API ----------------------------------------------------------
        client_ca = slb.upload_cacertificate(models.UploadCACertificateRequest(
            cacertificate=ca.ca_pem.decode(), cacertificate_name="shop-clients")).body
        slb.set_load_balancer_httpslistener_attribute(models.SetLoadBalancerHTTPSListenerAttributeRequest(
            load_balancer_id=lb.load_balancer_id, listener_port=port, cacertificate_id=client_ca.cacertificate_id))
        wait(lambda: status(lb.load_balancer_id, port) == "running")
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no client certificate: refused now
            served(lb.address, port)
        assert served(lb.address, port, client=True) == uploaded[0].fingerprint

        # ---- rotate twice under a steady Locust load ---------------------------------------------------------
        mark = lab.mark()
        with SteadyLoad(f"https://{lb.address}:{port}", files["ca.pem"], tmp_path / "load", sni=host, users=USERS,
                        rate=RATE, seconds=60, client_cert=files["client.pem"],
                        client_key=files["client.key"]) as load:
            load.wait_started(lambda: len(lab.connections(f"{lb.address}:{port}", since=mark)) >= USERS)
            for turn in range(2, 4):
                old, new = uploaded[-1], upload(f"shop-{turn}")
                uploaded.append(new)
                slb.set_load_balancer_httpslistener_attribute(models.SetLoadBalancerHTTPSListenerAttributeRequest(
                    load_balancer_id=lb.load_balancer_id, listener_port=port,
                    server_certificate_id=new.server_certificate_id))
                changed = time.monotonic()
                # The old certificate serves until the activation delay has passed, then the new one.
                assert served(lb.address, port, client=True) == old.fingerprint
                wait(lambda: served(lb.address, port, client=True) == new.fingerprint)
                assert time.monotonic() - changed >= lab.scaled(45) * 0.9
                # Deleting the certificate in use is refused; the old one can go now.
                with pytest.raises(AlibabaCloudException) as refused:
                    slb.delete_server_certificate(models.DeleteServerCertificateRequest(
                        server_certificate_id=new.server_certificate_id))
                assert refused.value.code == "CertificateAndPrivateKeyIsRefered"
                slb.delete_server_certificate(models.DeleteServerCertificateRequest(
                    server_certificate_id=old.server_certificate_id))
                uploaded.remove(old)
            assert load.running(), load.log_tail()  # the rotations happened under load
            load.stop()  # half a second after the last rotation
        result = load.result()
        assert result.failures == 0 and result.failed_handshakes == 0, result.log_tail
        assert result.handshakes >= USERS * RATE * result.seconds * 0.4, (result.seconds, result.rows)  # the load was steady
        assert served(lb.address, port, client=True) == uploaded[-1].fingerprint
    finally:  # the script cleans up after itself, through the API
        slb.delete_load_balancer(models.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))
        for cert in uploaded:
            slb.delete_server_certificate(models.DeleteServerCertificateRequest(
                server_certificate_id=cert.server_certificate_id))
        for info in lab.running.lab.store.list("ca"):
            if info.name == "shop-clients":
                slb.delete_cacertificate(models.DeleteCACertificateRequest(cacertificate_id=info.id))
