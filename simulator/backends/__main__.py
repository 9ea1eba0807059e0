"""Run mock backends standalone: `python -m simulator.backends --name b1 --port 0`.

Prints one JSON line per backend once it listens ({"name", "host", "port", "address", "pid"}), then
serves until SIGINT or SIGTERM. With `--control-stdin`, JSON commands on stdin (see `control.py`) are
answered on stdout, and the process exits when stdin closes, so it never outlives its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from simulator.backends.control import apply_command
from simulator.backends.server import MockBackend


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulator.backends", description=__doc__.splitlines()[0])
    p.add_argument("--name", action="append", required=True, help="backend name (repeat for several)")
    p.add_argument("--port", action="append", type=int,
                   help="port per --name, in order; one 0 (the default) picks free ports for all")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--health-path", default="/health")
    p.add_argument("--unhealthy", action="store_true", help="start with the health endpoint answering 503")
    p.add_argument("--keepalive-timeout", type=float, default=None, metavar="SECONDS",
                   help="close idle keep-alive connections after this long (default: never)")
    p.add_argument("--control-stdin", action="store_true", help="accept JSON commands on stdin")
    p.add_argument("--log-level", default="WARNING")
    return p


def _ports(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[int]:
    ports = args.port or [0]
    if len(ports) == 1 and ports[0] == 0:
        return [0] * len(args.name)
    if len(ports) != len(args.name):
        parser.error("give one --port per --name, or a single --port 0")
    return ports


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _control(backends: dict[str, MockBackend], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            stop.set()  # the parent went away
            return
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
        except ValueError as e:
            _emit({"ok": False, "error": f"bad JSON: {e}"})
            continue
        _emit(await apply_command(backends, cmd))


async def run(args: argparse.Namespace, ports: list[int]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    backends: dict[str, MockBackend] = {}
    try:
        for name, port in zip(args.name, ports):
            b = MockBackend(name, args.host, port, args.health_path, healthy=not args.unhealthy,
                            keepalive_timeout=args.keepalive_timeout)
            await b.start()
            backends[name] = b
            _emit({"name": name, "host": args.host, "port": b.port, "address": b.address, "pid": os.getpid()})
        control = loop.create_task(_control(backends, stop)) if args.control_stdin else None
        await stop.wait()
        if control is not None:
            control.cancel()
    finally:
        for b in backends.values():
            await b.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(set(args.name)) != len(args.name):
        parser.error("backend names must be unique")
    ports = _ports(args, parser)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(run(args, ports))
    except OSError as e:  # e.g. the port is taken: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
