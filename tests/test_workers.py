"""Multi-worker listeners (`workers: 2`): two processes share each listener port (SO_REUSEPORT), one
certificate store and one set of session-ticket keys; worker 0 steers the other and keeps the log.

Which worker served a connection is read from the connection log (records of worker k > 0 carry
`"worker": k`), found by the probe's local port. The kernel spreads connections by a hash of the
4-tuple, so the tests probe until both workers have served. About 15 s on 2 busy cores.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL

from simulator.certs import LabPKI
from simulator.harness.running import RunningLab, start_lab
from simulator.policies import resolve_policy
from simulator.policies.context import build_server_context
from simulator.policies.testing import TLSTestServer
from simulator.policies.probe import ProbeResult, probe
from simulator.dataplane.resumption import (SharedSessionCache, derive_ticket_keys, get_ticket_keys,
                                            openssl_function, openssl_sessions, set_ticket_keys)
from simulator.net import free_port_on

TIME_SCALE = 0.01  # ticket lifetime 3 s, activation 0.6-1.8 s
REQUEST = b"GET /w HTTP/1.1\r\nHost: lbsim.test\r\nConnection: close\r\n\r\n"
MAX_PROBES = 60  # P(one worker gets none of 60 connections) = 2 * 2**-60


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI(key_type="rsa")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, pki: LabPKI) -> RunningLab:
    out = tmp_path_factory.mktemp("workers")
    server = pki.server("localhost", "127.0.0.1")
    (out / "ca.pem").write_bytes(pki.ca_pem)
    config = {
        "workers": 2,
        "time_scale": TIME_SCALE,
        "certificates": [{"name": "site", "type": "server", "cert": server.chain_pem.decode(),
                          "key": server.key_pem.decode()}],
        "backends": [{"name": "web-1", "port": 0}],
        "listeners": [{"name": "shared", "port": 0, "server_certificate": "site",
                       "tls_policy": "tls_cipher_policy_1_2_strict_with_1_3", "backend_servers": ["web-1"],
                       "health_check": {"interval": 2, "healthy_threshold": 2}}],
    }
    running = start_lab(config, out_dir=out, event_loop=os.environ.get("LBSIM_EVENT_LOOP") or None)  # as conftest's
    yield running
    running.stop()


def ca_file(lab: RunningLab) -> str:
    return str(lab.out_dir / "ca.pem")


def record_of(lab: RunningLab, result: ProbeResult, timeout: float = 10) -> dict[str, Any]:
    """The connection-log record of a probe's connection (worker 0 adds the workers' records shortly after)."""
    return lab.record_of(result, timeout=timeout)


def worker_of(lab: RunningLab, result: ProbeResult) -> int:
    return record_of(lab, result).get("worker", 0)


def probe_until(lab: RunningLab, want: Callable[[ProbeResult, int], bool], **kwargs: Any) -> tuple[ProbeResult, int]:
    """Probe the shared listener until `want(result, worker)`; fail after MAX_PROBES connections."""
    seen = []
    for _ in range(MAX_PROBES):
        result = probe("127.0.0.1", lab.port("shared"), cafile=ca_file(lab), http_request=REQUEST, **kwargs)
        assert result.ok, result.error
        worker = worker_of(lab, result)
        if want(result, worker):
            return result, worker
        seen.append(worker)
    raise AssertionError(f"condition not met in {MAX_PROBES} connections (workers seen: {sorted(set(seen))})")


def test_two_processes_serve_the_port_and_worker_0_keeps_one_log(lab: RunningLab) -> None:
    workers: set[int] = set()
    result, _ = probe_until(lab, lambda r, w: workers.add(w) or workers == {0, 1})
    assert result.http_response.startswith(b"HTTP/1.1 200")
    # One file, one writer (worker 0): worker 1's records are in its log file and its API.
    records = [json.loads(line) for line in (lab.out_dir / "connections.jsonl").read_text().splitlines()]
    assert {r.get("worker", 0) for r in records} == {0, 1}
    status, body = lab.api("GET", "/v1/connections?limit=10000")
    assert status == 200 and {r.get("worker", 0) for r in body["connections"]} == {0, 1}
    assert len(body["connections"]) == len(records)
    status, traffic = lab.api("GET", "/v1/traffic")
    assert traffic["listeners"][0]["connections"] == len(records)


def test_worker_0_keeps_the_workers_records_and_a_worker_keeps_no_copies(lab: RunningLab) -> None:
    """A worker's log is a pipe to worker 0, which keeps every record (ledger, recent ones); a worker's own
    copies would only grow. Worker 0's log is switched to a worker's way for a few connections: it still
    writes and counts each line, and keeps what comes from the pipe, but none of its own."""
    log = lab.lab.connection_log
    assert log is not None and log.keep  # worker 0; the workers' labs (with a seat) make theirs with keep=False
    settle = lambda: lab.call(lab.lab.settle_log(5.0), timeout=10)  # noqa: E731 - every record in every log
    settle()
    path = lab.out_dir / "connections.jsonl"
    lines, kept, recent, logged = len(path.read_text().splitlines()), len(lab.lab.ledger.records), \
        len(lab.lab.registry.recent), log.logged
    log.keep = False
    try:
        ports = set()
        for _ in range(12):  # P(worker 0 gets none of 12) = 2**-12: the kernel spreads by a hash
            result = probe("127.0.0.1", lab.port("shared"), cafile=ca_file(lab), http_request=REQUEST)
            assert result.ok, result.error
            ports.add(f"127.0.0.1:{result.local_port}")
        settle()
    finally:
        log.keep = True
    new = [json.loads(line) for line in path.read_text().splitlines()[lines:]]
    assert {r["client"] for r in new} == ports, "every connection is in the log, whichever worker served it"
    own, theirs = [r for r in new if "worker" not in r], [r for r in new if r.get("worker") == 1]
    assert own and log.logged - logged == len(own)  # worker 0 wrote and counted its own lines
    # ... and kept only what came down the pipe from worker 1.
    assert len(lab.lab.ledger.records) - kept == len(theirs) == len(lab.lab.registry.recent) - recent


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_ticket_issued_by_one_worker_resumes_on_the_other(lab: RunningLab, version: str) -> None:
    first = probe("127.0.0.1", lab.port("shared"), cafile=ca_file(lab), version=version, http_request=REQUEST)
    assert first.ok and first.session is not None
    issuer = worker_of(lab, first)
    resumed, worker = probe_until(lab, lambda r, w: w != issuer, version=version, session=first.session)
    assert resumed.resumed, f"{version}: worker {worker} did not resume worker {issuer}'s ticket"
    record = record_of(lab, resumed)
    assert record["resumed"] is True and record["tls_protocol"] == version
    assert record["traffic"]["resumed"] is True


def test_both_workers_use_the_one_store_and_follow_a_certificate_replacement(lab: RunningLab, pki: LabPKI) -> None:
    fingerprints: dict[int, set[str]] = {0: set(), 1: set()}

    def note(result: ProbeResult, worker: int) -> bool:
        fingerprints[worker].add(result.server_fingerprint_sha256)
        return all(fingerprints.values())

    probe_until(lab, note)
    assert fingerprints[0] == fingerprints[1] and len(fingerprints[0]) == 1
    old = fingerprints[0].pop()

    new = pki.server("localhost", "127.0.0.1")
    status, body = lab.api("PUT", "/v1/certificates/site", {"cert": new.chain_pem.decode(), "key": new.key_pem.decode()})
    assert status == 200, body
    # The change activates after the (scaled) activation delay, at the same moment in both workers.
    listener = lab.api("GET", f"/v1/listeners/{lab.port('shared')}")[1]
    time.sleep((listener["activates_in"] or 0) + 0.3)
    fingerprints = {0: set(), 1: set()}
    probe_until(lab, note)
    assert fingerprints[0] == fingerprints[1] and len(fingerprints[0]) == 1
    assert old not in fingerprints[0]


def test_stop_and_start_reach_every_worker(lab: RunningLab) -> None:
    assert_stop_and_start_reach_every_worker(lab)


def assert_stop_and_start_reach_every_worker(lab: RunningLab) -> None:
    port = lab.port("shared")
    status, _ = lab.api("POST", f"/v1/listeners/{port}/stop")
    assert status == 200
    # The API answers once every worker closed the port: no connection gets through, whoever it hashes to.
    refused = [probe("127.0.0.1", port, timeout=2) for _ in range(20)]
    assert all(not r.ok and "refused" in (r.error or "").lower() for r in refused), [r.error for r in refused]
    status, body = lab.api("POST", f"/v1/listeners/{port}/start")
    assert status == 200
    time.sleep((body["activates_in"] or 0) + 0.3)
    workers: set[int] = set()
    probe_until(lab, lambda r, w: workers.add(w) or workers == {0, 1})


def test_workers_take_worker_0s_health_verdicts(lab: RunningLab) -> None:
    """Worker 0 alone checks the backends; when it takes one out, every worker answers 502, then 200 again."""
    def statuses_until(status: bytes) -> None:
        seen: dict[int, bytes] = {}

        def note(result: ProbeResult, worker: int) -> bool:
            seen[worker] = result.http_response[:12]
            return seen.get(0) == seen.get(1) == status
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                probe_until(lab, note)
                return
            except AssertionError:
                pass
        raise AssertionError(f"not every worker answered {status!r}: {seen}")

    assert lab.api("POST", "/v1/backends/web-1/health", {"healthy": False})[0] == 200
    try:
        statuses_until(b"HTTP/1.1 502")
    finally:
        assert lab.api("POST", "/v1/backends/web-1/health", {"healthy": True})[0] == 200
    statuses_until(b"HTTP/1.1 200")


def test_ticket_keys_decide_resumption(pki: LabPKI) -> None:
    """The mechanism on its own: another context with the same keys resumes, with other keys it does not."""
    issued = pki.server("localhost", "127.0.0.1")
    policy = resolve_policy("aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3")

    def context(keys: bytes) -> SSL.Context:
        ctx = build_server_context(policy, [issued.cert], load_pem_private_key(issued.key_pem, None),
                                   session_id_context=b"lbsim-test")
        set_ticket_keys(ctx, keys)
        assert get_ticket_keys(ctx) == keys
        return ctx

    same, other = derive_ticket_keys(b"s" * 32, b"listener"), derive_ticket_keys(b"s" * 32, b"other listener")
    assert same != other and len(same) == 80
    with TLSTestServer(context(same)) as a, TLSTestServer(context(same)) as b, TLSTestServer(context(other)) as c:
        for version in ("TLSv1.2", "TLSv1.3"):
            first = probe("127.0.0.1", a.port, version=version, http_request=REQUEST)
            assert first.ok and first.session is not None
            assert probe("127.0.0.1", b.port, version=version, session=first.session, http_request=REQUEST).resumed
            assert not probe("127.0.0.1", c.port, version=version, session=first.session, http_request=REQUEST).resumed


def test_the_shared_cache_holds_what_a_session_id_finds(pki: LabPKI, tmp_path: Any) -> None:
    """The mechanism on its own: two workers' contexts with one shared cache and the same ticket keys. A TLS 1.2
    session without a ticket is stored once, and the other worker resumes it by ID. A TLS 1.3 session behind a
    stateless ticket is stored nowhere (the ticket carries it; OpenSSL offered two per connection) and resumes
    anyway. Stateful TLS 1.3 tickets (`SSL_OP_NO_TICKET` on the server) are session IDs, so those are stored and
    found, until the context is attached again without them. OpenSSL's own cache stays empty: the shared one is
    a worker's only one."""
    issued = pki.server("localhost", "127.0.0.1")
    policy = resolve_policy("aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3")
    keys = derive_ticket_keys(b"s" * 32, b"listener")
    cache = SharedSessionCache.create(tmp_path)

    def context(stateful: bool = False) -> SSL.Context:
        ctx = build_server_context(policy, [issued.cert], load_pem_private_key(issued.key_pem, None),
                                   session_id_context=b"lbsim-test")
        if stateful:
            ctx.set_options(SSL.OP_NO_TICKET)
        set_ticket_keys(ctx, keys)
        cache.attach(ctx, b"listener")
        return ctx

    def connect(port: int, version: str, **kwargs: Any) -> ProbeResult:
        result = probe("127.0.0.1", port, version=version, http_request=REQUEST, **kwargs)
        assert result.ok, result.error
        return result

    try:
        a, b = context(), context()
        with TLSTestServer(a) as one, TLSTestServer(b) as two:
            first = connect(one.port, "TLSv1.3")
            assert cache.stored == 0, "a TLS 1.3 session with a stateless ticket was stored"
            assert connect(two.port, "TLSv1.3", session=first.session).resumed
            assert (cache.stored, cache.found) == (0, 0)
            first = connect(one.port, "TLSv1.2", tickets=False)
            assert cache.stored == 1
            assert connect(two.port, "TLSv1.2", tickets=False, session=first.session).resumed
            assert cache.found == 1
        assert openssl_sessions(a) == openssl_sessions(b) == 0

        c, d = context(stateful=True), context(stateful=True)
        with TLSTestServer(c) as three, TLSTestServer(d) as four:
            first = connect(three.port, "TLSv1.3")
            assert cache.stored > 1  # one per ticket
            assert connect(four.port, "TLSv1.3", session=first.session).resumed
            assert cache.found == 2
        e = context(stateful=True)  # then stateless again, and attached again: its entry says so
        clear = openssl_function("SSL_CTX_clear_options", ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)
        clear(int(SSL._ffi.cast("uintptr_t", e._context)), SSL.OP_NO_TICKET)
        cache.attach(e, b"listener")
        stored = cache.stored
        with TLSTestServer(e) as five:
            connect(five.port, "TLSv1.3")
        assert cache.stored == stored
    finally:
        cache.close(unlink=True)


