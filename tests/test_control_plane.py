"""Balancing, health checks, sticky sessions, timeouts, activation and the management API, on a live lab."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from helpers import read_response, wait_for

from simulator.dataplane.addons import sticky
from simulator.harness.running import RunningLab
from simulator.runtime import lab as lab_module
from simulator.policies.probe import probe


def backend_of(lab: RunningLab, port: int, path: str = "/", headers: dict | None = None) -> tuple[str, dict]:
    status, body, response_headers = lab.get(port, path, headers=headers)
    assert status == 200, body
    return response_headers["x-backend"], response_headers


def create(lab: RunningLab, **fields) -> int:
    body = {"port": 0, "server_certificate": "lab-rsa", "activation_delay": 0, "start": True,
            "backend_servers": [{"backend": "web-1"}, {"backend": "web-2"}], **fields}
    body = {k: v for k, v in body.items() if v is not None}
    status, listener = lab.api("POST", "/v1/listeners", body)
    assert status == 202, listener
    port = listener["port"]
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 10)
    return port


@pytest.fixture
def cleanup(lab: RunningLab):
    ports: list[int] = []
    yield ports
    for port in ports:
        lab.api("DELETE", f"/v1/listeners/{port}")
    for name in ("web-1", "web-2"):
        lab.api("POST", f"/v1/backends/{name}/health", {"healthy": True, "down": False})


def test_weighted_round_robin_honours_weights(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, backend_servers=[{"backend": "web-1", "weight": 75}, {"backend": "web-2", "weight": 25}],
                  health_check={"enabled": False})
    cleanup.append(port)
    counts = collections.Counter(backend_of(lab, port)[0] for _ in range(200))
    # Smooth wrr is deterministic: 3 of every 4 requests, within one request of exact.
    assert abs(counts["web-1"] - 150) <= 1 and abs(counts["web-2"] - 50) <= 1, counts


def test_round_robin_ignores_weights(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, scheduler="rr", backend_servers=[{"backend": "web-1", "weight": 90}, {"backend": "web-2", "weight": 10}],
                  health_check={"enabled": False})
    cleanup.append(port)
    counts = collections.Counter(backend_of(lab, port)[0] for _ in range(100))
    assert counts["web-1"] == counts["web-2"] == 50, counts


def test_weighted_least_connections_avoids_the_busy_backend(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, scheduler="wlc", request_timeout=180, health_check={"enabled": False})  # 1.8 s scaled
    cleanup.append(port)
    backends = lab.lab.get_listener(port).backends
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(backend_of, lab, port, "/slow?delay_ms=1200")
        busy = wait_for(lambda: next((n for n, b in backends.items() if b.active), None), 2)
        # While one backend holds a request, every quick request goes to the idle one.
        quick = collections.Counter(backend_of(lab, port)[0] for _ in range(10))
        assert slow.result()[0] == busy
    assert busy not in quick and sum(quick.values()) == 10, (busy, quick)


def test_health_check_fails_over_and_recovers(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"interval": 2, "healthy_threshold": 2, "unhealthy_threshold": 2, "uri": "/health"})
    cleanup.append(port)
    listener = lab.lab.get_listener(port)
    lab.api("POST", "/v1/backends/web-1/health", {"healthy": False})
    wait_for(lambda: not listener.backends["web-1"].healthy, 5)
    assert {backend_of(lab, port)[0] for _ in range(10)} == {"web-2"}
    lab.api("POST", "/v1/backends/web-1/health", {"healthy": True})
    wait_for(lambda: listener.backends["web-1"].healthy, 5)
    assert {backend_of(lab, port)[0] for _ in range(10)} == {"web-1", "web-2"}


def test_502_when_no_backend_is_healthy(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"interval": 2, "healthy_threshold": 2, "unhealthy_threshold": 2})
    cleanup.append(port)
    listener = lab.lab.get_listener(port)
    for name in ("web-1", "web-2"):
        lab.api("POST", f"/v1/backends/{name}/health", {"healthy": False})
    wait_for(lambda: not any(b.healthy for b in listener.backends.values()), 5)
    status, body, headers = lab.get(port, "/")
    assert status == 502 and b"502 Bad Gateway" in body and headers["server"] == "Tengine"


def test_502_when_the_backend_resets(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"enabled": False}, backend_servers=[{"backend": "web-1"}])
    cleanup.append(port)
    status, _, _ = lab.get(port, "/?fault=reset")
    assert status == 502


def test_504_when_the_backend_exceeds_request_timeout(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, profile="tencent-clb", request_timeout=10, health_check={"enabled": False})  # 0.1 s -> floor 1 s
    cleanup.append(port)
    started = time.monotonic()
    status, body, headers = lab.get(port, "/slow?delay_ms=4000")
    assert status == 504 and headers["server"] == "stgw"
    assert 1.0 <= time.monotonic() - started < 3
    assert lab.get(port, "/fast")[0] == 200  # the listener is fine afterwards


def test_sticky_insert_cookie_pins_the_backend(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, sticky_session={"type": "insert", "cookie_timeout": 600}, health_check={"enabled": False})
    cleanup.append(port)
    backend, headers = backend_of(lab, port)
    cookie = headers["set-cookie"]
    # CookieTimeout scales like every vendor timer: 600 s x time_scale (6 s at 0.01). Compare the whole
    # number: a substring test would also pass for an unscaled Max-Age=600 or for 60.
    max_age = sticky.cookie_max_age(600, lab.config.time_scale)
    assert max_age != 600
    found = re.search(r"(?:^|;)\s*Max-Age=(\d+)\s*(?:;|$)", cookie)
    assert cookie.startswith("SERVERID=") and found and int(found[1]) == max_age, cookie
    value = cookie.split(";", 1)[0]
    assert {backend_of(lab, port, headers={"Cookie": value})[0] for _ in range(10)} == {backend}
    # And it is enforced: the same cookie set longer ago than its Max-Age no longer pins (wrr alternates).
    token = value.split("=", 1)[1].split("|")[0]
    stale = int(time.time()) - max_age - 2
    expired = f"SERVERID={token}|{stale}|{stale}"
    assert {backend_of(lab, port, headers={"Cookie": expired})[0] for _ in range(10)} == {"web-1", "web-2"}


def test_sticky_server_mode_rewrites_the_backend_cookie(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, sticky_session={"type": "server", "cookie": "JSESSIONID"}, health_check={"enabled": False})
    cleanup.append(port)
    status, body, headers = lab.get(port, "/login?set_cookie=JSESSIONID=abc123")
    backend = headers["x-backend"]
    name, _, value = headers["set-cookie"].split(";", 1)[0].partition("=")
    assert name == "JSESSIONID" and value.endswith("!abc123") and value != "abc123"
    for _ in range(6):
        status, body, headers = lab.get(port, "/next", headers={"Cookie": f"JSESSIONID={value}"})
        assert headers["x-backend"] == backend
        received = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert received["cookie"] == "JSESSIONID=abc123"  # the backend sees its own cookie


def test_new_aliyun_listener_is_stopped_until_started_then_configuring_then_running(lab: RunningLab, cleanup: list[int]) -> None:
    status, listener = lab.api("POST", "/v1/listeners", {"port": 0, "server_certificate": "lab-rsa",
                                                          "backend_servers": ["web-1"]})
    assert status == 202 and listener["status"] == "stopped"  # CreateLoadBalancerHTTPSListener: stopped
    port = listener["port"]
    cleanup.append(port)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert lab.api("POST", f"/v1/listeners/{port}/start")[1]["status"] == "configuring"
    started = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # not listening while configuring
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 5)
    elapsed = time.monotonic() - started
    # 45-180 s scaled by 0.01 (normally about one minute, never over three: Lab.activation_delay)
    assert 0.45 <= elapsed <= 1.8 + 0.5
    assert lab.get(port, "/")[0] == 200


def test_change_keeps_old_connections_and_new_ones_see_it_after_activation(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"enabled": False})
    cleanup.append(port)
    old = ssl.create_default_context(cafile=lab.ca_file).wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    status, changed = lab.api("PUT", f"/v1/listeners/{port}", {"server_certificate": "lab-rsa", "tls_policy": "tls_cipher_policy_1_2_strict_with_1_3",
                                                               "activation_delay": 50, "backend_servers": ["web-1", "web-2"]})
    assert status == 202 and changed["status"] == "configuring"
    assert probe("127.0.0.1", port, version="TLSv1.3").ok is False  # the old policy still serves new connections
    served = 0
    while lab.api("GET", f"/v1/listeners/{port}")[1]["status"] != "running":
        old.sendall(b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(old).startswith(b"HTTP/1.1 200")  # the connection from before the change is never cut
        served += 1
    assert served > 0
    assert probe("127.0.0.1", port, version="TLSv1.3").ok
    old.sendall(b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(old).startswith(b"HTTP/1.1 200")
    old.close()


def test_certificate_replaced_under_load_without_failed_handshakes(lab: RunningLab, cleanup: list[int]) -> None:
    from simulator.certs import LabPKI

    pki = LabPKI(key_type="rsa")
    status, info = lab.api("POST", "/v1/certificates", {"type": "server", "name": "rotating",
                                                        "cert": open(lab.files["server-rsa"]).read(),
                                                        "key": open(lab.files["server-rsa-key"]).read()})
    assert status == 201
    port = create(lab, server_certificate="rotating", health_check={"enabled": False}, activation_delay=30)
    cleanup.append(port)
    new = pki.server("localhost")
    trust = ssl.create_default_context(cafile=lab.ca_file)
    trust.load_verify_locations(cadata=pki.ca_pem.decode())
    failures, seen, stop = [], collections.Counter(), threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                with trust.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost") as s:
                    seen[s.getpeercert()["serialNumber"]] += 1
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    status, replaced = lab.api("PUT", f"/v1/certificates/{info['id']}", {"cert": new.chain_pem.decode(), "key": new.key_pem.decode()})
    assert status == 200 and replaced["id"] == info["id"]
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 5)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    after = probe("127.0.0.1", port)
    assert after.server_fingerprint_sha256.replace(":", "").lower() == hashlib.sha256(new.cert.public_bytes(Encoding.DER)).hexdigest()
    assert len(seen) == 2  # both certificates were served during the run


def test_deleting_a_certificate_in_use_is_refused_naming_listeners(lab: RunningLab) -> None:
    status, body = lab.api("DELETE", "/v1/certificates/lab-client-ca")
    assert status == 409
    assert body["error"]["code"] == "CertificateInUse"
    assert "aliyun-mutual" in body["error"]["message"] and "tencent-mutual" in body["error"]["message"]


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("POST", "/v1/listeners", {"port": 0, "server_certificate": "lab-rsa", "tls_policy": "tls_1_9"}, 400, "UnknownPolicy"),
        ("POST", "/v1/listeners", {"port": 0, "server_certificate": "nope"}, 400, "InvalidConfig"),
        ("POST", "/v1/listeners", {"port": "x", "server_certificate": "lab-rsa"}, 400, "InvalidConfig"),
        ("POST", "/v1/listeners", {"port": 0, "server_certificate": "lab-rsa", "sni": {"a.com": "lab-rsa"}}, 400, "InvalidConfig"),
        ("GET", "/v1/listeners/9", None, 404, "ListenerNotFound"),
        ("GET", "/v1/listeners/abc", None, 400, "InvalidPort"),
        ("DELETE", "/v1/traffic", None, 405, "MethodNotAllowed"),
        ("GET", "/v1/../etc/passwd", None, 404, "NotFound"),
        ("GET", "/v1/certificates/does-not-exist", None, 404, "CertificateNotFound"),
        ("POST", "/v1/certificates", {"type": "server", "name": "x", "cert": "not pem", "key": "nope"}, 400, "NotPem"),
    ],
)
def test_api_errors_are_json_with_codes(lab: RunningLab, method, path, body, status, code) -> None:
    got, payload = lab.api(method, path, body)
    assert got == status, payload
    assert payload["error"]["code"] == code
    assert "Traceback" not in json.dumps(payload)


def test_api_rejects_bad_json_without_changing_state(lab: RunningLab) -> None:
    import http.client

    before = lab.api("GET", "/v1/listeners")[1]
    conn = http.client.HTTPConnection(lab.lab.api.host, lab.lab.api.port, timeout=5)
    conn.request("POST", "/v1/listeners", body=b"{not json", headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 400 and json.loads(response.read())["error"]["code"] == "InvalidJson"
    conn.close()
    assert lab.api("GET", "/v1/listeners")[1] == before


def test_api_certificates_never_return_key_material(lab: RunningLab) -> None:
    status, body = lab.api("GET", "/v1/certificates")
    assert status == 200 and body["certificates"]
    text = json.dumps(body)
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_health_endpoint_and_listener_listing(lab: RunningLab) -> None:
    status, body = lab.api("GET", "/health")
    assert status == 200 and body["status"] == "ok"
    listeners = {l["name"]: l for l in lab.api("GET", "/v1/listeners")[1]["listeners"]}
    assert {"aliyun-one-way", "aliyun-mutual", "tencent-one-way", "tencent-mutual"} <= set(listeners)
    assert listeners["aliyun-mutual"]["mutual"] is True and listeners["aliyun-one-way"]["tls_policy"] == "tls_cipher_policy_1_0"


def test_stop_and_start_a_listener(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"enabled": False})
    cleanup.append(port)
    assert lab.api("POST", f"/v1/listeners/{port}/stop")[1]["status"] == "stopped"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    lab.api("POST", f"/v1/listeners/{port}/start")
    wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 5)
    assert lab.get(port, "/")[0] == 200


def test_tencent_listener_starts_at_once_and_sni_cannot_be_turned_off(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, profile="tencent-clb", sni={"ecdsa.lbsim.test": "lab-ecdsa"}, start=None)
    cleanup.append(port)
    status, body = lab.api("PUT", f"/v1/listeners/{port}", {"profile": "tencent-clb", "server_certificate": "lab-rsa",
                                                            "backend_servers": ["web-1"]})
    assert status == 400 and body["error"]["code"] == "SniCannotBeTurnedOff"
    assert lab.api("GET", f"/v1/listeners/{port}")[1]["sni"] == {"ecdsa.lbsim.test": "lab-ecdsa"}  # unchanged


def test_backend_health_survives_a_change_of_a_configured_listener(lab: RunningLab) -> None:
    """Listeners from the lab file keep their backends' health state across a reconfiguration."""
    listener = lab.listener("aliyun-one-way")
    assert set(listener.backends) == {"web-1", "web-2"}
    assert {id(b) for b in listener.active.backends} == {id(b) for b in listener.backends.values()}


