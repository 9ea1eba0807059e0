"""Reliability under abuse, faults and load: the checks behind the reliability tests, run at any length.

    python -m simulator.tools.soak                                  # about a minute of every check
    python -m simulator.tools.soak --duration 1800 --inputs 1000000 # a long soak: rounds until both are reached

A round runs every check once against one lab (in this process, timers 100x faster):

    tls-fuzz        mutated ClientHellos and random byte streams (simulator.tools.fuzz), from child processes
    http            malformed HTTP/1 requests and HTTP/2 frame sequences after the handshake
    slow-clients    slowloris headers, byte-by-byte handshakes, silent connections, clients that never read
    backend-faults  backends that reset, close, send garbage, truncate, hang, go down and come back
    rotation        certificates replaced and listeners reconfigured under a steady client pool
    control-plane   bad JSON, wrong types, huge bodies and path tricks against the management API

while a steady client keeps making requests. The figures printed at the end (and with `--json`): inputs
tried, faults survived, failures seen, the steady client's requests and latency, and the process's memory
(RSS) and open descriptors before and after. Exit status 1 if any check saw a failure.

The tests in tests/test_reliability_*.py call the same checks with small sizes.
"""

from __future__ import annotations

import argparse
import base64
import collections
import ctypes
import gc
import http.client
import json
import logging
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.tools import fuzz
from simulator.model.config import io_timeout
from simulator.harness.running import RunningLab, start_lab
from simulator.policies.resolve import policies_of

LOOPBACK = "127.0.0.1"
STEADY_PATH = "/steady"  # steady clients' paths start with this; backend_traffic() leaves them out


# ---- the process's footprint -----------------------------------------------------------------------------


def trim_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS shows what is really held."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS keeps the allocator's free lists
        pass


@dataclass(frozen=True)
class Footprint:
    """Resident memory and open file descriptors of this process (and, given a lab, its idle upstream
    keep-alive connections: two descriptors each, as the mock backends run in the same process)."""

    rss: int  # bytes
    fds: int
    pooled: int = 0

    @classmethod
    def now(cls, lab: RunningLab | None = None) -> Footprint:
        trim_memory()
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return cls(rss, len(os.listdir("/proc/self/fd")), upstream_idle(lab) if lab is not None else 0)

    @property
    def rss_mib(self) -> float:
        return round(self.rss / 2**20, 1)

    def growth(self, before: Footprint) -> tuple[float, int]:
        """(RSS growth in MiB, descriptor growth not explained by a fuller upstream pool) since `before`."""
        return round((self.rss - before.rss) / 2**20, 1), self.fds - before.fds - 2 * (self.pooled - before.pooled)


def upstream_idle(lab: RunningLab) -> int:
    """Idle keep-alive connections the lab's listeners hold to backends (at most 32 per backend each)."""
    pools = {id(b.pool): b.pool for l in lab.lab.registry.listeners.values() if l.active for b in l.active.backends}
    return sum(len(pool._idle) for pool in pools.values())


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def settle(lab: RunningLab, baseline: Footprint, fd_slack: int = 2, timeout: float = 10.0) -> Footprint:
    """Wait until the lab holds no client connection and the descriptors are back near `baseline`."""
    wait_for(lambda: not lab.lab.registry.clients, timeout)
    wait_for(lambda: Footprint.now(lab).growth(baseline)[1] <= fd_slack, timeout, 0.2)
    return Footprint.now(lab)


def forget_records(lab: RunningLab) -> int:
    """Drop the connection records a lab keeps on purpose (the traffic ledger keeps every one, the
    `/v1/connections` ring the last 10,000), so that what remains of memory growth is not by design."""
    ledger = lab.lab.ledger
    dropped = len(ledger.records)
    ledger.records.clear()
    for totals in getattr(ledger, "_listeners", {}).values():
        totals.intervals.clear()
    lab.lab.registry.recent.clear()
    return dropped


# ---- logs ----------------------------------------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Collects what the lab logs at WARNING and above; `errors` are ERROR records and any stack trace."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        text = self.format(record)
        if len(self.texts) < 10_000:
            self.texts.append(text)
        if record.levelno >= logging.ERROR or record.exc_info:
            self.errors.append(text[:2000])

    @contextmanager
    def watching(self, level: int = logging.WARNING) -> Iterator[LogWatch]:
        root = logging.getLogger()
        old = root.level
        self.setLevel(level)
        root.addHandler(self)
        if root.level > level or root.level == logging.NOTSET:
            root.setLevel(level)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(old)


# ---- a well-behaved client -------------------------------------------------------------------------------------


class SteadyClient(threading.Thread):
    """One HTTPS request after another, a new TLS connection every `per_connection` requests; every
    failure (an exception or a status other than 200) is kept. `stop()` returns the client."""

    def __init__(self, port: int, context: ssl.SSLContext, path: str = STEADY_PATH, per_connection: int = 1,
                 interval: float = 0.0, timeout: float = 10.0, name: str = "steady-client"):
        super().__init__(name=name, daemon=True)
        self.port, self.context, self.path = port, context, path
        self.per_connection, self.interval, self.timeout = per_connection, interval, timeout
        self.ok = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPSConnection | None = None
        served = 0
        while not self._stop_event.is_set():
            if conn is None:
                conn = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=self.timeout)
                served = 0
            started = time.monotonic()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"HTTP {response.status}")
                else:
                    self.ok += 1
                self.latencies.append(time.monotonic() - started)
                served += 1
                if served >= self.per_connection or response.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                self.failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = None
            if self.interval:
                self._stop_event.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> SteadyClient:
        self._stop_event.set()
        self.join(30)
        return self

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies) or [0.0]
        return {"requests": self.ok + len(self.failures), "ok": self.ok, "failures": len(self.failures),
                "p50_ms": round(statistics.median(lat) * 1000, 1),
                "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
                "max_ms": round(lat[-1] * 1000, 1)}


