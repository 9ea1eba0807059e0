"""What the Locust profiles share: lbsim's command-line arguments, the target listener, and `LbsimUser`.

`LbsimUser` drives `simulator.load.client.TlsConnection` (pyOpenSSL over a counting gevent socket) and
reports through Locust's request event, so everything shows in Locust's statistics, CSV and web UI:

    type      name                 response time            size (response_length)
    TLS       handshake full       TLS handshake, ms        handshake wire bytes, both directions
    TLS       handshake resumed    TLS handshake, ms        handshake wire bytes, both directions
    TLS       handshake rejected   until the refusal, ms    wire bytes of the refused handshake
    TLS       handshake failed     until the failure, ms    (a failure: the client was not meant to fail)
    GET|POST  <label>              request, ms              HTTP response bytes (status line, headers, body)
    HTTP-OUT  <label>              request, ms              HTTP request bytes
    WIRE-IN   <label>              request, ms              TLS bytes received since the previous request
    WIRE-OUT  <label>              request, ms              TLS bytes sent since the previous request

Every wire byte lands in exactly one WIRE-IN/WIRE-OUT row: a connection's first request carries its
handshake, `close` carries close_notify, `rejected`/`failed` carry a connection that served nothing.
So WIRE-IN/GET is the LB->client overhead of HTTPS and the sums equal the listener's metering.

`--client-log DIR` also writes one JSON line per connection (`client-<pid>.jsonl`): what the client saw,
keyed by local port, to compare with the listener's connection log.
"""

from __future__ import annotations

import atexit
import csv
import gc
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import simulator  # noqa: F401  (pins the key-exchange groups before OpenSSL loads)
from locust import User, events
from locust.env import Environment
from locust.stats import StatsCSVFileWriter
from simulator.load.client import (
    ConnectionFailed,
    HandshakeRejected,
    Response,
    Target,
    TlsConnection,
    TlsOptions,
    client_context,
)

TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
INVALID_KINDS = ("untrusted", "expired", "not_yet_valid", "none")


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    env = os.environ.get
    parser.add_argument("--listener", default=env("LBSIM_LISTENER", ""),
                        help="lab listener: a name (looked up through --lab-api) or a port on localhost; else --host")
    parser.add_argument("--lab-api", default=env("LBSIM_API", ""), help="the lab's management API URL, to look up --listener")
    parser.add_argument("--pki", default=env("LBSIM_PKI", "lbsim-out/pki"),
                        help="the lab PKI directory (ca.pem, client-*.pem) that `lbsim up` wrote")
    parser.add_argument("--ca", default="", help="CA bundle the listener certificate is verified against (default: PKI/ca.pem)")
    parser.add_argument("--tls-version", default="", choices=("",) + TLS_VERSIONS, help="pin one TLS version (default: negotiate)")
    parser.add_argument("--ciphers", default="", help="OpenSSL cipher string offered for TLS <= 1.2")
    parser.add_argument("--tls13-ciphersuites", default="", help="TLS 1.3 suites offered, colon-separated")
    parser.add_argument("--sni", default="", help="server name sent and checked (default: the target's host name)")
    parser.add_argument("--no-tickets", action="store_true", help="no session tickets: TLS 1.2 resumes by session ID")
    parser.add_argument("--client-cert", default="", help="client certificate chain PEM (mutual; default PKI/client-valid.pem)")
    parser.add_argument("--client-key", default="", help="its private key (default: beside the certificate, .key)")
    parser.add_argument("--path", default="/load", help="request path (the mock backend takes ?size=N)")
    parser.add_argument("--response-size", type=int, default=1024, help="response body bytes asked of the mock backend")
    parser.add_argument("--client-log", default="", help="directory for per-connection client records (client-<pid>.jsonl)")


# ---- settings, resolved once per process -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    target: Target
    tls: TlsOptions  # without a client certificate
    sni: str | None
    pki: Path
    options: Any

    def tls_with(self, cert: str | None, key: str | None) -> TlsOptions:
        return TlsOptions(self.tls.cafile, self.tls.version, self.tls.ciphers, self.tls.tls13_ciphersuites,
                          cert, key, self.tls.alpn, self.tls.tickets)

    def client_pair(self, kind: str) -> tuple[str | None, str | None]:
        """Certificate and key files for 'valid' (or --client-cert), 'untrusted', 'expired', ..., 'none'."""
        if kind == "none":
            return None, None
        if kind == "valid" and self.options.client_cert:
            cert = self.options.client_cert
            return cert, self.options.client_key or str(Path(cert).with_suffix(".key"))
        cert = self.pki / f"client-{kind}.pem"
        if not cert.exists():
            raise FileNotFoundError(f"{cert}: no client certificate {kind!r} (set --pki or --client-cert)")
        return str(cert), str(cert.with_suffix(".key"))


