"""The example `lbsim report traffic` of docs/metering.md, reproduced through real listeners.

    python -m simulator.tools.metering_example [--connections 100] [--size 1024] [--window 3600]

One lab, four listeners on free loopback ports, one mock backend. Each listener gets `--connections`
requests for a `--size`-byte response, in one of three shapes:
* `full` (aliyun-slb): a new connection and a full handshake per request;
* `resumed` (aliyun-slb): a new connection per request, resuming the first one's TLS session (ticket);
* `keep-alive` (aliyun-slb): one connection for every request;
* `tencent-full` (tencent-clb): as `full`, with the Tencent profile's default policy and billing model.
Clients are Python's `ssl` module. Prints the report (rates over `--window` seconds: 3600 reads the run as
one hour's traffic), then per aliyun listener how many times the billed bytes the LB sends.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simulator.metering import billing
from simulator.runtime.defaults import mint_default_pki
from simulator.harness.running import RunningLab, start_lab
from simulator.metering.cli import print_table
from simulator.metering.ledger import TrafficLedger

SHAPES = {"full": "aliyun-slb", "resumed": "aliyun-slb", "keep-alive": "aliyun-slb", "tencent-full": "tencent-clb"}


def lab_config(files: dict[str, str]) -> dict[str, Any]:
    return {
        "certificates": [{"name": "rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]}],
        "backends": [{"name": "app", "port": 0}],
        "listeners": [{"name": name, "profile": profile, "port": 0, "server_certificate": "rsa",
                       "backend_servers": ["app"], "health_check": {"enabled": False}, "idle_timeout": 60}
                      for name, profile in SHAPES.items()],
    }


def _get(s: ssl.SSLSocket, path: str, close: bool) -> None:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{'Connection: close' if close else ''}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    while length:
        length -= len(s.recv(min(length, 65536)))


def drive(lab: RunningLab, ctx: ssl.SSLContext, connections: int, size: int) -> None:
    path = f"/example?size={size}"
    for name in SHAPES:
        port, session = lab.port(name), None
        if name == "keep-alive":
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
                for i in range(connections):
                    _get(s, path, close=i == connections - 1)
            continue
        for _ in range(connections):
            raw = socket.create_connection(("127.0.0.1", port))
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                _get(s, path, close=True)
                if name == "resumed":
                    session = s.session  # after the response: a TLS 1.3 ticket arrives after the handshake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.tools.metering_example", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100, help="requests per listener")
    parser.add_argument("--size", type=int, default=1024, help="response body bytes")
    parser.add_argument("--window", type=float, default=3600, help="rate window in seconds")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.size < 0 or args.window <= 0:
        parser.error("--connections must be at least 1, --size at least 0 and --window above 0")
    with tempfile.TemporaryDirectory(prefix="lbsim-metering-example-") as tmp:
        files = mint_default_pki(Path(tmp) / "pki")
        lab = start_lab(lab_config(files), out_dir=tmp)
        try:
            drive(lab, ssl.create_default_context(cafile=files["ca"]), args.connections, args.size)
            ports = {lab.port(name): name for name in SHAPES}
            ledger = TrafficLedger()
            ledger.extend(wait_for_records(lab, 3 * args.connections + 1))  # every connection's record
        finally:
            lab.stop()
    summaries = ledger.summary(args.window)
    print_table(summaries)
    print()
    for s in summaries:
        port = s["listener_port"]
        versions = "/".join(sorted({r["traffic"]["tls_version"] for r in ledger.records if r["listener_port"] == port}))
        # A model billing LB -> client payload only (aliyun-slb): the seeds' "actual vs billed traffic"
        ratio = f", the LB sends {s['wire_out'] / s['billed_bytes']:.2f}x the billed bytes" \
            if billing.model_for(s["billing_model"]).billed_directions == (billing.OUT,) else ""
        print(f"{ports[port]:12} {port}: {versions}{ratio}")
    return 0


def wait_for_records(lab: RunningLab, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = lab.connections()
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
