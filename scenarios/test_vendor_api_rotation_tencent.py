"""A user's certificate-rotation script against Tencent Cloud's own API, pointed at the lab.

The script is what a team runs against Tencent Cloud, with the official SDKs (`tencentcloud-sdk-python-ssl`,
`-clb`); only the endpoint, keys and CA come from the lab's `endpoints.json` (`lab.vendor_api` reads the
same). It provisions a load balancer and an HTTPS listener (one-way, then mutual with a client CA), then
rotates the server certificate while a steady Locust load opens new TLS connections: no handshake may fail,
clients see the new certificate once the change's task succeeds (the activation delay), the old certificate
can then be deleted, and deleting the one in use is refused.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from pathlib import Path

import pytest

from simulator.harness.extras import vendor_sdk
from simulator.harness.steady_load import SteadyLoad
from simulator.net import free_port

try:  # the extra vendor-sdks; without it each scenario below skips, naming the extra
    from tencentcloud.clb.v20180317 import clb_client
    from tencentcloud.clb.v20180317 import models as clb
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.ssl.v20191205 import models as sslm
    from tencentcloud.ssl.v20191205 import ssl_client
except ModuleNotFoundError:
    pass


ROTATION = "Certificates can be replaced and deleted (aliyun notes); deletion is refused while in use"
UPLOAD = "Certificates are uploaded through the API or the console (tencent FAQ 10)"
DOMAIN = "rotate.example.com"


# --- the user's script: nothing below knows it talks to a lab ------------------------------------------------

class RotationScript:
    """Provision and rotate with the Tencent SDKs, the way a deployment script does."""

    def __init__(self, tencent: dict):
        """`tencent`: what `<out>/endpoints.json` holds under "tencent-clb", with the endpoints' CA as "ca"."""
        cred = credential.Credential(tencent["secret_id"], tencent["secret_key"])

        def profile() -> ClientProfile:
            return ClientProfile(httpProfile=HttpProfile(endpoint=tencent["https_endpoint"], certification=tencent["ca"]))

        self.ssl = ssl_client.SslClient(cred, tencent["region"], profile())
        self.clb = clb_client.ClbClient(cred, tencent["region"], profile())

    def upload(self, cert_pem: bytes, key_pem: bytes | None, alias: str) -> str:
        r = sslm.UploadCertificateRequest()
        r.CertificatePublicKey, r.Alias = cert_pem.decode(), alias
        if key_pem is None:
            r.CertificateType = "CA"
        else:
            r.CertificatePrivateKey = key_pem.decode()
        return self.ssl.UploadCertificate(r).CertificateId

    def delete(self, cert_id: str) -> None:
        r = sslm.DeleteCertificateRequest()
        r.CertificateId = cert_id
        self.ssl.DeleteCertificate(r)

    def wait(self, request_id: str, timeout: float = 60.0) -> None:
        """Tencent's changes are asynchronous: poll the task (the change's RequestId) until it succeeds."""
        r = clb.DescribeTaskStatusRequest()
        r.TaskId = request_id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.clb.DescribeTaskStatus(r).Status
            if status == 0:
                return
            assert status == 2, f"task {request_id} failed"
            time.sleep(0.1)
        raise AssertionError(f"task {request_id} did not finish in {timeout} s")

    def provision(self, cert_id: str, instances: list[str]) -> tuple[str, str, str, int]:
        """A load balancer, a one-way HTTPS listener on a free port of its VIP, a rule, two targets."""
        r = clb.CreateLoadBalancerRequest()
        r.LoadBalancerType, r.LoadBalancerName = "OPEN", "rotation"
        lb_id = self.clb.CreateLoadBalancer(r).LoadBalancerIds[0]
        d = clb.DescribeLoadBalancersRequest()
        d.LoadBalancerIds = [lb_id]
        vip = self.clb.DescribeLoadBalancers(d).LoadBalancerSet[0].LoadBalancerVips[0]
        port = free_port(vip)  # 443 in the cloud; here any free port of the VIP (docs/vendor-apis.md)
        r = clb.CreateListenerRequest()
        r.LoadBalancerId, r.Ports, r.Protocol, r.ListenerNames = lb_id, [port], "HTTPS", ["rotation"]
        r.Certificate = self.certificate(cert_id)
        resp = self.clb.CreateListener(r)
        listener_id = resp.ListenerIds[0]
        self.wait(resp.RequestId)
        r = clb.CreateRuleRequest()
        rule = clb.RuleInput()
        rule.Domain, rule.Url = DOMAIN, "/"
        r.LoadBalancerId, r.ListenerId, r.Rules = lb_id, listener_id, [rule]
        resp = self.clb.CreateRule(r)
        self.wait(resp.RequestId)
        r = clb.RegisterTargetsRequest()
        r.LoadBalancerId, r.ListenerId, r.LocationId = lb_id, listener_id, resp.LocationIds[0]
        r.Targets = []
        for instance in instances:
            t = clb.Target()
            t.InstanceId, t.Port, t.Weight = instance, 80, 10
            r.Targets.append(t)
        self.wait(self.clb.RegisterTargets(r).RequestId)
        return lb_id, listener_id, vip, port

    @staticmethod
    def certificate(cert_id: str, ca_id: str | None = None) -> clb.CertificateInput:
        c = clb.CertificateInput()
        c.SSLMode, c.CertId, c.CertCaId = ("MUTUAL" if ca_id else "UNIDIRECTIONAL"), cert_id, ca_id
        return c

    def set_certificate(self, lb_id: str, listener_id: str, cert_id: str, ca_id: str | None = None) -> str:
        r = clb.ModifyListenerRequest()
        r.LoadBalancerId, r.ListenerId, r.Certificate = lb_id, listener_id, self.certificate(cert_id, ca_id)
        return self.clb.ModifyListener(r).RequestId

    def teardown(self, lb_id: str) -> None:
        r = clb.DeleteLoadBalancerRequest()
        r.LoadBalancerIds = [lb_id]
        self.clb.DeleteLoadBalancer(r)