_settings: dict[str, Settings] = {}


def lab_listeners(api: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(api.rstrip("/") + "/v1/listeners", timeout=10) as response:
        return json.load(response)["listeners"]


def settings(environment: Environment, default_listener: str) -> Settings:
    """The target and TLS options from the command line (and the lab API), resolved once per process."""
    if default_listener in _settings:
        return _settings[default_listener]
    o = environment.parsed_options
    # --listener, else Locust's --host, else the profile's default listener of the lab at --lab-api
    listener = o.listener or (default_listener if o.lab_api and not environment.host else "")
    if listener.isdigit():
        url = f"https://localhost:{listener}"
    elif listener:
        if not o.lab_api:
            raise ValueError(f"--listener {listener!r} is a name: give --lab-api URL to look it up (or a port)")
        ports = {l["name"]: l["port"] for l in lab_listeners(o.lab_api)}
        if listener not in ports:
            raise ValueError(f"the lab has no listener {listener!r}; it has {sorted(ports)}")
        url = f"https://localhost:{ports[listener]}"
    elif environment.host:
        url = environment.host
    else:
        raise ValueError("no target: give --host https://HOST:PORT, --listener PORT, or --listener NAME --lab-api URL")
    pki = Path(o.pki)
    cafile = o.ca or str(pki / "ca.pem")
    if not Path(cafile).exists():
        raise FileNotFoundError(f"{cafile}: the CA to verify the listener against (set --ca or --pki)")
    tls = TlsOptions(cafile=cafile, version=o.tls_version or None, ciphers=o.ciphers or None,
                     tls13_ciphersuites=o.tls13_ciphersuites or None, tickets=not o.no_tickets)
    _settings[default_listener] = s = Settings(Target.parse(url), tls, o.sni or None, pki, o)
    return s


# ---- the client log ---------------------------------------------------------------------------------------------


class ClientLog:
    """One JSON line per connection, one file per process (forked workers each get their own)."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._pid = 0

    def write(self, environment: Environment, record: dict[str, Any]) -> None:
        directory = environment.parsed_options.client_log if environment.parsed_options else ""
        if not directory:
            return
        if self._file is None or self._pid != os.getpid():
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._pid = os.getpid()
            self._file = open(Path(directory) / f"client-{self._pid}.jsonl", "a")
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self, **_: Any) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.flush()


client_log = ClientLog()
events.test_stop.add_listener(client_log.flush)
events.quitting.add_listener(client_log.flush)
atexit.register(client_log.flush)


class CpuWindow:
    """This process's CPU time from test start to test stop, written beside the client log
    (`cpu-<pid>.json`): the evidence of whether the load generator itself was the bottleneck."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None

    def test_start(self, environment: Environment, **_: Any) -> None:
        self.start = (time.time(), time.process_time())

    def test_stop(self, environment: Environment, **_: Any) -> None:
        directory = environment.parsed_options.client_log if environment.parsed_options else ""
        if not directory or self.start is None:
            return
        (wall0, cpu0), wall1, cpu1 = self.start, time.time(), time.process_time()
        Path(directory).mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "role": type(environment.runner).__name__, "start": wall0, "stop": wall1,
                  "cpu_s": round(cpu1 - cpu0, 3), "cpu_pct": round(100 * (cpu1 - cpu0) / max(wall1 - wall0, 1e-6), 1)}
        (Path(directory) / f"cpu-{os.getpid()}.json").write_text(json.dumps(record) + "\n")
        self.start = None


cpu_window = CpuWindow()
events.test_start.add_listener(cpu_window.test_start)
events.test_stop.add_listener(cpu_window.test_stop)


@events.quit.add_listener
def final_csv(**_: Any) -> None:
    """Write Locust's CSVs once more at exit. Locust rewrites them every 2 s but not at the end, so
    `--csv` files miss the last seconds (locustio/locust#1806, #2299); `lbsim load` checks them against
    the listener's log, so they must be final. `quit` fires just before Locust closes the files."""
    for writer in (o for o in gc.get_objects() if isinstance(o, StatsCSVFileWriter)):
        for handle, write in (
            (writer.requests_csv_filehandle, writer.requests_csv),
            (writer.failures_csv_filehandle, writer.failures_csv),
            (writer.exceptions_csv_filehandle, writer.exceptions_csv),
        ):
            if handle.closed:
                continue
            handle.seek(0)
            write(csv.writer(handle))
            handle.truncate()
        if not writer.stats_history_csv_filehandle.closed:
            writer._stats_history_data_rows(writer.stats_history_csv_writer, time.time())


# ---- the user ----------------------------------------------------------------------------------------------------


