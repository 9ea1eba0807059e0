"""A vendor is one module of data: a profile defined here alone runs a real listener end to end.

`example-lb` reuses Tencent's TLS policy table and Alibaba's certificate rules, and brings its own error-page
server name, header defaults and billing model (payload client -> LB only, which neither built-in vendor
bills). Nothing outside this file knows it: every engine asks the registered profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from simulator import vendors
from simulator.certs import check
from simulator.certs.mint import LabPKI
from simulator.errors import LbsimError
from simulator.harness.scenario import LabBuilder, ScenarioLab, start
from simulator.model.config import parse_config
from simulator.net import free_port
from simulator.vendors import aliyun_slb, tencent_clb
from simulator.vendors.profile import IN, BillingModel, Capabilities, HeaderDefaults, VendorProfile

EXAMPLE = VendorProfile(
    name="example-lb",
    vendor="Example LB (defined in a test)",
    tls=tencent_clb.TLS,
    certs=replace(aliyun_slb.CERTS, name="example-lb"),
    billing=BillingModel(name="example-lb", vendor="Example LB", billed_directions=(IN,), lcu=None,
                         wording="bills what clients send (payload client -> LB), nothing else"),
    capabilities=Capabilities(create_started=True, ignore_sni=True),
    headers=HeaderDefaults(slb_ip=True),  # on unless a listener switches it off
    error_server="example-gw",
    cert_strictness=15,  # Alibaba's RSA-only rules: stricter than Tencent's (10), ranked below Alibaba (20)
)


@pytest.fixture
def example() -> Iterator[VendorProfile]:
    vendors.register(EXAMPLE)
    try:
        yield EXAMPLE
    finally:
        vendors.unregister(EXAMPLE.name)


@pytest.fixture
def example_lab(example: VendorProfile, tmp_path) -> Iterator[tuple[ScenarioLab, LabPKI]]:
    pki = LabPKI(key_type="rsa")
    builder = (LabBuilder(profile="example-lb").server_certificate("web", pki.server("localhost")).backend("app")
               .backend("gone", address=f"127.0.0.1:{free_port()}")  # nothing listens: the vendor's own 502 page
               .listener("shop", server_certificate="web", backend_servers=["app"])
               .listener("broken", server_certificate="web", backend_servers=["gone"], health_check={"enabled": False}))
    lab = start(builder, out_dir=tmp_path / "lab")
    try:
        yield lab, pki
    finally:
        lab.stop()


def test_the_registry_names_the_allowed_profiles() -> None:
    assert vendors.names()[:2] == ("aliyun-slb", "tencent-clb")
    with pytest.raises(LbsimError) as e:
        vendors.get("gcp-lb")
    assert e.value.code == "UnknownProfile" and "aliyun-slb, tencent-clb" in e.value.message


def test_registration_is_checked_and_undone(example: VendorProfile) -> None:
    assert vendors.get("example-lb") is example and "example-lb" in vendors.names()
    with pytest.raises(LbsimError) as e:
        vendors.register(example)
    assert e.value.code == "ProfileExists"


def test_an_unregistered_profile_is_refused_by_the_config() -> None:
    """No test's registration leaks: without the fixture, the profile is unknown again."""
    assert "example-lb" not in vendors.names()
    with pytest.raises(LbsimError) as e:
        parse_config({"profile": "example-lb"})
    assert e.value.field == "profile" and "expected one of aliyun-slb, tencent-clb" in e.value.message


def test_certificates_are_checked_under_the_new_profile(example: VendorProfile) -> None:
    rsa, ecdsa = LabPKI(key_type="rsa").server("localhost"), LabPKI(key_type="ecdsa").server("localhost")
    assert check("example-lb", "server", rsa.chain_pem, rsa.key_pem).ok
    refused = check("example-lb", "server", ecdsa.chain_pem, ecdsa.key_pem)
    assert not refused.ok and refused.errors[0].code == "UnsupportedKeyType"
    assert check("tencent-clb", "server", ecdsa.chain_pem, ecdsa.key_pem).ok  # Tencent's own rules differ


