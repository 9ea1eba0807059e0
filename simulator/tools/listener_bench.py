"""What metering costs a real listener: the same load with metering on and off, interleaved in one run.

    python -m simulator.tools.listener_bench [--rounds 20] [--connections 200] [--requests 1000] [--clients 8]

Two labs run as `lbsim up` processes, identical but for `metering: on|off` (one aliyun-slb listener,
RSA-2048, full handshakes). Their one backend runs in a third process, so a lab's CPU time is the
listener's own work (mitmproxy and lbsim's addons), not the mock backend's.

The figure is the lab process's CPU time per operation, read from its POSIX CPU clock (all threads, ns):
on a shared machine it is far steadier than a rate, since other processes' load changes how fast the lab
runs more than how much work one connection costs it. Each round gives both labs the same batch of work
at the same time (one client per lab, in this process; which lab's batch starts first alternates), so
whatever else the machine does hits both:
* `new_connections`: `--connections` TLS connections with one request each (`--clients` in parallel);
* `keepalive_requests`: `--requests` requests over `--clients` connections opened (and warmed with one
  request each) before the clock starts.
Each lab is pinned to a core of its own, and the two swap cores every round (the client
is not pinned). The first round is a warm-up and is dropped. Each later round gives one on/off ratio; the median ratio and
its distribution-free 95% confidence interval are printed (the interval's ends are order statistics of the
ratios, from the binomial distribution: no normality assumed). `--control` runs both labs with metering
off: its ratio should be 1, and its interval shows what the method can resolve on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import math
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import yaml

from simulator.backends.process import BackendProcess
from simulator.runtime.defaults import mint_default_pki

REQUEST = b"GET /bench HTTP/1.1\r\nHost: localhost\r\n\r\n"
CLOSE = b"GET /bench HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
SETTLE_S = 0.05  # the lab finishes the last connection's teardown (log record) after the client saw EOF

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@dataclass
class Lab:
    port: int
    context: ssl.SSLContext
    process: subprocess.Popen[str]
    clock: int  # the process's CPU-time clock id


def cpu_clock(pid: int) -> int:
    """The POSIX CPU-time clock of another process: every thread's time, including exited ones."""
    clock = ctypes.c_int()
    err = _libc.clock_getcpuclockid(pid, ctypes.byref(clock))
    if err:
        raise OSError(err, f"clock_getcpuclockid({pid})")
    return clock.value


