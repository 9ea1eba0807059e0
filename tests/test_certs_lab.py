"""The certificate store beside a running lab: `lbsim cert` from another process, replacements reaching every
listener that uses a certificate, certificates a listener's vendor would not take, refused labs."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from helpers import wait_for

from simulator.backends import MockBackend
from simulator.certs import CertificateStore, Issued, LabPKI
from simulator.model.config import parse_config
from simulator.errors import LbsimError
from simulator.harness.running import RunningLab, start_lab
from simulator.runtime.lab import STORE_POLL_INTERVAL
from simulator.policies.probe import probe

LBSIM = str(Path(sys.executable).with_name("lbsim"))
TIME_SCALE = 0.01
DELAY = 300  # vendor seconds before time_scale: 3 s here, long enough to see the old certificate still served
SNI = "a.lbsim.test"


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI(key_type="rsa")


@pytest.fixture(scope="module")
def clients() -> LabPKI:
    return LabPKI(key_type="rsa", name="lbsim test client CA")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, pki: LabPKI, clients: LabPKI) -> RunningLab:
    """Certificates shared by several listeners: `shared` (four listeners), `sni-a` (one listener's SNI
    domain, another's server certificate) and the client CA `clients` (two mutual listeners)."""
    out = tmp_path_factory.mktemp("certs-lab")
    shared, sni_a = pki.server("localhost", "127.0.0.1"), pki.server(SNI)
    common = {"port": 0, "activation_delay": DELAY, "backend_servers": ["app"], "health_check": {"enabled": False}}
    config = {
        "time_scale": TIME_SCALE,
        "certificates": [
            {"name": "shared", "type": "server", "cert": shared.chain_pem.decode(), "key": shared.key_pem.decode()},
            {"name": "sni-a", "type": "server", "cert": sni_a.chain_pem.decode(), "key": sni_a.key_pem.decode()},
            {"name": "clients", "type": "ca", "cert": clients.ca_pem.decode()},
        ],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [
            {**common, "name": "one", "profile": "aliyun-slb", "server_certificate": "shared"},
            {**common, "name": "two", "profile": "tencent-clb", "server_certificate": "shared", "sni": {SNI: "sni-a"}},
            {**common, "name": "three", "profile": "tencent-clb", "server_certificate": "sni-a"},
            {**common, "name": "m-aliyun", "profile": "aliyun-slb", "server_certificate": "shared",
             "ca_certificate": "clients"},
            {**common, "name": "m-tencent", "profile": "tencent-clb", "server_certificate": "shared",
             "ca_certificate": "clients"},
        ],
    }
    running = start_lab(config, out_dir=out)
    yield running
    running.stop()


def lbsim(*argv: str) -> subprocess.CompletedProcess[str]:
    """`lbsim ...` in its own process, as a user beside a running lab would run it."""
    return subprocess.run([LBSIM, *argv], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("LBSIM_")})


def store_dir(lab: RunningLab) -> str:
    return str(lab.lab.store.home)


def fingerprint(issued: Issued) -> str:
    return hashlib.sha256(x509.load_pem_x509_certificate(issued.cert_pem).public_bytes(Encoding.DER)).hexdigest()


def served(lab: RunningLab, listener: str, sni: str = "localhost", client: Issued | None = None) -> str | None:
    """SHA-256 of the certificate a real handshake gets, or None if the handshake fails."""
    result = probe("127.0.0.1", lab.port(listener), sni=sni, version="TLSv1.2",
                   client_cert_pem=client.chain_pem if client else None,
                   client_key_pem=client.key_pem if client else None)
    fp = result.server_fingerprint_sha256
    return fp.replace(":", "").lower() if fp else None


