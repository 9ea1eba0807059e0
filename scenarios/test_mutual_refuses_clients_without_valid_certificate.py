"""Aliyun: "The server uses the CA certificate to authenticate the CA signature on the client certificate ...
If the authentication fails, the connection will be rejected."

The mutual-authentication matrix of every configured mutual listener: no certificate, a valid one, one from
another CA, an expired one and a not-yet-valid one, against what the listener's mode says (mutual `on`: only
valid gets in; tencent `optional`: also no certificate). The observed column is the listener's own
`tls_verify_status` for that connection. One-way listeners ask nobody: the report's matrix shows them too,
but the statement is not about them, so no case runs on them.

How the rejection looks is not documented by either vendor (UNCONFIRMED): a listener refuses inside the
handshake with a TLS alert (`client_cert_refusal: handshake`, both profiles' default), or, as stock nginx and
Tengine do, completes the handshake and answers every request with nginx's 400 page (`http_400`). Both modes
are checked: `tls_verify_status` is the reason either way.
"""

import pytest

from simulator.dataplane.addons.pages import ERROR_SERVER

STATEMENT = "Mutual listeners refuse clients without a valid certificate from the uploaded CA (aliyun certificate table)"


@pytest.mark.seed(STATEMENT)
@pytest.mark.lab_listeners(mutual=True)
def test_mutual_matrix(lab, lab_listener):
    report = lab.observe(lab_listener)
    rows = {row["client"]: row for row in report.mutual_matrix}
    assert report.verify_client in ("on", "optional")
    assert {"none", "untrusted"} <= set(rows)
    assert "valid" in rows, f"{lab_listener}: no client certificate from its CA to test with"
    # The statement itself: a client without a valid certificate from the CA does not get in.
    refused = {"untrusted", "expired", "not_yet_valid"} | ({"none"} if report.verify_client == "on" else set())
    assert all(rows[kind]["observed"] != "Success" for kind in refused & set(rows)), rows
    wrong = [row for row in report.mutual_matrix if not row["ok"]]
    assert not wrong, f"{lab_listener} ({report.verify_client}): {wrong}"
    # A refused client never reaches a backend: its request got no HTTP answer.
    for row in report.mutual_matrix:
        assert row["http_status_200"] == (row["expected"] == "Success")
    # A refused client gets what the listener's mode says: an alert, or nginx's 400 page.
    for row in report.mutual_matrix:
        if row["expected"] != "Success":
            refused = "HTTP/1.1 400" if report.client_cert_refusal == "http_400" else "alert "
            assert row["answer"].startswith(refused), (lab_listener, row)


# (client kind, verify on: status and 400 page, verify optional: status and page); None = served.
HTTP_400 = {
    "none": (("Failed:NoClientCertificate", "No required SSL certificate was sent"), ("Success", None)),
    "valid": (("Success", None), ("Success", None)),
    "untrusted": (("Failed:ClientCertUntrusted", "The SSL certificate error"),) * 2,
    "expired": (("Failed:ClientCertExpired", "The SSL certificate error"),) * 2,
    "not_yet_valid": (("Failed:ClientCertNotYetValid", "The SSL certificate error"),) * 2,
}


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile, verify", [("aliyun-slb", "on"), ("tencent-clb", "on"), ("tencent-clb", "optional")])
def test_refusal_by_nginx_400_page(lab, pki, profile, verify):
    servers, clients = pki(), pki(name="http_400 client CA")
    name = f"http400-{profile}-{verify}"
    lab.upload_server_certificate(name, servers.server("localhost"), profile=profile)
    lab.upload_ca_certificate(f"{name}-ca", clients.ca_pem, profile=profile)
    listener = lab.add_listener({"profile": profile, "server_certificate": name, "ca_certificate": f"{name}-ca",
                                 "ssl_verify_client": verify, "client_cert_refusal": "http_400"})
    assert lab.listener(listener.port)["client_cert_refusal"] == "http_400"
    kinds = {"none": None, "valid": clients.client("alice"), "untrusted": clients.other_ca().client("mallory"),
             "expired": clients.client("old", "expired"), "not_yet_valid": clients.client("early", "not_yet_valid")}
    for kind, client in kinds.items():
        status, page = HTTP_400[kind][verify == "optional"]
        r = lab.probe(listener, client=client, http_request=b"GET /who HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert r.ok and r.alert is None, (kind, r.to_dict())  # the handshake completes for everyone
        record = lab.connection_for(r)
        assert record["tls_verify_status"] == status, (kind, record)
        head, _, body = r.http_response.partition(b"\r\n\r\n")
        if page is None:
            assert head.startswith(b"HTTP/1.1 200"), (kind, head)
            continue
        assert head.startswith(b"HTTP/1.1 400 Bad Request"), (kind, head)
        assert f"Server: {ERROR_SERVER[profile]}".encode() in head and b"Connection: close" in head
        assert f"<title>400 {page}</title>".encode() in body and b"<h1>400 Bad Request</h1>" in body
        assert record["requests"] == 0 and record["error"], record  # nothing reached a backend; the reason is logged
