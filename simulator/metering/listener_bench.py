"""What metering costs a real listener: the same load with metering on and off, interleaved in one run.

    python -m simulator.metering.listener_bench [--rounds 5] [--duration 3] [--connections 20]

Two labs run as `lbsim up` processes, identical but for `metering: on|off` (one aliyun-slb listener,
RSA-2048, one mock backend). Rounds alternate between them (on, off, off, on, ...) so the noise of a shared
machine hits both; the medians of new TLS connections per second (one request each) and keep-alive requests
per second are printed with their ratio (metered / plain), and so is the lab process's own CPU time per
operation (from /proc): on a shared machine that figure is the steadier one, since other processes' load
changes how fast the lab runs but not how much work one connection costs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simulator.backends.bench import measure
from simulator.defaults import mint_default_pki

REQUEST = b"GET /bench HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@dataclass
class Lab:
    port: int
    context: ssl.SSLContext
    process: subprocess.Popen[str]


def lab_config(files: dict[str, str], metering: bool) -> dict:
    return {
        "metering": metering,
        "certificates": [{"name": "rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]}],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [{"name": "bench", "port": 0, "server_certificate": "rsa", "backend_servers": ["app"],
                       "health_check": {"enabled": False}, "idle_timeout": 60}],
    }


@contextlib.contextmanager
def running_lab(out: Path, files: dict[str, str], metering: bool) -> Iterator[Lab]:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "lab.yaml"
    config.write_text(yaml.safe_dump(lab_config(files, metering)))
    lbsim = str(Path(sys.executable).with_name("lbsim"))
    process = subprocess.Popen([lbsim, "up", "-c", str(config), "--out", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        port = None
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("bench"):
                port = int(line.split("https://127.0.0.1:")[1].split("/")[0])
            if line.startswith("connection log"):
                break
        if port is None:
            raise RuntimeError(f"lbsim up did not start (exit {process.poll()})")
        yield Lab(port, ssl.create_default_context(cafile=files["ca"]), process)
    finally:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def new_connections(lab: Lab, connections: int, duration: float) -> tuple[int, float]:
    """New TLS connections (one request on each) and the seconds they took, `connections` clients in parallel."""
    done = 0
    deadline = time.perf_counter() + duration

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", lab.port, ssl=lab.context, server_hostname="localhost")
            writer.write(REQUEST)
            await reader.read()  # until the listener closes after the response
            writer.close()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return done, time.perf_counter() - started


async def keep_alive(lab: Lab, connections: int, duration: float) -> tuple[int, float]:
    result = await measure("127.0.0.1", lab.port, connections=connections, duration=duration, warmup=0.3,
                           target="/bench", ssl_context=lab.context)
    if result.errors:
        raise RuntimeError(f"{result.errors} errors in the keep-alive run")
    return result.requests, result.seconds


def timed(lab: Lab, load: Any, connections: int, duration: float) -> tuple[float, float]:
    """(operations per second, lab CPU milliseconds per operation) of one measurement."""
    cpu = cpu_seconds(lab.process.pid)
    ops, seconds = asyncio.run(load(lab, connections, duration))
    return ops / seconds, 1000 * (cpu_seconds(lab.process.pid) - cpu) / max(ops, 1)


LOADS = {"new_connections": new_connections, "keepalive_requests": keep_alive}


def run(rounds: int = 5, duration: float = 3.0, connections: int = 20) -> dict[str, dict[str, float]]:
    """Medians per load shape and mode (rate, and lab CPU per operation), and the metered/plain ratios.

    The keep-alive CPU figure includes the (small, shared) cost of the warm-up's handshakes."""
    samples: dict[str, dict[bool, list[tuple[float, float]]]] = {shape: {True: [], False: []} for shape in LOADS}
    with tempfile.TemporaryDirectory(prefix="lbsim-metering-bench-") as tmp:
        files = mint_default_pki(Path(tmp) / "pki")
        with running_lab(Path(tmp) / "on", files, True) as on, running_lab(Path(tmp) / "off", files, False) as off:
            labs = {True: on, False: off}
            for i in range(rounds):
                for metered in (True, False) if i % 2 == 0 else (False, True):
                    for shape, load in LOADS.items():
                        samples[shape][metered].append(timed(labs[metered], load, connections, duration))
    out: dict[str, dict[str, float]] = {}
    for shape, by_mode in samples.items():
        rate = {m: statistics.median(s[0] for s in by_mode[m]) for m in (True, False)}
        cpu = {m: statistics.median(s[1] for s in by_mode[m]) for m in (True, False)}
        out[shape] = {"rate_on": round(rate[True], 1), "rate_off": round(rate[False], 1),
                      "rate_ratio": round(rate[True] / rate[False], 3),
                      "cpu_ms_on": round(cpu[True], 3), "cpu_ms_off": round(cpu[False], 3),
                      "cpu_ratio": round(cpu[True] / cpu[False], 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.metering.listener_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=20, help="parallel clients")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.duration, args.connections)
    print(f"{'load':20} {'rate on':>9} {'rate off':>9} {'on/off':>7}   {'lab CPU ms/op on':>16} {'off':>7} {'on/off':>7}")
    for shape, r in result.items():
        print(f"{shape:20} {r['rate_on']:9.1f} {r['rate_off']:9.1f} {r['rate_ratio']:7.3f}   "
              f"{r['cpu_ms_on']:16.3f} {r['cpu_ms_off']:7.3f} {r['cpu_ratio']:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
