"""What a scenario author uses: a lab handle with probes, requests, commands, logs, and control-plane calls.

A scenario is a pytest test. The `lab` fixture (from `simulator.pytest_plugin`) is a :class:`ScenarioLab`:

    def test_my_client_talks_to_the_mutual_listener(lab):
        result = lab.run(["python", "my_client.py", "{url:aliyun-mutual}", "--ca", "{ca}",
                          "--cert", "{cert:valid}", "--key", "{key:valid}"])
        result.assert_ok(contains="200")
        record = lab.connections("aliyun-mutual", since=result.mark)[-1]
        assert record["tls_verify_status"] == "Success"

Everything runs for real on loopback: handshakes with the listener's certificate and policy, mock backends,
the management API. Listeners and certificates a scenario creates through this handle are removed when the
test ends, so one lab serves a whole session. Vendor timers run `time_scale` times real time (0.01 in the
built-in suite: the 300 s ticket lifetime is 3 s, activation normally about 0.6 s and never over 1.8 s).

Building blocks, usable without pytest: :func:`start` (a lab from YAML, a dict, a :class:`LabBuilder` or
nothing = the default lab), :func:`mint_pki`, :func:`self_signed_certificate`, :func:`dh_parameters_pem`.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator import vendors
from simulator.certs import Issued, LabPKI
from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key
from simulator.harness.running import RunningLab, start_lab
from simulator.metering.ledger import epoch
from simulator.policies.probe import ProbeResult, probe
from simulator.harness.observe import (  # noqa: F401 - re-exported: scenarios and `lbsim run` import them here
    CLIENT_KINDS,
    EXPECTED_VERIFY,
    ListenerObservations,
    ListenerReport,
    NoTrafficListener,
)

HOST = "127.0.0.1"
_PLACEHOLDER = re.compile(r"\{(host|ca|python|api|port|url|cert|key)(?::([^{}]*))?\}")


class ApiError(Exception):
    """A management API call answered with an error: `status`, `code`, `message`, `field`, `hint`."""

    def __init__(self, status: int, body: Any, method: str, path: str):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status, self.body = status, body
        self.code: str | None = error.get("code")
        self.message: str = error.get("message", "")
        self.field: str | None = error.get("field")
        self.hint: str | None = error.get("hint")
        super().__init__(f"{method} {path} -> {status} {self.code}: {self.message}")


@dataclass
class Response:
    """One HTTP response through a listener, with the local port to find its connection in the log."""

    status: int
    headers: dict[str, str]
    body: bytes
    local_port: int | None = None
    tls_version: str | None = None
    cipher: str | None = None
    mark: int | None = None  # the connection log's length when the connection opened
    opened: float | None = None  # wall time just before it connected (no earlier connection's record is its)
    listener: tuple[str, int] | None = None  # the address and port it connected to

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def echo(self) -> dict[str, Any]:
        """What the mock backend received: method, path, headers, http_version... (its JSON body, or the
        `X-Echo` header when the body is filler from ``?size=N``)."""
        if "x-echo" in self.headers:
            return json.loads(self.headers["x-echo"])
        return json.loads(self.body)

    @property
    def backend(self) -> str | None:
        return self.headers.get("x-backend")


@dataclass
class CommandResult:
    """An external command's outcome. `mark` is the connection-log position before it ran."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    mark: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def assert_ok(self, contains: str | None = None) -> CommandResult:
        assert self.returncode == 0, f"{shlex.join(self.argv)} exited {self.returncode}:\n{self.output[-2000:]}"
        if contains is not None:
            assert contains in self.output, f"{contains!r} not in the output of {shlex.join(self.argv)}:\n{self.output[-2000:]}"
        return self

    def assert_failed(self, contains: str | None = None, returncode: int | None = None) -> CommandResult:
        assert self.returncode != 0, f"{shlex.join(self.argv)} succeeded but should have failed:\n{self.output[-2000:]}"
        if returncode is not None:
            assert self.returncode == returncode, f"exit code {self.returncode}, expected {returncode}"
        if contains is not None:
            assert contains in self.output, f"{contains!r} not in the output of {shlex.join(self.argv)}:\n{self.output[-2000:]}"
        return self