def status_with_client(lab: RunningLab, listener: str, pki: LabPKI, client: Issued) -> int | str:
    """An HTTPS request with a client certificate: the status, or the error's class when refused."""
    context = ssl.create_default_context(cadata=pki.ca_pem.decode())
    directory = Path(lab.out_dir) / "client-files"
    directory.mkdir(exist_ok=True)
    cert, key = directory / f"{fingerprint(client)}.pem", directory / f"{fingerprint(client)}.key"
    cert.write_bytes(client.chain_pem)
    key.write_bytes(client.key_pem)
    context.load_cert_chain(str(cert), str(key))
    conn = http.client.HTTPSConnection("localhost", lab.port(listener), context=context, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- another process: delete and replace ---------------------------------------------------------

def test_cli_delete_is_refused_while_a_running_lab_uses_the_certificate(lab: RunningLab) -> None:
    done = lbsim("cert", "delete", "--home", store_dir(lab), "clients", "--json")
    assert done.returncode == 1, done
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "CertificateInUse"  # the code the API answers 409 with
    assert "m-aliyun" in error["message"] and "m-tencent" in error["message"]
    assert lab.lab.store.describe("clients").type == "ca"  # still there

    done = lbsim("cert", "delete", "--home", store_dir(lab), "shared")
    assert done.returncode == 1 and "CertificateInUse" in done.stderr + done.stdout
    assert all(name in done.stderr + done.stdout for name in ("one", "two", "m-aliyun", "m-tencent"))


def test_cli_delete_takes_a_certificate_no_listener_uses(lab: RunningLab, tmp_path: Path, pki: LabPKI) -> None:
    spare = pki.server("spare.lbsim.test")
    status, info = lab.api("POST", "/v1/certificates", {"type": "server", "name": "spare",
                                                        "cert": spare.chain_pem.decode(), "key": spare.key_pem.decode()})
    assert status == 201
    done = lbsim("cert", "delete", "--home", store_dir(lab), info["id"])
    assert done.returncode == 0, done
    assert lab.api("GET", f"/v1/certificates/{info['id']}")[0] == 404


def test_usage_of_a_lab_that_died_does_not_block_delete(tmp_path: Path, pki: LabPKI) -> None:
    store = CertificateStore(tmp_path / "home", kek=bytes(32))
    issued = pki.server("localhost")
    info = store.upload_server("orphan", issued.chain_pem, issued.key_pem)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"format": 1, "pid": int(gone.stdout), "started": None, "usage": {info.id: ["ghost"]}}
    (store.dir / ".usage-ghost.json").write_text(json.dumps(record))
    assert store.users(info.id) == []
    store.delete(info.id)
    assert not (store.dir / ".usage-ghost.json").exists()  # swept by that write


def test_cli_replace_reaches_every_listener_after_the_activation_delay(lab: RunningLab, tmp_path: Path,
                                                                       pki: LabPKI, clients: LabPKI) -> None:
    users = ("one", "two", "m-aliyun", "m-tencent")
    client = clients.client("tester")
    old = {name: served(lab, name, client=client) for name in users}
    assert len(set(old.values())) == 1 and None not in old.values()
    new = pki.server("localhost", "127.0.0.1")
    revision = lab.api("GET", "/v1/certificates/shared")[1]["revision"]
    started = time.monotonic()
    done = lbsim("cert", "replace", "--home", store_dir(lab), "shared", "--cert", write(tmp_path, "c.pem", new.chain_pem),
                 "--key", write(tmp_path, "k.pem", new.key_pem))
    assert done.returncode == 0, done
    # The lab notices the new revision (another process wrote it) and reconfigures every user ...
    wait_for(lambda: all(lab.listener(n).status == "configuring" for n in users), 5)
    assert served(lab, "one") == old["one"]  # ... which keeps serving the old revision until activation
    switched = wait_for(lambda: served(lab, "one") == fingerprint(new) and time.monotonic(), 15, 0.1)
    assert switched - started >= DELAY * TIME_SCALE
    wait_for(lambda: all(lab.listener(n).status == "running" for n in users), 10)
    for name in users:
        assert served(lab, name, client=client) == fingerprint(new), name
    assert served(lab, "two", sni=SNI) != fingerprint(new)  # its SNI domain has its own certificate
    assert lab.api("GET", "/v1/certificates/shared")[1]["revision"] == revision + 1