class LbsimUser(User):
    """A Locust user over `TlsConnection`; profiles write tasks with `open`, `get`/`post` (or `http`) and `close`."""

    abstract = True
    default_listener = "aliyun-one-way"

    def on_start(self) -> None:
        self.settings = settings(self.environment, self.default_listener)
        self.fire = self.environment.events.request.fire

    # ---- connections ---------------------------------------------------------------------------------

    def open(self, session: Any = None, client: str | None = None, expect_rejection: bool = False) -> TlsConnection | None:
        """Connect and handshake; report the handshake. None if it was refused or failed (already reported)."""
        s = self.settings
        cert, key = s.client_pair(client) if client else (None, None)
        conn = TlsConnection(s.target, client_context(s.tls_with(cert, key)), sni=s.sni, session=session,
                             client_cert=client, expect_rejection=expect_rejection)
        rec = conn.record
        try:
            conn.connect()
        except HandshakeRejected as e:
            self._report_refusal(conn, e)
            return None
        except ConnectionFailed as e:
            self._tls("handshake failed", rec.handshake_ms or rec.connect_ms or 0.0, rec.sent + rec.received, e)
            self._closed(conn, "failed")
            return None
        except BaseException:
            self._closed(conn, "aborted")
            raise
        if not expect_rejection:
            self._tls("handshake resumed" if rec.resumed else "handshake full", rec.handshake_ms or 0.0,
                      rec.handshake_sent + rec.handshake_received)
        return conn

    def _report_refusal(self, conn: TlsConnection, e: HandshakeRejected) -> None:
        rec = conn.record
        ms = rec.handshake_ms or 0.0
        if rec.expect_rejection:
            self._tls("handshake rejected", ms, rec.sent + rec.received)
        else:
            self._tls("handshake failed", ms, rec.sent + rec.received, e)
        self._closed(conn, "rejected")

    def http(self, conn: TlsConnection, method: str, path: str, name: str, body: bytes = b"") -> Response | None:
        """One request on `conn`; reported under `name`. None if the connection broke (reported, closed)."""
        rec = conn.record
        try:
            r = conn.request(method, path, body)
        except HandshakeRejected as e:  # TLS 1.3: the client certificate is refused after the client finished
            self._report_refusal(conn, e)
            return None
        except ConnectionFailed as e:
            self.fire(request_type=method, name=name, response_time=0.0, response_length=0, exception=e, context={})
            self._closed(conn, "failed")
            return None
        except BaseException:
            self._closed(conn, "aborted")
            raise
        if rec.expect_rejection:  # the listener served a client it should have refused
            self._tls("handshake rejected", rec.handshake_ms or 0.0, rec.handshake_sent + rec.handshake_received,
                      AssertionError(f"the listener accepted an invalid client certificate ({rec.client_cert})"))
            rec.expect_rejection = False
        error = None if r.status < 400 else ConnectionFailed(f"HTTP {r.status}")
        fire, ms = self.fire, r.elapsed_ms
        fire(request_type=method, name=name, response_time=ms, response_length=r.http_received, exception=error, context={})
        fire(request_type="HTTP-OUT", name=name, response_time=ms, response_length=r.http_sent, exception=None, context={})
        fire(request_type="WIRE-IN", name=name, response_time=ms, response_length=r.wire_received, exception=None, context={})
        fire(request_type="WIRE-OUT", name=name, response_time=ms, response_length=r.wire_sent, exception=None, context={})
        if not r.keep_alive:
            self.close(conn)
        return r

    def get(self, conn: TlsConnection, path: str, name: str | None = None) -> Response | None:
        return self.http(conn, "GET", path, name or path.split("?")[0])

    def post(self, conn: TlsConnection, path: str, body: bytes, name: str | None = None) -> Response | None:
        return self.http(conn, "POST", path, name or path.split("?")[0], body)

    def close(self, conn: TlsConnection) -> None:
        if not conn.closed:
            self._closed(conn, "close")

    def _closed(self, conn: TlsConnection, name: str) -> None:
        """Close, report the bytes no request carried (close_notify, a refused handshake), log the record."""
        sent, received = conn.close()
        if received:
            self.fire(request_type="WIRE-IN", name=name, response_time=0.0, response_length=received, exception=None, context={})
        if sent:
            self.fire(request_type="WIRE-OUT", name=name, response_time=0.0, response_length=sent, exception=None, context={})
        client_log.write(self.environment, conn.record.to_dict())

    def _tls(self, name: str, ms: float, length: int, exception: BaseException | None = None) -> None:
        self.fire(request_type="TLS", name=name, response_time=ms, response_length=length, exception=exception, context={})


def sized(path: str, size: int) -> str:
    """`path` asking the mock backend for a `size`-byte body."""
    return f"{path}{'&' if '?' in path else '?'}size={size}"