@dataclass
class ListenerHandle:
    """A listener a scenario created: its port, name and the spec it was created with (for changes)."""

    name: str
    port: int
    spec: dict[str, Any]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@dataclass
class Credentials:
    """A client certificate and key, as PEM bytes and (for external commands) files."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: str | None = None
    key_file: str | None = None


@dataclass
class _Shared:
    """State one session shares between scenarios and the report: cached observations and measurements."""

    observations: dict[str, Any] = field(default_factory=dict)
    traffic: list[dict[str, Any]] | None = None
    sslyze: dict[str, Any] | None = None
    sslyze_scan: Any = None  # compliance.SslyzeScan running in the background
    extra_clients: dict[str, Credentials] = field(default_factory=dict)
    require: list[tuple[str | None, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)


class ScenarioLab(ListenerObservations):
    """A running lab, seen from a scenario. Create one with :func:`start`, or take the `lab` fixture."""

    def __init__(self, running: RunningLab, shared: _Shared | None = None, owns: bool = False):
        self.running = running
        self.shared = shared or _Shared()
        self._owns = owns
        self._listeners: list[int] = []
        self._certificates: list[str] = []
        self._files_dir: Path | None = None

    # ---- life cycle ----------------------------------------------------------------------------------------

    def child(self) -> ScenarioLab:
        """A handle on the same lab whose creations are undone by :meth:`cleanup` (one per test)."""
        return ScenarioLab(self.running, self.shared)

    def cleanup(self) -> None:
        """Remove the listeners, then the certificates, this handle created (errors are ignored: best effort)."""
        for port in reversed(self._listeners):
            self.api("DELETE", f"/v1/listeners/{port}")
        for ref in reversed(self._certificates):
            self.api("DELETE", f"/v1/certificates/{ref}")
        self._listeners.clear()
        self._certificates.clear()

    def stop(self) -> None:
        self.cleanup()
        if self.shared.sslyze_scan is not None:
            self.shared.sslyze_scan.cancel()
        if self._owns:
            self.running.stop()

    def __enter__(self) -> ScenarioLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what the lab is ---------------------------------------------------------------------------------------

    host = HOST

    @property
    def time_scale(self) -> float:
        return self.running.config.time_scale

    @property
    def out_dir(self) -> Path:
        return self.running.out_dir

    @property
    def files(self) -> dict[str, str]:
        """PEM files of the default lab's PKI: ca, client-valid(-key), client-expired, ... (empty for YAML labs)."""
        return self.running.files

    @property
    def ca_file(self) -> str | None:
        """What clients trust to verify the default lab's server certificates."""
        return self.running.ca_file

    @property
    def store_dir(self) -> Path:
        """The certificate store's home (what `lbsim cert --home` takes)."""
        return self.running.lab.store.home

    @property
    def api_url(self) -> str:
        return self.running.api_url

    def vendor_api(self, profile: str) -> dict[str, Any]:
        """A vendor's own API on this lab, as a script reads it from `<out>/endpoints.json`: its `http`/`https`
        URLs, `http_endpoint`/`https_endpoint` (host:port, what SDKs take), `region`, the access key, plus `ca`
        (the endpoints' CA) and `management_api`. The vendor APIs are attached to the running lab on first use
        (docs/vendor-apis.md)."""
        with self.shared.lock:
            endpoints = self.running.attach_vendor_apis()
        if profile not in endpoints:
            raise KeyError(f"no vendor API for {profile!r}; have {sorted(k for k in endpoints if '-' in k)}")
        return {**endpoints[profile], "ca": endpoints["ca"], "management_api": endpoints["management_api"]}

    def scaled(self, vendor_seconds: float) -> float:
        """A vendor timer (e.g. the 300 s ticket lifetime) in this lab's seconds."""
        return vendor_seconds * self.time_scale

    def fast_forward(self, vendor_seconds: float) -> None:
        """Let `vendor_seconds` of vendor time pass (sleeps the scaled time)."""
        time.sleep(self.scaled(vendor_seconds))

    # ---- the management API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A raw management API call: (status, parsed JSON or None). Never raises for 4xx."""
        return self.running.api(method, path, body)

    def api_ok(self, method: str, path: str, body: Any = None) -> Any:
        """An API call that must succeed; raises :class:`ApiError` otherwise."""
        status, data = self.api(method, path, body)
        if status >= 400:
            raise ApiError(status, data, method, path)
        return data

    def listeners(self) -> list[dict[str, Any]]:
        return self.api_ok("GET", "/v1/listeners")["listeners"]

    def listener(self, name_or_port: str | int) -> dict[str, Any]:
        """`GET /v1/listeners/{port}`: status, settings, backend health."""
        return self.api_ok("GET", f"/v1/listeners/{self.port(name_or_port)}")

    def port(self, name_or_port: str | int | ListenerHandle) -> int:
        """A listener's port, by name, port or `address:port`."""
        if isinstance(name_or_port, ListenerHandle):
            return name_or_port.port
        if isinstance(name_or_port, int):
            return name_or_port
        if name_or_port.isdigit():
            return int(name_or_port)
        if ":" in name_or_port:
            return int(name_or_port.rpartition(":")[2])
        return self.running.port(name_or_port)

    def address(self, name_or_port: str | int | ListenerHandle) -> str:
        """Where a listener listens: its load balancer's address (127.0.0.x; the lab file's listeners are on
        127.0.0.1). A port two load balancers share is ambiguous: name the listener or pass `address:port`."""
        if isinstance(name_or_port, str) and ":" in name_or_port:
            return name_or_port.rpartition(":")[0]
        port = self.port(name_or_port)
        name = name_or_port.name if isinstance(name_or_port, ListenerHandle) else name_or_port
        found = [l for l in self.running.lab.registry.listeners.values()
                 if l.port == port and (not isinstance(name, str) or name.isdigit() or l.name == name)]
        if len(found) > 1:
            raise KeyError(f"port {port} is shared by {[l.key for l in found]}: pass the listener's name or address:port")
        return found[0].address if found else self.host

    def backend_name(self) -> str:
        """A mock backend of this lab, for listeners a scenario creates."""
        managed = [b["name"] for b in self.api_ok("GET", "/v1/backends")["backends"] if b["managed"]]
        if not managed:
            raise AssertionError("this scenario needs a mock backend in the lab (backends: [{name: web-1, port: 0}])")
        return managed[0]

    def add_listener(self, spec: Mapping[str, Any], *, start: bool | None = True, wait: bool = True,
                     timeout: float = 15) -> ListenerHandle:
        """Create a listener through the API (as in the lab YAML), started, and with `wait` until it serves.

        Defaults: port 0 (a free port), the lab's first mock backend, and ``activation_delay: 0`` so that
        the scenario does not wait one to three (scaled) minutes; pass ``activation_delay=None`` explicitly
        for the vendor's delay. ``start=None`` keeps the vendor's default (`capabilities.create_started`:
        aliyun-slb creates listeners stopped, tencent-clb starts them). Removed when the test ends.
        """
        body = {"port": 0, **spec}
        body.setdefault("backend_servers", [{"backend": self.backend_name()}])
        body.setdefault("activation_delay", 0)
        if body["activation_delay"] is None:
            del body["activation_delay"]
        created = self.api_ok("POST", "/v1/listeners", body if start is None else {**body, "start": start})
        handle = ListenerHandle(created["name"], created["port"], {**body, "port": created["port"]})
        self._listeners.append(handle.port)
        if wait and created["status"] != "stopped":
            self.wait_running(handle.port, timeout)
        return handle

    def start_listener(self, listener: ListenerHandle | str | int, *, wait: bool = True, timeout: float = 15) -> dict[str, Any]:
        """`POST /v1/listeners/{port}/start`: serves after the activation delay."""
        data = self.api_ok("POST", f"/v1/listeners/{self.port(listener)}/start")
        return self.wait_running(listener, timeout) if wait else data

    def stop_listener(self, listener: ListenerHandle | str | int) -> dict[str, Any]:
        """`POST /v1/listeners/{port}/stop`: the port closes at once."""
        return self.api_ok("POST", f"/v1/listeners/{self.port(listener)}/stop")

    def change_listener(self, listener: ListenerHandle, *, wait: bool = True, timeout: float = 15, **changes: Any) -> dict[str, Any]:
        """Change a listener this scenario created (the API takes the whole spec; we merge `changes` in)."""
        listener.spec = {**listener.spec, **changes}
        data = self.api_ok("PUT", f"/v1/listeners/{listener.port}", listener.spec)
        if wait:
            self.wait_running(listener.port, timeout)
        return data

    def remove_listener(self, listener: ListenerHandle | int) -> None:
        port = self.port(listener)
        self.api_ok("DELETE", f"/v1/listeners/{port}")
        if port in self._listeners:
            self._listeners.remove(port)

    def wait_running(self, listener: ListenerHandle | str | int, timeout: float = 15) -> dict[str, Any]:
        """Until the listener's status is `running` (activation done) and its port accepts connections."""
        port = self.port(listener)
        deadline = time.monotonic() + timeout
        while True:
            data = self.api_ok("GET", f"/v1/listeners/{port}")
            if data["status"] == "running" and data.get("activates_in") is None and _accepts(port):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"listener {port} not running after {timeout} s: {data['status']}")
            time.sleep(0.02)

    def upload_server_certificate(self, name: str, cert: bytes | str | Issued, key: bytes | str | None = None,
                                  profile: str | None = None) -> dict[str, Any]:
        """`POST /v1/certificates` (type server); raises :class:`ApiError` with the vendor's reason if refused."""
        cert_text, key_text = _pem_pair(cert, key)
        body = {"type": "server", "name": name, "cert": cert_text, "key": key_text}
        if profile:
            body["profile"] = profile
        info = self.api_ok("POST", "/v1/certificates", body)
        self._certificates.append(info["id"])
        return info

    def upload_ca_certificate(self, name: str, cert: bytes | str, profile: str | None = None) -> dict[str, Any]:
        body = {"type": "ca", "name": name, "cert": _text(cert)}
        if profile:
            body["profile"] = profile
        info = self.api_ok("POST", "/v1/certificates", body)
        self._certificates.append(info["id"])
        return info

    def replace_certificate(self, ref: str, cert: bytes | str | Issued, key: bytes | str | None = None) -> dict[str, Any]:
        """`PUT /v1/certificates/{ref}`: new content, same id; every listener using it reconfigures."""
        cert_text, key_text = _pem_pair(cert, key)
        return self.api_ok("PUT", f"/v1/certificates/{ref}", {"cert": cert_text, "key": key_text})

    def delete_certificate(self, ref: str) -> None:
        self.api_ok("DELETE", f"/v1/certificates/{ref}")
        if ref in self._certificates:
            self._certificates.remove(ref)

    def adopt_certificate(self, ref: str) -> None:
        """Delete this certificate when the test ends (one uploaded some other way, e.g. the CLI)."""
        self._certificates.append(self.certificate(ref)["id"])

    def certificate(self, ref: str) -> dict[str, Any]:
        return self.api_ok("GET", f"/v1/certificates/{ref}")

    def set_backend_health(self, name: str, healthy: bool | None = None, down: bool | None = None) -> dict[str, Any]:
        body = {k: v for k, v in (("healthy", healthy), ("down", down)) if v is not None}
        return self.api_ok("POST", f"/v1/backends/{name}/health", body)

    # ---- clients -----------------------------------------------------------------------------------------------

    def client(self, kind: str | Credentials | Issued | None) -> Credentials | None:
        """Client credentials: None/"none", a default-lab client ("valid", "expired", "not_yet_valid",
        "untrusted"), credentials given to the session (`--lbsim-client-cert`), or your own `Issued`."""
        if kind is None or kind == "none":
            return None
        if isinstance(kind, Credentials):
            return kind
        if isinstance(kind, Issued):
            return self._credentials(kind.chain_pem, kind.key_pem, f"client-{id(kind)}")
        if kind in self.shared.extra_clients:
            return self.shared.extra_clients[kind]
        cert, key = self.files.get(f"client-{kind}"), self.files.get(f"client-{kind}-key")
        if cert and key:
            return Credentials(Path(cert).read_bytes(), Path(key).read_bytes(), cert, key)
        if kind == "untrusted":  # a stranger is easy to make for any lab
            issued = LabPKI(name="lbsim stranger CA").client("lbsim-stranger")
            creds = self._credentials(issued.chain_pem, issued.key_pem, "client-untrusted")
            self.shared.extra_clients["untrusted"] = creds
            return creds
        raise KeyError(f"no client credentials {kind!r} in this lab (have: {sorted(self._client_kinds())})")

    def _client_kinds(self) -> set[str]:
        kinds = {k[len("client-"):] for k in self.files if k.startswith("client-") and not k.endswith("-key") and k != "client-ca"}
        return kinds | set(self.shared.extra_clients) | {"none", "untrusted"}

    def has_client(self, kind: str) -> bool:
        return kind in self._client_kinds()

    def _credentials(self, cert: bytes, key: bytes, stem: str) -> Credentials:
        folder = self._files()
        cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        os.chmod(key_file, 0o600)
        return Credentials(cert, key, str(cert_file), str(key_file))

    def _files(self) -> Path:
        if self._files_dir is None:
            self._files_dir = self.out_dir / "scenario-files"
            self._files_dir.mkdir(parents=True, exist_ok=True)
        return self._files_dir

    def write_file(self, name: str, data: bytes | str) -> str:
        """Write a file (a certificate for an external command, a client script) beside the lab; its path."""
        path = self._files() / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def probe(self, listener: str | int | ListenerHandle, *, client: Any = None, verify: bool = False,
              cafile: str | None = None, **kwargs: Any) -> ProbeResult:
        """One TLS handshake (see `simulator.policies.probe.probe` for `version`, `ciphers`, `tls13_ciphersuites`,
        `sni`, `session`, `alpn`, `http_request`...). `client` as in :meth:`client`; `verify` checks the
        server chain against the lab CA (or `cafile`)."""
        creds = self.client(client)
        if creds:
            kwargs.update(client_cert_pem=creds.cert_pem, client_key_pem=creds.key_pem)
        if verify or cafile:
            kwargs["cafile"] = cafile or self.ca_file
        mark = self.mark()
        result = probe(self.address(listener), self.port(listener), **kwargs)  # result.opened: when it connected
        result.mark = mark  # type: ignore[attr-defined]  # for connection_for: client ports are reused
        result.listener = (self.address(listener), self.port(listener))  # type: ignore[attr-defined]  # and shared
        return result

    def request(self, listener: str | int | ListenerHandle, path: str = "/", *, client: Any = None,
                method: str = "GET", headers: Mapping[str, str] | None = None, body: bytes | None = None,
                verify: bool | str = True, server_name: str = "localhost", timeout: float = 10) -> Response:
        """One HTTPS request on a new connection. `verify`: True = the lab CA (no check when the lab has
        none), a path = that CA file, False = no check."""
        with self.connection(listener, client=client, verify=verify, server_name=server_name, timeout=timeout) as conn:
            return conn.request(path, method=method, headers=headers, body=body)

    @contextmanager
    def connection(self, listener: str | int | ListenerHandle, *, client: Any = None, verify: bool | str = True,
                   server_name: str = "localhost", timeout: float = 10) -> Iterator[KeepAlive]:
        """A keep-alive HTTPS connection: ``with lab.connection("x") as c: c.request("/a"); c.request("/b")``."""
        context = self.ssl_context(client=client, verify=verify)
        conn = KeepAlive(self.address(listener), self.port(listener), context, server_name, timeout, self.mark)
        try:
            yield conn
        finally:
            conn.close()

    def ssl_context(self, *, client: Any = None, verify: bool | str = True) -> ssl.SSLContext:
        cafile = verify if isinstance(verify, str) else self.ca_file if verify else None
        if cafile:
            context = ssl.create_default_context(cafile=cafile)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        creds = self.client(client)
        if creds:
            if not creds.cert_file:
                creds = self._credentials(creds.cert_pem, creds.key_pem, f"client-{id(creds)}")
            context.load_cert_chain(creds.cert_file, creds.key_file)
        return context

    # ---- external commands ---------------------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """Fill placeholders: {host}, {port:NAME}, {url:NAME}, {ca}, {cert:KIND}, {key:KIND}, {python}, {api}.
        Other braces (curl's ``-w %{http_code}``) are left alone."""
        def one(match: re.Match[str]) -> str:
            name, arg = match.group(1), match.group(2)
            if name in ("cert", "key"):
                creds = self.client(arg or "valid")
                assert creds and creds.cert_file, f"no client credentials {arg!r}"
                return (creds.cert_file if name == "cert" else creds.key_file) or ""
            if name == "port":
                return str(self.port(arg))
            if name == "url":
                return f"https://localhost:{self.port(arg)}"
            return {"host": self.host, "ca": self.ca_file or "", "python": sys.executable, "api": self.api_url}[name]

        return _PLACEHOLDER.sub(one, text)

    def run(self, argv: Sequence[str] | str, *, timeout: float = 30, input: bytes | str | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> CommandResult:
        """Run an external client (curl, openssl s_client, your program) with placeholders expanded.

        `argv` is a list (each item expanded) or a shell-like string (split with shlex). Never raises for a
        non-zero exit: assert on the result (`assert_ok`, `assert_failed`, `returncode`, `output`).
        """
        args = shlex.split(argv) if isinstance(argv, str) else list(argv)
        args = [self.expand(a) for a in args]
        mark = self.mark()
        started = time.perf_counter()
        try:
            proc = subprocess.run(args, input=input.encode() if isinstance(input, str) else input, capture_output=True,
                                  timeout=timeout, env=_child_env(env), cwd=cwd)
            out = CommandResult(args, proc.returncode, proc.stdout.decode(errors="replace"),
                                proc.stderr.decode(errors="replace"), time.perf_counter() - started, mark)
        except subprocess.TimeoutExpired as e:
            out = CommandResult(args, -9, (e.stdout or b"").decode(errors="replace"),
                                (e.stderr or b"").decode(errors="replace") + f"\n[timed out after {timeout} s]",
                                time.perf_counter() - started, mark)
        self.wait_log_settled()
        return out

    def curl(self, listener: str | int | ListenerHandle, path: str = "/", *args: str, client: Any = None,
             timeout: float = 30) -> CommandResult:
        """`curl -sS --cacert <lab CA> https://localhost:<port><path>` (+ client certificate, + args)."""
        argv = ["curl", "-sS", "--max-time", str(int(timeout)), f"https://localhost:{self.port(listener)}{path}"]
        if self.ca_file:
            argv[1:1] = ["--cacert", self.ca_file]
        else:
            argv[1:1] = ["--insecure"]
        creds = self.client(client)
        if creds:
            argv[1:1] = ["--cert", creds.cert_file or "", "--key", creds.key_file or ""]
        return self.run([*argv[:-1], *args, argv[-1]], timeout=timeout + 5)

    def s_client(self, listener: str | int | ListenerHandle, *args: str, client: Any = None, input: str = "",
                 timeout: float = 15) -> CommandResult:
        """`openssl s_client -connect <address>:<port> -servername localhost` (+ client certificate, + args)."""
        argv = ["openssl", "s_client", "-connect", f"{self.address(listener)}:{self.port(listener)}", "-servername", "localhost"]
        if self.ca_file:
            argv += ["-CAfile", self.ca_file, "-verify_return_error"]
        creds = self.client(client)
        if creds:
            argv += ["-cert", creds.cert_file or "", "-key", creds.key_file or ""]
        return self.run([*argv, *args], input=input, timeout=timeout)

    # ---- what the listener recorded ------------------------------------------------------------------------

    def mark(self) -> int:
        """The connection log's position now: pass it as `since=` to see only later connections."""
        return self._log_total()

    def _log_total(self) -> int:
        # `recent` is a bounded deque; count everything ever appended through the ledger instead.
        return len(self.running.lab.ledger.records)

    def connections(self, listener: str | int | ListenerHandle | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """Connection-log records (one per closed client connection), optionally one listener's, after `since`."""
        records = self.running.lab.ledger.records[since or 0:]
        if listener is not None:
            where = (self.port(listener), self.address(listener))
            records = [r for r in records if (r["listener_port"], r.get("listener_address", self.host)) == where]
        return list(records)

    def connection_for(self, client: int | ProbeResult | Response | None, since: int | None = None,
                       timeout: float = 5) -> dict[str, Any]:
        """The log record of the connection a probe or request (or the client port `client`) opened; waits
        for the connection to close. Ports are reused: only records after `since` (the probe's or request's
        own mark by default) count, and of those only connections that opened after the probe or request did:
        another client's connection on the same port may close, and be logged, after the mark. And only the
        probe's or request's own listener: the kernel gives one local port to two connections at once when
        their destinations differ (a background sslyze scan of another listener, say)."""
        opened = where = None
        if isinstance(client, (ProbeResult, Response)):
            since = getattr(client, "mark", None) if since is None else since
            opened = getattr(client, "opened", None)
            where = getattr(client, "listener", None)  # (address, port)
            client = client.local_port
        assert client, "no local port: the client never connected"
        suffix = f":{client}"
        deadline = time.monotonic() + timeout
        while True:
            records = self.running.lab.ledger.records
            for record in reversed(records[since or 0:]):
                if record["client"].endswith(suffix) and (opened is None or epoch(record["time"]) >= opened - 0.001) \
                        and (where is None or (record.get("listener_address", self.host), record["listener_port"]) == where):
                    return record  # (the log's times are truncated to the millisecond)
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection-log record for client port {client} after {timeout} s")
            time.sleep(0.01)

    def wait_log_settled(self, timeout: float = 2.0) -> None:
        """Until no client connection is open on the lab, in any of its workers (their records are then all
        in the log)."""
        self.running.call(self.running.lab.settle_log(timeout), timeout=timeout + 5)

    def explain(self, listener: str | int | ListenerHandle, response: Response | None = None) -> str:
        """A failure message: the response, the listener's status and its backends' health right now."""
        data = self.listener(self.port(listener))
        backends = ", ".join(f"{b['name']} healthy={b['healthy']} active={b['active_requests']}" for b in data["backend_servers"])
        head = f"{response.status} {response.body[:200]!r}; " if response is not None else ""
        return f"{head}listener {data['name']} {data['status']}; backends: {backends}"

    def wait_backends_healthy(self, timeout: float = 10) -> None:
        """Until every backend of every listener passes its health checks again (after a deliberate overload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [b for l in self.running.lab.registry.listeners.values() if l.active for b in l.active.backends]
            if all(b.healthy for b in states):
                return
            time.sleep(0.02)

    def traffic(self) -> list[dict[str, Any]]:
        """`GET /v1/traffic`: per listener, wire vs billed bytes, handshakes, LCU."""
        return self.api_ok("GET", "/v1/traffic")["listeners"]

class KeepAlive:
    """One HTTPS connection carrying any number of requests (HTTP/1.1 keep-alive)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str, timeout: float,
                 mark: Any = lambda: None):
        self._conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._mark = mark
        self.local_port: int | None = None
        self.mark: int | None = None
        self.opened: float | None = None

    def connect(self) -> None:
        if self._conn.sock is None:
            self.mark, self.opened = self._mark(), time.time()
            # http.client would send the IP as SNI and check the hostname against it: wrap ourselves.
            raw = socket.create_connection((self._conn.host, self._conn.port), self._conn.timeout)
            self.local_port = raw.getsockname()[1]
            self._conn.sock = self._conn._context.wrap_socket(raw, server_hostname=self._server_name)  # type: ignore[attr-defined]

    def request(self, path: str = "/", *, method: str = "GET", headers: Mapping[str, str] | None = None,
                body: bytes | None = None) -> Response:
        self.connect()
        self._conn.request(method, path, body=body, headers={"Host": self._server_name, **(headers or {})})
        response = self._conn.getresponse()
        data = response.read()
        sock = self._conn.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        cipher = sock.cipher()[0] if isinstance(sock, ssl.SSLSocket) and sock.cipher() else None
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data, self.local_port,
                        version, cipher, self.mark, self.opened, (self._conn.host, self._conn.port))

    def close(self) -> None:
        self._conn.close()


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for external clients: loopback never goes through a proxy the user may have set."""
    env = {**os.environ, **(extra or {})}
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(x for x in (env.get(key), "localhost", "127.0.0.1") if x)
    return env


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _text(pem: bytes | str | None) -> str | None:
    return pem.decode() if isinstance(pem, bytes) else pem


def _pem_pair(cert: bytes | str | Issued, key: bytes | str | None) -> tuple[str, str | None]:
    if isinstance(cert, Issued):
        return cert.chain_pem.decode(), _text(key) if key is not None else cert.key_pem.decode()
    return _text(cert) or "", _text(key)


# ---- building labs and certificates --------------------------------------------------------------------------

class LabBuilder:
    """A lab configuration in code, the same fields as the YAML:

        lab = start(LabBuilder().server_certificate("web", pki.server("localhost"))
                    .backend("app").listener("shop", server_certificate="web", tls_policy="tls_cipher_policy_1_2"))
    """

    def __init__(self, profile: str = vendors.DEFAULT, time_scale: float | None = None):
        self.data: dict[str, Any] = {"profile": profile, "certificates": [], "backends": [], "listeners": []}
        if time_scale is not None:
            self.data["time_scale"] = time_scale

    def server_certificate(self, name: str, issued: Issued | None = None, *, cert: str | bytes | None = None,
                           key: str | bytes | None = None) -> LabBuilder:
        cert_text, key_text = _pem_pair(issued, None) if issued else (_text(cert), _text(key))
        self.data["certificates"].append({"name": name, "type": "server", "cert": cert_text, "key": key_text})
        return self

    def ca_certificate(self, name: str, cert: str | bytes) -> LabBuilder:
        self.data["certificates"].append({"name": name, "type": "ca", "cert": _text(cert)})
        return self

    def backend(self, name: str, address: str | None = None) -> LabBuilder:
        self.data["backends"].append({"name": name, "address": address} if address else {"name": name, "port": 0})
        return self

    def listener(self, name: str, **fields: Any) -> LabBuilder:
        """A listener (port 0 = a free one; backend_servers default to every backend)."""
        spec = {"name": name, "port": 0, **fields}
        spec.setdefault("backend_servers", [{"backend": b["name"]} for b in self.data["backends"]])
        self.data["listeners"].append(spec)
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))


def start(config: LabBuilder | Mapping[str, Any] | str | Path | None = None, *, time_scale: float | None = 0.01,
          out_dir: str | Path | None = None, workers: int | None = None, vendor_apis: bool = False) -> ScenarioLab:
    """Start a lab (the default lab, a YAML path, a mapping or a builder) and return its handle; stop it with
    ``.stop()`` or use it as a context manager. `time_scale` and `workers` override the configuration's
    (None keeps it). `vendor_apis` also starts the vendors' own APIs: ``handle.running.endpoints``
    (docs/vendor-apis.md)."""
    if isinstance(config, LabBuilder):
        config = config.to_dict()
    running = start_lab(dict(config) if isinstance(config, Mapping) else config, out_dir=out_dir, time_scale=time_scale,
                        workers=workers, vendor_apis=vendor_apis)
    return ScenarioLab(running, owns=True)


def mint_pki(key_type: str = "rsa", name: str = "lbsim scenario CA") -> LabPKI:
    """A fresh CA: ``.server(*names)``, ``.client(cn, state)``, ``.ca_pem``, ``.other_ca()`` (see docs/certificates.md)."""
    return LabPKI(key_type=key_type, name=name)  # type: ignore[arg-type]


def self_signed_certificate(*names: str, key_type: str = "rsa", valid_for: float | None = None,
                            not_before: dt.datetime | None = None) -> Issued:
    """A self-signed server certificate (PKCS#1 key for RSA), optionally valid for only `valid_for` seconds:
    clients trust it by passing the certificate itself as the CA file."""
    names = names or ("localhost",)
    key = make_key(key_type)  # type: ignore[arg-type]
    now = dt.datetime.now(dt.timezone.utc)
    start_at = not_before or now - dt.timedelta(hours=1)
    end = now + dt.timedelta(seconds=valid_for) if valid_for is not None else now + dt.timedelta(days=90)
    cert = make_cert(names[0], key, sans=names, not_before=start_at, not_after=end)
    pem = cert_pem(cert)
    return Issued(pem, key_pem(key), pem)


def dh_parameters_pem(bits: int = 512) -> bytes:
    """A `BEGIN DH PARAMETERS` block, what the vendors refuse in an upload (small: generating is slow)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dh

    params = dh.generate_parameters(generator=2, key_size=bits)
    return params.parameter_bytes(serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3)


def der(pem: bytes) -> bytes:
    """The DER form of the first PEM block (a certificate or key): what the vendors refuse."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from simulator.certs.parse import load_known_key

    if b"CERTIFICATE" in pem.split(b"\n", 1)[0]:
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    key = load_known_key(pem)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