def test_replacing_an_sni_domain_certificate_reaches_every_listener_using_it(lab: RunningLab, pki: LabPKI) -> None:
    localhost = served(lab, "two")
    new = pki.server(SNI)
    status, _ = lab.api("PUT", "/v1/certificates/sni-a", {"cert": new.chain_pem.decode(), "key": new.key_pem.decode()})
    assert status == 200
    wait_for(lambda: served(lab, "two", sni=SNI) == fingerprint(new), 15, 0.1)
    wait_for(lambda: served(lab, "three", sni=SNI) == fingerprint(new), 15, 0.1)
    assert served(lab, "two") == localhost  # the listener's default certificate is untouched


def test_replacing_the_client_ca_reaches_every_mutual_listener(lab: RunningLab, tmp_path: Path, pki: LabPKI,
                                                               clients: LabPKI) -> None:
    before, after = clients.client("before"), LabPKI(key_type="rsa", name="lbsim next client CA")
    newcomer = after.client("after")
    for name in ("m-aliyun", "m-tencent"):
        assert status_with_client(lab, name, pki, before) == 200
        assert status_with_client(lab, name, pki, newcomer) != 200
    done = lbsim("cert", "replace", "--home", store_dir(lab), "clients", "--cert", write(tmp_path, "ca.pem", after.ca_pem))
    assert done.returncode == 0, done
    for name in ("m-aliyun", "m-tencent"):
        wait_for(lambda: status_with_client(lab, name, pki, newcomer) == 200, 15, 0.1)
        assert status_with_client(lab, name, pki, before) != 200


# --- certificates the listener's vendor would not take ----------------------------------------------

def test_api_refuses_a_certificate_the_listeners_profile_does_not_accept(lab: RunningLab) -> None:
    ecdsa = LabPKI(key_type="ecdsa").server("localhost")
    count = len(lab.api("GET", "/v1/listeners")[1]["listeners"])
    status, info = lab.api("POST", "/v1/certificates", {"type": "server", "name": "ec", "profile": "tencent-clb",
                                                        "cert": ecdsa.chain_pem.decode(), "key": ecdsa.key_pem.decode()})
    assert status == 201, info
    status, body = lab.api("POST", "/v1/listeners", {"port": 0, "profile": "aliyun-slb", "server_certificate": "ec",
                                                     "backend_servers": ["app"], "start": True})
    assert status == 400, body
    error = body["error"]
    assert error["code"] == "CertificateNotAccepted" and error["field"] == "listener.server_certificate"
    assert "UnsupportedKeyType" in error["message"] and "--profile aliyun-slb" in error["hint"]
    assert len(lab.api("GET", "/v1/listeners")[1]["listeners"]) == count  # nothing was created
    status, body = lab.api("POST", "/v1/listeners", {"port": 0, "profile": "tencent-clb", "server_certificate": "ec",
                                                     "backend_servers": ["app"], "start": True})
    assert status == 202, body  # tencent-clb takes ECDSA
    lab.api("DELETE", f"/v1/listeners/{body['port']}")
    assert lab.api("DELETE", "/v1/certificates/ec")[0] == 204


def small_lab(tmp_path: Path, listeners: list[dict[str, Any]]) -> RunningLab:
    """A lab on `tmp_path/store` whose listeners all serve the stored certificate `shared`."""
    common = {"port": 0, "activation_delay": 100, "backend_servers": ["app"], "health_check": {"enabled": False},
              "server_certificate": "shared"}
    return start_lab({"time_scale": TIME_SCALE, "home": str(tmp_path / "store"), "backends": [{"name": "app", "port": 0}],
                      "listeners": [{**common, **listener} for listener in listeners]}, out_dir=tmp_path / "out")


