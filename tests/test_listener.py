"""The HTTPS listener data plane, end to end: real handshakes through mitmproxy, real mock backends."""

from __future__ import annotations

import hashlib
import errno
import json
import logging
import socket
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from helpers import read_response, wait_for

from simulator.model.config import io_timeout
from simulator.harness.running import RunningLab
from simulator.policies.probe import probe


def pem(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fingerprint_of(path: str) -> str:
    leaf = x509.load_pem_x509_certificates(pem(path))[0]
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def last_record(lab: RunningLab, listener: str | int, client: object, since: float | None = None) -> dict:
    """The connection-log record of one client connection (it is written when the connection closes): a
    probe's result, or a client port and `since`, the time before it connected. Ports are reused in a
    long session, so an older record from the same port must not be taken for it."""
    if isinstance(client, int):
        client = SimpleNamespace(local_port=client, opened=since)
    return lab.record_of(client, listener, timeout=5)


def test_one_way_forwards_plain_http_with_vendor_headers(lab: RunningLab) -> None:
    status, body, headers = lab.get("aliyun-one-way", "/hello?x=1", headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 200
    echo = json.loads(body)
    received = {k.lower(): v for k, v in echo["headers"]}
    assert echo["path"] == "/hello" and echo["http_version"] == "HTTP/1.1"  # backends get plain HTTP/1.1
    assert received["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"  # appended, not replaced
    assert received["x-forwarded-proto"] == "https"
    assert received["slb-ip"] == "127.0.0.1"
    assert received["slb-id"] == "lb-lbsim"
    assert received["host"] == f"localhost:{lab.port('aliyun-one-way')}"  # the client's Host, untouched
    assert headers["x-backend"] in ("web-1", "web-2")


def test_client_cannot_forge_listener_headers(lab: RunningLab) -> None:
    _, body, _ = lab.get("aliyun-one-way", "/", headers={"SLB-ID": "forged", "X-Forwarded-Proto": "http"})
    received = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert received["slb-id"] == "lb-lbsim"
    assert received["x-forwarded-proto"] == "https"


def test_plain_http_to_https_port_gets_nginx_400(lab: RunningLab) -> None:
    with socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way")), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")
    assert b"plain HTTP request was sent to HTTPS port" in data


@pytest.mark.parametrize("sni", [None, "localhost", "ecdsa.lbsim.test", "unknown.example"])
def test_aliyun_ignores_sni_one_certificate(lab: RunningLab, sni: str | None) -> None:
    result = probe("127.0.0.1", lab.port("aliyun-one-way"), sni=sni)
    assert result.ok, result.error
    assert result.server_fingerprint_sha256.replace(":", "").lower() == fingerprint_of(lab.files["server-rsa"])


@pytest.mark.parametrize(
    "sni, expected",
    [("ecdsa.lbsim.test", "server-ecdsa"), ("localhost", "server-rsa"), (None, "server-rsa"), ("other.example", "server-rsa")],
)
def test_tencent_serves_per_domain_certificates(lab: RunningLab, sni: str | None, expected: str) -> None:
    result = probe("127.0.0.1", lab.port("tencent-one-way"), sni=sni)
    assert result.ok, result.error
    assert result.server_fingerprint_sha256.replace(":", "").lower() == fingerprint_of(lab.files[expected])


MUTUAL_MATRIX = [
    # listener, client certificate, handshake succeeds, tls_verify_status
    ("aliyun-mutual", None, False, "Failed:NoClientCertificate"),
    ("aliyun-mutual", "valid", True, "Success"),
    ("aliyun-mutual", "untrusted", False, "Failed:ClientCertUntrusted"),
    ("aliyun-mutual", "expired", False, "Failed:ClientCertExpired"),
    ("aliyun-mutual", "not_yet_valid", False, "Failed:ClientCertNotYetValid"),
    ("tencent-mutual", None, True, "Success"),  # ssl_verify_client: optional admits no certificate
    ("tencent-mutual", "valid", True, "Success"),
    ("tencent-mutual", "untrusted", False, "Failed:ClientCertUntrusted"),
    ("tencent-mutual", "expired", False, "Failed:ClientCertExpired"),
    ("tencent-mutual", "not_yet_valid", False, "Failed:ClientCertNotYetValid"),
]


@pytest.mark.parametrize("listener, client, succeeds, status", MUTUAL_MATRIX)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_mutual_matrix(lab: RunningLab, listener: str, client: str | None, succeeds: bool, status: str, version: str) -> None:
    kwargs = {}
    if client:
        kwargs = {"client_cert_pem": pem(lab.files[f"client-{client}"]), "client_key_pem": pem(lab.files[f"client-{client}-key"])}
    result = probe("127.0.0.1", lab.port(listener), version=version, http_request=b"GET /mtls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", **kwargs)
    # TLS 1.3 clients finish their side before the server checks their certificate: the refusal arrives
    # as an alert in place of the response, so "succeeds" means an HTTP response came back.
    got_response = bool(result.http_response and result.http_response.startswith(b"HTTP/1.1 200"))
    assert got_response == succeeds, result.to_dict()
    record = last_record(lab, listener, result)
    assert record["tls_verify_status"] == status
    if not succeeds:
        assert result.alert, result.to_dict()  # the listener's alert reached the client (not a bare reset)
    # Metering stays exact on refused handshakes too, counting what the client sent after the refusal.
    assert record["traffic"]["lb_to_client"]["wire"] == result.bytes_received
    if succeeds:
        # The listener closes after "Connection: close" (mitmproxy sends no close_notify of its own); the
        # client's close_notify then meets a closed socket and never reaches the listener.
        close_notify = {"TLSv1.2": 31, "TLSv1.3": 24}[version]  # one encrypted alert record
        assert result.bytes_sent - record["traffic"]["client_to_lb"]["wire"] in (0, close_notify)
    else:
        assert record["traffic"]["client_to_lb"]["wire"] == result.bytes_sent
    if client:
        # Refused certificates are identified too (OpenSSL keeps none: the verify callback's copy is logged).
        leaf = x509.load_pem_x509_certificates(pem(lab.files[f"client-{client}"]))[0]
        assert record["client_cert_subject"] == leaf.subject.rfc4514_string()
        assert record["client_cert_serial"] == format(leaf.serial_number, "X")
        assert record["client_cert_validity"] == {"not_before": leaf.not_valid_before_utc.isoformat(),
                                                  "not_after": leaf.not_valid_after_utc.isoformat()}
        # A certificate is checked after ServerHello: the version is settled, and so is the cipher, though
        # OpenSSL names a TLS 1.2 cipher only after the client's ChangeCipherSpec (neither side knows it here).
        assert record["tls_protocol"] == version
        assert record["tls_cipher"] == result.cipher and (result.cipher is not None or version == "TLSv1.2")
    else:
        assert record["client_cert_subject"] is record["client_cert_serial"] is record["client_cert_validity"] is None
    if not succeeds:
        # The real reason, in OpenSSL's words, not mitmproxy's advice about its own certificate.
        assert "proxy" not in record["error"] and "127.0.0.1:9" not in record["error"]
        reason = {None: "peer did not return a certificate", "untrusted": "unable to get local issuer certificate",
                  "expired": "certificate has expired", "not_yet_valid": "certificate is not yet valid"}[client]
        assert reason in record["error"], record["error"]
    if client == "valid":
        echo = json.loads(result.http_response.split(b"\r\n\r\n", 1)[1])
        received = {k.lower(): v for k, v in echo["headers"]}
        leaf = x509.load_pem_x509_certificates(pem(lab.files["client-valid"]))[0]
        issuer_ca = x509.load_pem_x509_certificates(pem(lab.files["client-ca"]))[0]
        assert received["x-forwarded-clientcert-subjectdn"] == leaf.subject.rfc4514_string()
        assert received["x-forwarded-clientcert-issuerdn"] == leaf.issuer.rfc4514_string() == issuer_ca.subject.rfc4514_string()
        assert received["x-forwarded-clientcert-fingerprint"] == hashlib.sha1(leaf.public_bytes(Encoding.DER)).hexdigest()
        assert received["x-forwarded-clientcert-clientverify"] == "SUCCESS"
    elif client is None and succeeds:  # optional mutual, no certificate: forwarded, marked unverified
        echo = json.loads(result.http_response.split(b"\r\n\r\n", 1)[1])
        received = {k.lower(): v for k, v in echo["headers"]}
        assert received["x-forwarded-clientcert-clientverify"] == "NONE"
        assert not {"x-forwarded-clientcert-subjectdn", "x-forwarded-clientcert-issuerdn",
                    "x-forwarded-clientcert-fingerprint"} & received.keys()


# client_cert_refusal: http_400, as stock nginx/Tengine refuse: the handshake completes and every request gets
# nginx's 400 page. (listener settings, client certificate, tls_verify_status, 400 page detail or None = 200)
HTTP_400_MATRIX = [
    ("aliyun-slb", "on", None, "Failed:NoClientCertificate", "No required SSL certificate was sent"),
    ("aliyun-slb", "on", "valid", "Success", None),
    ("aliyun-slb", "on", "untrusted", "Failed:ClientCertUntrusted", "The SSL certificate error"),
    ("aliyun-slb", "on", "expired", "Failed:ClientCertExpired", "The SSL certificate error"),
    ("aliyun-slb", "on", "not_yet_valid", "Failed:ClientCertNotYetValid", "The SSL certificate error"),
    ("tencent-clb", "optional", None, "Success", None),  # optional still admits no certificate
    ("tencent-clb", "optional", "untrusted", "Failed:ClientCertUntrusted", "The SSL certificate error"),
    ("tencent-clb", "optional", "expired", "Failed:ClientCertExpired", "The SSL certificate error"),
]


@pytest.fixture(scope="module")
def http_400_listeners(lab: RunningLab) -> dict[str, int]:
    """One mutual listener per profile in http_400 mode (aliyun: verify on; tencent: optional), via the API."""
    ports = {}
    for profile, verify, policy in (("aliyun-slb", "on", "tls_cipher_policy_1_2_strict_with_1_3"),
                                    ("tencent-clb", "optional", None)):
        ports[profile] = started_listener(lab, profile=profile, ca_certificate="lab-client-ca", tls_policy=policy,
                                          ssl_verify_client=verify, client_cert_refusal="http_400")
    yield ports
    for port in ports.values():
        lab.api("DELETE", f"/v1/listeners/{port}")


def client_kwargs(lab: RunningLab, client: str | None) -> dict[str, bytes]:
    if client is None:
        return {}
    return {"client_cert_pem": pem(lab.files[f"client-{client}"]), "client_key_pem": pem(lab.files[f"client-{client}-key"])}


@pytest.mark.parametrize("profile, verify, client, status, page", HTTP_400_MATRIX)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_mutual_matrix_http_400_mode(lab: RunningLab, http_400_listeners: dict[str, int], profile: str, verify: str,
                                     client: str | None, status: str, page: str | None, version: str) -> None:
    port = http_400_listeners[profile]
    described = lab.api("GET", f"/v1/listeners/{port}")[1]
    assert described["client_cert_refusal"] == "http_400" and described["ssl_verify_client"] == verify
    result = probe("127.0.0.1", port, version=version, http_request=b"GET /mtls HTTP/1.1\r\nHost: x\r\n\r\n",
                   **client_kwargs(lab, client))
    assert result.ok and result.alert is None, result.to_dict()  # the handshake completes either way
    head, _, body = (result.http_response or b"").partition(b"\r\n\r\n")
    record = last_record(lab, port, result)
    assert record["tls_verify_status"] == status  # the reason, as in handshake mode
    if page is None:
        assert head.startswith(b"HTTP/1.1 200"), result.to_dict()
        assert json.loads(body)["path"] == "/mtls"  # the backend answered
        assert record["error"] is None
        return
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), result.to_dict()
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    server = {"aliyun-slb": b"Tengine", "tencent-clb": b"stgw"}[profile]
    assert headers[b"Server"] == server and headers[b"Connection"] == b"close"
    assert body == (f"<html>\r\n<head><title>400 {page}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request"
                    f"</h1></center>\r\n<center>{page}</center>\r\n</body>\r\n</html>\r\n").encode()
    reason = {None: "peer did not return a certificate", "untrusted": "unable to get local issuer certificate",
              "expired": "certificate has expired", "not_yet_valid": "certificate is not yet valid"}[client]
    assert reason in record["error"], record["error"]
    assert record["tls_protocol"] == version and record["requests"] == 0  # nothing reached a backend
    if client is not None:
        leaf = x509.load_pem_x509_certificates(pem(lab.files[f"client-{client}"]))[0]
        assert record["client_cert_subject"] == leaf.subject.rfc4514_string()


def test_http_400_mode_closes_after_the_page_and_a_resumed_session_is_refused_too(
        lab: RunningLab, http_400_listeners: dict[str, int]) -> None:
    port = http_400_listeners["aliyun-slb"]
    context = lab.ssl_context("expired", server_hostname_check=False)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # a session-ID/ticket resumption the callback never sees
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_response(tls)
        assert answer.startswith(b"HTTP/1.1 400") and b"The SSL certificate error" in answer
        assert tls.recv(4096) == b""  # closed after the first page: /b gets nothing
        session = tls.session
    since = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
        assert tls.session_reused
        tls.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"The SSL certificate error" in read_response(tls)
        local_port = tls.getsockname()[1]
    record = last_record(lab, port, local_port, since)
    assert record["resumed"] is True and record["tls_verify_status"] == "Failed:ClientCertExpired"


def test_http_400_mode_over_http2_with_curl(lab: RunningLab, http_400_listeners: dict[str, int]) -> None:
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", lab.ca_file, "-w", "\n%{http_version} %{http_code}",
         f"https://localhost:{http_400_listeners['aliyun-slb']}/h2"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr  # curl sees an answer, not a TLS error
    assert "<title>400 No required SSL certificate was sent</title>" in out.stdout
    assert out.stdout.endswith("\n2 400")


def test_client_cert_refusal_is_validated_naming_the_field(lab: RunningLab) -> None:
    for body, message in (({"ca_certificate": "lab-client-ca", "client_cert_refusal": "reset"},
                           "unknown value 'reset'; expected one of handshake, http_400"),
                          ({"client_cert_refusal": "http_400"}, "only applies to mutual listeners")):
        status, answer = lab.api("POST", "/v1/listeners", {"port": 0, "server_certificate": "lab-rsa", **body})
        assert status == 400 and answer["error"]["field"] == "listener.client_cert_refusal", answer
        assert message in answer["error"]["message"], answer
    # A mutual listener that does not say takes its profile's default: handshake on both (UNCONFIRMED).
    port = started_listener(lab, profile="tencent-clb", ca_certificate="lab-client-ca")
    try:
        assert lab.api("GET", f"/v1/listeners/{port}")[1]["client_cert_refusal"] == "handshake"
        assert lab.api("GET", f"/v1/listeners/{lab.port('tencent-one-way')}")[1]["client_cert_refusal"] is None
        result = probe("127.0.0.1", port, version="TLSv1.2", **client_kwargs(lab, "expired"))
        assert not result.ok and result.alert == "certificate expired"
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


def test_session_resumes_within_ticket_lifetime_and_not_after(lab: RunningLab) -> None:
    port = lab.port("aliyun-one-way")
    lifetime = 300 * lab.config.time_scale  # the seed's 300 s, scaled
    first = probe("127.0.0.1", port, version="TLSv1.2")
    assert first.ok and not first.resumed
    again = probe("127.0.0.1", port, version="TLSv1.2", session=first.session)
    assert again.ok and again.resumed
    time.sleep(lifetime + 1.5)
    late = probe("127.0.0.1", port, version="TLSv1.2", session=first.session)
    assert late.ok and not late.resumed
    assert last_record(lab, "aliyun-one-way", again)["resumed"] is True
    assert last_record(lab, "aliyun-one-way", late)["resumed"] is False


def test_http2_via_alpn_with_curl(lab: RunningLab) -> None:
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", lab.ca_file, "-o", "/dev/null", "-w", "%{http_version}",
         f"https://localhost:{lab.port('tencent-one-way')}/h2"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "2"
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", lab.ca_file, "-o", "/dev/null", "-w", "%{http_version}",
         f"https://localhost:{lab.port('aliyun-one-way')}/h1"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.stdout == "1.1"  # http2 off on this listener: ALPN falls back


def started_listener(lab: RunningLab, **fields: object) -> int:
    """A started one-way listener created through the API with `fields`; its port."""
    body = {"port": 0, "activation_delay": 0, "start": True, "backend_servers": [{"backend": "web-1"}],
            "health_check": {"enabled": False}, **fields}
    if "server_certificates" not in fields:
        body.setdefault("server_certificate", "lab-rsa")
    status, listener = lab.api("POST", "/v1/listeners", body)
    assert status == 202, listener
    port = listener["port"]
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 10)
    return port