# ---- the lab ---------------------------------------------------------------------------------------------------


def reliability_lab_data(files: dict[str, str], time_scale: float) -> dict[str, Any]:
    """The default lab, with health checks that tolerate a busy machine: at time_scale 0.01 the default
    5 s health-check timeout is 50 ms, which a loaded 2-core machine misses now and then (a real
    finding, but not the one these checks look for)."""
    from simulator.runtime.defaults import default_lab_data

    data = default_lab_data(files, time_scale)
    for listener in data["listeners"]:
        listener["health_check"] = {"interval": 2, "timeout": 50, "healthy_threshold": 2, "unhealthy_threshold": 2}
    return data


def start_reliability_lab(out_dir: Path, time_scale: float = 0.01, edit: Callable[[dict[str, Any]], None] | None = None,
                          ) -> RunningLab:
    """Mint the default PKI under `out_dir/pki` and start the reliability lab (optionally edited)."""
    from simulator.runtime.defaults import mint_default_pki

    out_dir = Path(out_dir)
    files = mint_default_pki(out_dir / "pki")
    data = reliability_lab_data(files, time_scale)
    if edit:
        edit(data)
    lab = start_lab(data, out_dir=out_dir)
    lab.files.update(files)
    return lab


def backend_traffic(lab: RunningLab) -> int:
    """Requests the lab's mock backends parsed or refused, health checks and steady clients excluded."""
    total = 0
    for backend in lab.lab.backends.values():
        stats = backend.stats
        steady = sum(n for prefix, n in stats["by_path"].items() if prefix.startswith(STEADY_PATH))
        total += stats["requests"] + stats["bad_requests"] - steady
    return total


def record_of(lab: RunningLab, local_port: int, timeout: float = 5.0, since: float | None = None) -> dict[str, Any] | None:
    """The connection-log record of the client connection from `local_port` (written when it closes), of a
    connection that started at or after `since` (local ports are reused)."""
    since_iso = None if since is None else iso_time(since - 0.005)

    def find() -> dict[str, Any] | None:
        for record in reversed(recent_records(lab)):
            if record["client"].endswith(f":{local_port}") and (since_iso is None or record["time"] >= since_iso):
                return record
        return None

    return wait_for(find, timeout)


def recent_records(lab: RunningLab, last: int = 500) -> list[dict[str, Any]]:
    """The last connection-log records (a copy: the lab's thread appends meanwhile). Only the last few:
    scanning all 10,000 from many client threads would starve the lab's own thread of the GIL."""
    return list(lab.lab.registry.recent)[-last:]


def iso_time(ts: float) -> str:
    from simulator.dataplane.addons.connlog import iso

    return iso(ts)


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one check did: inputs tried, faults injected (and survived), failures seen."""

    name: str
    inputs: int = 0
    faults: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        if len(self.failures) < 200:
            self.failures.append(message)


@contextmanager
def timed(result: Result) -> Iterator[Result]:
    started = time.monotonic()
    try:
        yield result
    finally:
        result.seconds = round(result.seconds + time.monotonic() - started, 2)


def listener_alive(lab: RunningLab, result: Result) -> None:
    """The lab's proxy core still runs and every started listener still accepts and serves."""
    task = lab.lab._master_task
    if task is not None and task.done():
        result.fail(f"the lab's mitmproxy master stopped: {task.exception() if not task.cancelled() else 'cancelled'}")
    if not lab.lab.ready():
        result.fail("a started listener no longer listens")


# ---- TLS: mutated ClientHellos and byte streams ---------------------------------------------------------------