def test_a_replace_one_listener_refuses_still_reaches_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`shared` (RSA, stored under tencent-clb) serves an aliyun-slb listener between two tencent-clb ones.
    Its ECDSA replacement is refused by aliyun-slb only: both tencent-clb listeners take it at once, and the
    refusal is one warning without a traceback, not repeated when the store watcher sees the revision."""
    caplog.set_level(logging.WARNING)
    old = LabPKI(key_type="rsa").server("localhost", "127.0.0.1")
    new = LabPKI(key_type="ecdsa").server("localhost", "127.0.0.1")
    CertificateStore(tmp_path / "store").upload_server("shared", old.chain_pem, old.key_pem, profile="tencent-clb")
    names = ("ten-1", "ali", "ten-2")
    with small_lab(tmp_path, [{"name": "ten-1", "profile": "tencent-clb"}, {"name": "ali", "profile": "aliyun-slb"},
                              {"name": "ten-2", "profile": "tencent-clb"}]) as lab:
        status, body = lab.api("PUT", "/v1/certificates/shared", {"cert": new.chain_pem.decode(),
                                                                  "key": new.key_pem.decode()})
        assert status == 200, body
        # The replace reconfigures the users before it answers (activation: 1 s), not on a later store poll.
        assert {n: lab.listener(n).status for n in names} == {"ten-1": "configuring", "ali": "running",
                                                               "ten-2": "configuring"}
        for name in ("ten-1", "ten-2"):
            wait_for(lambda: served(lab, name) == fingerprint(new), 15, 0.1)
        assert served(lab, "ali") == fingerprint(old)
        time.sleep(3 * STORE_POLL_INTERVAL)  # the store watcher has read the new revision too
        assert lab.listener("ali").status == "running" and lab.listener("ali").pending is None
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "simulator.runtime.lab"]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert "listener ali keeps its certificates" in refusals[0].getMessage()
    assert "CertificateNotAccepted" in refusals[0].getMessage() and refusals[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_store_watcher_survives_a_round_that_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       pki: LabPKI) -> None:
    """An unexpected error in one round (here injected into the store read) is logged once and the lab keeps
    watching: a replace written afterwards by another process still reaches the listener."""
    caplog.set_level(logging.WARNING)
    first = pki.server("localhost", "127.0.0.1")
    CertificateStore(tmp_path / "store").upload_server("shared", first.chain_pem, first.key_pem)
    with small_lab(tmp_path, [{"name": "web"}]) as lab:
        real_revisions, failures = lab.lab.store.revisions, []

        def failing_once() -> dict[str, int]:
            if not failures:
                failures.append(time.monotonic())
                raise RuntimeError("injected failure")
            return real_revisions()

        lab.lab.store.revisions = failing_once  # type: ignore[method-assign]
        other = CertificateStore(tmp_path / "store")  # like another process: this lab is not subscribed to it
        second, third = pki.server("localhost", "127.0.0.1"), pki.server("localhost", "127.0.0.1")
        other.replace("shared", second.chain_pem, second.key_pem)  # the round reading this revision fails
        wait_for(lambda: failures, 5)
        other.replace("shared", third.chain_pem, third.key_pem)
        wait_for(lambda: served(lab, "web") == fingerprint(third), 15, 0.1)
        assert lab.lab.store.describe("shared").revision == 3 and not lab.lab._store_watch.done()
    failed = [r for r in caplog.records if "injected failure" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None  # a bug: said once, with its traceback


# --- config: refused before anything changes ------------------------------------------------------

def test_sni_certificate_names_are_checked_by_the_config(pki: LabPKI) -> None:
    issued = pki.server("localhost")
    with pytest.raises(LbsimError) as info:
        parse_config({
            "certificates": [{"name": "web", "cert": issued.chain_pem.decode(), "key": issued.key_pem.decode()}],
            "listeners": [{"port": 0, "profile": "tencent-clb", "server_certificate": "web",
                           "sni": {"a.example": "nosuch"}}],
        })
    assert info.value.field == "listeners[0].sni.a.example"
    assert "nosuch" in info.value.message and "web" in info.value.message


def snapshot(store: CertificateStore) -> list[tuple[str, str, int, str]]:
    return [(c.id, c.name, c.revision, c.fingerprint) for c in store.list()]


def test_a_refused_lab_leaves_the_store_unchanged_and_starts_no_backend(tmp_path: Path, pki: LabPKI,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The store holds `site`, an ECDSA certificate uploaded under tencent-clb; the config replaces it (by
    name) and adds `fresh`, but an aliyun-slb listener uses `site`: refused before the store or a backend
    is touched."""
    started: list[str] = []  # a refused lab stops what it started: only the start calls show a backend ran
    real_start = MockBackend.start

    async def recording_start(self: MockBackend) -> MockBackend:
        started.append(self.name)
        return await real_start(self)

    monkeypatch.setattr(MockBackend, "start", recording_start)
    home = tmp_path / "store"
    ecdsa = LabPKI(key_type="ecdsa")
    store = CertificateStore(home)
    first = ecdsa.server("localhost")
    store.upload_server("site", first.chain_pem, first.key_pem, profile="tencent-clb")
    before = snapshot(store)
    second, fresh = ecdsa.server("localhost"), pki.server("localhost")
    config = {
        "time_scale": TIME_SCALE, "home": str(home),
        "certificates": [
            {"name": "site", "cert": second.chain_pem.decode(), "key": second.key_pem.decode()},
            {"name": "fresh", "cert": fresh.chain_pem.decode(), "key": fresh.key_pem.decode()},
        ],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [
            {"port": 0, "profile": "tencent-clb", "server_certificate": "fresh", "backend_servers": ["app"]},
            {"port": 0, "profile": "aliyun-slb", "server_certificate": "site", "backend_servers": ["app"]},
        ],
    }
    with pytest.raises(LbsimError) as info:
        start_lab(config, out_dir=tmp_path / "out")
    assert info.value.code == "CertificateNotAccepted" and info.value.field == "listeners[1].server_certificate"
    assert snapshot(CertificateStore(home)) == before
    assert started == []


