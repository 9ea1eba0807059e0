"""Tencent Cloud's own APIs on a lab, driven by Tencent's official clients only: `tencentcloud-sdk-python-ssl`,
`tencentcloud-sdk-python-clb` and `tccli` (docs/vendor-apis.md). Each test checks what the client sees and
what the lab then does: the store's contents, and real TLS handshakes on the load balancer's address."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from tencentcloud.clb.v20180317 import clb_client
from tencentcloud.clb.v20180317 import models as clb_models
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ssl.v20191205 import models as ssl_models
from tencentcloud.ssl.v20191205 import ssl_client
from vendor_lab import vendor_lab  # noqa: F401  (module-scoped fixture)

from simulator.net import free_port

PROFILE = "tencent-clb"


class Tencent:
    """The clients a user's script would build from endpoints.json (HTTPS with the lab CA by default)."""

    def __init__(self, vlab, scheme: str = "https", secret_id: str | None = None, secret_key: str | None = None,
                 sign_method: str = "TC3-HMAC-SHA256", req_method: str = "POST"):
        self.vlab = vlab
        ep = vlab.endpoints[PROFILE]
        self.ep = ep
        cred = credential.Credential(secret_id or ep["secret_id"], secret_key or ep["secret_key"])
        endpoint = ep["https_endpoint"] if scheme == "https" else ep["http_endpoint"]

        def profile() -> ClientProfile:
            http = HttpProfile(protocol=scheme, endpoint=endpoint, reqMethod=req_method,
                               certification=vlab.ca_file if scheme == "https" else None)
            return ClientProfile(httpProfile=http, signMethod=sign_method)

        self.ssl = ssl_client.SslClient(cred, ep["region"], profile())
        self.clb = clb_client.ClbClient(cred, ep["region"], profile())
        self.common = CommonClient("clb", "2018-03-17", cred, ep["region"], profile=profile())

    # --- certificates ---
    def upload(self, issued, alias: str = "site", kind: str = "SVR", **extra) -> str:
        r = ssl_models.UploadCertificateRequest()
        r.CertificatePublicKey = (issued.chain_pem if kind == "SVR" else issued).decode()
        if kind == "SVR":
            r.CertificatePrivateKey = issued.key_pem.decode()
        r.CertificateType, r.Alias = kind, alias
        for k, v in extra.items():
            setattr(r, k, v)
        return self.ssl.UploadCertificate(r).CertificateId

    def describe_certs(self, **kw):
        r = ssl_models.DescribeCertificatesRequest()
        for k, v in kw.items():
            setattr(r, k, v)
        return self.ssl.DescribeCertificates(r)

    def delete_cert(self, cert_id: str):
        r = ssl_models.DeleteCertificateRequest()
        r.CertificateId = cert_id
        return self.ssl.DeleteCertificate(r)

    # --- clb ---
    def create_lb(self, name: str = "web") -> tuple[str, str]:
        r = clb_models.CreateLoadBalancerRequest()
        r.LoadBalancerType, r.LoadBalancerName = "OPEN", name
        lb_id = self.clb.CreateLoadBalancer(r).LoadBalancerIds[0]
        d = clb_models.DescribeLoadBalancersRequest()
        d.LoadBalancerIds = [lb_id]
        return lb_id, self.clb.DescribeLoadBalancers(d).LoadBalancerSet[0].LoadBalancerVips[0]

    def create_listener(self, lb_id: str, port: int, cert_id: str, ca_id: str | None = None, sni: int = 0):
        r = clb_models.CreateListenerRequest()
        r.LoadBalancerId, r.Ports, r.Protocol, r.SniSwitch = lb_id, [port], "HTTPS", sni
        r.Certificate = certificate(cert_id, ca_id)
        resp = self.clb.CreateListener(r)
        return resp.ListenerIds[0], resp.RequestId

    def task(self, task_id: str) -> int:
        r = clb_models.DescribeTaskStatusRequest()
        r.TaskId = task_id
        return self.clb.DescribeTaskStatus(r).Status

    def wait(self, task_id: str, timeout: float = 30.0) -> list[int]:
        """Poll the task as a script does; returns every status seen (2 = running ... 0 = success)."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.append(self.task(task_id))
            if seen[-1] == 0:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} still {seen[-1]} after {timeout} s")

    def listeners(self, lb_id: str):
        r = clb_models.DescribeListenersRequest()
        r.LoadBalancerId = lb_id
        return self.clb.DescribeListeners(r).Listeners

    def create_rule(self, lb_id: str, lid: str, domain: str, url: str = "/", cert_id: str | None = None):
        r = clb_models.CreateRuleRequest()
        rule = clb_models.RuleInput()
        rule.Domain, rule.Url = domain, url
        if cert_id:
            rule.Certificate = certificate(cert_id)
        r.LoadBalancerId, r.ListenerId, r.Rules = lb_id, lid, [rule]
        resp = self.clb.CreateRule(r)
        return resp.LocationIds[0], resp.RequestId

    def targets(self, action: str, lb_id: str, lid: str, loc: str, *instances: tuple[str, int]) -> str:
        r = getattr(clb_models, f"{action}Request")()
        r.LoadBalancerId, r.ListenerId, r.LocationId = lb_id, lid, loc
        r.Targets = []
        for iid, weight in instances:
            t = clb_models.Target()
            t.InstanceId, t.Port, t.Weight = iid, 80, weight
            r.Targets.append(t)
        return getattr(self.clb, action)(r).RequestId

    def modify_certificate(self, lb_id: str, lid: str, cert_id: str, ca_id: str | None = None) -> str:
        r = clb_models.ModifyListenerRequest()
        r.LoadBalancerId, r.ListenerId, r.Certificate = lb_id, lid, certificate(cert_id, ca_id)
        return self.clb.ModifyListener(r).RequestId


def certificate(cert_id: str, ca_id: str | None = None) -> clb_models.CertificateInput:
    c = clb_models.CertificateInput()
    c.SSLMode, c.CertId = ("MUTUAL", cert_id) if ca_id else ("UNIDIRECTIONAL", cert_id)
    c.CertCaId = ca_id
    return c


def served(address: str, port: int, server_name: str, ca_pem: bytes, client=None, tmp_path=None) -> tuple[str, bytes]:
    """A real handshake and one request: (SHA-256 of the certificate served, the response's status line)."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
        cert_file.write_bytes(client.chain_pem)
        key_file.write_bytes(client.key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    with socket.create_connection((address, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        head = tls.recv(65536)
    return hashlib.sha256(der).hexdigest(), head.split(b"\r\n", 1)[0]


def fingerprint(issued) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(issued.cert_pem.decode())).hexdigest()


def sdk_error(fn, *args) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        fn(*args)
    return info.value


def tencent_ids(vlab) -> set[str]:
    return {c.id for c in vlab.lab.store.list() if c.profile == PROFILE}


@pytest.fixture(scope="module")
def tc(vendor_lab) -> Tencent:  # noqa: F811
    return Tencent(vendor_lab)


# --- SSL certificate service -------------------------------------------------------------------------------

def test_upload_describe_detail_alias_delete(tc, vendor_lab):  # noqa: F811
    issued = vendor_lab.certs.server("shop.example.com", "www.shop.example.com")
    cert_id = tc.upload(issued, alias="shop")
    assert len(cert_id) == 8 and cert_id in tencent_ids(vendor_lab)
    ca_id = tc.upload(vendor_lab.certs.ca_pem, alias="clients", kind="CA")

    listed = tc.describe_certs(SearchKey="shop")
    assert listed.TotalCount == 1 and listed.Certificates[0].CertificateId == cert_id
    mine = listed.Certificates[0]
    assert (mine.Alias, mine.CertificateType, mine.Domain, mine.From, mine.Status) == \
        ("shop", "SVR", "shop.example.com", "upload", 1)
    assert set(mine.SubjectAltName) == {"shop.example.com", "www.shop.example.com"}
    assert [c.CertificateId for c in tc.describe_certs(CertificateType="CA").Certificates] == [ca_id]
    page = tc.describe_certs(Offset=0, Limit=1)
    assert len(page.Certificates) == 1 and page.TotalCount >= 2

    r = ssl_models.DescribeCertificateDetailRequest()
    r.CertificateId = cert_id
    detail = tc.ssl.DescribeCertificateDetail(r)
    assert detail.CertificatePrivateKey is None
    assert "PRIVATE KEY" not in detail.to_json_string()
    assert issued.cert_pem.decode().strip() in detail.CertificatePublicKey

    r = ssl_models.ModifyCertificateAliasRequest()
    r.CertificateId, r.Alias = cert_id, "shop 2025"
    assert tc.ssl.ModifyCertificateAlias(r).CertificateId == cert_id
    assert vendor_lab.lab.store.describe(cert_id).name == "shop 2025"

    assert tc.delete_cert(cert_id).DeleteResult is True
    assert tc.delete_cert(ca_id).DeleteResult is True
    assert not {cert_id, ca_id} & tencent_ids(vendor_lab)


def test_upload_refused_with_tencent_codes_and_nothing_stored(tc, vendor_lab):  # noqa: F811
    good, other = vendor_lab.certs.server("a.example.com"), vendor_lab.certs.server("b.example.com")
    before = tencent_ids(vendor_lab)

    def refused(**fields) -> TencentCloudSDKException:
        r = ssl_models.UploadCertificateRequest()
        for k, v in fields.items():
            setattr(r, k, v)
        return sdk_error(tc.ssl.UploadCertificate, r)

    assert refused(CertificatePublicKey="not a certificate", CertificatePrivateKey=good.key_pem.decode()).code \
        == "FailedOperation.CertificateParseError"
    mismatch = refused(CertificatePublicKey=good.chain_pem.decode(), CertificatePrivateKey=other.key_pem.decode())
    assert mismatch.code == "FailedOperation.CertificateMismatch" and "lbsim hint" in mismatch.message
    assert refused(CertificatePublicKey=good.chain_pem.decode()).code == "MissingParameter"
    assert refused(CertificatePrivateKey=good.key_pem.decode()).code == "MissingParameter"
    assert refused(CertificatePublicKey=good.chain_pem.decode(), CertificatePrivateKey=good.key_pem.decode(),
                   CertificateType="XYZ").code == "InvalidParameterValue"
    assert refused(CertificatePublicKey=good.chain_pem.decode(), CertificatePrivateKey=good.key_pem.decode(),
                   KeyPassword="secret").code == "UnsupportedOperation"
    assert refused(CertificatePublicKey=vendor_lab.certs.ca_pem.decode(), CertificateType="CA",
                   CertificatePrivateKey=good.key_pem.decode()).code == "InvalidParameterValue"
    assert tencent_ids(vendor_lab) == before


def test_repeatable_false_answers_the_existing_certificate(tc, vendor_lab):  # noqa: F811
    issued = vendor_lab.certs.server("same.example.com")
    first = tc.upload(issued, alias="same")
    r = ssl_models.UploadCertificateRequest()
    r.CertificatePublicKey, r.CertificatePrivateKey = issued.chain_pem.decode(), issued.key_pem.decode()
    r.Repeatable = False
    again = tc.ssl.UploadCertificate(r)
    assert (again.CertificateId, again.RepeatCertId) == (first, first)
    assert len([c for c in tc.describe_certs(SearchKey="same.example.com").Certificates]) == 1
    r.Repeatable = True
    assert tc.ssl.UploadCertificate(r).CertificateId != first  # Tencent's default: a second copy
    for c in tc.describe_certs(SearchKey="same.example.com").Certificates:
        tc.delete_cert(c.CertificateId)


@pytest.mark.parametrize("scheme,sign_method,req_method", [
    ("http", "TC3-HMAC-SHA256", "POST"), ("http", "TC3-HMAC-SHA256", "GET"), ("http", "HmacSHA256", "POST"),
    ("https", "HmacSHA1", "GET"),
])
def test_every_signature_method_of_the_sdk(vendor_lab, scheme, sign_method, req_method):  # noqa: F811
    client = Tencent(vendor_lab, scheme=scheme, sign_method=sign_method, req_method=req_method)
    cert_id = client.upload(vendor_lab.certs.server("sig.example.com"), alias=f"sig {sign_method}")
    assert cert_id in {c.CertificateId for c in client.describe_certs(SearchKey=cert_id).Certificates}
    client.delete_cert(cert_id)


def test_an_unsigned_payload_is_accepted_as_the_sdk_sends_it(vendor_lab):  # noqa: F811
    client = Tencent(vendor_lab)
    client.ssl.profile.unsignedPayload = True  # X-TC-Content-SHA256: UNSIGNED-PAYLOAD, the body not signed
    cert_id = client.upload(vendor_lab.certs.server("unsigned.example.com"), alias="unsigned")
    assert cert_id in tencent_ids(vendor_lab)
    client.delete_cert(cert_id)


# --- authentication and request errors: Tencent's codes, HTTP 200, nothing changed ---------------------------

def test_wrong_secret_unknown_id_tampered_and_stale_signatures_are_refused(vendor_lab, monkeypatch):  # noqa: F811
    issued = vendor_lab.certs.server("auth.example.com")
    before = tencent_ids(vendor_lab)

    wrong = sdk_error(Tencent(vendor_lab, secret_key="not-the-secret").upload, issued)
    assert wrong.code == "AuthFailure.SignatureFailure"
    assert wrong.message.startswith("The provided credentials could not be validated")
    assert sdk_error(Tencent(vendor_lab, secret_id="AKIDnobody").upload, issued).code == "AuthFailure.SecretIdNotFound"

    real = abstract_client.AbstractClient._get_tc3_signature
    flipped = lambda self, *a, **k: (lambda s: ("0" if s[0] != "0" else "1") + s[1:])(real(self, *a, **k))  # noqa: E731
    with monkeypatch.context() as m:
        m.setattr(abstract_client.AbstractClient, "_get_tc3_signature", flipped)
        assert sdk_error(Tencent(vendor_lab).upload, issued).code == "AuthFailure.SignatureFailure"

    clock = time.time
    with monkeypatch.context() as m:  # the client's clock (only the SDK's) runs ten minutes late
        m.setattr(abstract_client, "time", SimpleNamespace(time=lambda: clock() - 600, sleep=time.sleep))
        stale = sdk_error(Tencent(vendor_lab).upload, issued)
        assert stale.code == "AuthFailure.SignatureExpire"
        assert stale.requestId
    assert tencent_ids(vendor_lab) == before


def test_a_replayed_nonce_of_the_older_signature_is_refused(vendor_lab, monkeypatch):  # noqa: F811
    client = Tencent(vendor_lab, scheme="http", sign_method="HmacSHA256")
    monkeypatch.setattr(abstract_client, "random", SimpleNamespace(randint=lambda a, b: 424242))  # one Nonce, twice
    assert client.describe_certs().TotalCount >= 0
    assert sdk_error(client.describe_certs).code == "AuthFailure.SignatureFailure"


def test_malformed_authorization_unknown_action_and_version(tc, vendor_lab):  # noqa: F811
    ep = vendor_lab.endpoints[PROFILE]
    resp = requests.post(ep["http"], data=b"{}", timeout=10, headers={
        "Content-Type": "application/json", "X-TC-Action": "DescribeCertificates", "X-TC-Version": "2019-12-05",
        "X-TC-Timestamp": str(int(time.time())), "Authorization": "TC3-HMAC-SHA256 garbage"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    body = resp.json()["Response"]
    assert body["Error"]["Code"] == "AuthFailure.InvalidAuthorization" and body["RequestId"]
    assert "Traceback" not in resp.text

    big = requests.post(ep["http"], data=b"{" + b" " * (1024 * 1024 + 10) + b"}", timeout=30,
                        headers={"Content-Type": "application/json", "X-TC-Action": "DescribeCertificates"})
    assert big.json()["Response"]["Error"]["Code"] == "RequestSizeLimitExceeded"  # (HTTP 413: the vendor server)

    assert sdk_error(tc.common.call_json, "NoSuchAction", {}).code == "InvalidAction"
    other = CommonClient("clb", "2017-01-01", tc.clb.credential, tc.ep["region"], profile=tc.clb.profile)
    assert sdk_error(other.call_json, "DescribeLoadBalancers", {}).code == "NoSuchVersion"
    assert sdk_error(tc.common.call_json, "DescribeLoadBalancers", {"Bogus": 1}).code == "UnknownParameter"
    assert sdk_error(tc.common.call_json, "DescribeLoadBalancers", {"Limit": "many"}).code == "InvalidParameterValue"


# --- CLB ---------------------------------------------------------------------------------------------------

def test_load_balancer_listener_targets_and_a_real_handshake(tc, vendor_lab, tmp_path):  # noqa: F811
    pki = vendor_lab.certs
    site = pki.server("app.example.com")
    cert_id = tc.upload(site, alias="app")
    lb_id, vip = tc.create_lb("app")
    assert lb_id.startswith("lb-") and vip.startswith("127.0.0.") and vip != "127.0.0.1"
    names = {lb.LoadBalancerId: lb.LoadBalancerName for lb in
             tc.clb.DescribeLoadBalancers(clb_models.DescribeLoadBalancersRequest()).LoadBalancerSet}
    assert names[lb_id] == "app"
    # the lab file's tencent-clb listeners (the default lab's, on lb-lbsim) are Tencent listeners too
    default = {l.ListenerName: l for l in tc.listeners("lb-lbsim")}
    assert {"tencent-one-way", "tencent-mutual"} <= set(default) and "aliyun-one-way" not in default
    assert default["tencent-mutual"].Certificate.SSLMode == "MUTUAL"

    port = free_port(vip)
    lid, task = tc.create_listener(lb_id, port, cert_id)
    statuses = tc.wait(task)
    assert statuses[0] == 2 and statuses[-1] == 0  # asynchronous: running until the activation delay passed
    assert served(vip, port, "app.example.com", pki.ca_pem)[0] == fingerprint(site)

    (listener,) = tc.listeners(lb_id)
    assert (listener.ListenerId, listener.Port, listener.Protocol) == (lid, port, "HTTPS")
    assert (listener.Certificate.SSLMode, listener.Certificate.CertId) == ("UNIDIRECTIONAL", cert_id)

    loc, task = tc.create_rule(lb_id, lid, "app.example.com", "/")
    tc.wait(task)
    instances = sorted(vendor_lab.lab.instance_ids())
    tc.wait(tc.targets("RegisterTargets", lb_id, lid, loc, (instances[0], 10), (instances[1], 20)))
    r = clb_models.DescribeTargetsRequest()
    r.LoadBalancerId = lb_id
    (backend,) = tc.clb.DescribeTargets(r).Listeners
    assert {(t.InstanceId, t.Weight) for t in backend.Rules[0].Targets} == {(instances[0], 10), (instances[1], 20)}
    spec = vendor_lab.lab.listener_at(lb_id, port).spec
    assert {(b.backend, b.weight) for b in spec.backend_servers} == \
        {(vendor_lab.lab.instance_ids()[instances[0]], 10), (vendor_lab.lab.instance_ids()[instances[1]], 20)}
    assert served(vip, port, "app.example.com", pki.ca_pem)[1] == b"HTTP/1.1 200 OK"

    r = clb_models.DescribeTargetHealthRequest()
    r.LoadBalancerIds = [lb_id]
    health = tc.clb.DescribeTargetHealth(r).LoadBalancers[0].Listeners[0].Rules[0].Targets
    assert {t.TargetId for t in health} == set(instances[:2])
    assert all(t.HealthStatusDetail in ("Alive", "Unknown") for t in health)

    backend = vendor_lab.lab.instance_ids()[instances[1]]
    assert vendor_lab.running.api("POST", f"/v1/backends/{backend}/health", {"healthy": False})[0] == 200
    try:  # the lab's real health checks see it fail; Tencent's answer follows
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = {t.TargetId: t for t in tc.clb.DescribeTargetHealth(r).LoadBalancers[0].Listeners[0].Rules[0].Targets}
            if health[instances[1]].HealthStatusDetail == "Dead":
                break
            time.sleep(0.1)
        assert (health[instances[1]].HealthStatus, health[instances[1]].HealthStatusDetail) == (False, "Dead")
        assert (health[instances[0]].HealthStatus, health[instances[0]].HealthStatusDetail) == (True, "Alive")
    finally:
        vendor_lab.running.api("POST", f"/v1/backends/{backend}/health", {"healthy": True})

    tc.wait(tc.targets("DeregisterTargets", lb_id, lid, loc, (instances[1], 20)))
    assert [b.weight for b in vendor_lab.lab.listener_at(lb_id, port).spec.backend_servers] == [10]

    r = clb_models.DeleteListenerRequest()
    r.LoadBalancerId, r.ListenerId = lb_id, lid
    tc.wait(tc.clb.DeleteListener(r).RequestId)
    assert tc.listeners(lb_id) == []
    with pytest.raises(OSError):
        served(vip, port, "app.example.com", pki.ca_pem)
    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [lb_id]
    tc.clb.DeleteLoadBalancer(r)
    assert lb_id not in {lb.id for lb in vendor_lab.lab.loadbalancers.list()}
    tc.delete_cert(cert_id)


def test_mutual_listener_sni_rules_and_refusals(tc, vendor_lab, tmp_path):  # noqa: F811
    pki = vendor_lab.certs
    main, shop, shop2 = pki.server("main.example.com"), pki.server("shop.example.com"), pki.server("shop.example.com")
    main_id, shop_id, shop2_id = tc.upload(main, "main"), tc.upload(shop, "shop"), tc.upload(shop2, "shop-2")
    ca_id = tc.upload(pki.ca_pem, "clients", kind="CA")
    lb_id, vip = tc.create_lb("edge")

    # mutual: a client without a certificate is refused, one with a certificate of the CA is served
    port = free_port(vip)
    lid, task = tc.create_listener(lb_id, port, main_id, ca_id=ca_id)
    tc.wait(task)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        served(vip, port, "main.example.com", pki.ca_pem)
    assert served(vip, port, "main.example.com", pki.ca_pem, client=pki.client("alice"), tmp_path=tmp_path)[0] \
        == fingerprint(main)
    assert tc.listeners(lb_id)[0].Certificate.CertCaId == ca_id

    # SNI: the rule's domain gets its own certificate; ModifyDomainAttributes swaps it
    sni_port = free_port(vip)
    sni_lid, task = tc.create_listener(lb_id, sni_port, main_id, sni=1)
    tc.wait(task)
    loc, task = tc.create_rule(lb_id, sni_lid, "shop.example.com", "/", cert_id=shop_id)
    tc.wait(task)
    assert served(vip, sni_port, "shop.example.com", pki.ca_pem)[0] == fingerprint(shop)
    assert served(vip, sni_port, "main.example.com", pki.ca_pem)[0] == fingerprint(main)
    r = clb_models.ModifyDomainAttributesRequest()
    r.LoadBalancerId, r.ListenerId, r.Domain, r.Certificate = lb_id, sni_lid, "shop.example.com", certificate(shop2_id)
    task = tc.clb.ModifyDomainAttributes(r).RequestId
    assert served(vip, sni_port, "shop.example.com", pki.ca_pem)[0] == fingerprint(shop)  # until activation
    tc.wait(task)
    assert served(vip, sni_port, "shop.example.com", pki.ca_pem)[0] == fingerprint(shop2)

    # refusals, each with Tencent's code and no change
    r = clb_models.ModifyListenerRequest()
    r.LoadBalancerId, r.ListenerId, r.SniSwitch = lb_id, sni_lid, 0
    assert sdk_error(tc.clb.ModifyListener, r).code == "InvalidParameterValue"
    assert tc.listeners(lb_id)[1].SniSwitch == 1
    task = tc.modify_certificate(lb_id, lid, shop_id, ca_id)
    again = sdk_error(tc.modify_certificate, lb_id, lid, main_id, ca_id)  # while the change activates
    assert again.code == "FailedOperation.ResourceInOperating"
    tc.wait(task)
    in_use = sdk_error(tc.delete_cert, ca_id)
    assert in_use.code == "FailedOperation.DeleteResourceFailed"
    assert ca_id in tencent_ids(vendor_lab)
    assert sdk_error(tc.create_listener, "lb-nothere", 443, main_id).code == "InvalidParameter.LBIdNotFound"
    assert sdk_error(tc.create_listener, lb_id, free_port(vip), "NoSuchId").code == \
        "FailedOperation.CertificateNotFound"
    assert sdk_error(tc.create_listener, lb_id, free_port(vip), ca_id).code == "InvalidParameterValue"  # a CA
    assert sdk_error(tc.create_listener, lb_id, port, main_id).code == "InvalidParameter.PortCheckFailed"
    r = clb_models.CreateListenerRequest()
    r.LoadBalancerId, r.Ports, r.Protocol, r.Certificate = lb_id, [free_port(vip)], "HTTP", certificate(main_id)
    assert sdk_error(tc.clb.CreateListener, r).code == "UnsupportedOperation"
    r.Protocol, r.MultiCertInfo = "HTTPS", multi_cert(main_id)
    both = sdk_error(tc.clb.CreateListener, r)  # Certificate and MultiCertInfo: one or the other
    assert both.code == "InvalidParameterValue" and "not both" in both.message
    inline = pki.server("inline.example.com")
    r.MultiCertInfo, r.Protocol, r.Ports = None, "HTTPS", [port]  # the port is taken: refused after the upload
    r.Certificate = clb_models.CertificateInput()
    r.Certificate.CertContent, r.Certificate.CertKey = inline.chain_pem.decode(), inline.key_pem.decode()
    before = tencent_ids(vendor_lab)
    assert sdk_error(tc.clb.CreateListener, r).code == "InvalidParameter.PortCheckFailed"
    assert tencent_ids(vendor_lab) == before  # the inline certificate is not left behind
    assert len(tc.listeners(lb_id)) == 2
    r.Ports = [free_port(vip)]  # accepted: the certificate is uploaded on the fly, as the console does
    inline_lid = tc.clb.CreateListener(r).ListenerIds[0]
    inline_id = next(l.Certificate.CertId for l in tc.listeners(lb_id) if l.ListenerId == inline_lid)
    assert inline_id in tencent_ids(vendor_lab) - before
    inline_ids = [inline_id]

    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [lb_id]
    tc.clb.DeleteLoadBalancer(r)
    for cert_id in (main_id, shop_id, shop2_id, ca_id, *inline_ids):
        tc.delete_cert(cert_id)


def test_one_model_a_listener_removed_by_the_management_api_is_gone_for_tencent(tc, vendor_lab):  # noqa: F811
    cert_id = tc.upload(vendor_lab.certs.server("faces.example.com"), alias="faces")
    lb_id, vip = tc.create_lb("faces")
    port = free_port(vip)
    lid, task = tc.create_listener(lb_id, port, cert_id)
    tc.wait(task)
    status, listed = vendor_lab.running.api("GET", "/v1/listeners")
    assert any(l["port"] == port and l["lb_id"] == lb_id for l in listed["listeners"])  # the same listener
    assert vendor_lab.running.api("DELETE", f"/v1/listeners/{port}")[0] == 204
    assert tc.listeners(lb_id) == []
    r = clb_models.DeleteListenerRequest()
    r.LoadBalancerId, r.ListenerId = lb_id, lid
    assert sdk_error(tc.clb.DeleteListener, r).code == "InvalidParameter.ListenerIdNotFound"
    tc.delete_cert(cert_id)  # no longer in use
    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [lb_id]
    tc.clb.DeleteLoadBalancer(r)


def test_the_load_balancer_quota_is_limit_exceeded_and_all_or_nothing(tc, vendor_lab):  # noqa: F811
    quota = vendor_lab.lab.loadbalancers.quota
    existing = {lb.id for lb in vendor_lab.lab.loadbalancers.list() if not lb.from_lab_file}
    made, refused, number = [], None, 5  # 5, then 20 at a time: the last call fits only partly
    while refused is None and len(made) <= quota:
        r = clb_models.CreateLoadBalancerRequest()
        r.LoadBalancerType, r.Number = "INTERNAL", number
        try:
            made += tc.clb.CreateLoadBalancer(r).LoadBalancerIds
        except TencentCloudSDKException as e:
            refused = e
        number = 20
    try:
        assert refused is not None and refused.code == "LimitExceeded", made
        own = {lb.id for lb in vendor_lab.lab.loadbalancers.list() if not lb.from_lab_file}
        assert own == existing | set(made) and quota - 20 < len(own) < quota  # the refused call left nothing behind
    finally:
        for i in range(0, len(made), 20):
            r = clb_models.DeleteLoadBalancerRequest()
            r.LoadBalancerIds = made[i:i + 20]
            tc.clb.DeleteLoadBalancer(r)


def test_a_lab_file_listener_changed_through_the_api_keeps_what_the_call_does_not_set(tc, vendor_lab):  # noqa: F811
    (listener,) = [l for l in tc.listeners("lb-lbsim") if l.ListenerName == "tencent-one-way"]
    before = vendor_lab.lab.listener_at("lb-lbsim", listener.Port).spec
    r = clb_models.ModifyListenerRequest()
    r.LoadBalancerId, r.ListenerId, r.ListenerName = "lb-lbsim", listener.ListenerId, "renamed"
    tc.wait(tc.clb.ModifyListener(r).RequestId)
    after = vendor_lab.lab.listener_at("lb-lbsim", listener.Port).spec
    store = vendor_lab.lab.store

    def by_id(spec):  # the lab file names its certificates, the API gives ids: the same certificates
        cid = lambda ref: ref and store.describe(ref).id  # noqa: E731
        return replace(spec, server_certificate=cid(spec.server_certificate), ca_certificate=cid(spec.ca_certificate),
                       sni=tuple((domain, cid(ref)) for domain, ref in spec.sni))

    try:
        assert after.name == "renamed"
        # TLS policy, HTTP/2, health check, backends, SNI certificates, ... as the lab file set them
        assert by_id(replace(after, name=before.name)) == by_id(before)
    finally:
        r.ListenerName = "tencent-one-way"
        tc.wait(tc.clb.ModifyListener(r).RequestId)


def multi_cert(*cert_ids: str, mode: str = "UNIDIRECTIONAL") -> clb_models.MultiCertInfo:
    info = clb_models.MultiCertInfo()
    info.SSLMode, info.CertList = mode, []
    for cert_id in cert_ids:
        c = clb_models.CertInfo()
        c.CertId = cert_id
        info.CertList.append(c)
    return info


ECDSA_SUITES = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
RSA_SUITES = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"


def served_tls12(address: str, port: int, server_name: str, ca_pem: bytes, ciphers: str) -> bytes:
    """The certificate (DER) a TLS 1.2 client limited to `ciphers` gets."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    with socket.create_connection((address, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(binary_form=True)


def test_multi_cert_info_puts_an_rsa_and_an_ecc_certificate_on_one_listener(tc, vendor_lab):  # noqa: F811
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pki = vendor_lab.certs
    rsa_site, ecc_site = pki.server("dual.example.com"), pki.server("dual.example.com", key_type="ecdsa")
    rsa_2 = pki.server("dual.example.com")
    rsa_id, ecc_id, rsa_2_id = tc.upload(rsa_site, "dual-rsa"), tc.upload(ecc_site, "dual-ecc"), tc.upload(rsa_2, "rsa-2")
    lb_id, vip = tc.create_lb("dual")
    port = free_port(vip)
    r = clb_models.CreateListenerRequest()
    r.LoadBalancerId, r.Ports, r.Protocol = lb_id, [port], "HTTPS"
    r.MultiCertInfo = multi_cert(rsa_id, ecc_id)
    resp = tc.clb.CreateListener(r)
    tc.wait(resp.RequestId)

    def key_of(der: bytes):
        return x509.load_der_x509_certificate(der).public_key()

    ecc = served_tls12(vip, port, "dual.example.com", pki.ca_pem, ECDSA_SUITES)
    rsa_der = served_tls12(vip, port, "dual.example.com", pki.ca_pem, RSA_SUITES)
    assert isinstance(key_of(ecc), ec.EllipticCurvePublicKey) and hashlib.sha256(ecc).hexdigest() == fingerprint(ecc_site)
    assert isinstance(key_of(rsa_der), rsa.RSAPublicKey) and hashlib.sha256(rsa_der).hexdigest() == fingerprint(rsa_site)
    (listener,) = tc.listeners(lb_id)
    assert (listener.ListenerId, listener.Certificate.SSLMode) == (resp.ListenerIds[0], "UNIDIRECTIONAL")
    assert (listener.Certificate.CertId, listener.Certificate.ExtCertIds) == (rsa_id, [ecc_id])
    spec = vendor_lab.lab.listener_at(lb_id, port).spec
    assert spec.server_certificates == (rsa_id, ecc_id)

    # refused by the model (two RSA certificates): nothing created, nothing changed
    r.Ports, r.MultiCertInfo = [free_port(vip)], multi_cert(rsa_id, rsa_2_id)
    two_rsa = sdk_error(tc.clb.CreateListener, r)
    assert two_rsa.code == "InvalidParameterValue" and "one RSA and one ECDSA" in two_rsa.message
    assert [l.Port for l in tc.listeners(lb_id)] == [port]
    m = clb_models.ModifyListenerRequest()
    m.LoadBalancerId, m.ListenerId, m.MultiCertInfo = lb_id, listener.ListenerId, multi_cert(rsa_2_id, rsa_id)
    assert sdk_error(tc.clb.ModifyListener, m).code == "InvalidParameterValue"
    assert vendor_lab.lab.listener_at(lb_id, port).spec == spec
    m.MultiCertInfo = multi_cert(rsa_id, "NoSuchId")
    assert sdk_error(tc.clb.ModifyListener, m).code == "FailedOperation.CertificateNotFound"
    assert vendor_lab.lab.listener_at(lb_id, port).spec == spec
    assert hashlib.sha256(served_tls12(vip, port, "dual.example.com", pki.ca_pem, ECDSA_SUITES)).hexdigest() \
        == fingerprint(ecc_site)
    in_use = sdk_error(tc.delete_cert, ecc_id)  # both certificates are in use
    assert in_use.code == "FailedOperation.DeleteResourceFailed"

    # ModifyListener with MultiCertInfo: the new ECC certificate and a client CA (MUTUAL)
    ecc_2 = pki.server("dual.example.com", key_type="ecdsa")
    ecc_2_id, ca_id = tc.upload(ecc_2, "ecc-2"), tc.upload(pki.ca_pem, "clients", kind="CA")
    m.MultiCertInfo = multi_cert(rsa_id, ecc_2_id, ca_id, mode="MUTUAL")
    tc.wait(tc.clb.ModifyListener(m).RequestId)
    (listener,) = tc.listeners(lb_id)
    assert (listener.Certificate.SSLMode, listener.Certificate.CertId, listener.Certificate.ExtCertIds,
            listener.Certificate.CertCaId) == ("MUTUAL", rsa_id, [ecc_2_id], ca_id)
    m.MultiCertInfo, m.ListenerName = None, "dual renamed"  # a change without certificates keeps both
    tc.wait(tc.clb.ModifyListener(m).RequestId)
    (listener,) = tc.listeners(lb_id)
    assert (listener.ListenerName, listener.Certificate.ExtCertIds) == ("dual renamed", [ecc_2_id])
    # back to one certificate through Certificate: ExtCertIds empties
    tc.wait(tc.modify_certificate(lb_id, listener.ListenerId, ecc_id))
    (listener,) = tc.listeners(lb_id)
    assert (listener.Certificate.CertId, listener.Certificate.ExtCertIds) == (ecc_id, [])

    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [lb_id]
    tc.clb.DeleteLoadBalancer(r)
    for cert_id in (rsa_id, ecc_id, rsa_2_id, ecc_2_id, ca_id):
        tc.delete_cert(cert_id)


# --- tccli -------------------------------------------------------------------------------------------------

@pytest.fixture
def tccli_home():
    """tccli's $HOME (it keeps its configuration and its log under $HOME/.tccli): outside pytest's temporary
    folders, as its log is tccli's own file, not lbsim's output, and holds the key (test_reliability_keys)."""
    with tempfile.TemporaryDirectory(prefix="lbsim-tccli-") as home:
        yield Path(home)


def test_tccli_uploads_creates_a_listener_and_describes(vendor_lab, tccli_home):  # noqa: F811
    ep = vendor_lab.endpoints[PROFILE]
    auth = ["--endpoint", ep["https_endpoint"], "--secretId", ep["secret_id"], "--secretKey", ep["secret_key"],
            "--region", ep["region"]]
    env = {**os.environ, "HOME": str(tccli_home)}

    def tccli(*args: str, ca: bool = True) -> subprocess.CompletedProcess:
        wrapper = [sys.executable, "-m", "simulator.faces.tencent.lab_tccli"] + (["--ca", vendor_lab.ca_file] if ca else [])
        return subprocess.run(wrapper + ["--", *args, *auth], capture_output=True, text=True, env=env, timeout=120)

    site = vendor_lab.certs.server("cli.example.com")
    untrusted = tccli("ssl", "DescribeCertificates", ca=False)  # tccli trusts certifi's roots only
    assert untrusted.returncode != 0 and "SSL" in (untrusted.stdout + untrusted.stderr).upper()

    up = tccli("ssl", "UploadCertificate", "--CertificatePublicKey", site.chain_pem.decode(),
               "--CertificatePrivateKey", site.key_pem.decode(), "--Alias", "cli")
    assert up.returncode == 0, up.stderr
    cert_id = json.loads(up.stdout)["CertificateId"]
    assert cert_id in tencent_ids(vendor_lab)
    # As docs/vendor-apis.md warns: tccli logs each command line, the private key and the secret key included.
    log = (tccli_home / ".tccli" / "log" / "tccli.log").read_text()
    assert site.key_pem.decode().splitlines()[1] in log and ep["secret_key"] in log

    lb = vendor_lab.lab.create_load_balancer(PROFILE, name="cli")  # made by the SDK elsewhere; tccli creates the listener
    port = free_port(lb.address)
    created = tccli("clb", "CreateListener", "--LoadBalancerId", lb.id, "--Ports", json.dumps([port]),
                    "--Protocol", "HTTPS", "--Certificate", json.dumps({"SSLMode": "UNIDIRECTIONAL", "CertId": cert_id}))
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    Tencent(vendor_lab).wait(out["RequestId"])
    assert served(lb.address, port, "cli.example.com", vendor_lab.certs.ca_pem)[0] == fingerprint(site)

    described = tccli("clb", "DescribeListeners", "--LoadBalancerId", lb.id)
    assert described.returncode == 0, described.stderr
    (listener,) = json.loads(described.stdout)["Listeners"]
    assert (listener["ListenerId"], listener["Port"], listener["Certificate"]["CertId"]) == \
        (out["ListenerIds"][0], port, cert_id)
    refused = tccli("ssl", "DeleteCertificate", "--CertificateId", cert_id)
    assert refused.returncode != 0 and "FailedOperation.DeleteResourceFailed" in refused.stdout + refused.stderr
    assert tccli("clb", "DeleteLoadBalancer", "--LoadBalancerIds", json.dumps([lb.id])).returncode == 0
    assert tccli("ssl", "DeleteCertificate", "--CertificateId", cert_id).returncode == 0


# --- the README's example ------------------------------------------------------------------------------------

def test_the_readme_tencent_example_runs(tc, vendor_lab, tmp_path):  # noqa: F811
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Tencent Cloud"):]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "rotate_tencent.py").write_text(script)
    (tmp_path / "lbsim-out").symlink_to(vendor_lab.out_dir)
    old, new = vendor_lab.certs.server("shop.example.com"), vendor_lab.certs.server("shop.example.com")
    for name, issued in (("old", old), ("new", new)):
        (tmp_path / f"{name}.pem").write_bytes(issued.chain_pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem)
    done = subprocess.run([sys.executable, "rotate_tencent.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    vip = done.stdout.split("https://")[1].split(":")[0]
    assert served(vip, 8443, "shop.example.com", vendor_lab.certs.ca_pem) == (fingerprint(new), b"HTTP/1.1 200 OK")
    names = {c.name for c in vendor_lab.lab.store.list() if c.profile == PROFILE}
    assert "new" in names and "old" not in names
    lb = next(lb for lb in vendor_lab.lab.loadbalancers.list(PROFILE) if lb.address == vip)
    r = clb_models.DeleteLoadBalancerRequest()
    r.LoadBalancerIds = [lb.id]
    tc.clb.DeleteLoadBalancer(r)
    tc.delete_cert(next(c.id for c in vendor_lab.lab.store.list() if c.name == "new" and c.profile == PROFILE))
