"""Run a lab beside synchronous code (tests, scenarios, notebooks, load runs).

    with start_lab() as lab:                      # the built-in default lab, on free loopback ports
        port = lab.port("aliyun-one-way")
        status, body = lab.get("aliyun-one-way", "/hello")

The lab runs in its own thread and asyncio loop; `lab.call(coro)` runs a coroutine there.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Awaitable, TypeVar

from simulator.runtime.loops import loop_factory
from simulator.model.config import MAX_WORKERS, LabConfig, load_config, parse_config
from simulator.runtime.defaults import default_lab
from simulator.errors import LbsimError
from simulator.metering.ledger import epoch
from simulator.faces.management import start_with_faces
from simulator.runtime.lab import Lab
from simulator.dataplane.listener import Listener

T = TypeVar("T")


class RunningLab:
    """A started lab and the files its default PKI was written to."""

    def __init__(self, config: LabConfig, out_dir: Path, files: dict[str, str], vendor_apis: bool = False):
        self.config, self.out_dir, self.files = config, out_dir, files
        self.vendor_apis: Any = None  # simulator.faces.vendorapi.VendorApis, when started with vendor_apis=True
        self._loop = loop_factory(config.event_loop)()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lbsim-lab", daemon=True)
        self._thread.start()
        self.lab: Lab = self.call(self._make())
        try:
            self.call(start_with_faces(self.lab))
        except BaseException:
            self._shutdown_loop()
            raise
        if vendor_apis:
            try:
                self.call(self._attach_vendor_apis())
            except BaseException:
                self.stop()
                raise

    def attach_vendor_apis(self) -> dict[str, Any]:
        """Start the vendors' own APIs on this running lab (once) and return `endpoints`."""
        if self.vendor_apis is None:
            self.call(self._attach_vendor_apis())
        return self.endpoints

    async def _attach_vendor_apis(self) -> None:
        from simulator.faces.vendorapi import attach_vendor_apis  # a face, attached from outside the lab

        self.vendor_apis = await attach_vendor_apis(self.lab, self.out_dir)

    @property
    def endpoints(self) -> dict[str, Any]:
        """What `<out>/endpoints.json` holds: the vendor APIs' endpoints, region, keys, CA (vendor_apis=True)."""
        if self.vendor_apis is None:
            raise LbsimError("VendorApisNotStarted", "this lab runs without the vendor APIs",
                             hint="start_lab(..., vendor_apis=True)")
        return self.vendor_apis.endpoints()

    async def _make(self) -> Lab:
        return Lab(self.config, self.out_dir)

    def call(self, coro: Awaitable[T], timeout: float | None = 60) -> T:
        """Run a coroutine in the lab's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def stop(self) -> None:
        try:
            if self.vendor_apis is not None:
                self.call(self.vendor_apis.stop())
            self.call(self.lab.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        async def cancel_leftovers() -> None:
            # mitmproxy and our sweepers leave tasks behind; cancel and await them so none is destroyed pending.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_leftovers(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> RunningLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- looking things up -----------------------------------------------------------------------------

    def listener(self, name_or_port: str | int) -> Listener:
        for listener in self.lab.registry.listeners.values():
            if name_or_port in (listener.name, listener.port):
                return listener
        raise KeyError(f"no listener {name_or_port!r}; have {[l.name for l in self.lab.registry.listeners.values()]}")

    def port(self, name: str | int) -> int:
        return self.listener(name).port

    @property
    def api_url(self) -> str:
        return self.lab.api.url

    @property
    def ca_file(self) -> str | None:
        return self.files.get("ca")

    def connections(self, listener: str | int | None = None) -> list[dict[str, Any]]:
        records = list(self.lab.registry.recent)
        if listener is not None:
            port = self.port(listener)
            records = [r for r in records if r["listener_port"] == port]
        return records

    def record_of(self, client: Any, listener: str | int | None = None, timeout: float = 10) -> dict[str, Any]:
        """The log record of the connection a probe made (a `ProbeResult`, or anything with `local_port` and
        `opened`: epoch seconds before it connected), waiting for it to be logged. Its client port and the
        time it opened find it: ports are reused, and an older connection from the same port is not it."""
        suffix, opened = f":{client.local_port}", getattr(client, "opened", None)
        deadline = time.monotonic() + timeout
        while True:
            for record in reversed(self.connections(listener)):
                if record["client"].endswith(suffix) and (opened is None or epoch(record["time"]) >= opened - 0.001):
                    return record  # (the log's times are truncated to the millisecond)
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection-log record for client port {client.local_port} after {timeout} s")
            time.sleep(0.02)

    # ---- talking to it ---------------------------------------------------------------------------------

    def ssl_context(self, client: str | None = None, server_hostname_check: bool = True) -> ssl.SSLContext:
        """A client context trusting the lab CA; `client` = 'valid' | 'expired' | 'not_yet_valid' | 'untrusted'."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = server_hostname_check
        if client:
            context.load_cert_chain(self.files[f"client-{client}"], self.files[f"client-{client}-key"])
        return context

    def get(self, listener: str | int, path: str = "/", client: str | None = None, method: str = "GET",
            body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
        """One HTTPS request on a new connection: (status, body, headers)."""
        conn = http.client.HTTPSConnection("localhost", self.port(listener), context=self.ssl_context(client), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """Call the management API: (status, parsed JSON or None)."""
        conn = http.client.HTTPConnection(self.lab.api.host, self.lab.api.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if self.config.api.token:
            headers["Authorization"] = f"Bearer {self.config.api.token}"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            conn.close()


def start_lab(
    config: LabConfig | dict | str | Path | None = None,
    out_dir: str | Path | None = None,
    time_scale: float | None = None,
    workers: int | None = None,
    vendor_apis: bool = False,
    event_loop: str | None = None,
) -> RunningLab:
    """Start a lab: the built-in default (None), a YAML path, a config mapping, or a `LabConfig`.
    `time_scale`, `workers` and `event_loop` override the configuration's (None keeps it). `vendor_apis` also starts the
    vendors' own APIs (docs/vendor-apis.md) and writes `<out_dir>/endpoints.json`."""
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lbsim-lab-"))
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if config is None:
        config, files = default_lab(out, time_scale if time_scale is not None else 1.0)
    elif isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = parse_config(config, base_dir=str(out))
    if time_scale is not None:
        config = replace(config, time_scale=time_scale)
    if workers is not None:
        if not 1 <= workers <= MAX_WORKERS:
            raise LbsimError("InvalidParameter", f"workers must be 1..{MAX_WORKERS}, not {workers}", field="workers",
                             hint="one process per core is the useful maximum")
        config = replace(config, workers=workers)
    if event_loop is not None:
        loop_factory(event_loop)  # refused here, naming the field, if unknown or not installed
        config = replace(config, event_loop=event_loop)
    return RunningLab(config, out, files, vendor_apis=vendor_apis)