def tls_fuzz(lab: RunningLab, count: int, seed: int = 1, listeners: Iterable[str] = ("aliyun-one-way", "tencent-one-way"),
             concurrency: int = 64, timeout: float = 10.0) -> Result:
    """`count` inputs (simulator.tools.fuzz) split over `listeners`, each sent by its own child process (the
    second core), one connection per input. Every connection must end (close or reset) within `timeout`."""
    result = Result("tls-fuzz")
    with timed(result):
        names = list(listeners)
        share = -(-count // len(names))
        procs = []
        for i, name in enumerate(names):
            n = min(share, count - i * share)
            cmd = [sys.executable, "-m", "simulator.tools.fuzz", str(lab.port(name)), "--seed", str(seed),
                   "--start", str(i * share), "--count", str(n), "--concurrency", str(concurrency), "--timeout", str(timeout)]
            procs.append((name, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        totals: collections.Counter[str] = collections.Counter()
        for name, proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                result.fail(f"fuzz sender for {name} exited {proc.returncode}: {err[-500:]}")
                continue
            stats = json.loads(out)
            for key in ("sent", "closed", "reset", "timed_out", "refused", "answered"):
                totals[key] += stats[key]
            for example in stats["timed_out_examples"]:
                result.fail(f"{name}: no close within {timeout} s after input {example[:80]}...")
            for example in stats["refused_examples"]:
                result.fail(f"{name}: connection refused: {example}")
        result.inputs = totals["sent"]
        result.faults = totals["sent"]
        result.details = dict(totals)
        if totals["refused"]:
            result.fail(f"{totals['refused']} connections refused: the listener stopped accepting")
        listener_alive(lab, result)
    return result


# ---- malformed HTTP ---------------------------------------------------------------------------------------------


def exchange(port: int, context: ssl.SSLContext, data: bytes, timeout: float = 5.0) -> tuple[bytes, str, int]:
    """Handshake, send `data`, read until the listener closes: (bytes received, how it ended, local port).
    Records of the connection are found with `record_of(lab, port, since=<time before the call>)`."""
    raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
    s = context.wrap_socket(raw, server_hostname="localhost")
    local = s.getsockname()[1]
    out, ended = send_and_read_to_close(s, data)
    return out, ended, local


def send_and_read_to_close(s: ssl.SSLSocket, data: bytes) -> tuple[bytes, str]:
    """Send `data`, read until the peer closes, close: (bytes received, how it ended)."""
    out, ended = b"", "closed"
    try:
        try:
            s.sendall(data)
        except OSError:
            ended = "closed while sending"
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except TimeoutError:
        ended = "timeout"
    except (ssl.SSLError, OSError) as e:
        ended = f"reset ({type(e).__name__})"
    finally:
        s.close()
    return out, ended


def status_of(response: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    return int(match.group(1)) if match else None


def check_http1_case(lab: RunningLab, listener: str, case: fuzz.HttpCase, result: Result) -> None:
    before = backend_traffic(lab)
    started = time.time()
    response, ended, local = exchange(lab.port(listener), lab.ssl_context(), case.data)
    status = status_of(response)
    where = f"{case.name!r} on {listener}"
    if case.forwarded:
        if status != case.status:
            result.fail(f"{where}: expected it forwarded and answered {case.status}, got {status} ({ended})")
        return
    if status != case.status:
        result.fail(f"{where}: expected {case.status}, got {status} ({ended}): {response[:120]!r}")
    elif b"Server: mitmproxy" in response or b"mitmproxy" in response:
        result.fail(f"{where}: mitmproxy's own error page, not the vendor's")
    if ended == "timeout":
        result.fail(f"{where}: the connection stayed open after the error")
    if not wait_for(lambda: backend_traffic(lab) == before, 0.3, 0.05) or backend_traffic(lab) != before:
        result.fail(f"{where}: reached a backend")
    record = record_of(lab, local, since=started)
    if record is None:
        result.fail(f"{where}: no connection-log record")
    elif not record.get("error"):
        result.fail(f"{where}: the connection-log record names no error")


def h2_exchange(port: int, context: ssl.SSLContext, frames: bytes, timeout: float = 3.0) -> tuple[list[tuple[int, int, int]], str]:
    """Handshake with ALPN h2, send the preface, SETTINGS and `frames`; the frames received until the
    listener closes, as (type, stream, error code for GOAWAY/RST_STREAM else 0)."""
    ctx = context
    raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    if s.selected_alpn_protocol() != "h2":
        s.close()
        raise AssertionError("the listener did not negotiate h2")
    data, ended = send_and_read_to_close(s, fuzz.H2_PREFACE + fuzz.h2_frame(0x4, 0, 0, b"") + frames)
    frames_in, pos = [], 0
    while pos + 9 <= len(data):
        length, kind, stream = int.from_bytes(data[pos:pos + 3], "big"), data[pos + 3], int.from_bytes(data[pos + 5:pos + 9], "big")
        payload = data[pos + 9:pos + 9 + length]
        code = int.from_bytes(payload[4:8], "big") if kind == 0x7 else int.from_bytes(payload[:4], "big") if kind == 0x3 else 0
        frames_in.append((kind, stream & 0x7FFFFFFF, code))
        pos += 9 + length
    return frames_in, ended


def h2_context(lab: RunningLab) -> ssl.SSLContext:
    ctx = lab.ssl_context()
    ctx.set_alpn_protocols(["h2"])
    return ctx


def check_h2_case(lab: RunningLab, listener: str, case: fuzz.H2Case, result: Result) -> None:
    before = backend_traffic(lab)
    frames, ended = h2_exchange(lab.port(listener), h2_context(lab), case.frames)
    where = f"HTTP/2 {case.name!r}"
    goaway = [f for f in frames if f[0] == 0x7]
    if case.streams:  # rapid reset: the connection may live on; the backends must not do the work
        forwarded = backend_traffic(lab) - before
        result.details.setdefault("rapid_reset_forwarded", []).append(forwarded)
        if forwarded > case.streams // 50:
            result.fail(f"{where}: {forwarded} of {case.streams} reset requests reached a backend")
        return
    if not goaway and not ended.startswith(("closed", "reset")):
        result.fail(f"{where}: neither GOAWAY nor a closed connection ({ended}, frames {frames[:6]})")
    if goaway and all(code == 0 for _, _, code in goaway):
        result.fail(f"{where}: GOAWAY without an error code")
    if backend_traffic(lab) != before:
        result.fail(f"{where}: reached a backend")


def malformed_http(lab: RunningLab, rounds: int = 1, h1_listeners: Iterable[str] = ("aliyun-one-way",),
                   h2_listener: str = "tencent-one-way") -> Result:
    """Every HTTP/1 case on `h1_listeners` and every HTTP/2 case on `h2_listener`, `rounds` times."""
    result = Result("http")
    with timed(result):
        for _ in range(rounds):
            for listener in h1_listeners:
                for case in fuzz.HTTP1_CASES:
                    check_http1_case(lab, listener, case, result)
                    result.inputs += 1
                    result.faults += not case.forwarded
            for case in fuzz.H2_CASES:
                check_h2_case(lab, h2_listener, case, result)
                result.inputs += 1
                result.faults += 1
        listener_alive(lab, result)
    return result


# ---- slow and stuck clients ----------------------------------------------------------------------------------------


def client_header_timeout(lab: RunningLab) -> float:
    from simulator.dataplane.addons.timeouts import CLIENT_HEADER_TIMEOUT

    return io_timeout(CLIENT_HEADER_TIMEOUT, lab.config.time_scale)


def _hold(lab: RunningLab, sock: socket.socket, local_port: int, seconds: float,
          dribble: Callable[[], bytes] | None = None, every: float = 0.1, since: float = 0.0) -> dict[str, Any] | None:
    """Keep `sock` open (sending `dribble()` every `every` s) until the listener has closed and logged the
    connection, or `seconds` passed; its connection-log record, or None."""
    deadline = time.monotonic() + seconds
    since_iso = iso_time(since - 0.005)
    while time.monotonic() < deadline:
        for record in reversed(recent_records(lab)):
            if record["client"].endswith(f":{local_port}") and record["time"] >= since_iso:
                return record
        if dribble is not None:
            try:
                sock.sendall(dribble())
            except (OSError, ssl.SSLError):
                dribble = None  # closed on us: wait for the record
        time.sleep(every)
    return None


def slow_clients(lab: RunningLab, count: int = 4, listener: str = "aliyun-one-way") -> Result:
    """`count` of each kind of slow client at once; the listener must close each within its bound
    (connection-log `duration`) and name the timeout in `closed_by`, while serving others."""
    result = Result("slow-clients")
    port = lab.port(listener)
    header_bound = client_header_timeout(lab) + 1.0
    spec = lab.listener(listener).active.spec
    idle_bound = io_timeout(spec.idle_timeout, lab.config.time_scale) + 1.0
    ctx = lab.ssl_context()
    hello = fuzz.capture_client_hellos()["tls12-rsa"]

    def tls() -> ssl.SSLSocket:
        return ctx.wrap_socket(socket.create_connection((LOOPBACK, port)), server_hostname="localhost")

    def slowloris() -> tuple[str, dict | None, float, str]:
        t0 = time.time()
        s = tls()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        lines = (b"X-Slow-%d: loris\r\n" % i for i in range(10**6))
        with s:
            return "slowloris headers", _hold(lab, s, s.getsockname()[1], header_bound + 3, lambda: next(lines), since=t0), \
                header_bound, "client_header_timeout"

    def slow_handshake() -> tuple[str, dict | None, float, str]:
        t0 = time.time()
        s = socket.create_connection((LOOPBACK, port))
        data = (hello[i:i + 1] for i in range(len(hello) - 1))  # never the last byte
        with s:
            return "byte-by-byte ClientHello", _hold(lab, s, s.getsockname()[1], header_bound + 3, lambda: next(data, b""), since=t0), \
                header_bound, "client_header_timeout"

    def silent() -> tuple[str, dict | None, float, str]:
        t0 = time.time()
        s = socket.create_connection((LOOPBACK, port))
        with s:
            return "silent TCP connection", _hold(lab, s, s.getsockname()[1], header_bound + 3, since=t0), header_bound, \
                "client_header_timeout"

    def idle_after_request() -> tuple[str, dict | None, float, str]:
        t0 = time.time()
        s = tls()
        s.sendall(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
        with s:
            return "idle keep-alive connection", _hold(lab, s, s.getsockname()[1], idle_bound + 3, since=t0), idle_bound, "idle_timeout"

    def never_reads() -> tuple[str, dict | None, float, str]:
        t0 = time.time()
        s = tls()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /never-read?size=1048576 HTTP/1.1\r\nHost: x\r\n\r\n" * 64)  # and read nothing
        with s:
            return "client that never reads", _hold(lab, s, s.getsockname()[1], idle_bound + 3, since=t0), idle_bound, "idle_timeout"

    kinds = [slowloris, slow_handshake, silent, idle_after_request, never_reads]
    with timed(result):
        before = backend_traffic(lab)
        steady = SteadyClient(port, lab.ssl_context(), path="/steady-beside-slow-clients")
        steady.start()
        threads, outcomes = [], []

        def attempt(kind: Callable[[], tuple[str, dict | None, float, str]]) -> None:
            try:
                outcomes.append(kind())
            except Exception as e:  # noqa: BLE001 - a slow client that could not even start is a finding
                result.fail(f"{kind.__name__}: {type(e).__name__}: {e}")

        for kind in kinds:
            for _ in range(count):
                t = threading.Thread(target=attempt, args=(kind,), daemon=True)
                threads.append(t)
                t.start()
        for t in threads:
            t.join(60)
        steady.stop()
        closed_by: collections.Counter[str] = collections.Counter()
        for name, record, bound, reason in outcomes:
            result.inputs += 1
            result.faults += 1
            if record is None:
                result.fail(f"{name}: not closed by the listener within {bound + 3:.1f} s")
                continue
            closed_by[str(record["closed_by"])] += 1
            if record["closed_by"] != reason:
                result.fail(f"{name}: closed_by {record['closed_by']!r}, expected {reason!r}")
            if record["duration"] > bound:
                result.fail(f"{name}: open {record['duration']:.2f} s, over its bound {bound:.2f} s")
        result.details["closed_by"] = dict(closed_by)
        # The never-reading clients asked for 64 MiB each; the listener fetched only what it could send.
        fetched = backend_traffic(lab) - before - count  # minus the idle clients' one request each
        result.details["never_read_fetched_per_client"] = round(fetched / count, 1)
        if fetched > count * 8:
            result.fail(f"clients that never read made backends serve {fetched} responses ({count} clients)")
        result.details["steady_client"] = steady.summary()
        for failure in steady.failures[:5]:
            result.fail(f"the steady client failed beside the slow clients: {failure}")
        listener_alive(lab, result)
    return result


# ---- backend faults ----------------------------------------------------------------------------------------------


FAULTS = (("reset", 502), ("close", 502), ("garbage", 502), ("truncate", 502), ("hang", 504))


def backend_faults(lab: RunningLab, listener: str = "aliyun-one-way", rounds: int = 1, outage: bool = True,
                   workers: int = 4) -> Result:
    """Per-request faults answer the vendor's 502/504; an outage of one backend under load costs only the
    requests in flight until health checks take it out; coming back, it serves again. No connection leaks."""
    result = Result("backend-faults")
    port = lab.port(listener)
    with timed(result):
        for _ in range(rounds):
            for fault, expected in FAULTS:
                status, body, headers = lab.get(listener, f"/fault?fault={fault}", timeout=30)
                result.inputs += 1
                result.faults += 1
                if status != expected:
                    result.fail(f"fault={fault}: expected {expected}, got {status}")
                elif headers.get("server") not in ("Tengine", "stgw"):
                    result.fail(f"fault={fault}: not the vendor's error page (Server: {headers.get('server')})")
            if outage:
                _outage(lab, port, result, workers)
        def open_here() -> int:
            return sum(state.listener.port == port for state in list(lab.lab.registry.clients.values()))

        if not wait_for(lambda: open_here() == 0, 10):
            result.fail(f"{open_here()} client connections still open on {listener} after the faults")
        listener_alive(lab, result)
    return result


def _outage(lab: RunningLab, port: int, result: Result, workers: int) -> None:
    spec = lab.listener(port).active.spec
    check = spec.health_check
    scale = lab.config.time_scale
    detect = max(0.1, check.interval * scale) * check.unhealthy_threshold + io_timeout(check.timeout, scale) + 1.0
    clients = [SteadyClient(port, lab.ssl_context(), path="/steady-during-outage") for _ in range(workers)]
    for c in clients:
        c.start()
    time.sleep(0.3)
    victim = spec.backend_servers[0].backend
    lab.api("POST", f"/v1/backends/{victim}/health", {"down": True})
    result.faults += 1
    def state() -> Any:
        return next(b for b in lab.listener(port).active.backends if b.name == victim)

    out = wait_for(lambda: not state().healthy, detect + 5)
    if not out:
        result.fail(f"health checks did not take {victim} out within {detect + 5:.1f} s")
    time.sleep(0.2)  # requests that picked the victim just before it was taken out finish
    during = sum(len(c.failures) for c in clients)
    time.sleep(0.5)  # now only the healthy backends serve: no more failures
    after_out = sum(len(c.failures) for c in clients) - during
    lab.api("POST", f"/v1/backends/{victim}/health", {"down": False})
    back = wait_for(lambda: state().healthy, max(0.1, check.interval * scale) * check.healthy_threshold
                    + io_timeout(check.timeout, scale) + 5)
    if not back:
        result.fail(f"{victim} did not come back after its outage")
    time.sleep(0.3)
    for c in clients:
        c.stop()
    failures = [f for c in clients for f in c.failures]
    served = sum(c.ok for c in clients)
    result.inputs += served + len(failures)
    result.details.setdefault("outage", []).append({"served": served, "failed_until_detected": during,
                                                    "failed_after_detected": after_out})
    if after_out:
        result.fail(f"{after_out} requests failed after health checks took {victim} out")
    wrong = [f for f in failures if f not in ("HTTP 502", "HTTP 504")]
    if wrong:
        result.fail(f"during the outage clients saw other than 502/504: {wrong[:3]}")


# ---- certificate rotation and reconfiguration under load -------------------------------------------------------


def rotation(lab: RunningLab, seconds: float = 5.0, profile: str = "aliyun-slb", workers: int = 8,
             every: float = 0.5) -> Result:
    """A listener of its own (created, then deleted) whose certificate is replaced (a new key, the same CA)
    and whose configuration changes every `every` seconds while a pool of clients makes new connections:
    no handshake may fail."""
    from simulator.certs import LabPKI

    result = Result("rotation")
    pki = LabPKI(key_type="rsa")
    name = f"rotating-{time.monotonic_ns()}"
    issued = pki.server("localhost")
    status, info = lab.api("POST", "/v1/certificates", {"type": "server", "name": name, "cert": issued.chain_pem.decode(),
                                                         "key": issued.key_pem.decode()})
    if status != 201:
        result.fail(f"upload of the rotating certificate: {status} {info}")
        return result
    backends = [{"backend": b} for b in ("web-1", "web-2") if b in lab.lab.addresses]
    base = {"name": name, "profile": profile, "server_certificate": name, "activation_delay": 10, "backend_servers": backends,
            "health_check": {"interval": 2, "timeout": 50, "healthy_threshold": 2, "unhealthy_threshold": 2}}
    # Rotate through up to three of the profile's named TLS 1.2 policies; a profile with one keeps its default.
    policies: list[str | None] = [n for n, p in policies_of(profile).items() if "TLSv1.3" not in p.versions][:3] or [None]
    context = lab.ssl_context()
    context.load_verify_locations(cadata=pki.ca_pem.decode())
    status, created = lab.api("POST", "/v1/listeners", {**base, "port": 0, "start": True, "activation_delay": 0})
    if status != 202:
        result.fail(f"creating the rotation listener: {status} {created}")
        return result
    port = created["port"]
    try:
        wait_for(lambda: lab.listener(port).status == "running", 10)
        clients = [SteadyClient(port, context, path="/steady-rotation") for _ in range(workers)]
        turn = 0
        with timed(result):
            for c in clients:
                c.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                turn += 1
                issued = pki.server("localhost")
                status, _ = lab.api("PUT", f"/v1/certificates/{name}", {"cert": issued.chain_pem.decode(),
                                                                        "key": issued.key_pem.decode()})
                if status != 200:
                    result.fail(f"replacing the certificate: {status}")
                policy = policies[turn % len(policies)]
                status, _ = lab.api("PUT", f"/v1/listeners/{port}", {**base, "idle_timeout": 10 + turn % 5,
                                                                     **({"tls_policy": policy} if policy else {})})
                if status != 202:
                    result.fail(f"reconfiguring the listener: {status}")
                result.faults += 2
                time.sleep(every)
            for c in clients:
                c.stop()
        failures = [f for c in clients for f in c.failures]
        result.inputs = sum(c.ok for c in clients) + len(failures)
        result.details["rotations"] = turn
        for failure in failures[:20]:
            result.fail(f"a client failed during rotation: {failure}")
        handshakes = [r for r in recent_records(lab, 5000) if r["listener_port"] == port]
        bad = [r["tls_verify_status"] for r in handshakes if r["tls_verify_status"] != "Success"]
        if bad:
            result.fail(f"the listener logged {len(bad)} failed handshakes: {bad[:3]}")
    finally:
        lab.api("DELETE", f"/v1/listeners/{port}")
        wait_for(lambda: lab.api("DELETE", f"/v1/certificates/{name}")[0] == 204, 5)
    listener_alive(lab, result)
    return result


# ---- control plane -------------------------------------------------------------------------------------------------


def api_raw(lab: RunningLab, data: bytes, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Send raw bytes to the management API; (status, body) of its answer (None: no answer)."""
    with socket.create_connection((lab.lab.api.host, lab.lab.api.port), timeout=timeout) as s:
        out = b""
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the API answered (413, 431, ...) and closed before taking all of a huge request: read it
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                if sep and length and len(body) >= int(length.group(1)):
                    break
        except (TimeoutError, ConnectionResetError):
            if not out:
                return None, out
    head, _, body = out.partition(b"\r\n\r\n")
    return status_of(head + b" "), body


def _http(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode("latin-1") + body


API_CASES: tuple[tuple[str, bytes, int], ...] = (
    ("not JSON", _http("POST", "/v1/listeners", b"{not json"), 400),
    ("JSON but not an object", _http("POST", "/v1/listeners", b'"hello"'), 400),
    ("NaN", _http("POST", "/v1/listeners", b'{"port": NaN, "server_certificate": "lab-rsa"}'), 400),
    ("1e400", _http("POST", "/v1/listeners", b'{"port": 1e400, "server_certificate": "lab-rsa"}'), 400),
    ("nested 100,000 deep", _http("POST", "/v1/listeners", b"[" * 100_000 + b"]" * 100_000), 400),
    ("invalid UTF-8", _http("POST", "/v1/listeners", b'{"name": "\xff\xfe"}'), 400),
    ("lone surrogate", _http("POST", "/v1/certificates", b'{"name": "\\ud800", "cert": "x", "key": "y"}'), 400),
    ("port as a string", _http("POST", "/v1/listeners", b'{"port": "443", "server_certificate": "lab-rsa"}'), 400),
    ("port as a list", _http("POST", "/v1/listeners", b'{"port": [443], "server_certificate": "lab-rsa"}'), 400),
    ("port out of range", _http("POST", "/v1/listeners", b'{"port": 70000, "server_certificate": "lab-rsa"}'), 400),
    ("weight as an object", _http("POST", "/v1/listeners", b'{"port": 0, "server_certificate": "lab-rsa", "backend_servers": [{"backend": "web-1", "weight": {}}]}'), 400),
    ("unknown field", _http("POST", "/v1/listeners", b'{"port": 0, "server_certificate": "lab-rsa", "rm -rf": true}'), 400),
    ("health check as a list", _http("POST", "/v1/listeners", b'{"port": 0, "server_certificate": "lab-rsa", "health_check": []}'), 400),
    ("down as a string", _http("POST", "/v1/backends/web-1/health", b'{"down": "true"}'), 400),
    ("certificate as a list", _http("POST", "/v1/certificates", b'{"name": "x", "cert": ["a"], "key": "k"}'), 400),
    ("a CA with a key", _http("POST", "/v1/certificates", b'{"type": "ca", "name": "x", "cert": "c", "key": "k"}'), 400),
    ("body over 1 MiB", _http("POST", "/v1/certificates", b" " * (1024 * 1024 + 1)), 413),
    ("Content-Length over 1 MiB, no body", b"POST /v1/certificates HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ("negative Content-Length", b"POST /v1/listeners HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    ("chunked body", b"POST /v1/listeners HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    ("headers over 16 KiB", _http("GET", "/v1/listeners", headers="X-Big: " + "a" * 20000 + "\r\n"), 431),
    ("bad request line", b"HELLO\r\n\r\n", 400),
    ("path traversal", _http("GET", "/v1/../../etc/passwd"), 404),
    ("encoded traversal", _http("GET", "/v1/certificates/..%2F..%2Fetc%2Fpasswd"), 404),
    ("NUL in the path", _http("GET", "/v1/listeners/%00"), 400),
    ("port beyond 64 bits", _http("GET", "/v1/listeners/99999999999999999999999"), 404),
    ("delete a certificate in use", _http("DELETE", "/v1/certificates/lab-rsa"), 409),
    ("delete a listener that is not there", _http("DELETE", "/v1/listeners/1"), 404),
    ("unknown method", _http("BREW", "/v1/listeners"), 405),
    ("unknown resource", _http("GET", "/v2/everything"), 404),
    ("negative limit", _http("GET", "/v1/connections?limit=-1"), 400),
)


def api_state(lab: RunningLab) -> Any:
    """What the control plane's abuse must not change: certificates, listeners and backends' health."""
    certs = lab.api("GET", "/v1/certificates")[1]
    listeners = lab.api("GET", "/v1/listeners")[1]["listeners"]
    backends = lab.api("GET", "/v1/backends")[1]["backends"]
    for l in listeners:
        l.pop("connections", None)
        l.pop("activates_in", None)
        for b in l.get("backend_servers", []):
            b.pop("active_requests", None)
    return {"certificates": certs, "listeners": listeners,
            "backends": [{k: b[k] for k in ("name", "address", "healthy", "down")} for b in backends]}


def control_plane(lab: RunningLab, rounds: int = 1) -> Result:
    """Every case of `API_CASES`: a JSON error with a code, no stack trace, and the state unchanged."""
    result = Result("control-plane")
    with timed(result):
        before = api_state(lab)
        for _ in range(rounds):
            for name, data, expected in API_CASES:
                status, body = api_raw(lab, data)
                result.inputs += 1
                result.faults += 1
                if status != expected:
                    result.fail(f"{name}: expected {expected}, got {status}: {body[:200]!r}")
                    continue
                try:
                    error = json.loads(body)["error"]
                except (ValueError, KeyError, TypeError):
                    result.fail(f"{name}: not a JSON error: {body[:200]!r}")
                    continue
                if not error.get("code") or b"Traceback" in body or b'File "' in body:
                    result.fail(f"{name}: {body[:200]!r}")
        after = api_state(lab)
        if after != before:
            result.fail("the abuse changed the lab's state")
    return result


# ---- key hygiene ---------------------------------------------------------------------------------------------------


PEM_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----\r?\n?")


def key_needles(key_files: Iterable[str | Path]) -> dict[str, list[bytes]]:
    """For each private key file: byte strings that betray it (DER in PKCS#1/PKCS#8/SEC1, their base64 as
    it appears in PEM lines, and the secret number in hex and decimal)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    needles: dict[str, list[bytes]] = {}
    for path in key_files:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
        ders = [key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
                for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL)]
        secret = key.private_numbers().d if isinstance(key, rsa.RSAPrivateKey) else key.private_numbers().private_value \
            if isinstance(key, ec.EllipticCurvePrivateKey) else None
        # A private key's DER also holds its public part (the RSA modulus, the EC point), which the certificate
        # carries too: a needle cut from those bytes would "find" the key in every certificate of it.
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)

        def secret_bytes(der: bytes, start: int, end: int) -> bool:
            return der[start:end] not in public

        found: list[bytes] = []
        for der in ders:
            middle = len(der) // 2
            if secret_bytes(der, middle, middle + 24):
                found.append(der[middle:middle + 24])  # raw DER, from the middle (the secret parts)
            b64 = base64.b64encode(der)
            found += [b64[i:i + 48] for i in range(64, len(b64) - 48, 400)  # PEM lines, wherever they wrap
                      if secret_bytes(der, i // 4 * 3 + 3, (i + 48) // 4 * 3 - 3)]
        if secret is not None:
            hexed = format(secret, "x")
            found += [hexed[8:56].encode(), str(secret)[8:56].encode()]
        needles[str(path)] = [n for n in found if len(n) >= 16]
    return needles


def is_key_input(data: bytes) -> bool:
    """A file made only of PEM blocks: a certificate or key given to lbsim (or a test), not an output."""
    stripped = PEM_BLOCK.sub(b"", data).strip()
    return bool(PEM_BLOCK.search(data)) and not stripped


def scan_for_keys(texts: dict[str, bytes], needles: dict[str, list[bytes]]) -> list[str]:
    """Where private key material appears: a PEM private-key header, or any needle of `needles`."""
    hits = []
    for where, data in texts.items():
        if PEM_KEY.search(data):
            hits.append(f"{where}: a PEM private key")
        for key, found in needles.items():
            if any(n in data for n in found):
                hits.append(f"{where}: material of {Path(key).name}")
    return hits


def files_to_scan(roots: Iterable[Path], skip_inputs: bool = True, max_bytes: int = 64 * 2**20) -> dict[str, bytes]:
    """Every regular file under `roots` (outputs only: files made only of PEM blocks are inputs)."""
    out: dict[str, bytes] = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            try:
                if not path.is_file() or path.is_symlink() or path.stat().st_size > max_bytes:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if skip_inputs and is_key_input(data):
                continue
            out[str(path)] = data
    return out


# ---- the soak -----------------------------------------------------------------------------------------------------


CHECKS = ("tls-fuzz", "http", "slow-clients", "backend-faults", "rotation", "control-plane")


def run_round(lab: RunningLab, inputs_per_round: int, seed: int, only: Iterable[str] = CHECKS) -> list[Result]:
    only = set(only)
    results = []
    if "tls-fuzz" in only:
        results.append(tls_fuzz(lab, inputs_per_round, seed=seed))
    if "http" in only:
        results.append(malformed_http(lab))
    if "slow-clients" in only:
        results.append(slow_clients(lab))
    if "backend-faults" in only:
        results.append(backend_faults(lab, listener="tencent-one-way"))
    if "rotation" in only:
        results.append(rotation(lab, seconds=3.0))
    if "control-plane" in only:
        results.append(control_plane(lab))
    return results


def soak(duration: float, inputs: int, out_dir: Path, seed: int = 1, inputs_per_round: int = 10_000,
         only: Iterable[str] = CHECKS, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rounds of every check until `duration` seconds and `inputs` fuzz inputs are both reached."""
    only = list(only)

    def steady_listener(data: dict[str, Any]) -> None:
        # The steady client's own listener and backend: the outage check takes web-1 down for everyone else.
        data["backends"].append({"name": "steady-backend", "port": 0})
        data["listeners"].append({"name": "steady", "port": 0, "profile": "aliyun-slb", "server_certificate": "lab-rsa",
                                  "ca_certificate": "lab-client-ca", "tls_policy": "tls_cipher_policy_1_2_strict_with_1_3",
                                  "backend_servers": [{"backend": "steady-backend"}],
                                  "health_check": data["listeners"][0]["health_check"]})

    lab = start_reliability_lab(out_dir, edit=steady_listener)
    totals: dict[str, Result] = {}
    watch = LogWatch()
    started = time.monotonic()
    try:
        with watch.watching():
            # Warm up (first connections, contexts, caches), then measure the baseline.
            tls_fuzz(lab, 1000, seed=seed + 10**6)
            baseline = settle(lab, Footprint.now(lab))
            forget_records(lab)
            baseline = Footprint.now(lab)
            steady = SteadyClient(lab.port("steady"), lab.ssl_context("valid"), per_connection=10, interval=0.005)
            steady.start()
            rounds = 0
            records = 0
            statuses: collections.Counter[str] = collections.Counter()  # every record's tls_verify_status
            series: list[tuple[float, int]] = []  # (RSS growth MiB, descriptor growth) after each round
            while True:
                rounds += 1
                for result in run_round(lab, inputs_per_round, seed + rounds, only):
                    total = totals.setdefault(result.name, Result(result.name))
                    total.inputs += result.inputs
                    total.faults += result.faults
                    total.seconds = round(total.seconds + result.seconds, 1)
                    total.failures += result.failures[: max(0, 50 - len(total.failures))]
                    total.details[f"round {rounds}"] = result.details
                    log(f"round {rounds} {result.name:15} inputs {result.inputs:7} faults {result.faults:6} "
                        f"failures {len(result.failures)} ({result.seconds:.1f} s)")
                # Records are kept by design: drop them every round, or their heap hides (or fakes) a leak.
                # Read first, every round alike: decoding them leaves the allocator's arenas fuller.
                statuses.update(r.get("tls_verify_status") for r in lab.lab.ledger.records)
                records += forget_records(lab)
                series.append(Footprint.now(lab).growth(baseline))
                log(f"round {rounds} footprint: RSS {series[-1][0]:+} MiB, descriptors {series[-1][1]:+} over the baseline")
                fuzzed = totals["tls-fuzz"].inputs if "tls-fuzz" in totals else inputs
                if time.monotonic() - started >= duration and fuzzed >= inputs:
                    break
            steady.stop()
            statuses.update(r.get("tls_verify_status") for r in lab.lab.ledger.records)
            records += forget_records(lab)
            after = settle(lab, baseline)
            open_after = lab.lab.open_clients()
    finally:
        lab.stop()
    rss_growth, fd_growth = after.growth(baseline)
    figures = {
        "duration_s": round(time.monotonic() - started, 1),
        "rounds": rounds,
        "inputs_tried": sum(r.inputs for r in totals.values()),
        "faults_survived": sum(r.faults for r in totals.values()),
        "failures_seen": sum(len(r.failures) for r in totals.values()) + len(steady.failures) + len(watch.errors),
        "checks": {name: {"inputs": r.inputs, "faults": r.faults, "failures": len(r.failures), "seconds": r.seconds,
                          "first_failures": r.failures[:5], "rounds": r.details} for name, r in totals.items()},
        "tls_verify_status": dict(statuses),  # of every connection logged after the warm-up
        "open_clients_after": open_after,
        "steady_client": steady.summary(),
        "steady_client_failures": steady.failures[:10],
        "log": {"warnings": watch.counts.get("WARNING", 0), "errors": len(watch.errors), "first_errors": watch.errors[:5]},
        "memory": {"rss_before_mib": baseline.rss_mib, "rss_after_mib": after.rss_mib, "rss_growth_mib": rss_growth,
                   "fds_before": baseline.fds, "fds_after": after.fds, "fd_growth": fd_growth,
                   "rss_growth_by_round_mib": [g[0] for g in series], "fd_growth_by_round": [g[1] for g in series],
                   "connection_records_dropped": records},
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.tools.soak", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to keep going (default 60)")
    parser.add_argument("--inputs", type=int, default=20_000, help="fuzz inputs to reach at least (default 20,000)")
    parser.add_argument("--per-round", type=int, default=10_000, help="fuzz inputs per round (default 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=",".join(CHECKS), help=f"checks to run (default all: {','.join(CHECKS)})")
    parser.add_argument("--out", default="", help="lab directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks {sorted(unknown)}; choose from {', '.join(CHECKS)}")
    import tempfile

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lbsim-soak-"))
    # Errors go to stderr; warnings (thousands of failed handshakes: the point of the fuzz) only to LogWatch.
    console = logging.StreamHandler()
    console.setLevel(logging.ERROR)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.ERROR, handlers=[console])
    figures = soak(args.duration, args.inputs, out, args.seed, args.per_round, only,
                   log=(lambda line: print(line, file=sys.stderr, flush=True)))
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        m, s = figures["memory"], figures["steady_client"]
        print(f"soak: {figures['duration_s']} s, {figures['rounds']} rounds, lab in {out}")
        print(f"{'check':15} {'inputs':>9} {'faults':>9} {'failures':>9} {'seconds':>8}")
        for name, c in figures["checks"].items():
            print(f"{name:15} {c['inputs']:9} {c['faults']:9} {c['failures']:9} {c['seconds']:8}")
        print(f"{'total':15} {figures['inputs_tried']:9} {figures['faults_survived']:9} {figures['failures_seen']:9}")
        print(f"steady client: {s['requests']} requests, {s['failures']} failed, p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
        print(f"log: {figures['log']['warnings']} warnings, {figures['log']['errors']} errors")
        print(f"memory: RSS {m['rss_before_mib']} -> {m['rss_after_mib']} MiB ({m['rss_growth_mib']:+} MiB), "
              f"fds {m['fds_before']} -> {m['fds_after']} ({m['fd_growth']:+} beyond the upstream keep-alive pool); "
              f"{m['connection_records_dropped']} connection records held by design dropped each round")
        print(f"RSS growth after each round (MiB): {m['rss_growth_by_round_mib']}; "
              f"descriptors: {m['fd_growth_by_round']}")
        for name, c in figures["checks"].items():
            for failure in c["first_failures"]:
                print(f"FAILURE {name}: {failure}")
        for failure in figures["steady_client_failures"]:
            print(f"FAILURE steady client: {failure}")
        for error in figures["log"]["first_errors"]:
            print(f"LOGGED ERROR: {error[:300]}")
    return 1 if figures["failures_seen"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
