"""`lbsim bench`: an lbsim listener against a bare mitmdump and nginx, in one run.

Every server gets the same RSA-2048 certificate, the same TLS policy and the same mock backend (in a
process of its own), and the same load tool (h2load in HTTP/1.1 mode, one thread; or wrk) drives them on
loopback. Three figures:

* **new connections/s**: one request per TLS connection (`Connection: close`), a full handshake each.
  h2load resumes the session of a client's previous connection whenever the server issued a ticket, so
  it runs with a small LD_PRELOAD shim (`benchmarks/full_handshakes.c`, compiled with `cc`) that stops it;
* **resumed connections/s**: the same, as h2load does it by itself: nearly every handshake resumes;
* **keep-alive requests/s**: many requests per connection.

For lbsim the connection log tells how many handshakes of each figure resumed; the report shows it.

With `--workers N` three more things tell how the workers scale on this machine, whose cores the load tool
and the backend share:

* **paced new connections**: one process and N workers under the same offered load (h2load `--rate`, half
  of what one process reached), so their CPU per connection compares without either being starved;
* **one process at each worker's share of that load**: what a process pays per connection for being as
  little busy as each worker is, by itself (the workers' goal cites it);
* **nginx the same way**: one worker and N workers at that pace, and one worker at each worker's share of
  it, so the report tells what this machine charges any server for being spread over N processes;
* **the scaling ceiling**: the most N workers could reach here if each cost what one saturated process
  costs per connection and every core were busy (the load tool's and the backend's CPU per connection,
  measured in the same round, take their share of the cores).

The machine is shared and noisy, so rounds interleave the servers (a, b, c, a, b, c, ...) so that noise
hits all of them alike, and the report gives medians. Besides requests/s it records the CPU time each
server used, so "requests per CPU-second" shows efficiency even when the cores were busy with other work.

    lbsim bench                     # 5 rounds x 8 s per server and figure, 20 connections, h2load
    lbsim bench --workers 2         # also an lbsim with `workers: 2`
    lbsim bench --quick             # a smoke run (seconds): the harness works, figures are rough
    lbsim bench --cpu-profile prof/ # also CPU-profile the lbsim listener under pyinstrument
    lbsim bench --tool wrk          # wrk instead (see docs/performance.md: it spins during handshakes)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from simulator.backends import BackendProcess
from simulator.certs import LabPKI
from simulator.errors import LbsimError
from simulator.load.cpu import context_switches, cpu_seconds
from simulator.model.config import DEFAULT_EVENT_LOOP, EVENT_LOOPS
from simulator.net import LOOPBACK, free_port
from simulator.policies import resolve_policy
from simulator.resources import data_file

FIGURES = ("new_connections", "resumed_connections", "keepalive")
PACED = "paced_connections"  # with --workers: one process and the workers at the same offered load
# ... and one process at each worker's share of that load: what being less busy costs a process by itself
WORKER_PACE = "worker_paced_connections"
FIGURE_TITLES = {"new_connections": "new TLS connections/s, full handshakes (1 request each)",
                 "resumed_connections": "new TLS connections/s, resumed handshakes (1 request each)",
                 "keepalive": "keep-alive requests/s",
                 PACED: "new TLS connections at an equal pace (half of one process's rate), full handshakes",
                 WORKER_PACE: "new TLS connections at each worker's share of that pace, one process, full handshakes"}
FULL_HANDSHAKES = ("new_connections", PACED, WORKER_PACE)  # h2load runs these under the no-resumption shim
SHIM = "full_handshakes.c"  # in benchmarks/ (simulator.resources: the checkout's, else the installed copy)
LOG_SETTLE = 0.3  # seconds for lbsim's last connection records of a sample to reach its log
METERING_OFF = "lbsim metering off"  # with --metering-off: the same lbsim with `metering: off`
TLS_ONLY = "lbsim TLS only"  # the same lbsim answering each request in place (simulator/tools/tlsonly.py)
LEAN = "lbsim lean HTTP/1 (prototype)"  # with --lean-prototype: the same lbsim, a minimal HTTP/1.1 layer (leanhttp.py)
NGINX = "nginx"  # one worker: the reference of the rate goals
# The rate goals against nginx (issue 21), one process each: lbsim / nginx at least this, per figure.
NGINX_GOALS = {"new_connections": 0.5, "resumed_connections": 0.3, "keepalive": 0.06}
WORKER_CPU_GOAL = 1.1  # two workers at an equal pace: at most this times one process's CPU per connection
PROFILE, POLICY = "aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3"
# Debian packages of the external tools (the setup installs them; the bench may too, as root).
APT_PACKAGES = {"h2load": "nghttp2-client", "wrk": "wrk", "nginx": "nginx", "cc": "gcc",  # cc: the shim
                "valgrind": "valgrind"}  # simulator.tools.instructions counts a lab's instructions under callgrind
# The browser the console's tests drive (tests/test_console.py), installed by the setup the same way.
BROWSER_PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}
TOOLS = ("h2load", "wrk")
TEMPLATE = "nginx.conf.template"  # in benchmarks/ too
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def which(tool: str) -> str | None:
    return shutil.which(tool, path=SBIN_PATH)


# ---- tools ----------------------------------------------------------------------------------------------


def ensure_tools(install: bool, say: Callable[[str], None] = print, need: tuple[str, ...] = tuple(APT_PACKAGES),
                 packages: dict[str, str] = APT_PACKAGES) -> dict[str, str | None]:
    """Paths of the tools in `need`; installs the missing ones with apt-get when allowed and possible.
    `packages`: tool -> the Debian package that has it."""
    found = {tool: which(tool) for tool in need}
    missing = [tool for tool, path in found.items() if path is None]
    if not missing:
        return found
    debs = " ".join(packages[t] for t in missing)
    if not install:
        say(f"missing {', '.join(missing)}: install with `apt-get install -y {debs}` (or drop --no-install)")
        return found
    if os.geteuid() != 0 or which("apt-get") is None:
        say(f"missing {', '.join(missing)} and apt-get is not usable here (needs root and Debian/Ubuntu): "
            f"install the packages `{debs}` yourself")
        return found
    say(f"installing {debs} with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *debs.split()]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            say(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()[-400:]}")
            break
    return {tool: which(tool) for tool in need}


def required(tools: dict[str, str | None], tool: str) -> str:
    """The path `ensure_tools` found for `tool`, or an error naming the Debian package that has it."""
    path = tools.get(tool)
    if path is None:
        raise RuntimeError(f"{tool} is required: apt-get install -y {APT_PACKAGES[tool]}")
    return path


def work_dir(out_dir: Path | str | None, prefix: str) -> Path:
    """`out_dir`, absolute (lab files name their certificates by it, relative to themselves) and created; else a
    new temporary directory named `prefix...`."""
    work = Path(tempfile.mkdtemp(prefix=prefix)) if out_dir is None else Path(out_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    return work


def rsa_sign_rate(seconds: int = 2) -> float | None:
    """RSA-2048 signatures per second on one core, from `openssl speed` (None if it cannot be run)."""
    openssl = which("openssl")
    if openssl is None:
        return None
    try:
        out = subprocess.run([openssl, "speed", "-seconds", str(seconds), "rsa2048"], capture_output=True,
                             text=True, timeout=60 + 4 * seconds).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # "rsa 2048 bits 0.000512s 0.000015s   1953.1  66666.7"  (OpenSSL 3.0: sign, verify, sign/s, verify/s)
    m = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)", out, re.M)
    return float(m.group(1)) if m else None


# ---- load ---------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests_per_s: float
    requests: int
    errors: int
    non_2xx: int
    output: str = field(repr=False, default="")


def run_load(tool: str, path: str, port: int, duration: float, connections: int, new_connections: bool,
             expected_rate: float | None = None, pace: float | None = None,
             preload: Path | None = None, requests: int | None = None) -> LoadResult:
    """One run of `tool` (one thread, `connections` connections) against https://127.0.0.1:port/.

    New connections send `Connection: close`, so every request gets a connection (and a full handshake) of
    its own. h2load cannot end a timed run that reconnects, so it gets a request count instead: what the
    server did per second before (`expected_rate`) times `duration`. With `pace` (h2load only), h2load opens
    `pace` new connections a second, one request each, whatever the server could take. `preload` is a
    library for LD_PRELOAD (the full-handshake shim). `requests` (h2load only): exactly that many requests,
    however long they take (`duration` then only bounds the wait).
    """
    url = f"https://{LOOPBACK}:{port}/"
    close = ["-H", "Connection: close"] if new_connections else []
    if pace is not None:
        if tool != "h2load":
            raise ValueError("a paced load needs h2load (wrk has no connection rate)")
        batch, period_ms = pacing(pace)
        n = max(batch, round(pace * duration))
        cmd = [path, "--h1", "-t1", f"-c{n}", f"-n{n}", f"-r{batch}", f"--rate-period={period_ms}ms",
               "-H", "Connection: close", url]
    elif tool == "wrk":
        cmd = [path, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", *close, url]
    elif new_connections or requests:
        n = requests or max(connections * 5, round((expected_rate or 10 * connections) * duration))
        cmd = [path, "--h1", "-t1", f"-c{connections}", f"-n{n}", *close, url]
    else:
        cmd = [path, "--h1", "-t1", f"-c{connections}", f"-D{max(1, round(duration))}", url]
    env = {**os.environ, "LD_PRELOAD": str(preload)} if preload else None
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 10 + 120, env=env)
    out = done.stdout + done.stderr
    return (_parse_wrk if tool == "wrk" else _parse_h2load)(done.returncode, out)


def build_shim(workdir: Path, say: Callable[[str], None] = print) -> Path | None:
    """Compile the full-handshake shim (`benchmarks/full_handshakes.c`); None when there is no C compiler."""
    cc = which("cc") or which("gcc")
    target = workdir / "full_handshakes.so"
    if cc is None:
        say("no C compiler (cc): the full-handshake figure is left out (apt-get install -y gcc)")
        return None
    source = data_file("benchmarks", SHIM)
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(target), str(source), "-ldl"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        say(f"could not build {SHIM}: {done.stderr.strip()[-400:]}; the full-handshake figure is left out")
        return None
    return target


def pacing(pace: float) -> tuple[int, int]:
    """h2load's `--rate` and `--rate-period` (whole ms) for about `pace` connections/s: a batch every ~50 ms,
    not `pace` connections at once each second (h2load's default period)."""
    batch = max(1, round(pace / 20))
    return batch, max(1, round(1000 * batch / pace))


def paced_rate(pace: float) -> int:
    """The connections/s h2load offers when asked for about `pace` (`pacing`'s whole batches and milliseconds)."""
    batch, period_ms = pacing(pace)
    return round(1000 * batch / period_ms)


def _parse_wrk(code: int, out: str) -> LoadResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if code != 0 or not rate or not total:
        raise RuntimeError(f"wrk failed ({code}): {out.strip()[-500:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(float(rate.group(1)), int(total.group(1)), errors, int(non_2xx.group(1)) if non_2xx else 0, out)


def _parse_h2load(code: int, out: str) -> LoadResult:
    # "finished in 3.01s, 569.00 req/s, 306.32KB/s"
    # "requests: 1707 total, 1727 started, 1707 done, 1707 succeeded, 0 failed, 0 errored, 0 timeout"
    # "status codes: 1707 2xx, 0 3xx, 0 4xx, 0 5xx"
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    requests = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if code != 0 or not rate or not requests or not codes:
        raise RuntimeError(f"h2load failed ({code}): {out.strip()[-500:]}")
    done, _succeeded, failed, errored, timeout = (int(x) for x in requests.groups())
    # Count 4xx/5xx, not done - 2xx: a timed run (-D) can count the status of a request it stops before "done".
    non_2xx = int(codes.group(1)) + int(codes.group(2))
    return LoadResult(float(rate.group(1)), done, failed + errored + timeout, non_2xx, out)


# ---- servers ------------------------------------------------------------------------------------------


class Server:
    """A TLS server under test, started in its own process group and stopped by its pid."""

    name = ""
    stop_signal = signal.SIGTERM
    start_timeout = 60.0  # seconds to serve after its start (a server run under a tool may need longer)

    def __init__(self, workdir: Path, label: str | None = None):
        self.workdir = workdir
        self.label = label or self.name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> str | None:
        return None

    def write_config(self) -> None:
        """Write the server's configuration file for `self.port` (servers that take the port on their command
        line have none)."""

    def start(self, ca_file: str, timeout: float | None = None, attempts: int = 3) -> None:
        """Start the server and wait until it answers a request (within `timeout`, else `start_timeout`).

        Its port was free when picked, but this is a busy loopback: a load tool's client connection (its
        ephemeral port comes from the same range) or another bench can take it before the server binds it.
        A server that could not bind gets another port, up to `attempts` times (its log keeps each attempt)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = (self.workdir / "server.log").open("wb" if self.log is None else "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT, env=self.env(),
                                     cwd=self.cwd(), start_new_session=True)
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        error = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if attempts > 1 and "already in use" in self.tail().lower():
                    self.log.close()
                    self.port = free_port()
                    self.write_config()
                    return self.start(ca_file, timeout, attempts - 1)
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.tail()}")
            try:
                self.handshake = https_get(self.port, ca_file)
                return
            except (OSError, ssl.SSLError, http.client.HTTPException, RuntimeError) as e:
                error = str(e)
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not serve within {timeout:g} s ({error}): {self.tail()}")

    def log_size(self) -> int | None:
        """Where the server's lbsim connection log ends now; None for servers that keep none."""
        return None

    def handshakes_since(self, offset: int) -> tuple[int, int]:
        """(handshakes, resumed) in the connection-log records written after byte `offset`."""
        return handshakes_in(self.records_since(offset))

    def records_since(self, offset: int) -> list[dict[str, Any]]:
        """The connection-log records written after byte `offset` (servers with a `log_size`)."""
        raise NotImplementedError

    def tail(self) -> str:
        """The end of what the server printed (nginx's error log included)."""
        text = ""
        for name in ("server.log", "error.log"):
            path = self.workdir / name
            text += path.read_text(errors="replace")[-800:] if path.exists() else ""
        return text

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log:
            self.log.close()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def switches(self) -> tuple[int, int]:
        """(sleeps, preemptions) of its processes' threads so far (`context_switches`)."""
        return context_switches(self.proc.pid) if self.proc else (0, 0)


class LbsimServer(Server):
    """`lbsim up` with one HTTPS listener (the connection log on; metering on, as by default, unless told)."""

    name = "lbsim"
    stop_signal = signal.SIGINT  # a clean lab shutdown

    def __init__(self, workdir: Path, cert: Path, key: Path, backend: str, workers: int = 1,
                 label: str | None = None, profile_to: Path | None = None, metering: bool = True,
                 time_scale: float = 1.0, extra: dict[str, Any] | None = None, code: Path | None = None,
                 python: str | None = None):
        """`time_scale` 100 holds idle connections 25 minutes (`--concurrency`); `extra`: more lab file fields;
        `code`: run the lbsim of another checkout (`--baseline`) instead of this one; `python`: under another
        interpreter (one with lbsim's dependencies installed) instead of this process's."""
        super().__init__(workdir, label or (f"lbsim x{workers}" if workers > 1 else "lbsim"))
        self.workers, self.profile_to, self.code, self.python = workers, profile_to, code, python
        lab: dict[str, Any] = {
            "profile": PROFILE,
            # Any free port, bound at once: a port picked here could be taken (an h2load client's, say) in
            # the second before the lab binds it, and the bench never calls the API.
            "api": {"port": 0},
            "home": str(workdir / "store"),
            "connection_log": str(workdir / "connections.jsonl"),
            "metering": metering,
            "certificates": [{"name": "bench-rsa", "type": "server", "cert": str(cert), "key": str(key)}],
            "backends": [{"name": "bench", "address": backend}],
            "listeners": [{"name": "bench", "port": self.port, "server_certificate": "bench-rsa",
                           "tls_policy": POLICY, "backend_servers": ["bench"]}],
        }
        if workers > 1:
            lab["workers"] = workers
        if time_scale != 1.0:
            lab["time_scale"] = time_scale
        lab.update(extra or {})
        workdir.mkdir(parents=True, exist_ok=True)
        self.lab, self.config = lab, workdir / "lab.yaml"
        self.write_config()

    def write_config(self) -> None:
        self.lab["listeners"][0]["port"] = self.port
        self.config.write_text(yaml.safe_dump(self.lab, sort_keys=False))

    @property
    def connection_log(self) -> Path:
        return self.workdir / "connections.jsonl"

    def log_size(self) -> int | None:
        return self.connection_log.stat().st_size if self.connection_log.exists() else 0

    def records_since(self, offset: int) -> list[dict[str, Any]]:
        """The connection-log records written after byte `offset` (a worker's carry `"worker": k`)."""
        with self.connection_log.open("rb") as log:
            log.seek(offset)
            return [json.loads(line) for line in log if line.endswith(b"\n")]

    def first_cpu(self) -> float:
        """CPU time of worker 0 alone (the lab process), without its workers'."""
        return cpu_seconds(self.proc.pid, descendants=False) if self.proc else 0.0

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.code is not None:  # its `simulator` package, not this one's (run from there: `-m` puts the cwd first)
            env = code_first(env, self.code)
        return env

    def cwd(self) -> str | None:
        return str(self.code) if self.code is not None else None

    def command(self) -> list[str]:
        up = [self.python or sys.executable, "-m", "simulator.cli", "up", "-c", str(self.config), "--out", str(self.workdir)]
        if self.profile_to is not None:
            up += ["--cpu-profile", str(self.profile_to)]  # written when the lab stops (SIGINT)
        return up


class TlsOnlyServer(LbsimServer):
    """The same lab with every request answered in place, above the same TLS path: no HTTP layer, hooks or backend
    (simulator/tools/tlsonly.py). Its cost per request is a floor under any HTTP path inside lbsim's listener."""

    tool, target = "simulator.tools.tlsonly", TLS_ONLY  # the module that swaps the HTTP layer; the report's label

    def __init__(self, workdir: Path, cert: Path, key: Path, backend: str, extra: dict[str, Any] | None = None):
        super().__init__(workdir, cert, key, backend, label=self.target, extra=extra)

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.tool, "up", "-c", str(self.config),  # it serves under -O
                "--out", str(self.workdir)]


class LeanHttpServer(TlsOnlyServer):
    """The same lab with HTTP/1.1 through a minimal layer that runs the same hooks and upstream request
    (simulator/tools/leanhttp.py): what a leaner HTTP path inside the listener could reach."""

    tool, target = "simulator.tools.leanhttp", LEAN


class MitmdumpServer(Server):
    """A bare mitmdump reverse proxy: our certificate, lazy upstream connections, no addons of ours."""

    name = "mitmdump"

    def __init__(self, workdir: Path, combined_pem: Path, backend: str):
        super().__init__(workdir)
        self.combined_pem, self.backend = combined_pem, backend

    def command(self) -> list[str]:
        mitmdump = str(Path(sys.executable).with_name("mitmdump"))
        return [mitmdump, "-q", "--mode", f"reverse:http://{self.backend}@{LOOPBACK}:{self.port}",
                "--certs", f"*={self.combined_pem}", "--set", "connection_strategy=lazy",
                "--set", f"confdir={self.workdir / 'confdir'}", "--set", "termlog_verbosity=error"]


class NginxServer(Server):
    """nginx with the same certificate and TLS policy, proxying to the same backend with keep-alive."""

    name = "nginx"
    stop_signal = signal.SIGQUIT  # graceful: finish the open connections

    def __init__(self, workdir: Path, nginx: str, cert: Path, key: Path, backend: str, workers: str = "1",
                 hold: int = 0):
        """`hold`: connections it must hold idle (`--concurrency`): as many worker connections, a long idle timeout."""
        super().__init__(workdir, "nginx" if workers == "1" else f"nginx x{workers}")
        policy = resolve_policy(PROFILE, POLICY)
        values = {
            "dir": str(workdir), "workers": workers, "port": str(self.port), "backend": backend,
            "worker_connections": str(max(4096, 2 * hold + 1024)), "rlimit_nofile": str(max(8192, 2 * hold + 2048)),
            "keepalive_timeout": "3600s" if hold else "15s",
            "cert": str(cert), "key": str(key), "protocols": " ".join(policy.versions),
            "ciphers": policy.openssl_cipher_list(), "tls13_ciphersuites": ":".join(policy.tls13_ciphersuites),
        }
        self.values = values
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.write_config()
        self.nginx = nginx

    def write_config(self) -> None:
        text = data_file("benchmarks", TEMPLATE).read_text()
        for name, value in {**self.values, "port": str(self.port)}.items():
            text = text.replace("{" + name + "}", value)
        self.conf.write_text(text)

    def command(self) -> list[str]:
        return [self.nginx, "-p", str(self.workdir), "-c", str(self.conf), "-e", str(self.workdir / "error.log")]


def https_get(port: int, ca_file: str) -> dict[str, Any]:
    """One request on a new connection; what was negotiated (the bench checks the servers agree)."""
    context = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        sock = conn.sock
        return {"protocol": sock.version(), "cipher": sock.cipher()[0]}  # type: ignore[union-attr]
    finally:
        conn.close()


# ---- the run --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    target: str
    figure: str
    round: int
    requests_per_s: float
    requests: int
    errors: int
    non_2xx: int
    cpu_s: float
    duration_s: float
    client_cpu_s: float = 0.0  # the load tool's CPU time (it shares the cores)
    backend_cpu_s: float = 0.0  # the mock backend's
    handshakes: int | None = None  # lbsim only, from its connection log: handshakes during the sample
    resumed: int | None = None  # ... of which resumed a session
    sleeps: int = 0  # voluntary context switches of the server's threads during the sample (waits for input)
    preempted: int = 0  # ... and involuntary ones (another process took the core)
    first_cpu_s: float | None = None  # lbsim with workers: worker 0's own CPU time during the sample
    first_requests: int | None = None  # ... and the connections it served (its log records without "worker")

    @property
    def per_cpu_s(self) -> float:
        return self.requests / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass
class BenchReport:
    command: str
    rounds: int
    duration_s: float
    connections: int
    started: str
    tool: str
    machine: dict[str, Any]
    targets: list[str]
    negotiated: dict[str, dict[str, Any]]
    samples: list[Sample] = field(default_factory=list)
    rsa_sign_per_s: float | None = None
    notes: list[str] = field(default_factory=list)
    workers: int = 1
    pace: int | None = None  # new connections/s of the paced figure (h2load's batches, per second)
    worker_pace: int | None = None  # ... and of one process at each worker's share of it

    @property
    def figures(self) -> list[str]:
        return [f for f in (*FIGURES, PACED, WORKER_PACE) if any(s.figure == f for s in self.samples)]

    def median(self, target: str, figure: str, key: str = "requests_per_s") -> float | None:
        values = [getattr(s, key) for s in self.samples if s.target == target and s.figure == figure]
        return statistics.median(values) if values else None

    def ratio(self, a: str, b: str, figure: str, key: str = "requests_per_s") -> float | None:
        x, y = self.median(a, figure, key), self.median(b, figure, key)
        return x / y if x and y else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["medians"] = {t: {f: {"requests_per_s": self.median(t, f), "per_cpu_s": self.median(t, f, "per_cpu_s")}
                              for f in self.figures} for t in self.targets}
        out["ratios"] = self.ratios()
        out["scaling_ceiling"] = self.scaling_ceiling()
        out["goals"] = self.goals()
        return out

    def scaling_ceiling(self) -> float | None:
        """The most `workers: N` could reach here against one saturated process, on new connections (median of rounds).

        Per round of one process: if each worker cost what that process cost per connection, and the load tool
        and the backend theirs, all cores busy would give cores / (sum of costs) connections/s, or N / (lbsim's
        cost) if lbsim got fewer cores than that. The base is one process at a whole core (1 / its cost), not its
        measured rate, so a round slowed by something else on the machine cannot lift the ceiling above N.
        Kernel time nobody is charged for is left out, so the true ceiling is lower still.
        """
        cores = self.machine.get("cpus") or 1
        ceilings = []
        for s in self.samples:
            if s.target == "lbsim" and s.figure == "new_connections" and s.requests and s.cpu_s:
                lbsim, others = s.cpu_s / s.requests, (s.client_cpu_s + s.backend_cpu_s) / s.requests
                ceilings.append(min(cores / (lbsim + others), self.workers / lbsim) * lbsim)
        return round(statistics.median(ceilings), 3) if self.workers > 1 and ceilings else None

    def cpu_ms(self, target: str, figure: str) -> float | None:
        """The server's CPU per request in milliseconds (median of the rounds)."""
        per = self.median(target, figure, "per_cpu_s")
        return 1000 / per if per else None

    def goals(self) -> list[dict[str, Any]]:
        """Each goal with what this run measured, and why where it is missed: the CPU per connection of both
        servers, how much of lbsim's the RSA signature is (`openssl speed`), what lbsim would need, and (when
        "lbsim TLS only" was measured) what its TLS path alone spends and reaches: the ceiling of HTTP work."""
        out = []
        for figure, goal in NGINX_GOALS.items():
            ratio, lbsim, nginx = self.ratio("lbsim", "nginx", figure), self.cpu_ms("lbsim", figure), self.cpu_ms("nginx", figure)
            if ratio is None or not lbsim or not nginx:
                continue
            why = f"lbsim spends {lbsim:.3f} ms of CPU per request, nginx {nginx:.3f} ms"
            if figure == "new_connections" and self.rsa_sign_per_s:
                why += f"; the RSA-2048 signature is {1000 / self.rsa_sign_per_s:.3f} ms of it"
            if ratio < goal:
                why += f"; {goal}x needs lbsim at about {lbsim * ratio / goal:.3f} ms"
            floor, floor_ratio = self.cpu_ms(TLS_ONLY, figure), self.ratio(TLS_ONLY, "nginx", figure)
            lean, lean_ratio = self.cpu_ms(LEAN, figure), self.ratio(LEAN, "nginx", figure)
            if lean and lean_ratio:
                why += (f"; a minimal HTTP/1.1 layer running the same hooks and backend request (the lean prototype) "
                        f"spends {lean:.3f} ms and reaches {lean_ratio:.3f}x nginx")
            if floor and floor_ratio:
                why += (f"; its TLS path alone (each request answered in place: no HTTP layer, hooks or backend) "
                        f"spends {floor:.3f} ms and reaches {floor_ratio:.3f}x nginx, the most a cheaper HTTP path "
                        "inside this listener could give")
            out.append({"goal": f"lbsim / nginx, {FIGURE_TITLES[figure]}: at least {goal}x", "measured": round(ratio, 3),
                        "met": ratio >= goal, "why": why})
        if self.workers > 1:
            x2, one = self.cpu_ms(f"lbsim x{self.workers}", PACED), self.cpu_ms("lbsim", PACED)
            if x2 and one:
                why = f"{one:.3f} ms per connection in one process, {x2:.3f} ms over the workers"
                alone = self.cpu_ms("lbsim", WORKER_PACE)
                if alone:
                    why += (f"; one process at each worker's share of the pace ({self.worker_pace}/s) spends {alone:.3f} ms,"
                            f" {alone / one:.3f}x its cost at {self.pace}/s: a less busy process sleeps and wakes more"
                            " often per connection, and each worker is less busy")
                why += self._switches("lbsim", f"lbsim x{self.workers}", "one process", "the workers")
                why += self._first_worker(f"lbsim x{self.workers}")
                why += self._nginx_spread()
                out.append({"goal": f"lbsim x{self.workers} / lbsim, CPU per connection at an equal pace: at most "
                                    f"{WORKER_CPU_GOAL}x", "measured": round(x2 / one, 3), "met": x2 / one <= WORKER_CPU_GOAL,
                            "why": why})
        return out

    def _nginx_spread(self) -> str:
        """What the same spread costs nginx at the same pace, measured beside lbsim's (empty if not measured)."""
        spread, one = self.cpu_ms(f"{NGINX} x{self.workers}", PACED), self.cpu_ms(NGINX, PACED)
        if not spread or not one:
            return ""
        said = (f"; nginx at the same pace spends {one:.3f} ms per connection in one worker, {spread:.3f} ms over"
                f" {self.workers} ({spread / one:.3f}x)")
        alone = self.cpu_ms(NGINX, WORKER_PACE)
        if alone:
            said += f", and {alone:.3f} ms in one worker at each worker's share ({alone / one:.3f}x)"
        return said + self._switches(NGINX, f"{NGINX} x{self.workers}", "nginx's one worker", "its workers")

    def switches(self, target: str, figure: str) -> tuple[float, float] | None:
        """How often the server's processes slept and were preempted per request (medians of the rounds)."""
        samples = [s for s in self.samples if s.target == target and s.figure == figure and s.requests]
        if not samples or not any(s.sleeps or s.preempted for s in samples):
            return None  # not measured (a report from before these counts, or no process to read)
        return (statistics.median(s.sleeps / s.requests for s in samples),
                statistics.median(s.preempted / s.requests for s in samples))

    def _switches(self, one: str, spread: str, one_name: str, spread_name: str) -> str:
        """The paced figure's context switches per connection, one process against the spread ones: each
        sleep and each preemption costs a process a refill of its caches, which no instruction count sees."""
        a, b = self.switches(one, PACED), self.switches(spread, PACED)
        if a is None or b is None:
            return ""
        return (f"; per connection at that pace {one_name} slept {a[0]:.2f} times and was preempted {a[1]:.2f} times,"
                f" {spread_name} {b[0]:.2f} and {b[1]:.2f} times")

    def _first_worker(self, target: str) -> str:
        """Worker 0's CPU per connection it served against the other workers' (medians of the paced rounds):
        what worker 0 does for the lab besides serving (the workers' records, the API, health checks)."""
        first, others = [], []
        for s in self.samples:
            if s.target == target and s.figure == PACED and s.first_cpu_s is not None and s.first_requests:
                if s.requests > s.first_requests:
                    first.append(1000 * s.first_cpu_s / s.first_requests)
                    others.append(1000 * (s.cpu_s - s.first_cpu_s) / (s.requests - s.first_requests))
        if not first:
            return ""
        a, b = statistics.median(first), statistics.median(others)
        return (f"; worker 0 spends {a:.3f} ms per connection it serves, the other workers {b:.3f} ms ({a / b:.3f}x: "
                "worker 0 also takes the workers' records and runs the API and health checks)")

    def ratios(self) -> list[dict[str, Any]]:
        pairs = []
        base = "lbsim"
        for other in self.targets:
            if other == f"{NGINX} x{self.workers}" and NGINX in self.targets:
                pairs.append((other, NGINX))  # measured at the pace only: the workers' reference
            elif other != base:
                pairs.append((base, other) if other in (METERING_OFF, TLS_ONLY, LEAN) or not other.startswith("lbsim")
                             else (other, base))
        out = []
        for a, b in pairs:
            for figure in self.figures:
                r = self.ratio(a, b, figure)
                if r is not None:
                    out.append({"figure": figure, "of": a, "to": b, "ratio": round(r, 3),
                                "per_cpu_ratio": _round(self.ratio(a, b, figure, "per_cpu_s"), 3)})
        if self.rsa_sign_per_s:
            for target in self.targets:
                rate = self.median(target, "new_connections")
                if rate:
                    out.append({"figure": "new_connections", "of": target, "to": "RSA-2048 signatures/s (1 core)",
                                "ratio": round(rate / self.rsa_sign_per_s, 3), "per_cpu_ratio": None})
        return out


def _round(x: float | None, n: int) -> float | None:
    return None if x is None else round(x, n)


def format_report(report: BenchReport) -> str:
    lines = [f"lbsim bench: {report.rounds} round(s) x {report.duration_s:g} s per server and figure, "
             f"{report.tool} (1 thread, {report.connections} connections), loopback, RSA-2048, {PROFILE} {POLICY}",
             f"command: {report.command}", ""]
    for figure in report.figures:
        pace = {PACED: report.pace, WORKER_PACE: report.worker_pace}.get(figure)
        lines += [f"{FIGURE_TITLES[figure]}:" + (f" {pace}/s" if pace else ""), "",
                  f"| server | negotiated | median (all rounds) | per server CPU-second | server cores | {report.tool} cores "
                  "| handshakes resumed (lbsim's log) | server sleeps / preemptions per request |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for target in report.targets:
            n = report.negotiated.get(target, {})
            samples = [s for s in report.samples if s.target == target and s.figure == figure]
            if not samples:
                continue
            rates = ", ".join(f"{s.requests_per_s:,.0f}" for s in sorted(samples, key=lambda s: s.requests_per_s))
            cores = statistics.median(s.cpu_s / s.duration_s for s in samples)
            client = statistics.median(s.client_cpu_s / s.duration_s for s in samples)
            logged = [s for s in samples if s.handshakes is not None]
            resumed = (f"{sum(s.resumed or 0 for s in logged):,} of {sum(s.handshakes or 0 for s in logged):,}"
                       if logged else "-")
            lines.append(f"| {target} | {n.get('protocol', '?')} {n.get('cipher', '?')} | "
                         f"{report.median(target, figure):,.0f} ({rates}) | "
                         f"{report.median(target, figure, 'per_cpu_s'):,.0f} | {cores:.2f} | {client:.2f} | {resumed} | "
                         + ("{:.2f} / {:.2f} |".format(*switches) if (switches := report.switches(target, figure)) else "- |"))
        lines.append("")
    for r in report.ratios():
        extra = f" (per CPU-second {r['per_cpu_ratio']:.2f}x)" if r.get("per_cpu_ratio") else ""
        lines.append(f"{FIGURE_TITLES[r['figure']]}: {r['of']} / {r['to']} = {r['ratio']:.3f}x{extra}")
    ceiling = report.scaling_ceiling()
    if ceiling:
        lines.append(f"{FIGURE_TITLES['new_connections']}: the most lbsim x{report.workers} could reach on this machine"
                     f" ({report.machine.get('cpus')} CPUs shared with {report.tool} and the backend, each worker at one"
                     f" saturated process's CPU per connection) = {ceiling:.3f}x lbsim")
    if report.rsa_sign_per_s:
        lines.append(f"RSA-2048 signing limit (`openssl speed rsa2048`, one core): {report.rsa_sign_per_s:,.0f}/s")
    for g in report.goals():
        lines.append(f"goal: {g['goal']}: {g['measured']:.3f}x, {'met' if g['met'] else 'not met'} ({g['why']})")
    errors = [s for s in report.samples if s.errors or s.non_2xx]
    for s in errors:
        lines.append(f"note: {s.target} {s.figure} round {s.round}: {s.errors} socket errors, {s.non_2xx} non-2xx")
    lines += [f"note: {n}" for n in report.notes]
    if report.machine.get("python"):
        lines.append(f"the labs' interpreter: {describe_python(report.machine['python'])}"
                     " (docs/performance.md, \"Round eleven\": what an optimised build gives)")
    if report.machine.get("loadavg_start"):
        lines.append(f"load average at start {report.machine['loadavg_start']}, at end {report.machine.get('loadavg_end')}"
                     f" ({report.machine.get('cpus')} CPUs, shared)")
    return "\n".join(lines)


def python_build() -> dict[str, Any]:
    """The interpreter the labs run on, as configured: nearly two thirds of a listener's CPU is spent in it,
    and a build with profile-guided and link-time optimisation runs such code markedly faster
    (docs/performance.md, "Round eleven"). A distribution may optimise without saying so in its flags."""
    args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    return {"version": platform.python_version(), "implementation": platform.python_implementation(),
            "shared_libpython": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
            "configured_pgo": "--enable-optimizations" in args, "configured_lto": "--with-lto" in args}


def describe_python(build: dict[str, Any]) -> str:
    """One line of the report: the interpreter, and what its configure flags say of its optimisation."""
    said = [("a shared libpython" if build.get("shared_libpython") else "a static libpython"),
            ("--enable-optimizations (PGO)" if build.get("configured_pgo") else "no --enable-optimizations (PGO)"),
            ("--with-lto" if build.get("configured_lto") else "no --with-lto")]
    return f"{build.get('implementation', 'Python')} {build.get('version', '?')}, configured with " + ", ".join(said)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": python_build()}
    with contextlib.suppress(OSError):
        info["loadavg_start"] = os.getloadavg()
    return info


def mint(workdir: Path) -> dict[str, Path]:
    """One RSA-2048 server certificate for every server under test."""
    pki = LabPKI(key_type="rsa")
    issued = pki.server("localhost", LOOPBACK)
    files = {"ca": workdir / "ca.pem", "cert": workdir / "server.pem", "key": workdir / "server.key",
             "combined": workdir / "server-combined.pem"}
    files["ca"].write_bytes(pki.ca_pem)
    files["cert"].write_bytes(issued.chain_pem)
    files["key"].write_bytes(issued.key_pem)
    files["key"].chmod(0o600)
    files["combined"].write_bytes(issued.key_pem + issued.chain_pem)  # mitmproxy's --certs format
    files["combined"].chmod(0o600)
    return files


@contextlib.contextmanager
def running(servers: list[Server], ca_file: str) -> Iterator[list[Server]]:
    try:
        for server in servers:
            server.start(ca_file)
        yield servers
    finally:
        for server in servers:
            server.stop()


def baseline_label(code: Path) -> str:
    """`baseline <commit>` for a git checkout (`<commit>+` with uncommitted changes), else `baseline <folder>`
    (`code`: an absolute path)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    rev = git("rev-parse", "--short", "HEAD")
    if rev is None:
        return f"baseline {code.name}"
    return f"baseline {rev}" + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")


def baseline_labels(codes: Sequence[Path]) -> list[str]:
    """`baseline_label` of each checkout; two of one commit (or folder name) are told apart (`#2`), not merged."""
    labels: list[str] = []
    for i, code in enumerate(codes):
        label = baseline_label(code)
        labels.append(label if label not in labels else f"{label} #{i + 1}")
    return labels


def check_baseline(code: str) -> Path:
    """An lbsim checkout to measure beside this one, or a clear error naming `--baseline`."""
    path = Path(code).expanduser().resolve()
    if not (path / "simulator" / "cli.py").is_file():
        raise LbsimError("InvalidBaseline", f"{path} is not an lbsim checkout (it has no simulator/cli.py)",
                         field="baseline", hint="git worktree add /tmp/before <commit>; lbsim bench --baseline /tmp/before")
    return path


def run_bench(
    rounds: int = 5,
    duration: float = 8.0,
    connections: int = 20,
    workers: int = 1,
    nginx_workers: str = "1",
    include_nginx: bool = True,
    install: bool = True,
    out_dir: Path | None = None,
    profile_dir: Path | None = None,
    warmup: float = 1.0,
    tool: str = "h2load",
    metering_off: bool = False,
    tls_only: bool = True,
    lean_prototype: bool = False,
    rsa_seconds: int = 3,
    command: str = "lbsim bench",
    event_loop: str = "asyncio",
    baselines: Sequence[Path] = (),
    say: Callable[[str], None] = print,
) -> BenchReport:
    """`baselines`: other lbsim checkouts measured beside this one in every round (`baseline_label` names them)."""
    tools = ensure_tools(install, say, (tool, "cc", "nginx") if include_nginx else (tool, "cc"))
    path = required(tools, tool)
    work = work_dir(out_dir, "lbsim-bench-")
    load = Load(tool, path, connections, build_shim(work, say))
    figures = [f for f in FIGURES if f not in FULL_HANDSHAKES or load.shim]
    files = mint(work)
    report = BenchReport(command=command, rounds=rounds, duration_s=duration, connections=connections,
                         started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), tool=tool, machine=machine_info(), targets=[],
                         negotiated={}, workers=workers)
    report.machine["lbsim_event_loop"] = event_loop
    with BackendProcess(["bench"]) as backend:
        address = backend.addresses["bench"]
        loop = {"event_loop": event_loop}
        servers: list[Server] = [LbsimServer(work / "lbsim", files["cert"], files["key"], address, extra=loop)]
        if metering_off:  # next to lbsim in every round, so the same noise hits both
            servers.append(LbsimServer(work / "lbsim-metering-off", files["cert"], files["key"], address,
                                       label=METERING_OFF, metering=False, extra=loop))
        if tls_only:  # the floor under lbsim's HTTP side, in the same rounds (goals() cites it)
            servers.append(TlsOnlyServer(work / "lbsim-tls-only", files["cert"], files["key"], address, extra=loop))
        if lean_prototype:  # what a leaner HTTP path could reach, in the same rounds (goals() cites it)
            servers.append(LeanHttpServer(work / "lbsim-lean", files["cert"], files["key"], address, extra=loop))
        codes = [Path(code).resolve() for code in baselines]
        for i, (code, label) in enumerate(zip(codes, baseline_labels(codes))):  # the same lab file, their code
            servers.append(LbsimServer(work / f"baseline-{i}", files["cert"], files["key"], address,
                                       label=label, extra=loop, code=code))
        if workers > 1:
            servers.append(LbsimServer(work / f"lbsim-x{workers}", files["cert"], files["key"], address, workers,
                                       extra=loop))
        servers.append(MitmdumpServer(work / "mitmdump", files["combined"], address))
        paced_only: list[Server] = []  # measured at the pace only (and warmed up like the rest)
        if include_nginx and tools.get("nginx"):
            servers.append(NginxServer(work / "nginx", tools["nginx"], files["cert"], files["key"], address, nginx_workers))
            if workers > 1 and nginx_workers == "1" and tool == "h2load":  # what spreading costs a C server here
                paced_only.append(NginxServer(work / f"nginx-x{workers}", tools["nginx"], files["cert"], files["key"],
                                              address, str(workers)))
                servers.append(paced_only[-1])
        elif include_nginx:
            report.notes.append("nginx not installed: no nginx figures (apt-get install -y nginx)")
        if load.shim is None:
            report.notes.append("no C compiler to build the full-handshake shim: no full-handshake figure")
        report.targets = [s.label for s in servers]
        with running(servers, str(files["ca"])):
            report.negotiated = {s.label: s.handshake for s in servers}
            say("servers: " + ", ".join(f"{s.label} :{s.port} ({s.handshake['protocol']} {s.handshake['cipher']})"
                                        for s in servers))
            for server in servers:  # also tells h2load roughly how many requests make `duration` seconds
                for figure in figures:
                    load.run(server, figure, max(warmup, 0.5))
            backend_pid = backend.proc.pid if backend.proc else None

            def sample(server: Server, figure: str, rnd: int, pace: float | None = None) -> None:
                s = measure(load, server, figure, rnd, duration, backend_pid, pace)
                report.samples.append(s)
                say(f"round {rnd}/{rounds} {figure:17} {server.label:10} {s.requests_per_s:9,.1f} req/s"
                    f"  server {s.cpu_s / s.duration_s:4.2f} cores ({s.per_cpu_s:,.0f} per CPU-second),"
                    f" {tool} {s.client_cpu_s / s.duration_s:4.2f}, backend {s.backend_cpu_s / s.duration_s:4.2f}"
                    + (f", {s.resumed:,} of {s.handshakes:,} handshakes resumed" if s.handshakes is not None else "")
                    + (f"  errors {s.errors}" if s.errors else ""))

            for rnd in range(1, rounds + 1):
                for figure in figures:
                    for server in servers:
                        if server not in paced_only:
                            sample(server, figure, rnd)
            if workers > 1 and tool == "h2load" and "new_connections" in figures:
                # Same offered load for one process and the workers: CPU per connection without starvation.
                report.pace = paced_rate((report.median("lbsim", "new_connections") or 2) / 2)
                report.worker_pace = paced_rate(report.pace / workers)
                # nginx the same way, when measured: one worker, N workers, one worker at each one's share.
                paced = [s for s in servers if s.label in ("lbsim", f"lbsim x{workers}")
                         or paced_only and s.label in (NGINX, paced_only[0].label)]
                for rnd in range(1, rounds + 1):
                    for server in paced:
                        sample(server, PACED, rnd, report.pace)
                    for server in paced:
                        if server.label in ("lbsim", NGINX):  # less busy still
                            sample(server, WORKER_PACE, rnd, report.worker_pace)
        if profile_dir is not None:
            profile(load, work, files, address, profile_dir, duration, say)
    report.rsa_sign_per_s = rsa_sign_rate(rsa_seconds)
    with contextlib.suppress(OSError):
        report.machine["loadavg_end"] = os.getloadavg()
    (work / "bench.json").write_text(json.dumps(report.to_dict(), indent=2))
    (work / "bench.md").write_text(format_report(report) + "\n")
    return report


def run_concurrency(
    connections: int,
    include_nginx: bool = True,
    install: bool = True,
    out_dir: Path | None = None,
    probe: int | None = None,
    lab_extra: dict[str, Any] | None = None,
    command: str = "lbsim bench --concurrency",
    say: Callable[[str], None] = print,
) -> list[Any]:
    """`--concurrency N`: lbsim (one process) and nginx (one worker) each hold N idle keep-alive TLS
    connections in turn; memory per connection, the handshake rate beside them, growth over three rounds
    (simulator.tools.concurrency). Writes concurrency.json and concurrency.md to the work directory."""
    import asyncio

    from simulator.runtime.fdlimit import raise_fd_limit
    from simulator.tools.concurrency import format_results, measure_server, openssl_floor_kib

    tools = ensure_tools(install, say, ("nginx",) if include_nginx else ())
    work = work_dir(out_dir, "lbsim-concurrency-")
    notes: list[str] = []
    # This process holds the client end of every connection; the servers inherit the limit too.
    limit = raise_fd_limit(connections + 1_024)  # the held ones, the churn probe, the backend, files
    if not limit.enough:
        notes.append(f"open-file limit {limit.soft:,} (hard {limit.hard:,}) is below the {limit.needed:,} the client "
                     "needs: connections beyond it fail (raise it with `ulimit -Hn` as root)")
    probe = probe or max(50, min(1_000, connections // 10))
    files = mint(work)
    results = []
    with BackendProcess(["bench"]) as backend:
        address = backend.addresses["bench"]
        servers: list[Server] = [LbsimServer(work / "lbsim", files["cert"], files["key"], address, time_scale=100,
                                             extra=lab_extra)]
        if include_nginx and tools.get("nginx"):
            servers.append(NginxServer(work / "nginx", tools["nginx"], files["cert"], files["key"], address,
                                       hold=connections))
        elif include_nginx:
            notes.append("nginx not installed: no nginx figures (apt-get install -y nginx)")
        for server in servers:  # one at a time: each gets the cores, and the client's memory is freed between
            with running([server], str(files["ca"])):
                assert server.proc is not None
                result = asyncio.run(measure_server(server.label, server.proc.pid, server.port, str(files["ca"]),
                                                    connections, probe, say=say))
                results.append(result)
    floor = openssl_floor_kib(files["cert"], files["key"], PROFILE, POLICY)
    lbsim = next((r for r in results if r.target == "lbsim"), None)
    if floor is not None and lbsim is not None:
        notes.append(f"OpenSSL alone keeps {floor:.1f} KiB per idle connection with this listener's context (in-memory "
                     f"handshakes in this process, malloc in use): the floor under lbsim's {lbsim.per_connection_kib:.1f}"
                     f" KiB; the other {lbsim.per_connection_kib - floor:.1f} KiB are Python objects (mitmproxy's "
                     "connection handler and layers, asyncio's transport, streams and tasks, lbsim's addons and meter)")
    text = format_results(results, command, notes)
    (work / "concurrency.json").write_text(json.dumps({"command": command, "machine": machine_info(), "notes": notes,
                                                       "openssl_floor_kib": floor,
                                                       "results": [r.to_dict() for r in results]}, indent=2))
    (work / "concurrency.md").write_text(text)
    say(text)
    return results


class Load:
    """The load tool, remembering each server's last rate (h2load's new-connection runs are counted)."""

    def __init__(self, tool: str, path: str, connections: int, shim: Path | None = None):
        self.tool, self.path, self.connections, self.shim = tool, path, connections, shim
        self.rates: dict[tuple[str, str], float] = {}

    def run(self, server: Server, figure: str, duration: float, pace: float | None = None,
            requests: int | None = None) -> LoadResult:
        new = figure != "keepalive"
        result = run_load(self.tool, self.path, server.port, duration, self.connections, new,
                          self.rates.get((server.label, figure)), pace,
                          self.shim if figure in FULL_HANDSHAKES else None, requests)
        self.rates[server.label, figure] = result.requests_per_s
        return result


def measure(load: Load, server: Server, figure: str, rnd: int, duration: float, backend_pid: int | None = None,
            pace: float | None = None) -> Sample:
    logged = server.log_size() if figure != "keepalive" else None  # lbsim's log tells how they shook hands
    split = logged is not None and isinstance(server, LbsimServer) and server.workers > 1  # worker 0 apart
    cpu0, backend0, client0 = server.cpu(), cpu_seconds(backend_pid) if backend_pid else 0.0, _children_cpu()
    switches0, first0 = server.switches(), server.first_cpu() if split else 0.0
    t0 = time.monotonic()
    result = load.run(server, figure, duration, pace)
    cpu, elapsed = server.cpu() - cpu0, time.monotonic() - t0
    sleeps, preempted = (after - before for after, before in zip(server.switches(), switches0))
    first = server.first_cpu() - first0 if split else None
    backend = cpu_seconds(backend_pid) - backend0 if backend_pid else 0.0
    sample = Sample(server.label, figure, rnd, result.requests_per_s, result.requests, result.errors, result.non_2xx,
                    round(cpu, 3), round(elapsed, 3), round(_children_cpu() - client0, 3), round(backend, 3),
                    sleeps=sleeps, preempted=preempted, first_cpu_s=_round(first, 3))
    if logged is not None:
        time.sleep(LOG_SETTLE)  # the last connections' records (the workers' come through a pipe)
        records = server.records_since(logged)  # read once for both counts
        sample.handshakes, sample.resumed = handshakes_in(records)
        if split:
            sample.first_requests = sum(1 for r in records if "worker" not in r)
    return sample


def code_first(env: dict[str, str], code: Path) -> dict[str, str]:
    """`env` with checkout `code` first on PYTHONPATH: a process started with it imports that checkout's lbsim."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))}


def handshakes_in(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(handshakes, resumed) among connection-log records."""
    done = [r for r in records if r.get("tls_protocol")]
    return len(done), sum(1 for r in done if r.get("resumed"))


def _children_cpu() -> float:
    """CPU time of this process's finished children (each load run, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profile(load: Load, work: Path, files: dict[str, Path], backend: str, profile_dir: Path, duration: float,
            say: Callable[[str], None]) -> None:
    """Run each figure once more against an lbsim listener under pyinstrument (`lbsim up --cpu-profile`):
    `profile-<figure>.pyisession` (open with `pyinstrument --load FILE`) and a summary `profile-<figure>.txt`."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    for figure in FIGURES:
        target = profile_dir / f"profile-{figure}.pyisession"
        server = LbsimServer(work / f"lbsim-profile-{figure}", files["cert"], files["key"], backend,
                             label="lbsim (profiled)", profile_to=target)
        with running([server], str(files["ca"])):
            if ("lbsim", figure) in load.rates:  # the profiler slows it down about twice
                load.rates[server.label, figure] = load.rates["lbsim", figure] / 2
            result = load.run(server, figure, duration)
        summary = f"{FIGURE_TITLES[figure]}: {result.requests} requests in {duration:g} s under the profiler\n\n"
        summary += summarize_profile(target)
        target.with_suffix(".txt").write_text(summary)
        say(f"profile of {figure}: {target.with_suffix('.txt')}\n{summary}")


# Where the time goes, by the file of the frame that spends it (built-ins count for their caller). First
# match wins; dispatch covers the per-hook machinery: lbsim's hook table for a connection's events, mitmproxy's
# AddonManager (the loop over addons, safecall, hook args) for the master's.
PROFILE_COMPONENTS = (
    ("TLS (OpenSSL via pyOpenSSL)", ("OpenSSL/",)),
    ("metering", ("simulator/metering/",)),
    ("lbsim addons", ("simulator/dataplane/addons/", "simulator/dataplane/registry.py", "simulator/policies/",
                      "simulator/dataplane/listener.py", "simulator/dataplane/leanheaders.py")),
    ("upstream (lbsim's HTTP client)", ("simulator/dataplane/upstream.py",)),
    ("hook dispatch", ("simulator/runtime/hooks.py", "mitmproxy/addonmanager.py", "mitmproxy/hooks.py",
                       "contextlib.py", "dataclasses.py")),
    # Each ClientHello is parsed in Python for mitmproxy's `tls_clienthello` event: by lbsim's walk of its
    # grammar (simulator/dataplane/clienthello.py), and by kaitaistruct for what else is asked of it.
    ("ClientHello parsing", ("kaitaistruct", "mitmproxy/tls.py", "simulator/dataplane/clienthello.py")),
    ("mitmproxy proxy core (layers, HTTP)", ("mitmproxy/", "h11/")),
    ("asyncio, sockets", ("asyncio/", "selectors.py", "socket.py", "ssl.py")),
    ("lbsim runtime (connection handler, lab)", ("simulator/",)),
)


def profile_component(file: str) -> str:
    """The `PROFILE_COMPONENTS` name of the code in `file` (a path as a profiler reports it), else "other"."""
    for name, prefixes in PROFILE_COMPONENTS:
        if any(p in file for p in prefixes):
            return name
    return "other"


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time by component and the functions that spend most, from a pyinstrument session."""
    from collections import Counter

    from pyinstrument.session import Session

    session = Session.load(str(path))
    root = session.root_frame()
    if root is None:
        return "(no samples)\n"
    by_component: Counter[str] = Counter()
    by_function: Counter[tuple[str, str]] = Counter()

    def walk(frame: Any, owner: str, owner_fn: str) -> None:
        file = frame.file_path_short or ""
        key_file = owner if frame.is_synthetic or file.startswith("<") else file
        function = owner_fn if frame.is_synthetic else (frame.function or "?")  # "[self]": the caller's own time
        own = frame.time - sum(c.time for c in frame.children)
        if own > 0:
            by_component[profile_component(key_file)] += own
            by_function[(function, key_file)] += own
        for child in frame.children:
            walk(child, key_file, function)

    walk(root, "", "?")
    total = sum(by_component.values()) or 1.0
    lines = [f"samples {session.sample_count}, {session.duration:.1f} s wall, {session.cpu_time:.1f} s CPU", "",
             "| component | share of samples |", "| --- | --- |"]
    lines += [f"| {name} | {t / total:.1%} |" for name, t in by_component.most_common()]
    lines += ["", "| function (self time) | file | share |", "| --- | --- | --- |"]
    lines += [f"| {fn} | {file} | {t / total:.1%} |" for (fn, file), t in by_function.most_common(top)]
    return "\n".join(lines) + "\n"


# ---- CLI -------------------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    if args.cpu_profile and importlib.util.find_spec("pyinstrument") is None:  # before minutes of measuring, not after
        raise LbsimError("ProfilerMissing", "--cpu-profile needs pyinstrument", field="cpu-profile",
                         hint="pip install pyinstrument")
    if args.concurrency:
        command = "lbsim bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "lbsim bench --concurrency"
        run_concurrency(args.concurrency, include_nginx=not args.no_nginx, install=not args.no_install,
                        out_dir=Path(args.out) if args.out else None, command=command,
                        lab_extra={"event_loop": args.event_loop})
        return 0
    baselines = [check_baseline(b) for b in args.baseline or ()]  # before minutes of measuring
    if args.quick:
        rounds, duration, connections, warmup = args.rounds or 1, args.duration or 1.0, args.connections or 8, 0.0
    else:
        rounds, duration, connections, warmup = args.rounds or 5, args.duration or 8.0, args.connections or 20, 1.0
    command = "lbsim bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "lbsim bench"
    report = run_bench(rounds=rounds, duration=duration, connections=connections, workers=args.workers, tool=args.tool,
                       nginx_workers=args.nginx_workers, include_nginx=not args.no_nginx, install=not args.no_install,
                       out_dir=Path(args.out) if args.out else None, metering_off=args.metering_off,
                       tls_only=not args.no_tls_only, lean_prototype=args.lean_prototype,
                       profile_dir=Path(args.cpu_profile) if args.cpu_profile else None, warmup=warmup,
                       rsa_seconds=1 if args.quick else 3, command=command, event_loop=args.event_loop,
                       baselines=baselines)
    text = format_report(report)
    print()
    print(json.dumps(report.to_dict(), indent=2) if args.json else text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark an lbsim listener against bare mitmdump and nginx (h2load, loopback)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per server and figure (default 5; --quick 1)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 8; --quick 1)")
    p.add_argument("--connections", type=int, help="concurrent connections of the load tool (default 20; --quick 8)")
    p.add_argument("--tool", choices=TOOLS, default="h2load", help="load tool (default h2load; wrk spins during handshakes)")
    p.add_argument("--workers", type=int, default=1, help="also measure an lbsim with `workers: N` (N > 1)")
    p.add_argument("--nginx-workers", default="1", help="nginx worker_processes (default 1, like one lbsim process)")
    p.add_argument("--no-nginx", action="store_true", help="skip nginx")
    p.add_argument("--metering-off", action="store_true",
                   help="also measure the same lbsim with `metering: off` (what metering costs the listener's rates)")
    p.add_argument("--no-tls-only", action="store_true",
                   help="do not measure 'lbsim TLS only' (the same lab answering each request in place: the floor "
                   "under any HTTP path, cited by the goals)")
    p.add_argument("--lean-prototype", action="store_true",
                   help="also measure 'lbsim lean HTTP/1 (prototype)' (the same lab with a minimal HTTP/1.1 layer that "
                   "runs the same hooks and backend request: what a leaner HTTP path could reach, cited by the goals)")
    p.add_argument("--baseline", action="append", metavar="DIR",
                   help="also measure the lbsim of another checkout (a git worktree of an older commit) in every round:"
                   " lbsim / baseline is what a change did (repeatable)")
    p.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (figures are rough)")
    p.add_argument("--out", help="keep configs, logs, bench.json and bench.md here (default: a temp dir)")
    p.add_argument("--cpu-profile", metavar="DIR", help="also CPU-profile the lbsim listener under pyinstrument")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--event-loop", choices=EVENT_LOOPS, default=DEFAULT_EVENT_LOOP,
                   help="the lbsim labs' event_loop (default: the lab default)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="instead: hold N idle keep-alive TLS connections on lbsim and on nginx; memory per connection,"
                   " the handshake rate beside them, growth over three rounds")
    p.set_defaults(func=cmd_bench)