# ---- health-check settings, each shown to change what the checker decides --------------------------------------

def backend_health(lab: RunningLab, port: int) -> dict[str, bool]:
    return {b["name"]: b["healthy"] for b in lab.api("GET", f"/v1/listeners/{port}")[1]["backend_servers"]}


def test_health_check_http_code_decides_what_counts_as_healthy(lab: RunningLab, cleanup: list[int]) -> None:
    """`http_code: [http_5xx]` marks a backend answering 200 down, and one answering 503 up."""
    check = {"interval": 1, "healthy_threshold": 2, "unhealthy_threshold": 2, "http_code": ["http_5xx"]}
    port = create(lab, health_check=check, backend_servers=[{"backend": "web-1"}])
    cleanup.append(port)
    wait_for(lambda: backend_health(lab, port) == {"web-1": False}, 5)  # /health answers 200: not a 5xx
    assert lab.get(port, "/")[0] == 502
    lab.api("POST", "/v1/backends/web-1/health", {"healthy": False})  # /health now answers 503
    wait_for(lambda: backend_health(lab, port) == {"web-1": True}, 5)
    assert lab.get(port, "/")[0] == 200


def test_health_check_timeout_fails_a_slow_backend(lab: RunningLab, cleanup: list[int]) -> None:
    """The same slow /health (1.5 s) passes a 300 s check timeout (3 s scaled) and fails a 2 s one (1 s floor)."""
    slow = {"uri": "/health?delay_ms=1500", "interval": 1, "healthy_threshold": 2, "unhealthy_threshold": 2}
    patient = create(lab, health_check={**slow, "timeout": 300}, backend_servers=[{"backend": "web-1"}])
    cleanup.append(patient)
    hasty = create(lab, health_check={**slow, "timeout": 2}, backend_servers=[{"backend": "web-1"}])
    cleanup.append(hasty)
    wait_for(lambda: backend_health(lab, hasty) == {"web-1": False}, 8)
    # Backends start healthy, so `healthy` alone would hold before any check ends: wait until the patient
    # listener has passed as many slow checks in a row as would have taken the backend out had they failed.
    checked = lab.lab.get_listener(patient).backends["web-1"]
    wait_for(lambda: checked.ok_streak >= slow["unhealthy_threshold"], 10)
    assert backend_health(lab, patient) == {"web-1": True}
    assert lab.get(patient, "/")[0] == 200 and lab.get(hasty, "/")[0] == 502