@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
@pytest.mark.parametrize("http2", [None, False])
def test_http2_is_on_by_default_as_on_both_vendors(lab: RunningLab, profile: str, http2: bool | None) -> None:
    # Alibaba's EnableHttp2 defaults to on; tencent: "The listener supports HTTP/2 on HTTPS by default".
    port = started_listener(lab, profile=profile, **({} if http2 is None else {"http2": http2}))
    try:
        assert lab.api("GET", f"/v1/listeners/{port}")[1]["http2"] is (http2 is None)
        result = probe("127.0.0.1", port, alpn=["h2", "http/1.1"])
        assert result.ok, result.to_dict()
        assert result.alpn == ("h2" if http2 is None else "http/1.1")
        assert last_record(lab, port, result)["alpn"] == result.alpn
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


@pytest.fixture
def rsa_and_ecc(lab: RunningLab) -> dict[str, str]:
    """A fresh RSA and ECDSA server certificate (each from its own CA) uploaded for tencent-clb, and a CA file."""
    from simulator.certs import LabPKI

    names, cas = {}, b""
    for kind in ("rsa", "ecdsa"):
        pki = LabPKI(key_type=kind, name=f"multi {kind} CA")
        issued = pki.server("localhost", intermediate=True)
        status, info = lab.api("POST", "/v1/certificates", {"name": f"multi-{kind}", "type": "server",
                                                            "profile": "tencent-clb", "cert": issued.chain_pem.decode(),
                                                            "key": issued.key_pem.decode()})
        assert status == 201, info
        names[kind], names[f"{kind}-fingerprint"] = info["id"], info["fingerprint_sha256"]
        cas += pki.ca_pem
    names["ca_file"] = str(lab.out_dir / "multi-ca.pem")
    with open(names["ca_file"], "wb") as f:
        f.write(cas)
    yield names
    for kind in ("rsa", "ecdsa"):
        lab.api("DELETE", f"/v1/certificates/{names[kind]}")


