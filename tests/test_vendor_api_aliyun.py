"""Alibaba Cloud SLB's own API (2014-05-15) on a lab, driven by the vendor's own SDKs: the current
`alibabacloud-slb20140515` (ACS3-HMAC-SHA256) over HTTP and HTTPS with the lab CA, and the legacy
`aliyun-python-sdk-slb` (query-string HMAC-SHA1). Nothing is hand-rolled on the client side except the raw
replays that tamper with a request the vendor's own signer produced."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import stat
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from alibabacloud_slb20140515 import models as m
from alibabacloud_slb20140515.client import Client
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from alibabacloud_tea_openapi.models import Config
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer import rpc_signature_composer as composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkslb.request.v20140515 import (CreateLoadBalancerRequest, DescribeLoadBalancersRequest,
                                            DescribeServerCertificatesRequest, UploadServerCertificateRequest)

from helpers import wait_for
from simulator.net import free_port
from vendor_lab import vendor_lab  # noqa: F401

VERSION = "2014-05-15"


def client(vendor_lab, https: bool = False, secret: str | None = None, key_id: str | None = None) -> Client:
    ep = vendor_lab.endpoints["aliyun-slb"]
    return Client(Config(access_key_id=key_id or ep["access_key_id"],
                         access_key_secret=secret or ep["access_key_secret"],
                         endpoint=ep["https_endpoint" if https else "http_endpoint"],
                         protocol="https" if https else "http", region_id=ep["region"],
                         ca=vendor_lab.ca_file if https else None))


@pytest.fixture(scope="module")
def slb(vendor_lab):
    return client(vendor_lab, https=True)


def error_of(call) -> AlibabaCloudException:
    with pytest.raises(AlibabaCloudException) as info:
        call()
    return info.value


def upload_server(slb, vendor_lab, name: str = "web", host: str = "www.example.test"):
    issued = vendor_lab.certs.server(host)
    body = slb.upload_server_certificate(m.UploadServerCertificateRequest(
        server_certificate=issued.chain_pem.decode(), private_key=issued.key_pem.decode(),
        server_certificate_name=name, region_id="cn-hangzhou")).body
    return body, issued


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha1(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def peer_certificate(vendor_lab, address: str, port: int, host: str = "www.example.test") -> bytes:
    context = ssl.create_default_context(cadata=vendor_lab.certs.ca_pem.decode())
    with socket.create_connection((address, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def serves(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def new_lb(slb, name: str = "lb"):
    return slb.create_load_balancer(m.CreateLoadBalancerRequest(region_id="cn-hangzhou", load_balancer_name=name)).body


def listener_status(slb, lb_id: str, port: int) -> str:
    return slb.describe_load_balancer_httpslistener_attribute(m.DescribeLoadBalancerHTTPSListenerAttributeRequest(
        load_balancer_id=lb_id, listener_port=port)).body.status


# ---- endpoints --------------------------------------------------------------------------------------------

def test_endpoints_file_is_private_and_complete(vendor_lab):
    path = vendor_lab.out_dir / "endpoints.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    ep = data["aliyun-slb"]
    assert ep["access_key_id"].startswith("LTAI") and ep["access_key_secret"]
    assert ep["region"] == "cn-hangzhou" and ep["https"].startswith("https://127.0.0.1:")
    assert data["management_api"] == vendor_lab.running.api_url
    assert os.path.exists(data["ca"])


def test_plain_http_and_https_with_the_lab_ca(vendor_lab):
    for https in (False, True):
        body = client(vendor_lab, https).describe_server_certificates(
            m.DescribeServerCertificatesRequest(region_id="cn-hangzhou")).body
        assert body.request_id
    ep = vendor_lab.endpoints["aliyun-slb"]
    untrusted = ssl.create_default_context()  # the system store does not know the lab CA
    host, port = ep["https_endpoint"].split(":")
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            untrusted.wrap_socket(raw, server_hostname="127.0.0.1")


# ---- certificates -----------------------------------------------------------------------------------------

def test_server_certificate_upload_describe_rename_delete(slb, vendor_lab):
    body, issued = upload_server(slb, vendor_lab, "rotation-2025")
    cert_id = body.server_certificate_id
    assert body.server_certificate_name == "rotation-2025" and body.common_name == "www.example.test"
    described = slb.describe_server_certificates(m.DescribeServerCertificatesRequest(
        region_id="cn-hangzhou", server_certificate_id=cert_id)).body.server_certificates.server_certificate
    assert [c.server_certificate_id for c in described] == [cert_id]
    assert described[0].fingerprint == body.fingerprint
    assert "PRIVATE KEY" not in json.dumps(described[0].to_map())  # never returns the key
    slb.set_server_certificate_name(m.SetServerCertificateNameRequest(
        region_id="cn-hangzhou", server_certificate_id=cert_id, server_certificate_name="renamed"))
    assert vendor_lab.lab.store.describe(cert_id).name == "renamed"
    slb.delete_server_certificate(m.DeleteServerCertificateRequest(region_id="cn-hangzhou",
                                                                   server_certificate_id=cert_id))
    err = error_of(lambda: slb.delete_server_certificate(m.DeleteServerCertificateRequest(
        region_id="cn-hangzhou", server_certificate_id=cert_id)))
    assert err.code == "ServerCertificateId.NotFound"


def test_ca_certificate_upload_describe_rename_delete(slb, vendor_lab):
    body = slb.upload_cacertificate(m.UploadCACertificateRequest(
        region_id="cn-hangzhou", cacertificate=vendor_lab.certs.ca_pem.decode(), cacertificate_name="clients")).body
    ca_id = body.cacertificate_id
    listed = slb.describe_cacertificates(m.DescribeCACertificatesRequest(region_id="cn-hangzhou")).body
    assert ca_id in [c.cacertificate_id for c in listed.cacertificates.cacertificate]
    slb.set_cacertificate_name(m.SetCACertificateNameRequest(region_id="cn-hangzhou", cacertificate_id=ca_id,
                                                             cacertificate_name="clients-2"))
    assert vendor_lab.lab.store.describe(ca_id).name == "clients-2"
    slb.delete_cacertificate(m.DeleteCACertificateRequest(region_id="cn-hangzhou", cacertificate_id=ca_id))
    assert ca_id not in [c.id for c in vendor_lab.lab.store.list()]


def test_invalid_certificate_is_refused_without_a_trace(slb, vendor_lab):
    before = len(vendor_lab.lab.store.list())
    issued = vendor_lab.certs.server("www.example.test")
    other = vendor_lab.certs.server("other.example.test")
    err = error_of(lambda: slb.upload_server_certificate(m.UploadServerCertificateRequest(
        region_id="cn-hangzhou", server_certificate=issued.chain_pem.decode(), private_key=other.key_pem.decode())))
    assert err.code == "InvalidPrivateKey" and err.status_code == 400
    err = error_of(lambda: slb.upload_server_certificate(m.UploadServerCertificateRequest(
        region_id="cn-hangzhou", server_certificate="not a certificate", private_key=issued.key_pem.decode())))
    assert err.code == "InvalidServerCertificate"
    assert len(vendor_lab.lab.store.list()) == before


# ---- load balancers ---------------------------------------------------------------------------------------

def test_load_balancer_create_describe_delete(slb, vendor_lab):
    lb = new_lb(slb, "shop")
    assert lb.load_balancer_id.startswith("lb-") and lb.address.startswith("127.0.0.") and lb.address != "127.0.0.1"
    listed = slb.describe_load_balancers(m.DescribeLoadBalancersRequest(region_id="cn-hangzhou",
                                                                        load_balancer_id=lb.load_balancer_id)).body
    assert [x.load_balancer_name for x in listed.load_balancers.load_balancer] == ["shop"]
    attribute = slb.describe_load_balancer_attribute(m.DescribeLoadBalancerAttributeRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id)).body
    assert attribute.address == lb.address and attribute.load_balancer_status == "active"
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id))
    err = error_of(lambda: slb.describe_load_balancer_attribute(m.DescribeLoadBalancerAttributeRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id)))
    assert err.code == "InvalidLoadBalancerId.NotFound"


def test_load_balancer_quota(slb, vendor_lab):
    balancers = vendor_lab.lab.loadbalancers
    own = [lb for lb in balancers.list() if not lb.from_lab_file]
    saved, balancers.quota = balancers.quota, len(own) + 1
    try:
        new_lb(slb, "last-one")
        err = error_of(lambda: new_lb(slb, "one-too-many"))
        assert err.code == "QuotaExceeded.LoadBalancer"
        assert "one-too-many" not in [lb.name for lb in balancers.list()]
    finally:
        balancers.quota = saved


# ---- listeners --------------------------------------------------------------------------------------------

def test_https_listener_lifecycle_serves_the_uploaded_certificate(slb, vendor_lab):
    lb = new_lb(slb, "web")
    cert, issued = upload_server(slb, vendor_lab, "web-v1")
    slb.add_backend_servers(m.AddBackendServersRequest(region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id,
                                                       backend_servers=json.dumps([{"ServerId": "i-web-1", "Weight": "100"}])))
    port = free_port(lb.address)
    slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1,
        backend_server_port=80, sticky_session="off", health_check="on", health_check_uri="/health",
        health_check_interval=1, server_certificate_id=cert.server_certificate_id,
        tlscipher_policy="tls_cipher_policy_1_2", xforwarded_for_slbid="on"))
    assert listener_status(slb, lb.load_balancer_id, port) == "stopped"  # the vendor creates it stopped
    assert not serves(lb.address, port)
    listeners = slb.describe_load_balancer_listeners(m.DescribeLoadBalancerListenersRequest(
        region_id="cn-hangzhou", load_balancer_id=[lb.load_balancer_id])).body.listeners
    assert [(l.listener_port, l.status) for l in listeners] == [(port, "stopped")]
    assert listeners[0].httpslistener_config.server_certificate_id == cert.server_certificate_id
    # The same listener through the management API: addressed by its port, on its load balancer's address.
    status, view = vendor_lab.running.api("GET", f"/v1/listeners/{port}")
    assert status == 200 and (view["address"], view["lb_id"], view["status"]) == (lb.address, lb.load_balancer_id, "stopped")

    slb.start_load_balancer_listener(m.StartLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port))
    assert listener_status(slb, lb.load_balancer_id, port) == "configuring"
    wait_for(lambda: listener_status(slb, lb.load_balancer_id, port) == "running", timeout=15)
    # A real handshake on the load balancer's own address, with the certificate uploaded through the API.
    assert fingerprint(peer_certificate(vendor_lab, lb.address, port)) == cert.fingerprint
    context = ssl.create_default_context(cadata=vendor_lab.certs.ca_pem.decode())
    conn = http.client.HTTPSConnection(lb.address, port, timeout=5)
    conn.sock = context.wrap_socket(socket.create_connection((lb.address, port), timeout=5),
                                    server_hostname="www.example.test")
    conn.request("GET", "/hello", headers={"Host": "www.example.test"})
    response = conn.getresponse()
    assert response.status == 200 and b"web-1" in response.read()
    conn.close()
    health = wait_for(lambda: [s for s in slb.describe_health_status(m.DescribeHealthStatusRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id)).body.backend_servers.backend_server
        if s.server_health_status == "normal"], timeout=15)
    assert [(s.server_id, s.listener_port) for s in health] == [("i-web-1", port)]

    # Change the certificate: the old one serves until the activation delay has passed.
    new, _ = upload_server(slb, vendor_lab, "web-v2")
    slb.set_load_balancer_httpslistener_attribute(m.SetLoadBalancerHTTPSListenerAttributeRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port,
        server_certificate_id=new.server_certificate_id))
    wait_for(lambda: fingerprint(peer_certificate(vendor_lab, lb.address, port)) == new.fingerprint, timeout=15)
    attribute = slb.describe_load_balancer_httpslistener_attribute(m.DescribeLoadBalancerHTTPSListenerAttributeRequest(
        load_balancer_id=lb.load_balancer_id, listener_port=port)).body
    assert attribute.server_certificate_id == new.server_certificate_id
    assert attribute.tlscipher_policy == "tls_cipher_policy_1_2" and attribute.xforwarded_for_slbid == "on"

    slb.stop_load_balancer_listener(m.StopLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port))
    assert listener_status(slb, lb.load_balancer_id, port) == "stopped" and not serves(lb.address, port)
    slb.delete_load_balancer_listener(m.DeleteLoadBalancerListenerRequest(
        region_id="cn-hangzhou", load_balancer_id=lb.load_balancer_id, listener_port=port))
    err = error_of(lambda: listener_status(slb, lb.load_balancer_id, port))
    assert err.code == "ListenerNotFound" and err.data["Message"] == "The specified resource does not exist."
    # Both certificates are free again.
    for cert_id in (cert.server_certificate_id, new.server_certificate_id):
        slb.delete_server_certificate(m.DeleteServerCertificateRequest(region_id="cn-hangzhou",
                                                                       server_certificate_id=cert_id))


def test_certificate_in_use_cannot_be_deleted(slb, vendor_lab):
    lb = new_lb(slb, "in-use")
    cert, _ = upload_server(slb, vendor_lab, "in-use")
    ca = slb.upload_cacertificate(m.UploadCACertificateRequest(region_id="cn-hangzhou",
                                                               cacertificate=vendor_lab.certs.ca_pem.decode())).body
    port = free_port(lb.address)
    slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
        load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1, sticky_session="off",
        server_certificate_id=cert.server_certificate_id, cacertificate_id=ca.cacertificate_id))
    err = error_of(lambda: slb.delete_server_certificate(m.DeleteServerCertificateRequest(
        server_certificate_id=cert.server_certificate_id)))
    assert (err.code, err.status_code) == ("CertificateAndPrivateKeyIsRefered", 400)
    err = error_of(lambda: slb.delete_cacertificate(m.DeleteCACertificateRequest(cacertificate_id=ca.cacertificate_id)))
    assert err.code == "CACertificateIsRefered"
    ids = [c.id for c in vendor_lab.lab.store.list()]
    assert cert.server_certificate_id in ids and ca.cacertificate_id in ids
    # Deleting the load balancer removes its listeners: the certificates are free.
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))
    slb.delete_server_certificate(m.DeleteServerCertificateRequest(server_certificate_id=cert.server_certificate_id))
    slb.delete_cacertificate(m.DeleteCACertificateRequest(cacertificate_id=ca.cacertificate_id))


def test_listener_errors_change_nothing(slb, vendor_lab):
    lb = new_lb(slb, "errors")
    cert, _ = upload_server(slb, vendor_lab, "errors")
    port = free_port(lb.address)

    def create(**extra):
        args = dict(load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1, sticky_session="off",
                    server_certificate_id=cert.server_certificate_id) | extra
        return slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(**args))

    assert error_of(lambda: create(server_certificate_id=None)).code == "MissingParameter"
    assert error_of(lambda: create(listener_port=70000)).code == "InvalidParameter"
    assert error_of(lambda: create(tlscipher_policy="tls_1_9")).code == "InvalidParameter"
    assert error_of(lambda: create(server_certificate_id="123_nope")).code == "ServerCertificateId.NotFound"
    assert error_of(lambda: create(vserver_group_id="rsp-1")).code == "UnsupportedOperation"
    assert error_of(lambda: create(load_balancer_id="lb-nope")).code == "InvalidLoadBalancerId.NotFound"
    assert vendor_lab.lab.listeners_of(lb.load_balancer_id) == []
    create()
    assert error_of(create).code == "ListenerAlreadyExists"
    assert len(vendor_lab.lab.listeners_of(lb.load_balancer_id)) == 1
    listener = vendor_lab.lab.listeners_of(lb.load_balancer_id)[0]
    before = (listener.spec, listener.status, listener.pending)
    for bad in (dict(tlscipher_policy="tls_1_9"), dict(idle_timeout=61), dict(server_certificate_id="123_nope"),
                dict(sticky_session="on")):  # on without StickySessionType
        request = m.SetLoadBalancerHTTPSListenerAttributeRequest(load_balancer_id=lb.load_balancer_id,
                                                                 listener_port=port, **bad)
        err = error_of(lambda: slb.set_load_balancer_httpslistener_attribute(request))
        assert err.code in ("InvalidParameter", "MissingParameter", "ServerCertificateId.NotFound"), (bad, err.code)
        assert (listener.spec, listener.status, listener.pending) == before
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))


def test_backend_servers_add_set_remove(slb, vendor_lab):
    lb = new_lb(slb, "backends")

    def servers(action, request_type, items):
        return action(request_type(load_balancer_id=lb.load_balancer_id, backend_servers=json.dumps(items)))

    servers(slb.add_backend_servers, m.AddBackendServersRequest, [{"ServerId": "i-web-1"}, {"ServerId": "i-web-2", "Weight": 50}])
    servers(slb.set_backend_servers, m.SetBackendServersRequest, [{"ServerId": "i-web-2", "Weight": "10"}])
    attribute = slb.describe_load_balancer_attribute(m.DescribeLoadBalancerAttributeRequest(
        load_balancer_id=lb.load_balancer_id)).body
    assert {(s.server_id, s.weight) for s in attribute.backend_servers.backend_server} == {("i-web-1", 100), ("i-web-2", 10)}
    err = error_of(lambda: servers(slb.add_backend_servers, m.AddBackendServersRequest,
                                   [{"ServerId": "i-web-1"}, {"ServerId": "i-unknown"}]))
    assert err.code == "InvalidBackendServers.ServerIdNotExist"
    servers(slb.remove_backend_servers, m.RemoveBackendServersRequest, [{"ServerId": "i-web-1"}])
    lb_state = vendor_lab.lab.loadbalancers.get(lb.load_balancer_id)
    assert [(s.backend, s.weight) for s in lb_state.backend_servers] == [("web-2", 10)]  # the refused add left no trace
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))


# ---- authentication ---------------------------------------------------------------------------------------

def test_wrong_secret_and_unknown_key_are_refused(vendor_lab):
    before = len(vendor_lab.lab.store.list())
    issued = vendor_lab.certs.server("www.example.test")
    request = m.UploadServerCertificateRequest(server_certificate=issued.chain_pem.decode(),
                                               private_key=issued.key_pem.decode())
    err = error_of(lambda: client(vendor_lab, secret="not-the-secret").upload_server_certificate(request))
    assert (err.code, err.status_code) == ("SignatureDoesNotMatch", 400)
    err = error_of(lambda: client(vendor_lab, key_id="LTAInobody").upload_server_certificate(request))
    assert (err.code, err.status_code) == ("InvalidAccessKeyId.NotFound", 404)
    assert len(vendor_lab.lab.store.list()) == before


def legacy_signed(vendor_lab, params: dict[str, str], method: str = "GET", timestamp: str | None = None,
                  nonce: str | None = None, secret: str | None = None) -> str:
    """A request target signed with the legacy SDK's own composer (aliyunsdkcore), optionally with a chosen
    Timestamp and SignatureNonce (which the composer would otherwise set itself)."""
    ep = vendor_lab.endpoints["aliyun-slb"]
    secret = secret or ep["access_key_secret"]
    target, _ = composer.get_signed_url(dict(params, Version=VERSION), ep["access_key_id"], secret, "JSON", method, {})
    if timestamp is None and nonce is None:
        return target
    signed = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    del signed["Signature"]
    signed["Timestamp"] = timestamp or signed["Timestamp"]
    signed["SignatureNonce"] = nonce or signed["SignatureNonce"]
    to_sign = getattr(composer, "__compose_string_to_sign")(method, signed)
    signed["Signature"] = sha_hmac1.get_sign_string(to_sign, secret + "&")
    return "/?" + urlencode(signed)


def raw(vendor_lab, target: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict]:
    host, port = vendor_lab.endpoints["aliyun-slb"]["http_endpoint"].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, target, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_tampered_stale_and_replayed_requests_are_refused(vendor_lab):
    lbs = lambda: len(vendor_lab.lab.loadbalancers.list())  # noqa: E731
    before = lbs()
    create = {"Action": "CreateLoadBalancer", "RegionId": "cn-hangzhou", "LoadBalancerName": "replayed"}
    target = legacy_signed(vendor_lab, create)
    tampered = target.replace("LoadBalancerName=replayed", "LoadBalancerName=tampered")
    assert tampered != target
    status, body = raw(vendor_lab, tampered)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch") and body["RequestId"] and body["HostId"]
    assert "Traceback" not in json.dumps(body) and lbs() == before
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    status, body = raw(vendor_lab, legacy_signed(vendor_lab, create, timestamp=stale))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired") and lbs() == before
    status, body = raw(vendor_lab, target)
    assert status == 200 and body["LoadBalancerName"] == "replayed" and lbs() == before + 1
    status, body = raw(vendor_lab, target)  # the same nonce again
    assert (status, body["Code"]) == (400, "SignatureNonceUsed") and lbs() == before + 1
    vendor_lab.running.call(vendor_lab.lab.delete_load_balancer(
        next(lb.id for lb in vendor_lab.lab.loadbalancers.list() if lb.name == "replayed")))


def test_unknown_action_wrong_version_and_unsigned(vendor_lab):
    status, body = raw(vendor_lab, legacy_signed(vendor_lab, {"Action": "DescribeNothing"}))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    ep = vendor_lab.endpoints["aliyun-slb"]
    target, _ = composer.get_signed_url({"Action": "DescribeLoadBalancers", "Version": "2099-01-01"},
                                        ep["access_key_id"], ep["access_key_secret"], "JSON", "GET", {})
    status, body = raw(vendor_lab, target)
    assert (status, body["Code"]) == (400, "InvalidVersion")
    status, body = raw(vendor_lab, "/?Action=DescribeLoadBalancers&Version=2014-05-15")
    assert (status, body["Code"]) == (400, "MissingParameter")


def test_oversized_body_is_refused_in_the_vendor_shape(vendor_lab):
    status, body = raw(vendor_lab, "/", method="POST", body=b"x" * (2 * 1024 * 1024))
    assert status == 413 and body["Code"] == "RequestTooLarge" and "RequestId" in body


# ---- the legacy SDK (HMAC-SHA1 over the query string) -----------------------------------------------------

def legacy_client(vendor_lab) -> AcsClient:
    ep = vendor_lab.endpoints["aliyun-slb"]
    return AcsClient(ep["access_key_id"], ep["access_key_secret"], ep["region"])


def legacy_do(vendor_lab, request) -> dict:
    request.set_endpoint(vendor_lab.endpoints["aliyun-slb"]["http_endpoint"])
    request.set_protocol_type("http")
    return json.loads(legacy_client(vendor_lab).do_action_with_exception(request))


def test_legacy_sdk_upload_and_describe(vendor_lab):
    issued = vendor_lab.certs.server("legacy.example.test")
    upload = UploadServerCertificateRequest.UploadServerCertificateRequest()
    upload.set_ServerCertificate(issued.chain_pem.decode())
    upload.set_PrivateKey(issued.key_pem.decode())
    upload.set_ServerCertificateName("legacy")
    cert_id = legacy_do(vendor_lab, upload)["ServerCertificateId"]
    describe = DescribeServerCertificatesRequest.DescribeServerCertificatesRequest()
    listed = legacy_do(vendor_lab, describe)["ServerCertificates"]["ServerCertificate"]
    assert "legacy" in [c["ServerCertificateName"] for c in listed if c["ServerCertificateId"] == cert_id]
    create = CreateLoadBalancerRequest.CreateLoadBalancerRequest()
    create.set_LoadBalancerName("legacy-lb")
    lb_id = legacy_do(vendor_lab, create)["LoadBalancerId"]
    describe_lbs = DescribeLoadBalancersRequest.DescribeLoadBalancersRequest()
    describe_lbs.set_LoadBalancerId(lb_id)
    assert [lb["LoadBalancerName"] for lb in legacy_do(vendor_lab, describe_lbs)["LoadBalancers"]["LoadBalancer"]] == ["legacy-lb"]
    vendor_lab.running.call(vendor_lab.lab.delete_load_balancer(lb_id))


def test_legacy_sdk_wrong_secret(vendor_lab):
    ep = vendor_lab.endpoints["aliyun-slb"]
    request = DescribeServerCertificatesRequest.DescribeServerCertificatesRequest()
    request.set_endpoint(ep["http_endpoint"])
    request.set_protocol_type("http")
    with pytest.raises(ServerException) as info:
        AcsClient(ep["access_key_id"], "wrong-secret", ep["region"]).do_action_with_exception(request)
    # The lab's message carries its string to sign, as the vendor's does: equal to the SDK's, so the SDK itself
    # concludes that only the secret is wrong.
    assert info.value.get_error_code() == "InvalidAccessKeySecret" and info.value.get_http_status() == 400


def test_certificate_quota(slb, vendor_lab):
    store = vendor_lab.lab.store
    before = len(store.list())
    saved, store.quota = store.quota, before
    try:
        err = error_of(lambda: upload_server(slb, vendor_lab, "over-quota"))
        assert err.code == "QuotaExceeded.ServerCertificate"
    finally:
        store.quota = saved
    assert len(store.list()) == before


@pytest.mark.parametrize("algorithm", [None, "v2"])  # ACS3-HMAC-SHA256 (default), HMAC-SHA1 (the tea SDK's v2)
def test_both_signatures_with_awkward_characters(vendor_lab, algorithm):
    ep = vendor_lab.endpoints["aliyun-slb"]
    slb = Client(Config(access_key_id=ep["access_key_id"], access_key_secret=ep["access_key_secret"],
                        endpoint=ep["http_endpoint"], protocol="http", region_id=ep["region"],
                        signature_algorithm=algorithm))
    name = "a b+c*d~e/f&g=h%i é 中"
    lb = slb.create_load_balancer(m.CreateLoadBalancerRequest(load_balancer_name=name)).body
    assert lb.load_balancer_name == name == vendor_lab.lab.loadbalancers.get(lb.load_balancer_id).name
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))


def test_access_keys_and_region_from_the_lab_file(tmp_path):
    from simulator.harness.running import start_lab

    config = {"time_scale": 0.01, "home": str(tmp_path / "store"),
              "vendor_api": {"access_keys": [{"id": "LTAI5tConfigured01", "secret": "configured-secret"}],
                             "aliyun-slb": {"region": "cn-shanghai"}}}
    with start_lab(config, out_dir=tmp_path / "out", vendor_apis=True) as running:
        ep = running.endpoints["aliyun-slb"]
        assert (ep["access_key_id"], ep["access_key_secret"], ep["region"]) == (
            "LTAI5tConfigured01", "configured-secret", "cn-shanghai")
        slb = Client(Config(access_key_id="LTAI5tConfigured01", access_key_secret="configured-secret",
                            endpoint=ep["http_endpoint"], protocol="http", region_id="cn-shanghai"))
        lb = slb.create_load_balancer(m.CreateLoadBalancerRequest(load_balancer_name="configured")).body
        described = slb.describe_load_balancers(m.DescribeLoadBalancersRequest()).body.load_balancers.load_balancer
        assert [(x.load_balancer_id, x.region_id) for x in described] == [(lb.load_balancer_id, "cn-shanghai")]
        other = Client(Config(access_key_id="LTAIgenerated", access_key_secret="configured-secret",
                              endpoint=ep["http_endpoint"], protocol="http", region_id="cn-shanghai"))
        assert error_of(lambda: other.describe_load_balancers(m.DescribeLoadBalancersRequest())).code == \
            "InvalidAccessKeyId.NotFound"


def test_the_management_api_changes_a_vendor_listener_in_place(slb, vendor_lab):
    lb = new_lb(slb, "managed-too")
    cert, _ = upload_server(slb, vendor_lab, "managed-too")
    port = free_port(lb.address)
    slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
        load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1, sticky_session="off",
        server_certificate_id=cert.server_certificate_id))
    # A PUT names the whole listener; without lb_id the listener stays on its load balancer.
    status, view = vendor_lab.running.api("PUT", f"/v1/listeners/{port}", {
        "server_certificate": cert.server_certificate_id, "profile": "aliyun-slb", "idle_timeout": 30})
    assert status == 202, view
    assert (view["address"], view["lb_id"], view["idle_timeout"]) == (lb.address, lb.load_balancer_id, 30)
    status, view = vendor_lab.running.api("PUT", f"/v1/listeners/{port}", {
        "server_certificate": cert.server_certificate_id, "lb_id": "lb-lbsim"})
    assert status == 400 and view["error"]["field"] == "lb_id"  # not onto another load balancer's address
    slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))


def test_the_lab_files_load_balancer_shows_its_aliyun_listeners(slb, vendor_lab):
    """The default lab's listeners belong to `lb-lbsim` (127.0.0.1): the Alibaba API sees its aliyun-slb ones."""
    body = slb.describe_load_balancer_attribute(m.DescribeLoadBalancerAttributeRequest(load_balancer_id="lb-lbsim")).body
    aliyun = sorted(l.port for l in vendor_lab.lab.registry.listeners.values() if l.spec.profile == "aliyun-slb"
                    and l.spec.lb_id == "lb-lbsim")
    assert body.address == "127.0.0.1" and sorted(body.listener_ports.listener_port) == aliyun and len(aliyun) == 2
    tencent_port = next(l.port for l in vendor_lab.lab.registry.listeners.values() if l.spec.profile == "tencent-clb")
    err = error_of(lambda: listener_status(slb, "lb-lbsim", tencent_port))
    assert err.code == "ListenerNotFound"
    assert listener_status(slb, "lb-lbsim", aliyun[0]) == "running"
