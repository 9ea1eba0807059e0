"""Tencent FAQ 10 "How do I upload a certificate?": "You can upload it by calling an API or through the CLB
console." In the lab: the vendors' own APIs driven by their own SDKs (docs/vendor-apis.md), the management REST
API, and the `lbsim cert` command line standing in for the console, all writing the one store the listeners
read."""

import json

import pytest

from simulator.harness.extras import vendor_sdk

from simulator.cli import main

STATEMENT = "Certificates are uploaded through the API or the console (tencent FAQ 10)"


@pytest.mark.seed(STATEMENT)
def test_upload_by_api_or_console(lab, pki, capsys):
    ca = pki()
    by_api = lab.upload_server_certificate("via-api", ca.server("localhost"))

    console = ca.server("localhost")
    cert = lab.write_file("console.pem", console.chain_pem)
    key = lab.write_file("console.key", console.key_pem)
    # The command line, called in this process (a separate `lbsim cert` process works the same: the store is
    # a locked directory; tests/test_certs_crash.py covers two processes).
    code = main(["cert", "upload-server", "--home", str(lab.store_dir), "--name", "via-console",
                 "--cert", cert, "--key", key, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["name"] == "via-console"
    by_console = lab.certificate("via-console")
    lab.adopt_certificate(by_console["id"])  # removed with the test's other certificates

    for info in (by_api, by_console):
        listener = lab.add_listener({"server_certificate": info["name"]})
        assert lab.request(listener, "/", verify=lab.write_file("upload-ca.pem", ca.ca_pem)).status == 200


@pytest.mark.seed(STATEMENT)
def test_upload_by_the_aliyun_api(lab, pki):
    vendor_sdk("alibabacloud_slb20140515")  # skips without lbsim[vendor-sdks] (make setup installs it)
    from alibabacloud_slb20140515 import models
    from alibabacloud_slb20140515.client import Client
    from alibabacloud_tea_openapi.models import Config

    ep = lab.vendor_api("aliyun-slb")
    slb = Client(Config(access_key_id=ep["access_key_id"], access_key_secret=ep["access_key_secret"],
                        endpoint=ep["https_endpoint"], protocol="https", ca=ep["ca"], region_id=ep["region"]))
    ca = pki()
    issued = ca.server("localhost")
    uploaded = slb.upload_server_certificate(models.UploadServerCertificateRequest(
        server_certificate=issued.chain_pem.decode(), private_key=issued.key_pem.decode(),
        server_certificate_name="via-aliyun-api")).body
    lab.adopt_certificate(uploaded.server_certificate_id)  # removed with the test's other certificates
    assert lab.certificate(uploaded.server_certificate_id)["name"] == "via-aliyun-api"  # the one store
    listener = lab.add_listener({"server_certificate": uploaded.server_certificate_id})
    assert lab.request(listener, "/", verify=lab.write_file("aliyun-api-ca.pem", ca.ca_pem)).status == 200