class Recorder(ThreadingHTTPServer):
    """A plain HTTP backend on loopback that records each request's method and path and answers `status`.
    Requests for /held... wait for `gate` to open: held for exactly as long as a test needs."""

    daemon_threads = True

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.status = 200
        self.gate = gate or threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, body: bool) -> None:
                server.seen.append((self.command, self.path))
                if self.path.startswith("/held"):
                    server.gate.wait(60)
                payload = b"recorded\n"
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                self.answer(True)

            def do_HEAD(self) -> None:
                self.answer(False)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def checks(self) -> list[tuple[str, str]]:
        return [s for s in list(self.seen) if s[1].startswith("/check")]

    def close(self) -> None:
        self.gate.set()  # no handler left waiting
        self.shutdown()
        self.server_close()


@contextlib.contextmanager
def recording_lab(tmp_path, time_scale: float = 0.01, gate: threading.Event | None = None):
    """A lab whose two backends are recording servers: `app` and `side` (another port). The servers are
    closed afterwards, also when the lab fails to start."""
    from simulator.certs import LabPKI
    from simulator.harness.running import start_lab
    from simulator.harness.scenario import LabBuilder

    recorders: list[Recorder] = []
    try:
        for _ in range(2):
            recorders.append(Recorder(gate))
        app, side = recorders
        pki = LabPKI()
        builder = (LabBuilder(time_scale=time_scale).server_certificate("web", pki.server("localhost"))
                   .backend("app", app.address).backend("side", side.address))
        running = start_lab(builder.to_dict(), out_dir=tmp_path / "lab")
        try:
            (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
            running.files["ca"] = str(tmp_path / "ca.pem")  # what `lab.get` trusts
            yield running, app, side
        finally:
            running.stop()
    finally:
        for recorder in recorders:
            recorder.close()


@pytest.fixture
def recorders(tmp_path):
    with recording_lab(tmp_path) as lab_and_backends:
        yield lab_and_backends


def test_health_check_method_and_connect_port(recorders) -> None:
    lab, app, side = recorders

    def listener(**check) -> int:
        check = {"interval": 1, "healthy_threshold": 2, "unhealthy_threshold": 2, **check}
        status, created = lab.api("POST", "/v1/listeners", {"port": 0, "start": True, "activation_delay": 0,
                                                             "server_certificate": "web", "backend_servers": ["app"],
                                                             "health_check": check})
        assert status == 202, created
        return created["port"]

    head = listener(uri="/check-head")  # method defaults to head
    get = listener(uri="/check-get", method="get")
    wait_for(lambda: {"/check-head", "/check-get"} <= {p for _, p in app.checks()}, 5)
    assert {m for m, p in app.checks() if p == "/check-head"} == {"HEAD"}
    assert {m for m, p in app.checks() if p == "/check-get"} == {"GET"}
    for port in (head, get):
        lab.api("DELETE", f"/v1/listeners/{port}")

    # connect_port: the checks go to the other port; its answer alone decides the backend's health.
    side_port = int(side.address.rsplit(":", 1)[1])
    side.status = 503
    port = listener(uri="/check-side", connect_port=side_port)
    wait_for(lambda: any(p == "/check-side" for _, p in side.checks()), 5)
    wait_for(lambda: backend_health(lab, port) == {"app": False}, 5)
    assert not any(p == "/check-side" for _, p in app.checks())
    side.status = 200
    wait_for(lambda: backend_health(lab, port) == {"app": True}, 5)
    status, body, _ = lab.get(port, "/served")
    assert status == 200 and ("GET", "/served") in app.seen and ("GET", "/served") not in side.seen


def test_weighted_least_connections_with_unequal_weights(tmp_path) -> None:
    """wlc: fewest requests in flight per unit of weight, ties to the heavier server. With weights 3:1 and
    eight requests held open one after another, the picks are exactly those the rule gives."""
    weights = {"app": 3, "side": 1}
    gate = threading.Event()  # the backends hold every request until all eight are in flight
    # time_scale 0.1: the 180 s request timeout is 18 s, far more than eight handshakes take on a loaded machine.
    with recording_lab(tmp_path, time_scale=0.1, gate=gate) as (lab, app, side):
        status, created = lab.api("POST", "/v1/listeners", {
            "port": 0, "start": True, "activation_delay": 0, "server_certificate": "web", "scheduler": "wlc",
            "request_timeout": 180, "health_check": {"enabled": False},
            "backend_servers": [{"backend": name, "weight": weight} for name, weight in weights.items()]})
        assert status == 202, created
        port = created["port"]
        wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 10)
        states = lab.lab.get_listener(port).backends
        expected, active = [], {"app": 0, "side": 0}
        for _ in range(8):
            pick = min(active, key=lambda n: (active[n] / weights[n], -weights[n]))
            active[pick] += 1
            expected.append(pick)
        with ThreadPoolExecutor(8) as pool:
            held = []
            try:
                for i in range(8):
                    held.append(pool.submit(lab.get, port, f"/held-{i}"))
                    wait_for(lambda: sum(b.active for b in states.values()) == i + 1, 10, 0.005)  # before the next
            finally:
                gate.set()
            assert [f.result()[0] for f in held] == [200] * 8
        got = [next(name for name, r in (("app", app), ("side", side)) if ("GET", f"/held-{i}") in r.seen)
               for i in range(8)]
    assert got == expected == ["app", "side", "app", "app", "app", "side", "app", "app"], got