def sha256_of(result) -> str:
    return result.server_fingerprint_sha256.replace(":", "").lower()


def test_rsa_and_ecc_certificates_on_one_tencent_listener(lab: RunningLab, rsa_and_ecc: dict[str, str]) -> None:
    port = started_listener(lab, profile="tencent-clb", server_certificates=["multi-rsa", "multi-ecdsa"])
    try:
        view = lab.api("GET", f"/v1/listeners/{port}")[1]
        assert view["server_certificates"] == ["multi-rsa", "multi-ecdsa"] and view["server_certificate"] == "multi-rsa"
        rsa, ecc = (rsa_and_ecc[f"{k}-fingerprint"].replace(":", "").lower() for k in ("rsa", "ecdsa"))
        ca = rsa_and_ecc["ca_file"]
        # TLS 1.2: the suites the client offers pick the certificate; each chain verifies (its own intermediate).
        only_ecdsa = probe("127.0.0.1", port, version="TLSv1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", cafile=ca)
        only_rsa = probe("127.0.0.1", port, version="TLSv1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256", cafile=ca)
        assert only_ecdsa.ok and only_rsa.ok, (only_ecdsa.error, only_rsa.error)
        assert sha256_of(only_ecdsa) == ecc and sha256_of(only_rsa) == rsa
        assert len(only_ecdsa.server_chain) == len(only_rsa.server_chain) == 3  # leaf, its intermediate, its root
        # Offered both, the policy's order decides: the tencent default string lists ECDHE-RSA-AES128-GCM first.
        assert sha256_of(probe("127.0.0.1", port, version="TLSv1.2", cafile=ca)) == rsa
        # TLS 1.3: the signature algorithms decide; a client that can verify ECDSA gets the ECC certificate.
        assert sha256_of(probe("127.0.0.1", port, version="TLSv1.3", cafile=ca)) == ecc
        # The meter sees the smaller ECC handshake.
        small, large = (last_record(lab, port, r)["traffic"]["lb_to_client"]["handshake"]
                        for r in (only_ecdsa, only_rsa))
        assert small < large - 300
        assert large - small == only_rsa.bytes_received - only_ecdsa.bytes_received  # exact, as the client counted
        # Both certificates are in use: neither can be deleted while the listener holds it.
        for kind in ("rsa", "ecdsa"):
            status, body = lab.api("DELETE", f"/v1/certificates/{rsa_and_ecc[kind]}")
            assert status == 409 and body["error"]["code"] == "CertificateInUse", body
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


