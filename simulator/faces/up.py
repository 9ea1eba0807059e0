"""`lbsim up`: run a lab in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from dataclasses import replace

import yaml

from simulator.model.config import LabConfig, load_config, workers_argument
from simulator.runtime.defaults import default_lab, default_lab_data
from simulator.errors import LbsimError
from simulator.faces.management import start_with_faces
from simulator.runtime.gctune import freeze_startup
from simulator.runtime.lab import Lab
from simulator.runtime.loops import loop_factory


def resolve_lab(config_path: str | None, out_dir: Path, time_scale: float | None = None) -> tuple[LabConfig, dict[str, str]]:
    """The lab from `-c FILE`, or the built-in default (minting its PKI under `out_dir/pki`)."""
    if config_path:
        config = load_config(config_path)
        files: dict[str, str] = {}
    else:
        config, files = default_lab(out_dir, time_scale if time_scale is not None else 1.0)
        (out_dir / "lab.yaml").write_text(yaml.safe_dump(default_lab_data(files, config.time_scale), sort_keys=False))
    if time_scale is not None:
        config = replace(config, time_scale=time_scale)
    return config, files


def describe(lab: Lab, files: dict[str, str]) -> str:
    lines = [f"management API: {lab.api.url}  (GET /health, /v1/listeners, /v1/connections, /v1/traffic)"]
    if lab.console is not None:
        login = "  (log in with api.token, or open it once with ?token=<api.token>)" if lab.config.api.token else ""
        lines.append(f"console: {lab.console.url}/{login}")
    if lab.config.workers > 1:
        lines.append(f"workers: {lab.config.workers} processes share every listener port (docs/performance.md)")
    unavailable: set[str] = set()
    for listener in lab.registry.listeners.values():
        spec = listener.spec
        kind = listener_kind(spec)
        lacks = spec.policy.unavailable
        unavailable.update(lacks)
        lines.append(f"{listener.name:18} https://{listener.address}:{listener.port}/  {spec.profile:12} {kind:17} policy "
                     f"{spec.policy.name}" + (f" (never negotiates here: {', '.join(lacks)})" if lacks else ""))
    if unavailable:
        lines.append(f"  {', '.join(sorted(unavailable))}: in the vendor's policy table, but this OpenSSL build lacks it, "
                     "so a client offering only that is refused here where a real listener would let it in "
                     "(docs/tls-policies.md)")
    for name, (host, port) in lab.addresses.items():
        lines.append(f"backend {name:10} http://{host}:{port}/")
    if files:
        one_way = next((l for l in lab.registry.listeners.values() if not l.spec.mutual), None)
        mutual = next((l for l in lab.registry.listeners.values() if l.spec.mutual), None)
        lines.append("")
        if one_way:
            lines.append(f"one-way: curl --cacert {files['ca']} https://localhost:{one_way.port}/hello")
        if mutual:
            lines.append(
                f"mutual:  curl --cacert {files['ca']} --cert {files['client-valid']} "
                f"--key {files['client-valid-key']} https://localhost:{mutual.port}/hello"
            )
    lines.append(f"connection log: {lab.connection_log_path}")
    return "\n".join(lines)


def listener_kind(spec) -> str:
    """one-way, mutual (client certificate required), mutual (optional: tencent's `ssl_verify_client`) or
    mutual (any: asked for, never checked, the ALB's passthrough): the listener's `client_verification`."""
    verification = spec.client_verification
    if verification == "off":
        return "one-way"
    return "mutual" if verification == "on" else f"mutual ({verification})"


async def serve(config: LabConfig, out_dir: Path, files: dict[str, str], cpu_profile: str | None = None) -> None:
    from simulator.faces.vendorapi import attach_vendor_apis

    lab = await start_with_faces(Lab(config, out_dir))
    try:
        apis = await attach_vendor_apis(lab, out_dir)
    except BaseException:
        await lab.stop()
        raise
    stop = asyncio.Event()  # Ctrl-C stops the lab cleanly from the moment its banner can be read
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(describe(lab, files), flush=True)
    print(apis.describe(), flush=True)
    freeze_startup()  # this process is the lab's: full collections skip what it built to start
    profiler = start_profiler() if cpu_profile else None
    try:
        await stop.wait()
    finally:
        if profiler is not None and cpu_profile:
            write_profile(profiler, cpu_profile)
        print("stopping lab...", flush=True)
        await apis.stop()
        await lab.stop()


def start_profiler():
    """Sample this process (worker 0) from now until the lab stops: start-up is left out of the profile."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise LbsimError("ProfilerMissing", "--cpu-profile needs pyinstrument", hint="pip install pyinstrument") from None
    profiler = Profiler(async_mode="disabled")  # every task of the loop, not just the one awaiting here
    profiler.start()
    return profiler


def write_profile(profiler, path: str) -> None:
    """`.html` (pyinstrument's viewer), `.pyisession` (reload with `pyinstrument --load`), else text."""
    session = profiler.stop()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".pyisession":
        session.save(str(target))
    elif target.suffix == ".html":
        target.write_text(profiler.output_html())
    else:
        target.write_text(profiler.output_text(unicode=True, show_all=False))
    print(f"CPU profile written to {target}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if not args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, files = resolve_lab(args.config, out_dir, args.time_scale)
    if args.workers is not None:
        config = replace(config, workers=args.workers)
    asyncio.run(serve(config, out_dir, files, args.cpu_profile), loop_factory=loop_factory(config.event_loop))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start a lab (listeners, mock backends, management API) and serve until Ctrl-C")
    p.add_argument("-c", "--config", help="lab YAML (default: the built-in default lab)")
    p.add_argument("--out", default="lbsim-out", help="where the lab writes its PKI, store and connection log")
    p.add_argument("--time-scale", type=float, help="override time_scale (0.01 = vendor timers 100x faster)")
    p.add_argument("--workers", type=workers_argument, metavar="N|auto",
                   help="processes sharing every listener port, or auto: one per core (overrides the lab\'s `workers`)")
    # Not --profile: everywhere else that names a vendor profile (aliyun-slb, tencent-clb).
    p.add_argument("--cpu-profile", metavar="FILE",
                   help="CPU-profile worker 0 with pyinstrument until stopped (.html, .pyisession or text)")
    p.add_argument("--debug-checks", action="store_true",
                   help="keep Python's and mitmproxy's debug checks (by default `lbsim up` runs under python -O)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_up)
