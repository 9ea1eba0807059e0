"""Lab wiring beyond the default lab: external backends, inline PEM, a reused store, refusal before start."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import socketserver
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from simulator.backends import BackendProcess
from simulator.certs import LabPKI
from simulator.errors import LbsimError
from simulator.harness.running import start_lab
from simulator.net import free_port, free_port_on
from simulator.tools.soak import wait_for


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI(key_type="rsa")


def lab_config(pki: LabPKI, backends: list[dict], home: Path, cert_pem: bytes | None = None) -> dict:
    issued = pki.server("localhost")
    return {
        "time_scale": 0.01,
        "home": str(home),
        "certificates": [{"name": "web", "type": "server", "cert": (cert_pem or issued.chain_pem).decode(),
                          "key": issued.key_pem.decode()}],
        "backends": backends,
        "listeners": [{"name": "l", "port": 0, "server_certificate": "web", "backend_servers": ["app"],
                       "health_check": {"enabled": False}}],
    }


def test_an_external_backend_by_address_and_inline_pem(tmp_path: Path, pki: LabPKI) -> None:
    with BackendProcess(["outside"]) as process:
        config = lab_config(pki, [{"name": "app", "address": process.addresses["outside"]}], tmp_path / "store")
        with start_lab(config, out_dir=tmp_path) as lab:
            ca = tmp_path / "ca.pem"
            ca.write_bytes(pki.ca_pem)
            lab.files["ca"] = str(ca)
            status, body, headers = lab.get("l", "/from-lab")
            assert status == 200 and headers["x-backend"] == "outside"
            assert json.loads(body)["path"] == "/from-lab"


# What a scripted backend answers, by request path: framings and encodings the mock backend does not send.
GZIPPED = gzip.compress(b"lbsim " * 200)
SCRIPTED = {
    "/gzip": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
             % len(GZIPPED) + GZIPPED,
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "/until-close": b"HTTP/1.0 203 Partial Story\r\nX-Kind: until-close\r\n\r\nread me to the end",
    "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
}


class ScriptedBackend(socketserver.ThreadingTCPServer):
    """A backend on loopback that answers each request with SCRIPTED[path], then closes."""

    daemon_threads = True

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            path = self.rfile.readline().split(b" ")[1].decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(SCRIPTED[path])

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def scripted_lab(tmp_path_factory: pytest.TempPathFactory, pki: LabPKI):
    tmp = tmp_path_factory.mktemp("scripted")
    backend = ScriptedBackend()
    config = lab_config(pki, [{"name": "app", "address": "127.0.0.1:%d" % backend.server_address[1]}], tmp / "store")
    with start_lab(config, out_dir=tmp) as lab:
        (tmp / "ca.pem").write_bytes(pki.ca_pem)
        lab.files["ca"] = str(tmp / "ca.pem")
        yield lab
    backend.shutdown()
    backend.server_close()


def raw_get(lab, path: str, method: str = "GET") -> tuple[int, str, dict[str, str], bytes]:
    """Status, reason, headers and the body bytes as they came (http.client decodes no Content-Encoding)."""
    conn = http.client.HTTPSConnection("localhost", lab.port("l"), context=lab.ssl_context(), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.reason, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_an_encoded_body_reaches_the_client_as_the_backend_sent_it(scripted_lab) -> None:
    status, _, headers, body = raw_get(scripted_lab, "/gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert body == GZIPPED and headers["content-length"] == str(len(GZIPPED))  # not compressed a second time


@pytest.mark.parametrize("path, status, reason, body", [
    ("/chunked", 200, "OK", b"hello world"),
    ("/until-close", 203, "Partial Story", b"read me to the end"),
])
def test_a_body_the_backend_framed_otherwise_gets_its_length(scripted_lab, path: str, status: int, reason: str,
                                                            body: bytes) -> None:
    got, got_reason, headers, got_body = raw_get(scripted_lab, path)
    assert (got, got_reason, got_body) == (status, reason, body)
    assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers


def test_head_keeps_the_backends_length_and_204_gets_none(scripted_lab) -> None:
    status, _, headers, body = raw_get(scripted_lab, "/head", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "1234")
    status, _, headers, body = raw_get(scripted_lab, "/empty")
    assert (status, body) == (204, b"") and "content-length" not in headers


def test_a_store_reused_by_a_second_lab_keeps_ids_and_replaces_by_name(tmp_path: Path, pki: LabPKI) -> None:
    home = tmp_path / "store"
    backends = [{"name": "app", "port": 0}]
    with start_lab(lab_config(pki, backends, home), out_dir=tmp_path / "one") as lab:
        first = lab.lab.store.describe("web")
    with start_lab(lab_config(pki, backends, home), out_dir=tmp_path / "two") as lab:
        second = lab.lab.store.describe("web")
        assert [c.name for c in lab.lab.store.list()] == ["web"]  # not uploaded twice
    assert second.id == first.id and second.revision == first.revision + 1
    assert second.fingerprint != first.fingerprint


def test_a_lab_file_with_an_rsa_and_an_ecc_certificate_on_one_tencent_listener(tmp_path: Path, pki: LabPKI) -> None:
    from simulator.policies.probe import probe

    ecc = LabPKI(key_type="ecdsa").server("localhost")
    config = lab_config(pki, [{"name": "app", "port": 0}], tmp_path / "store")
    config["certificates"].append({"name": "web-ecc", "cert": ecc.chain_pem.decode(), "key": ecc.key_pem.decode()})
    listener = config["listeners"][0]
    del listener["server_certificate"]
    listener.update(profile="tencent-clb", server_certificates=["web", "web-ecc"])
    with start_lab(config, out_dir=tmp_path / "ok") as lab:
        port = lab.port("l")
        got = {kind: probe("127.0.0.1", port, version="TLSv1.2", ciphers=f"ECDHE-{kind}-AES128-GCM-SHA256")
               for kind in ("ECDSA", "RSA")}
        for kind, name in (("ECDSA", "web-ecc"), ("RSA", "web")):
            want = lab.lab.store.describe(name).fingerprint_sha256.replace(":", "").lower()
            assert got[kind].ok and got[kind].server_fingerprint_sha256.replace(":", "").lower() == want, kind
        assert sorted(lab.lab.usage()) == sorted(c.id for c in lab.lab.store.list())  # both in use
    # Two RSA certificates: the lab is refused at start, naming the field.
    issued = pki.server("localhost")
    config["certificates"][1].update(cert=issued.chain_pem.decode(), key=issued.key_pem.decode())
    with pytest.raises(LbsimError) as info:
        start_lab({**config, "home": str(tmp_path / "store2")}, out_dir=tmp_path / "refused")
    assert info.value.field == "listeners[0].server_certificates" and "one RSA and one ECDSA" in info.value.message


def test_a_bad_certificate_refuses_the_lab_before_anything_listens(tmp_path: Path, pki: LabPKI) -> None:
    port = free_port()
    config = lab_config(pki, [{"name": "app", "port": 0}], tmp_path / "store", cert_pem=b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    config["listeners"][0]["port"] = port
    with pytest.raises(LbsimError) as info:
        start_lab(config, out_dir=tmp_path)
    assert info.value.code in ("MalformedCertificate", "NotPem")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stopping_a_lab_with_open_client_connections_logs_no_error(tmp_path: Path, pki: LabPKI,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Connections still open at stop are cancelled; that is no error (Python 3.12.1's asyncio logged one
    with a stack trace per connection)."""
    config = lab_config(pki, [{"name": "app", "port": 0}], tmp_path / "store")
    config["listeners"][0]["idle_timeout"] = 60  # nothing closes them before the stop
    with caplog.at_level(logging.WARNING):
        lab = start_lab(config, out_dir=tmp_path)
        try:
            open_ones = [socket.create_connection(("127.0.0.1", lab.port("l"))) for _ in range(3)]
            for s in open_ones:
                s.sendall(b"\x16\x03\x01")  # a ClientHello begun: mitmproxy holds the connection waiting for more
            assert wait_for(lambda: len(lab.lab.registry.clients) == 3, 5)
        finally:
            lab.stop()
        for s in open_ones:
            s.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage()[:200] for r in errors]


