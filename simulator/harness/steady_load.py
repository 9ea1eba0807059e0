"""A steady Locust load on one HTTPS address, in a subprocess, for scenarios that change a listener under load.

    with SteadyLoad("https://127.0.0.57:8443", ca_file, out_dir, sni="shop.example.com",
                    client_cert=cert, client_key=key) as load:
        load.wait_started(lambda: lab_saw_a_connection())
        ...rotate the certificate through the vendor's API...
        load.stop()  # the change is done: end the load now rather than at `seconds`
    result = load.result()
    assert result.failures == 0 and result.failed_handshakes == 0
    assert result.handshakes >= users * rate * result.seconds * 0.4  # the load really was steady

Every request opens a new TLS connection (a full handshake each time), so a certificate change is met by
hundreds of handshakes. The users are `LbsimUser`s of `scenarios/load/common.py` (docs/load.md), run headless
at a constant rate; their statistics come from Locust's own CSV files.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from simulator.policies.groups import pin_groups
from simulator.resources import data_dir

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `simulator/` (a checkout, site-packages)
LOCUSTFILE = '''
"""Steady new-connection load (written by simulator.harness.steady_load)."""
from common import LbsimUser
from locust import constant_throughput, task


class Steady(LbsimUser):
    wait_time = constant_throughput({rate})

    @task
    def request(self):
        conn = self.open(client={client!r})
        if conn is not None:
            self.get(conn, "/steady")
            self.close(conn)
'''


@dataclass
class LoadResult:
    failures: int  # Locust's aggregated failure count (handshakes and requests)
    handshakes: int  # completed handshakes
    failed_handshakes: int
    requests: int
    seconds: float  # how long the load ran at the listener (from `wait_started`, else from the start)
    rows: list[dict[str, str]] = field(default_factory=list)
    log_tail: str = ""


class SteadyLoad:
    """`users` users each opening `rate` new connections a second for `seconds` seconds at most: a scenario
    that is done sooner calls `stop()`."""

    def __init__(self, url: str, ca_file: str | Path, out_dir: str | Path, *, sni: str | None = None,
                 users: int = 4, rate: float = 6, seconds: int = 12, client_cert: str | Path | None = None,
                 client_key: str | Path | None = None):
        # Absolute: Locust runs in a directory of its own, not the caller's (a scenario's files are often
        # relative to where `lbsim run` was started).
        self.url, self.ca_file, self.out = url, str(Path(ca_file).resolve()), Path(out_dir).resolve()
        self.sni, self.users, self.rate, self.seconds = sni, users, rate, seconds
        self.client_cert = Path(client_cert).resolve() if client_cert else None
        self.client_key = Path(client_key).resolve() if client_key else None
        self.proc: subprocess.Popen | None = None
        self.started = self.loaded = self.ended = 0.0  # monotonic times
        self._log = None

    def __enter__(self) -> SteadyLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        locustfile = self.out / "steady_locustfile.py"
        locustfile.write_text(LOCUSTFILE.format(rate=self.rate, client="valid" if self.client_cert else None))
        # The profiles' `common` module: the checkout's scenarios/load/, or the installed package's copy.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(data_dir("scenarios") / "load"), str(PACKAGE_ROOT)]),
                   PYTHONUNBUFFERED="1")
        pin_groups(env)
        cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(self.users),
               "-r", str(self.users), "-t", f"{self.seconds}s", "--stop-timeout", "5", "--csv", str(self.out / "locust"),
               "--only-summary", "--host", self.url, "--ca", self.ca_file, "--pki", str(self.out)]
        if self.sni:
            cmd += ["--sni", self.sni]
        if self.client_cert:
            cmd += ["--client-cert", str(self.client_cert), "--client-key", str(self.client_key)]
        self._log = (self.out / "locust.log").open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.out)

    def wait_started(self, loaded: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `loaded()` says the load reached the listener (e.g. its connection log grew)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if loaded():
                self.loaded = time.monotonic()
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"Locust ended early:\n{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"no load reached the listener within {timeout} s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, tail: float = 0.5) -> None:
        """End the load `tail` seconds from now (a change's aftermath is met by load too). Locust ends on
        SIGTERM as at its time limit: it writes its statistics and exits."""
        if self.running():
            time.sleep(tail)
            self.ended = time.monotonic()  # Locust's users may take a moment to finish their task
            self.proc.send_signal(signal.SIGTERM)
        self.finish()

    def finish(self) -> int:
        """Wait for Locust to end (it stops by itself after `seconds`); kill it if it overstays."""
        if self.proc is None:
            return -1
        try:
            rc = self.proc.wait(self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.ended = self.ended or time.monotonic()
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def log_tail(self, chars: int = 2000) -> str:
        path = self.out / "locust.log"
        return path.read_text()[-chars:] if path.exists() else ""

    def result(self) -> LoadResult:
        self.finish()
        rows = list(csv.DictReader((self.out / "locust_stats.csv").open()))
        by_name = {(r["Type"], r["Name"]): r for r in rows}

        def count(kind: str, name: str, column: str = "Request Count") -> int:
            return int(by_name.get((kind, name), {}).get(column, 0) or 0)

        return LoadResult(
            failures=count("", "Aggregated", "Failure Count"),
            handshakes=count("TLS", "handshake full") + count("TLS", "handshake resumed"),
            failed_handshakes=count("TLS", "handshake failed"),
            requests=count("GET", "/steady"),
            seconds=self.ended - (self.loaded or self.started),
            rows=rows,
            log_tail=self.log_tail(),
        )


__all__ = ["LoadResult", "SteadyLoad"]
