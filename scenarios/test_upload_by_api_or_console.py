"""Tencent FAQ 10 "How do I upload a certificate?": "You can upload it by calling an API or through the CLB
console." In the lab: the management REST API, and the `lbsim cert` command line standing in for the console,
both writing the one store the listeners read."""

import pytest

STATEMENT = "Certificates are uploaded through the API or the console (tencent FAQ 10)"


@pytest.mark.seed(STATEMENT)
def test_upload_by_api_or_console(lab, pki):
    ca = pki()
    by_api = lab.upload_server_certificate("via-api", ca.server("localhost"))

    console = ca.server("localhost")
    cert = lab.write_file("console.pem", console.chain_pem)
    key = lab.write_file("console.key", console.key_pem)
    result = lab.run(["{python}", "-m", "simulator.cli", "cert", "upload-server", "--home", str(lab.store_dir),
                      "--name", "via-console", "--cert", cert, "--key", key, "--json"])
    result.assert_ok()
    by_console = lab.certificate("via-console")
    lab.adopt_certificate(by_console["id"])  # removed with the test's other certificates

    for info in (by_api, by_console):
        listener = lab.add_listener({"server_certificate": info["name"]})
        assert lab.request(listener, "/", verify=lab.write_file("upload-ca.pem", ca.ca_pem)).status == 200