# ---- management API paths ---------------------------------------------------------------------------------------

def test_health_endpoint_answers_503_while_a_started_listener_cannot_serve(lab: RunningLab) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        status, created = lab.api("POST", "/v1/listeners", {"port": port, "server_certificate": "lab-rsa", "start": True,
                                                            "activation_delay": 0, "backend_servers": ["web-1"]})
        assert status == 202, created
        wait_for(lambda: lab.api("GET", f"/v1/listeners/{port}")[1]["status"] == "running", 5)
        status, body = lab.api("GET", "/health")
        assert status == 503 and body["status"] == "starting" and body["listeners"][str(port)] == "running", body
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")
        squatter.close()
    status, body = lab.api("GET", "/health")
    assert status == 200 and body["status"] == "ok" and str(port) not in body["listeners"]


def test_listeners_name_the_suites_this_build_cannot_negotiate(lab: RunningLab) -> None:
    """aliyun's tls_cipher_policy_1_0 lists DES-CBC3-SHA; this OpenSSL has no 3DES: the API says so."""
    listeners = {l["name"]: l for l in lab.api("GET", "/v1/listeners")[1]["listeners"]}
    assert listeners["aliyun-one-way"]["tls_unavailable_suites"] == ["DES-CBC3-SHA"]
    assert listeners["aliyun-mutual"]["tls_unavailable_suites"] == []  # strict_with_1_3 has no 3DES
    r = probe("127.0.0.1", lab.port("aliyun-one-way"), version="TLSv1.2", ciphers="DES-CBC3-SHA:@SECLEVEL=0")
    assert not r.ok  # a client offering only 3DES is refused (a real listener would take it)