def test_a_lab_refused_late_removes_the_certificates_it_uploaded(tmp_path: Path, pki: LabPKI) -> None:
    """A listener port already taken is only found when listening: the new uploads are undone."""
    fresh = pki.server("localhost")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = {
            "time_scale": TIME_SCALE, "home": str(tmp_path / "store"),
            "certificates": [{"name": "fresh", "cert": fresh.chain_pem.decode(), "key": fresh.key_pem.decode()}],
            "backends": [{"name": "app", "port": 0}],
            "listeners": [{"port": taken.getsockname()[1], "server_certificate": "fresh", "backend_servers": ["app"]}],
        }
        with pytest.raises(LbsimError) as info:
            start_lab(config, out_dir=tmp_path / "out")
    assert info.value.code == "ListenFailed"
    assert CertificateStore(tmp_path / "store").list() == []


def test_a_restarted_lab_does_not_bump_unchanged_certificates(tmp_path: Path, pki: LabPKI) -> None:
    issued = pki.server("localhost")
    config: dict[str, Any] = {
        "time_scale": TIME_SCALE, "home": str(tmp_path / "store"),
        "certificates": [{"name": "web", "cert": issued.chain_pem.decode(), "key": issued.key_pem.decode()}],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [{"port": 0, "server_certificate": "web", "backend_servers": ["app"],
                       "health_check": {"enabled": False}}],
    }
    with start_lab(config, out_dir=tmp_path / "one"):
        pass
    with start_lab(config, out_dir=tmp_path / "two") as again:
        assert again.lab.store.describe("web").revision == 1
    assert not list((tmp_path / "store" / "certs").glob(".usage-*"))  # each lab withdrew its usage at stop