@pytest.mark.parametrize("fields, field, message", [
    ({"profile": "aliyun-slb", "server_certificates": ["multi-rsa", "multi-ecdsa"]}, "listener.server_certificates",
     "aliyun-slb listeners hold one server certificate"),
    ({"profile": "tencent-clb", "server_certificates": ["multi-rsa", "multi-rsa"]}, "listener.server_certificates",
     "two different server certificate names"),
    ({"profile": "tencent-clb", "server_certificates": ["multi-rsa", "lab-rsa"]}, "listener.server_certificates",
     "one RSA and one ECDSA"),
    ({"profile": "tencent-clb", "server_certificates": ["multi-rsa", "lab-client-ca"]},
     "listener.server_certificates[1]", "expected a server certificate"),
    ({"profile": "tencent-clb", "server_certificate": "lab-rsa", "server_certificates": ["multi-rsa", "multi-ecdsa"]},
     "listener.server_certificates", "not both"),
])
def test_rsa_and_ecc_certificates_are_validated_naming_the_field(lab: RunningLab, rsa_and_ecc: dict[str, str],
                                                                 fields: dict, field: str, message: str) -> None:
    status, body = lab.api("POST", "/v1/listeners", {"port": 0, **fields})
    assert status == 400 and body["error"]["field"] == field, body
    assert message in body["error"]["message"], body