def test_a_listener_of_the_new_profile_end_to_end(example_lab: tuple[ScenarioLab, LabPKI]) -> None:
    lab, pki = example_lab
    listener = lab.listener("shop")
    assert listener["profile"] == "example-lb" and listener["status"] == "running"

    # The certificate check, through the management API (the lab's profile is example-lb).
    ecdsa = LabPKI(key_type="ecdsa").server("localhost")
    status, body = lab.api("POST", "/v1/certificates", {"type": "server", "name": "ecc", "cert": ecdsa.chain_pem.decode(),
                                                        "key": ecdsa.key_pem.decode()})
    assert status == 400 and body["error"]["code"] == "UnsupportedKeyType", body
    rsa = pki.server("localhost")
    status, body = lab.api("POST", "/v1/certificates", {"type": "server", "name": "rsa-2", "cert": rsa.chain_pem.decode(),
                                                        "key": rsa.key_pem.decode()})
    assert status == 201 and body["profile"] == "example-lb", body

    # A real handshake under Tencent's default policy (TLS 1.3 offered), the headers the backend received
    # (SLB-IP on by the profile's default), and the bytes its billing model bills.
    ca = lab.out_dir / "example-ca.pem"
    ca.write_bytes(pki.ca_pem)
    response = lab.request("shop", "/hello", verify=str(ca), method="POST", body=b"x" * 1000)
    assert response.status == 200 and response.tls_version == "TLSv1.3"
    received = {k.lower(): v for k, v in response.echo["headers"]}
    assert received["x-forwarded-proto"] == "https" and received["x-forwarded-for"] == "127.0.0.1"
    assert received["slb-ip"] == "127.0.0.1"
    record = lab.connection_for(response)
    billed, traffic = record["billed"], record["traffic"]
    assert record["billing_model"] == "example-lb" and billed["model"] == "example-lb"
    assert billed["billed_bytes"] == billed["billed_client_to_lb"] == traffic["client_to_lb"]["payload"] >= 1000
    assert billed["billed_lb_to_client"] == 0 and billed["wire_bytes"] == traffic["client_to_lb"]["wire"]

    # The vendor's own error page: the backend refuses the connection.
    page = lab.request("broken", "/", verify=str(ca))
    assert page.status == 502 and page.headers["server"] == "example-gw"


def test_the_old_names_are_views_of_the_registry(example: VendorProfile) -> None:
    from simulator.certs import PROFILES as CERT_PROFILES
    from simulator.dataplane.addons.pages import ERROR_SERVER
    from simulator.metering import billing
    from simulator.policies import POLICIES, PROFILES

    assert PROFILES["example-lb"].policies == ("tencent_default",) and PROFILES["example-lb"].sni is False
    assert POLICIES["tencent_default"].profile == "tencent-clb"  # the first profile listing a name owns it
    assert CERT_PROFILES["example-lb"].key_types == {"RSA"} and ERROR_SERVER["example-lb"] == "example-gw"
    assert billing.MODELS["example-lb"] is example.billing and billing.PROFILE_MODELS["example-lb"] == "example-lb"
    assert billing.model_for("example-lb").billed_directions == (IN,)


def test_the_strictest_profile_validates_a_shared_certificate(example: VendorProfile) -> None:
    assert vendors.strictest({"tencent-clb", "example-lb"}) == "example-lb"
    assert vendors.strictest({"tencent-clb", "aliyun-slb", "example-lb"}) == "aliyun-slb"
    assert vendors.strictest() == "aliyun-slb"  # a certificate no listener uses


def test_the_mutual_tls_headers_of_a_profile_registered_later_are_stripped_from_clients_too() -> None:
    from simulator.dataplane.addons.headers import owned_headers
    from simulator.vendors import aws_alb

    names = (("subject", "X-Client-Subject"),)
    before = owned_headers(names)  # cached now: a registration must not leave this answer standing
    assert b"x-other-mtls-clientcert" not in before and b"x-amzn-mtls-clientcert" in before
    other = replace(aws_alb.PROFILE, name="other-alb",
                    mtls=replace(aws_alb.MTLS, passthrough_header="X-Other-Mtls-Clientcert"))
    vendors.register(other)
    try:
        assert b"x-other-mtls-clientcert" in owned_headers(names)
    finally:
        vendors.unregister(other.name)
    assert owned_headers(names) == before