def test_traffic_handshake_error_is_readable_text(lab: RunningLab) -> None:
    port = lab.port("aliyun-mutual")
    assert not probe("127.0.0.1", port, version="TLSv1.2").ok  # no client certificate
    def failed() -> list[dict]:
        records = lab.api("GET", "/v1/traffic?connections=1")[1]["connections"]
        return [r for r in records if r["listener_port"] == port and r.get("traffic")
                and not r["traffic"]["handshake_complete"]]
    wait_for(lambda: failed(), 5)
    errors = {r["traffic"]["handshake_error"] for r in failed()}
    assert "peer did not return a certificate" in errors, errors
    assert not any(e.startswith(("Error(", "SysCallError(")) or "SSL routines" in e for e in errors), errors


def test_connections_filtered_by_listener(lab: RunningLab, cleanup: list[int]) -> None:
    port = create(lab, health_check={"enabled": False})
    cleanup.append(port)
    for i in range(3):
        assert lab.get(port, f"/mine-{i}")[0] == 200
    assert lab.get("aliyun-one-way", "/other")[0] == 200
    wait_for(lambda: len(lab.api("GET", f"/v1/connections?listener={port}")[1]["connections"]) == 3, 5)
    status, body = lab.api("GET", f"/v1/connections?listener={port}")
    assert status == 200 and {r["listener_port"] for r in body["connections"]} == {port}
    everything = lab.api("GET", "/v1/connections")[1]["connections"]
    assert {r["listener_port"] for r in everything} > {port}  # the filter really removed the others
    assert lab.api("GET", f"/v1/connections?listener={port}&limit=1")[1]["connections"] == body["connections"][-1:]