# --- the scenario ----------------------------------------------------------------------------------------------

def served(address: str, port: int, ca_pem: bytes, client=None, tmp_path: Path | None = None) -> str:
    """SHA-256 of the certificate a real handshake gets, after one request went through."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        (tmp_path / "c.pem").write_bytes(client.chain_pem)
        (tmp_path / "c.key").write_bytes(client.key_pem)
        ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    with socket.create_connection((address, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def sha256(issued) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(issued.cert_pem.decode())).hexdigest()


USERS, RATE = 4, 6  # Locust users, new connections per second and user


@pytest.mark.seed(ROTATION)
def test_rotation_script_under_steady_load(lab, pki, tmp_path):
    vendor_sdk("tencentcloud.clb.v20180317")
    running = lab.running
    script = RotationScript(lab.vendor_api("tencent-clb"))  # the session lab, its vendor APIs attached
    ca = pki()
    old = ca.server(DOMAIN)
    old_id = script.upload(old.chain_pem, old.key_pem, "rotation-2025")
    ca_id = script.upload(ca.ca_pem, None, "partner-clients")
    lb_id, listener_id, vip, port = script.provision(old_id, sorted(running.lab.instance_ids()))
    try:
        assert served(vip, port, ca.ca_pem) == sha256(old)  # one-way

        script.wait(script.set_certificate(lb_id, listener_id, old_id, ca_id))  # then mutual, with the CA
        client = ca.client("partner")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            served(vip, port, ca.ca_pem)  # no client certificate: refused
        assert served(vip, port, ca.ca_pem, client, tmp_path) == sha256(old)

        (tmp_path / "ca.pem").write_bytes(ca.ca_pem)
        (tmp_path / "client.pem").write_bytes(client.chain_pem)
        (tmp_path / "client.key").write_bytes(client.key_pem)
        mark = lab.mark()
        current, current_id, retired = old, old_id, []
        with SteadyLoad(f"https://{vip}:{port}", tmp_path / "ca.pem", tmp_path / "load", sni=DOMAIN, users=USERS,
                        rate=RATE, seconds=60, client_cert=tmp_path / "client.pem",
                        client_key=tmp_path / "client.key") as load:
            load.wait_started(lambda: len(lab.connections(f"{vip}:{port}", since=mark)) >= USERS)
            for turn in range(2):  # two rotations while the load runs
                time.sleep(0.5)
                new = ca.server(DOMAIN)
                new_id = script.upload(new.chain_pem, new.key_pem, f"rotation-2026-{turn}")
                task = script.set_certificate(lb_id, listener_id, new_id, ca_id)
                assert served(vip, port, ca.ca_pem, client, tmp_path) == sha256(current)  # still activating
                script.wait(task)
                assert served(vip, port, ca.ca_pem, client, tmp_path) == sha256(new)  # after the delay
                retired.append(current_id)
                current, current_id = new, new_id
            assert load.running(), "the rotations must happen under the load"
            load.stop()  # half a second after the last rotation
        result = load.result()
        assert result.failures == 0 and result.failed_handshakes == 0, result.log_tail
        assert result.handshakes >= USERS * RATE * result.seconds * 0.5, (result.handshakes, result.seconds, result.log_tail)

        for cert_id in retired:  # the old certificates can go now
            script.delete(cert_id)
        with pytest.raises(TencentCloudSDKException) as refused:
            script.delete(current_id)
        assert refused.value.code == "FailedOperation.DeleteResourceFailed"
        assert served(vip, port, ca.ca_pem, client, tmp_path) == sha256(current)
    finally:
        script.teardown(lb_id)
    for cert_id in (current_id, ca_id):
        script.delete(cert_id)


@pytest.mark.seed(UPLOAD)
def test_upload_by_calling_the_tencent_api(lab, pki):
    vendor_sdk("tencentcloud.ssl.v20191205")
    """Tencent FAQ 10: "You can upload it by calling an API" — Tencent's API is the ssl UploadCertificate."""
    running = lab.running
    script = RotationScript(lab.vendor_api("tencent-clb"))
    ca = pki()
    issued = ca.server(DOMAIN)
    cert_id = script.upload(issued.chain_pem, issued.key_pem, "via-tencent-api")
    assert running.lab.store.describe(cert_id).name == "via-tencent-api"
    lb_id, _, vip, port = script.provision(cert_id, sorted(running.lab.instance_ids()))
    try:
        assert served(vip, port, ca.ca_pem) == sha256(issued)
    finally:
        script.teardown(lb_id)
    script.delete(cert_id)