def test_curl_mutual_command_from_readme_works(lab: RunningLab) -> None:
    out = subprocess.run(
        ["curl", "-sS", "--cacert", lab.ca_file, "--cert", lab.files["client-valid"], "--key", lab.files["client-valid-key"],
         f"https://localhost:{lab.port('aliyun-mutual')}/hello"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["path"] == "/hello"


def test_connection_log_record_fields(lab: RunningLab) -> None:
    result = probe("127.0.0.1", lab.port("aliyun-one-way"), version="TLSv1.2", sni="lbsim.test",
                   http_request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    record = last_record(lab, "aliyun-one-way", result)
    assert record["listener_port"] == lab.port("aliyun-one-way")
    assert record["profile"] == "aliyun-slb"
    assert record["sni"] == "lbsim.test"
    assert record["tls_protocol"] == "TLSv1.2" and record["tls_cipher"] == result.cipher
    assert 0 < record["tls_handshake_latency"] < 5
    assert record["requests"] == 1 and record["tls_verify_status"] == "Success"
    assert record["traffic"]["lb_to_client"]["wire"] == result.bytes_received


def test_a_connection_counts_as_open_until_its_record_is_in_every_log(lab: RunningLab, monkeypatch) -> None:
    # A scenario waits until no client is open, then reads the records (`wait_log_settled`) from its own
    # thread: the lab thread may let go of the lock mid-close (the sweep's malloc_trim does), so the
    # connection must stay among the open ones until its record is in the ledger and the API's list.
    registry, ledger = lab.lab.registry, lab.lab.ledger
    seen: list[tuple[str, bool]] = []  # (where the record went, whether its connection was still open)

    def noting(where: str, keep):
        def kept(record, *args):
            port = int(record["client"].rsplit(":", 1)[1])
            seen.append((where, any(c.peer[1] == port for c in registry.clients.values())))
            return keep(record, *args)
        return kept

    monkeypatch.setattr(ledger, "add", noting("ledger", ledger.add))
    monkeypatch.setattr(registry.recent, "append", noting("recent", registry.recent.append))
    result = probe("127.0.0.1", lab.port("aliyun-one-way"),
                   http_request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    last_record(lab, "aliyun-one-way", result)
    wait_for(lambda: not any(c.peer[1] == result.local_port for c in registry.clients.values()), 5)
    assert ("ledger", True) in seen and ("recent", True) in seen and all(open_ for _, open_ in seen), seen


def test_protocol_and_cipher_failures_are_named(lab: RunningLab) -> None:
    # tls_cipher_policy_1_0 (aliyun default) stops at TLS 1.2.
    result = probe("127.0.0.1", lab.port("aliyun-one-way"), version="TLSv1.3")
    assert not result.ok
    assert last_record(lab, "aliyun-one-way", result)["tls_verify_status"] == "Failed:ProtocolVersion"
    result = probe("127.0.0.1", lab.port("aliyun-one-way"), version="TLSv1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not result.ok
    assert last_record(lab, "aliyun-one-way", result)["tls_verify_status"] == "Failed:NoSharedCipher"


def has_request_headers(lab: RunningLab, client_port: int) -> bool:
    """The listener has read a request's headers from this client (IdleTimeouts tracks such open requests)."""
    open_requests = lab.lab.master.addons.get("idletimeouts")._open
    return any(state.peer[1] == client_port and open_requests.get(client_id)
               for client_id, state in list(lab.lab.registry.clients.items()))


def test_bad_clients_do_not_hurt_good_ones_and_each_is_closed_and_logged(lab: RunningLab) -> None:
    port = lab.port("aliyun-one-way")
    bad, since = [], time.time()
    garbage = socket.create_connection(("127.0.0.1", port))
    garbage.sendall(b"\x16\x03\x01\x00\x05hello-garbage" * 10)
    bad.append(garbage)
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that never finishes
    bad.append(half)
    stalled = ssl.create_default_context(cafile=lab.ca_file).wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # slowloris: headers never end
    bad.append(stalled)
    reset = ssl.create_default_context(cafile=lab.ca_file).wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    reset_port = reset.getsockname()[1]
    reset.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
    wait_for(lambda: has_request_headers(lab, reset_port))  # the reset comes mid-body, not mid-headers
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.close()  # RST mid-request
    for _ in range(20):
        status, _, _ = lab.get("aliyun-one-way", "/still-fine")
        assert status == 200
    records = {name: last_record(lab, "aliyun-one-way", s.getsockname()[1], since) for name, s in
               (("garbage", garbage), ("half", half), ("stalled", stalled))}
    records["reset"] = last_record(lab, "aliyun-one-way", reset_port, since)
    for s in bad:
        s.close()

    r = records["garbage"]
    assert r["tls_verify_status"] == "Failed:MalformedClientHello" and r["error"].startswith("Cannot parse ClientHello")
    assert r["traffic"]["client_to_lb"]["wire"] == 180  # metered though no TLS connection ever existed
    # The listener's client header timeout (60 s scaled, at least 1 s) cuts the half handshake and the slowloris.
    r = records["half"]
    assert (r["tls_verify_status"], r["closed_by"]) == ("Failed:Timeout", "client_header_timeout"), r
    assert r["error"] == "handshake not complete within the listener's client_header_timeout"
    assert r["traffic"]["client_to_lb"]["wire"] == 11
    r = records["stalled"]  # silent after its partial headers: idle too (15 s scaled, also 1 s); either closes it
    assert (r["tls_verify_status"], r["requests"]) == ("Success", 0) and r["closed_by"] in ("idle_timeout", "client_header_timeout"), r
    r = records["reset"]
    assert (r["tls_verify_status"], r["closed_by"], r["requests"]) == ("Success", "client_reset", 0), r
    assert "without sending complete message body" in r["error"]


def test_idle_connections_are_closed_after_idle_timeout(lab: RunningLab) -> None:
    spec = lab.listener("aliyun-one-way").active.spec
    idle = io_timeout(spec.idle_timeout, lab.config.time_scale)  # 15 s scaled, at least 1 s
    since = time.time()
    s = ssl.create_default_context(cafile=lab.ca_file).wrap_socket(
        socket.create_connection(("127.0.0.1", lab.port("aliyun-one-way"))), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    s.settimeout(idle + 5)
    assert s.recv(65536) == b""  # closed by the listener
    elapsed = time.monotonic() - started
    assert idle * 0.8 <= elapsed <= idle + 2
    record = last_record(lab, "aliyun-one-way", s.getsockname()[1], since)
    assert record["closed_by"] == "idle_timeout"
    s.close()


def test_only_the_listeners_idle_timeout_closes_an_idle_connection(lab: RunningLab) -> None:
    # mitmproxy's own idle timer (`tcp_timeout`, 600 s unscaled) would close an AWS listener's connection
    # long before an idle_timeout of up to 4,000 s; the lab's sweeper is the one clock. A 1 s tcp_timeout
    # shows it here against an idle_timeout of 400 s (4 s scaled).
    options = lab.lab.master.options

    async def tcp_timeout(seconds: int) -> None:  # in the lab's thread, where its addons hear of it
        options.update(tcp_timeout=seconds)

    port = started_listener(lab, profile="aws-alb", idle_timeout=400)
    before = options.tcp_timeout
    lab.call(tcp_timeout(1))
    try:
        s = ssl.create_default_context(cafile=lab.ca_file).wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        time.sleep(1.8)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")  # still open after 1.8 s idle
        s.close()
    finally:
        lab.call(tcp_timeout(before))
        lab.api("DELETE", f"/v1/listeners/{port}")


def mutual_listener(lab: RunningLab, headers: dict) -> int:
    """A started mutual listener (requires a client certificate) with these header switches, via the API."""
    status, listener = lab.api("POST", "/v1/listeners", {
        "port": 0, "server_certificate": "lab-rsa", "ca_certificate": "lab-client-ca", "activation_delay": 0,
        "start": True, "backend_servers": [{"backend": "web-1"}], "health_check": {"enabled": False}, "headers": headers})
    assert status == 202, listener
    port = listener["port"]
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 10)
    return port


def backend_headers(lab: RunningLab, port: int, extra: bytes = b"") -> dict[str, str]:
    """The headers the backend received for one request with the valid client certificate."""
    result = probe("127.0.0.1", port, client_cert_pem=pem(lab.files["client-valid"]),
                   client_key_pem=pem(lab.files["client-valid-key"]),
                   http_request=b"GET /h HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
    assert result.http_response and result.http_response.startswith(b"HTTP/1.1 200"), result.to_dict()
    return {k.lower(): v for k, v in json.loads(result.http_response.split(b"\r\n\r\n", 1)[1])["headers"]}


CLIENT_CERT_NAMES = ("x-forwarded-clientcert-subjectdn", "x-forwarded-clientcert-issuerdn",
                     "x-forwarded-clientcert-fingerprint", "x-forwarded-clientcert-clientverify")


def test_switched_off_headers_are_not_sent_even_when_a_client_forges_them(lab: RunningLab) -> None:
    port = mutual_listener(lab, {"x_forwarded_proto": False, "slb_ip": False, "slb_id": False, "client_cert": False})
    try:
        forged = b"".join(f"{name}: forged\r\n".encode() for name in ("X-Forwarded-Proto", "SLB-IP", "SLB-ID", *CLIENT_CERT_NAMES))
        received = backend_headers(lab, port, forged)
        assert received["x-forwarded-for"] == "127.0.0.1"  # always on
        assert not {"x-forwarded-proto", "slb-ip", "slb-id", *CLIENT_CERT_NAMES} & received.keys(), received
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


def test_client_cert_header_names_are_configurable(lab: RunningLab) -> None:
    # CLB's names are UNCONFIRMED (vendor-facts): a listener can rename each header; unnamed ones keep ALB's.
    port = mutual_listener(lab, {"client_cert_names": {"subject": "X-Client-DN", "verify": "X-Client-Verify"}})
    try:
        received = backend_headers(lab, port, b"X-Client-DN: CN=forged\r\nX-Forwarded-Clientcert-subjectdn: CN=forged\r\n")
        leaf = x509.load_pem_x509_certificates(pem(lab.files["client-valid"]))[0]
        assert received["x-client-dn"] == leaf.subject.rfc4514_string()  # the forged value was dropped
        assert received["x-client-verify"] == "SUCCESS"
        assert received["x-forwarded-clientcert-issuerdn"] == leaf.issuer.rfc4514_string()
        assert received["x-forwarded-clientcert-fingerprint"] == hashlib.sha1(leaf.public_bytes(Encoding.DER)).hexdigest()
        assert "x-forwarded-clientcert-subjectdn" not in received and "x-forwarded-clientcert-clientverify" not in received
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


@pytest.mark.parametrize("names, field, message", [
    ({"subject": "X Client"}, "subject", "expected an HTTP header name"),
    ({"issuer": ""}, "issuer", "expected an HTTP header name"),
    ({"verify": "SLB-ID"}, "verify", "the listener or HTTP itself uses"),
    ({"subject": "X-Cert", "issuer": "x-cert"}, "issuer", "already names the subject header"),
    ({"serial": "X-Serial"}, "serial", "unknown field 'serial'; expected one of subject, issuer, fingerprint, verify"),
])
def test_bad_client_cert_header_names_are_refused_naming_the_field(lab: RunningLab, names: dict, field: str, message: str) -> None:
    status, body = lab.api("POST", "/v1/listeners", {"port": 0, "server_certificate": "lab-rsa",
                                                     "headers": {"client_cert_names": names}})
    assert status == 400, body
    assert body["error"]["field"] == f"listener.headers.client_cert_names.{field}", body
    assert message in body["error"]["message"], body


def test_refused_clients_get_one_accurate_log_line_not_mitmproxys_warning(lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    # mitmproxy warns "The client may not trust the proxy's certificate for 127.0.0.1:9" for every refused
    # client (lbsim's dummy upstream; `lbsim up` prints WARNINGs): dropped for one INFO line with the real reason.
    caplog.set_level(logging.INFO)
    result = probe("127.0.0.1", lab.port("aliyun-mutual"), version="TLSv1.2",
                   client_cert_pem=pem(lab.files["client-expired"]), client_key_pem=pem(lab.files["client-expired-key"]))
    assert not result.ok
    last_record(lab, "aliyun-mutual", result)
    lines = [r.getMessage() for r in caplog.records if f":{result.local_port}" in r.getMessage()]
    assert lines == [f"aliyun-mutual: client 127.0.0.1:{result.local_port} refused: Failed:ClientCertExpired "
                     "(certificate verify failed: certificate has expired (depth 0); sent alert certificate expired)"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "proxy's certificate" in r.getMessage()]


def test_a_probes_record_is_its_own_listeners_when_another_connection_shares_its_client_port(lab: RunningLab) -> None:
    """The kernel gives one local port to two connections at once when their destinations differ. A later
    connection from the probe's port to another listener (in `lbsim run`: sslyze's scan) is not the probe's."""
    from simulator.harness.scenario import ScenarioLab

    scenario = ScenarioLab(lab)
    other = lab.port("tencent-one-way")
    with socket.socket() as s:  # same client port, another listener, opened and logged after the probe
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(5):
            result = scenario.probe("aliyun-one-way")
            assert result.ok and result.local_port
            try:
                s.bind(("127.0.0.1", result.local_port))
                break
            except OSError as e:  # another process's connection took the freed port meanwhile: probe again
                if e.errno != errno.EADDRINUSE or attempt == 4:
                    raise
        s.connect(("127.0.0.1", other))
        s.sendall(b"\x16\x03\x01\x00\x05hello")  # a broken hello: the listener logs it and closes
        s.settimeout(5)
        while s.recv(4096):
            pass
    wait_for(lambda: any(r["listener_port"] == other and r["client"].endswith(f":{result.local_port}")
                         for r in scenario.connections(since=result.mark)))
    assert scenario.connection_for(result)["listener_port"] == lab.port("aliyun-one-way")