def test_a_picked_port_is_never_a_deleted_listeners(lab: RunningLab, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel may hand a deleted listener's port out again (it did in CI): the new listener would then
    # share `?listener=PORT` with the old one's connection records.
    old = create(lab, health_check={"enabled": False})
    assert lab.get(old, "/old")[0] == 200
    assert lab.api("DELETE", f"/v1/listeners/{old}")[0] == 204
    offered: list[int] = []
    real = lab_module.free_port
    def kernel(address: str) -> int:
        port = old if not offered else real(address)
        offered.append(port)
        return port
    monkeypatch.setattr(lab_module, "free_port", kernel)
    port = create(lab, health_check={"enabled": False})
    try:
        assert offered[0] == old and port != old  # offered again, and passed over
        assert lab.get(port, "/new")[0] == 200
        records = wait_for(lambda: lab.api("GET", f"/v1/connections?listener={port}")[1]["connections"], 5)
        assert len(records) == 1  # its own, not the old one's
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")


def test_deleting_a_listener_closes_its_port(lab: RunningLab) -> None:
    port = create(lab, health_check={"enabled": False})
    assert lab.get(port, "/")[0] == 200
    status, body = lab.api("DELETE", f"/v1/listeners/{port}")
    assert status == 204 and body is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert port not in {l["port"] for l in lab.api("GET", "/v1/listeners")[1]["listeners"]}
    for method in ("GET", "DELETE"):
        status, body = lab.api(method, f"/v1/listeners/{port}")
        assert status == 404 and body["error"]["code"] == "ListenerNotFound"