def test_a_session_id_cached_by_one_worker_resumes_on_the_other(lab: RunningLab) -> None:
    """Clients without tickets resume by session ID through the shared cache (nginx's `shared:` cache)."""
    first = probe("127.0.0.1", lab.port("shared"), cafile=ca_file(lab), version="TLSv1.2", tickets=False,
                  http_request=REQUEST)
    assert first.ok and not first.resumed
    issuer = worker_of(lab, first)
    resumed, worker = probe_until(lab, lambda r, w: w != issuer, version="TLSv1.2", tickets=False, session=first.session)
    assert resumed.resumed, f"worker {worker} did not find worker {issuer}'s session"
    assert record_of(lab, resumed)["resumed"] is True


def until(read: Callable[[], Any], want: Callable[[Any], bool], timeout: float = 10) -> Any:
    """Poll `read()` until `want(value)`; fail with the last value."""
    deadline = time.monotonic() + timeout
    while not want(value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert want(value), value
    return value


def test_a_scenarios_command_finds_its_record_whichever_worker_served_it(lab: RunningLab) -> None:
    """`ScenarioLab.run` waits for the log to settle: the record of a connection worker 1 served crosses a
    pipe to worker 0, so "no client open in worker 0" is not enough. Read at once, with no waiting of our own."""
    from simulator.harness.scenario import ScenarioLab

    scenario = ScenarioLab(lab)
    served: list[int] = []
    for _ in range(MAX_PROBES):
        result = scenario.run(["curl", "-sS", "--cacert", ca_file(lab), f"https://localhost:{lab.port('shared')}/settle"])
        result.assert_ok()
        records = scenario.connections("shared", since=result.mark)
        assert len(records) == 1, f"after {served}: {records}"  # logged before run() returned
        served.append(records[0].get("worker", 0))
        if served.count(0) >= 3 and served.count(1) >= 3:
            break
    assert served.count(1) >= 3, served


def test_the_api_counts_every_workers_connections_and_requests(lab: RunningLab) -> None:
    """`connections`, `active_requests` and the open clients are the lab's, not worker 0's share."""
    port, n = lab.port("shared"), 12
    tls = ssl.create_default_context(cafile=ca_file(lab))
    listener = lambda: lab.api("GET", f"/v1/listeners/{port}")[1]  # noqa: E731
    clients = [tls.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
               for _ in range(n)]
    try:
        until(listener, lambda l: l["connections"] == n)
        # P(the kernel gave worker 0 all 12) = 2**-12: the sum needs worker 1's report.
        assert lab.lab.get_listener(port).connections < n
        assert lab.api("GET", "/v1/connections?limit=0")[1]["active"] >= n
        for c in clients:  # requests that wait 3 s at the backend: all in flight at once
            c.sendall(b"GET /?delay_ms=3000 HTTP/1.1\r\nHost: lbsim.test\r\n\r\n")
        until(listener, lambda l: l["backend_servers"][0]["active_requests"] == n)
    finally:
        for c in clients:
            c.close()
    until(listener, lambda l: l["connections"] == 0 and l["backend_servers"][0]["active_requests"] == 0)


def test_a_worker_that_dies_is_started_again_and_follows_the_lab(lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    pool = lab.lab.workers
    assert pool is not None
    dead = pool.workers[0].proc.pid
    with caplog.at_level(logging.ERROR, logger="simulator.runtime.workers"):
        os.kill(dead, signal.SIGKILL)
        until(lambda: [w.proc.pid for w in pool.workers if w.ready.done() and not w.ready.exception()],
              lambda pids: len(pids) == 1 and dead not in pids, timeout=60)
    assert any("exited with -9; starting it again" in r.getMessage() for r in caplog.records), caplog.text
    probe_until(lab, lambda r, w: w == 1)  # the new worker 1 serves the listener it was given
    assert_stop_and_start_reach_every_worker(lab)  # and takes the lab's later changes


def test_a_load_balancers_listener_is_served_by_every_worker_on_its_own_address(lab: RunningLab) -> None:
    """A listener of a load balancer created at run time (as the vendor APIs create them) listens on the load
    balancer's 127.0.0.x in every worker process: the address travels with the listener's spec."""
    lb = lab.lab.create_load_balancer("aliyun-slb", "workers")
    spec = lab.lab.spec_from_api({"name": "on-lb", "port": 0, "lb_id": lb.id, "server_certificate": "site",
                                  "backend_servers": ["web-1"], "health_check": {"enabled": False}})
    listener = lab.call(lab.lab.add_listener(spec, start=True))
    try:
        assert listener.address == lb.address != "127.0.0.1"
        deadline = time.monotonic() + 15
        while listener.status != "running":
            assert time.monotonic() < deadline, listener.status
            time.sleep(0.05)
        workers: set[int] = set()
        for _ in range(MAX_PROBES):
            result = probe(lb.address, listener.port, cafile=ca_file(lab), http_request=REQUEST)
            assert result.ok and result.http_response.startswith(b"HTTP/1.1 200"), result.error
            workers.add(worker_of(lab, result))
            if workers == {0, 1}:
                break
        assert workers == {0, 1}
    finally:
        lab.call(lab.lab.delete_load_balancer(lb.id))


def test_two_load_balancers_on_one_port_are_each_served_by_every_worker(lab: RunningLab) -> None:
    """Two load balancers, one port: every worker serves both, and each record names the listener it reached."""
    lbs = [lab.lab.create_load_balancer("aliyun-slb", f"shared-port-{i}") for i in range(2)]
    port = free_port_on(*(lb.address for lb in lbs))
    listeners = []
    try:
        for i, lb in enumerate(lbs):
            spec = lab.lab.spec_from_api({"name": f"same-port-{i}", "port": port, "lb_id": lb.id,
                                          "server_certificate": "site", "backend_servers": ["web-1"],
                                          "health_check": {"enabled": False}})
            listeners.append(lab.call(lab.lab.add_listener(spec, start=True)))
        deadline = time.monotonic() + 15
        while any(l.status != "running" for l in listeners):
            assert time.monotonic() < deadline, [l.status for l in listeners]
            time.sleep(0.05)
        for lb, listener in zip(lbs, listeners):
            workers: set[int] = set()
            for _ in range(MAX_PROBES):
                result = probe(lb.address, port, cafile=ca_file(lab), http_request=REQUEST)
                assert result.ok and result.http_response.startswith(b"HTTP/1.1 200"), result.error
                record = record_of(lab, result)
                assert (record["listener"], record["listener_address"], record["listener_port"]) == \
                    (listener.name, lb.address, port)
                workers.add(record.get("worker", 0))
                if workers == {0, 1}:
                    break
            assert workers == {0, 1}, listener.name
        lab.call(lab.lab.set_running(listeners[0].key, False))  # stopped in every worker; the other serves on
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((lbs[0].address, port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the stopped listener still accepts"
            time.sleep(0.05)
        for _ in range(6):
            result = probe(lbs[1].address, port, cafile=ca_file(lab), http_request=REQUEST)
            assert result.ok and record_of(lab, result)["listener"] == listeners[1].name
    finally:
        for lb in lbs:
            lab.call(lab.lab.delete_load_balancer(lb.id))


def verify_statuses(lab: RunningLab, port: int, client: Any, ports: dict[int, int] | None = None) -> dict[int, str]:
    """tls_verify_status per worker for `client` (an Issued) on an ALB verify listener, probing until both
    workers have answered; each worker must answer every probe alike. `ports` gets a client port per worker."""
    seen: dict[int, set[str]] = {}
    for _ in range(MAX_PROBES):
        result = probe("127.0.0.1", port, client_cert_pem=client.chain_pem, client_key_pem=client.key_pem,
                       http_request=REQUEST)
        record = record_of(lab, result)
        seen.setdefault(record.get("worker", 0), set()).add(record["tls_verify_status"])
        if ports is not None:
            ports[record.get("worker", 0)] = result.local_port
        if len(seen) == 2:
            break
    assert set(seen) == {0, 1} and all(len(s) == 1 for s in seen.values()), seen
    return {worker: statuses.pop() for worker, statuses in seen.items()}


def test_trust_store_changes_through_the_api_reach_every_worker(lab: RunningLab) -> None:
    """A trust store created through the API serves a listener in both workers; adding a CRL, removing it and
    replacing the CA bundle apply in both before each call returns."""
    clients, strangers = LabPKI(key_type="ecdsa", name="workers client CA"), LabPKI(key_type="ecdsa", name="other CA")
    valid = clients.client("worker-client")
    status, body = lab.api("POST", "/v1/trust-stores", {"name": "partners", "ca_bundle": clients.ca_pem.decode()})
    assert status == 201, body
    status, body = lab.api("POST", "/v1/listeners", {
        "name": "alb-verify", "port": 0, "profile": "aws-alb", "server_certificate": "site", "mtls_mode": "verify",
        "trust_store": "partners", "backend_servers": ["web-1"], "health_check": {"enabled": False},
        "activation_delay": 0, "start": True})
    assert status == 202, body  # accepted: running after the activation delay
    port = body["port"]
    try:
        until(lambda: lab.api("GET", f"/v1/listeners/{port}")[1], lambda l: l["status"] == "running", timeout=15)
        ports: dict[int, int] = {}
        assert verify_statuses(lab, port, valid, ports) == {0: "Success", 1: "Success"}
        # Worker 0 writes the ALB's own log for both (a worker's log is a pipe to worker 0).
        alb_log = (lab.out_dir / "aws-alb-connections.log").read_text().splitlines()
        for worker, client_port in ports.items():
            assert any(line.split()[2:4] == [str(client_port), str(port)] for line in alb_log), (worker, client_port)
        status, body = lab.api("POST", "/v1/trust-stores/partners/revocations", {"crl": clients.crl(valid).decode()})
        assert status == 201, body
        assert verify_statuses(lab, port, valid) == {0: "Failed:ClientCertRevoked", 1: "Failed:ClientCertRevoked"}
        status, _ = lab.api("DELETE", f"/v1/trust-stores/partners/revocations/{body['revocation_ids'][0]}")
        assert status == 204
        assert verify_statuses(lab, port, valid) == {0: "Success", 1: "Success"}
        status, body = lab.api("PUT", "/v1/trust-stores/partners", {"ca_bundle": strangers.ca_pem.decode()})
        assert status == 200, body
        assert verify_statuses(lab, port, valid) == {0: "Failed:ClientCertUntrusted", 1: "Failed:ClientCertUntrusted"}
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")
    assert lab.api("DELETE", "/v1/trust-stores/partners")[0] == 204