def test_a_bad_workers_override_names_the_field(tmp_path: Path, pki: LabPKI) -> None:
    with pytest.raises(LbsimError) as e:
        start_lab(lab_config(pki, [{"name": "app", "port": 0}], tmp_path / "store"), out_dir=tmp_path, workers=0)
    assert e.value.field == "workers" and "1..64" in e.value.message


def test_load_balancers_listen_on_addresses_of_their_own(tmp_path: Path, pki: LabPKI) -> None:
    """Two load balancers, two 127.0.0.x addresses; each listener binds its own; lab-file listeners stay on
    127.0.0.1 under the load balancer their lb_id names; two load balancers may each listen on the same port."""
    config = lab_config(pki, [{"name": "app", "port": 0, "instance_id": "i-app"}], tmp_path / "store")
    with start_lab(config, out_dir=tmp_path / "out") as running:
        lab = running.lab
        assert lab.instance_ids() == {"i-app": "app"} and lab.backend_of_instance("i-app") == "app"
        with pytest.raises(LbsimError) as unknown:
            lab.backend_of_instance("i-nope")
        assert unknown.value.code == "BackendNotFound" and unknown.value.field == "instance_id"
        file_listener = running.listener("l")
        assert file_listener.address == "127.0.0.1" and lab.loadbalancers.get("lb-lbsim").from_lab_file
        one = lab.create_load_balancer("aliyun-slb", "one")
        two = lab.create_load_balancer("tencent-clb", "two")
        assert len({one.address, two.address, "127.0.0.1"}) == 3
        assert one.id.startswith("lb-bp1") and two.id.startswith("lb-") and one.name == "one"
        port = free_port_on(one.address, two.address, "127.0.0.1")
        spec = lab.spec_from_api({"port": port, "lb_id": one.id, "server_certificate": "web",
                                  "backend_servers": ["app"], "health_check": {"enabled": False}})
        listener = running.call(lab.add_listener(spec, start=True))
        assert listener.address == one.address and lab.listeners_of(one.id) == [listener]
        wait_for(lambda: listener.status == "running", 10)
        with socket.create_connection((one.address, port), timeout=5):
            pass
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()  # not on the lab's own address
        same_port = lab.spec_from_api({"port": port, "lb_id": two.id, "profile": "tencent-clb",
                                       "server_certificate": "web"})
        other = running.call(lab.add_listener(same_port, start=True))  # its own address: no conflict
        assert other.address == two.address and lab.listeners_of(two.id) == [other]
        wait_for(lambda: other.status == "running" and lab.serving(other), 10)
        with socket.create_connection((two.address, port), timeout=5):
            pass
        with pytest.raises(LbsimError) as taken:  # the same load balancer twice on one port: refused
            running.call(lab.add_listener(replace(same_port, name="again")))
        assert taken.value.code == "ListenerExists" and two.address in taken.value.message
        with pytest.raises(LbsimError) as ambiguous:  # the port alone no longer names one listener
            lab.get_listener(port)
        assert ambiguous.value.code == "AmbiguousListener"
        assert ambiguous.value.details["choices"] == sorted([listener.key, other.key])
        assert lab.get_listener(f"{two.address}:{port}") is other and lab.listener_at(one.id, port) is listener
        running.call(lab.delete_load_balancer(one.id))
        assert listener.key not in lab.registry.listeners and one.id not in [lb.id for lb in lab.loadbalancers.list()]
        assert lab.get_listener(port) is other  # unambiguous again
        with socket.create_connection((two.address, port), timeout=5):  # the other one still serves
            pass
        with pytest.raises(LbsimError):
            lab.loadbalancers.get(one.id)
