"""Aliyun: "After uploading certificates to SLB, you can manage the certificates, such as replacing and
deleting certificates, on the Server Load Balancer console." Deleting is refused while a listener uses the
certificate; replacing it in place reaches every listener using it; the no-downtime swap is upload the new
one, point the listener at it, delete the old one."""

import sys

import pytest

from simulator.policies.probe import certificate_fingerprint
from simulator.harness.scenario import ApiError

STATEMENT = "Certificates can be replaced and deleted (aliyun notes); deletion is refused while in use"


@pytest.mark.seed(STATEMENT)
def test_replace_in_place_reaches_the_listener(lab, pki):
    ca = pki()
    first, second = ca.server("localhost"), ca.server("localhost")
    info = lab.upload_server_certificate("to-replace", first)
    listener = lab.add_listener({"server_certificate": info["name"]})
    assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(first.cert)

    replaced = lab.replace_certificate(info["id"], second)
    assert replaced["id"] == info["id"] and replaced["revision"] == info["revision"] + 1
    lab.wait_running(listener)
    assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(second.cert)


@pytest.mark.seed(STATEMENT)
def test_delete_refused_while_in_use_then_swap_without_downtime(lab, pki):
    ca = pki()
    old = lab.upload_server_certificate("old", ca.server("localhost"))
    listener = lab.add_listener({"server_certificate": old["name"]})
    with pytest.raises(ApiError) as in_use:
        lab.delete_certificate(old["id"])
    assert in_use.value.status == 409 and in_use.value.code == "CertificateInUse"
    assert listener.name in in_use.value.message  # names the listener that holds it
    # The console (here `lbsim cert`, another process on the same store) refuses it just the same.
    console = lab.run([sys.executable, "-m", "simulator.cli", "cert", "delete", "--home", str(lab.store_dir), old["id"]])
    console.assert_failed("CertificateInUse")
    assert listener.name in console.output

    # Upload the new one, point the listener at it (while serving), delete the old one.
    new_cert = ca.server("localhost")
    new = lab.upload_server_certificate("new", new_cert)
    with lab.connection(listener, verify=False) as conn:
        assert conn.request("/before").status == 200
        lab.change_listener(listener, server_certificate=new["name"], wait=False)
        # The open connection is never cut (asked at once: the listener's idle timeout is scaled too).
        assert conn.request("/during").status == 200
    lab.wait_running(listener)
    lab.delete_certificate(old["id"])
    assert lab.api("GET", f"/v1/certificates/{old['id']}")[0] == 404
    assert lab.probe(listener).server_fingerprint_sha256 == certificate_fingerprint(new_cert.cert)
