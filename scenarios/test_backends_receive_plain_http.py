"""Tencent FAQ 6: "After an HTTPS listener is added, requests from the client to the CLB instance will be
encrypted over HTTPS, but requests from the CLB instance to the real server will still be transferred over
HTTP. Therefore, there is no need to configure SSL on the real server." Tencent FAQ 12: "Does a certificate
need to be uploaded to a backend CVM instance? No." """

import http.client

import pytest

STATEMENT = "Backends receive plain HTTP and need no certificate (tencent FAQ 6 and 12)"


@pytest.mark.seed(STATEMENT)
def test_backends_receive_plain_http_and_need_no_certificate(lab, lab_listener):
    response = lab.request(lab_listener, "/plain?size=16", client=lab.client_for(lab_listener), verify=bool(lab.ca_file))
    assert response.status == 200 and response.tls_version, lab.explain(lab_listener, response)  # TLS on the client side
    backends = {b["name"]: b for b in lab.api_ok("GET", "/v1/backends")["backends"]}
    if not backends.get(response.backend or "", {}).get("managed"):
        pytest.fail(f"{lab_listener}: this scenario reads what a mock backend received; give the listener one")
    echo = response.echo  # what the backend received, as the mock backend saw it
    assert echo["http_version"] == "HTTP/1.1"
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-proto"] == "https" and headers["x-forwarded-for"]

    # The backend itself speaks plain HTTP and holds no certificate: plain HTTP works, TLS does not.
    host, port = backends[response.backend]["address"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/direct")
    assert conn.getresponse().status == 200
    conn.close()
    assert not lab.probe(int(port), timeout=0.3).ok  # no TLS server there