def lab_config(files: dict[str, str], metering: bool, backend: str) -> dict:
    return {
        "metering": metering,
        "certificates": [{"name": "rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]}],
        "backends": [{"name": "app", "address": backend}],
        "listeners": [{"name": "bench", "port": 0, "server_certificate": "rsa", "backend_servers": ["app"],
                       "health_check": {"enabled": False}, "idle_timeout": 60}],
    }


@contextlib.contextmanager
def running_lab(out: Path, files: dict[str, str], metering: bool, backend: str) -> Iterator[Lab]:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "lab.yaml"
    config.write_text(yaml.safe_dump(lab_config(files, metering, backend)))
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
        yield Lab(port, ssl.create_default_context(cafile=files["ca"]), process, cpu_clock(process.pid))
    finally:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)


async def _response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    await reader.readexactly(length)


async def _open(lab: Lab) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", lab.port, ssl=lab.context, server_hostname="localhost")


async def new_connections(lab: Lab, work: int, clients: int, measured: Callable[[], Awaitable[None]]) -> int:
    """`work` TLS connections, one request each, `clients` at a time; returns the operations measured."""
    left = work

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            reader, writer = await _open(lab)
            writer.write(CLOSE)
            await reader.read()  # until the listener closes after the response
            writer.close()

    async with measured_span(measured):
        await asyncio.gather(*(client() for _ in range(clients)))
    return work


async def keep_alive(lab: Lab, work: int, clients: int, measured: Callable[[], Awaitable[None]]) -> int:
    """`work` requests over `clients` keep-alive connections opened and warmed before the clock starts."""
    streams = [await _open(lab) for _ in range(clients)]
    for reader, writer in streams:
        writer.write(REQUEST)
        await _response(reader)
    per_client = work // clients

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(per_client):
            writer.write(REQUEST)
            await _response(reader)

    async with measured_span(measured):
        await asyncio.gather(*(client(r, w) for r, w in streams))
    for _, writer in streams:
        writer.close()
    return per_client * clients


@contextlib.asynccontextmanager
async def measured_span(mark: Callable[[], Awaitable[None]]):  # type: ignore[no-untyped-def]
    await mark()
    yield
    await mark()


LOADS = {"new_connections": new_connections, "keepalive_requests": keep_alive}


async def sample(lab: Lab, load: Callable[..., Awaitable[int]], work: int, clients: int) -> tuple[float, float]:
    """(lab CPU microseconds per operation, operations per second) of one batch."""
    marks: list[tuple[int, float]] = []

    async def mark() -> None:
        if marks:
            await asyncio.sleep(SETTLE_S)
        marks.append((time.clock_gettime_ns(lab.clock), time.perf_counter()))

    ops = await load(lab, work, clients, mark)
    (cpu0, t0), (cpu1, t1) = marks
    return (cpu1 - cpu0) / 1000 / ops, ops / (t1 - t0 - SETTLE_S)


async def sample_both(labs: dict[bool, Lab], load: Callable[..., Awaitable[int]], work: int,
                      clients: int, off_first: bool = False) -> dict[bool, tuple[float, float]]:
    """The same batch on both labs at the same time: whatever else the machine does hits both alike.
    `off_first`: start the metering-off lab's batch first (rounds alternate, so neither gains from going first)."""
    order = (False, True) if off_first else (True, False)
    done = await asyncio.gather(*(sample(labs[m], load, work, clients) for m in order))
    return dict(zip(order, done))


def swap_cores(labs: dict[bool, Lab], i: int) -> None:
    """Pin each lab to a core of its own, swapping them every round: a lab that shared the busier core
    (the client's, another tenant's) for a whole run paid more per operation for it, a bias of a few
    percent either way in A/A runs. No pinning on a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    for n, lab in enumerate((labs[True], labs[False])):
        with contextlib.suppress(OSError):  # the lab has exited: the round will say so
            os.sched_setaffinity(lab.process.pid, {cores[(i + n) % 2]})


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: order statistics k and n+1-k, where k is the
    largest rank with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2."""
    xs = sorted(values)
    n = len(xs)
    tail, k, cdf = (1 - confidence) / 2, 0, 0.0
    while k < n and cdf + math.comb(n, k) / 2**n <= tail:
        cdf += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return xs[0], xs[-1]  # too few rounds for this confidence: the whole range
    return xs[k - 1], xs[n - k]


def run(rounds: int = 20, connections: int = 200, requests: int = 1000, clients: int = 8,
        control: bool = False, pairs: int = 1) -> dict[str, dict[str, Any]]:
    """Per load shape: medians of CPU per operation and rate in each mode, and the paired on/off CPU ratio
    with its 95% confidence interval (rounds after each pair's first). `control`: both labs run with
    metering off (an A/A run), which shows the method's own bias and spread. `pairs`: the rounds are
    split over that many pairs of freshly started labs: two processes of the same program differ by a few
    percent (hash seeds, memory layout), which a single pair would read as metering's cost."""
    work = {"new_connections": connections, "keepalive_requests": requests}
    samples: dict[str, dict[bool, list[tuple[float, float]]]] = {s: {True: [], False: []} for s in LOADS}
    per_pair: dict[str, list[float]] = {s: [] for s in LOADS}
    with tempfile.TemporaryDirectory(prefix="lbsim-metering-bench-") as tmp, BackendProcess(["app"]) as backend:
        files = mint_default_pki(Path(tmp) / "pki")
        address = backend.addresses["app"]
        for pair in range(pairs):
            todo = rounds // pairs + (pair < rounds % pairs)
            with running_lab(Path(tmp) / f"on-{pair}", files, not control, address) as on, \
                    running_lab(Path(tmp) / f"off-{pair}", files, False, address) as off:
                labs = {True: on, False: off}
                mine: dict[str, list[float]] = {s: [] for s in LOADS}
                for i in range(todo + 1):
                    swap_cores(labs, i)
                    for shape, load in LOADS.items():
                        both = asyncio.run(sample_both(labs, load, work[shape], clients, off_first=i % 2 == 1))
                        if i:  # round 0 warms both labs up
                            for metered, s in both.items():
                                samples[shape][metered].append(s)
                            mine[shape].append(both[True][0] / both[False][0])
                for shape, ratios in mine.items():
                    if ratios:
                        per_pair[shape].append(round(statistics.median(ratios), 4))
    out: dict[str, dict[str, Any]] = {}
    for shape, by_mode in samples.items():
        ratios = [a[0] / b[0] for a, b in zip(by_mode[True], by_mode[False])]
        low, high = median_interval(ratios)
        cpu = {m: statistics.median(s[0] for s in by_mode[m]) for m in (True, False)}
        rate = {m: statistics.median(s[1] for s in by_mode[m]) for m in (True, False)}
        out[shape] = {"cpu_us_on": round(cpu[True], 1), "cpu_us_off": round(cpu[False], 1),
                      "cpu_ratio": round(statistics.median(ratios), 4),
                      "cpu_ratio_low": round(low, 4), "cpu_ratio_high": round(high, 4),
                      "rate_on": round(rate[True], 1), "rate_off": round(rate[False], 1), "rounds": len(ratios),
                      "pair_ratios": per_pair[shape]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.tools.listener_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (after one warm-up round)")
    parser.add_argument("--connections", type=int, default=200, help="new connections per round and mode")
    parser.add_argument("--requests", type=int, default=1000, help="keep-alive requests per round and mode")
    parser.add_argument("--clients", type=int, default=8, help="parallel clients per lab")
    parser.add_argument("--pairs", type=int, default=1,
                        help="split the rounds over this many pairs of freshly started labs (default 1)")
    parser.add_argument("--control", action="store_true",
                        help="A/A run: metering off in both labs, to see the method's own bias and spread")
    args = parser.parse_args(argv)
    for name in ("rounds", "connections", "requests", "clients", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.requests < args.clients:
        parser.error("--requests must be at least --clients (each keep-alive client makes requests/clients)")
    if args.pairs > args.rounds:
        parser.error("--pairs must be at most --rounds")
    result = run(args.rounds, args.connections, args.requests, args.clients, args.control, args.pairs)
    if args.control:
        print("control run: metering is off in both labs ('on' is the first lab)")
    print(f"{'load':20} {'lab CPU µs/op on':>16} {'off':>7} {'on/off (median)':>15} {'95% CI':>16}"
          f"   {'rate on':>8} {'off':>8}")
    for shape, r in result.items():
        print(f"{shape:20} {r['cpu_us_on']:16.1f} {r['cpu_us_off']:7.1f} {r['cpu_ratio']:15.3f} "
              f"{r['cpu_ratio_low']:7.3f}–{r['cpu_ratio_high']:.3f}   {r['rate_on']:7.1f}/s {r['rate_off']:7.1f}/s")
    print(f"{result['new_connections']['rounds']} paired rounds; on/off > 1 means metering costs CPU")
    if args.pairs > 1:
        for shape, r in result.items():
            print(f"{shape}: median on/off of each of the {args.pairs} lab pairs: "
                  + ", ".join(f"{x:.3f}" for x in r["pair_ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
