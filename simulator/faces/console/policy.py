"""TLS policy: per listener, what the policy allows (version x suite) beside what really negotiates.

"Expected" is `Policy.negotiable` for the server certificate's key type; "observed" comes from the lab's own
probe (`simulator.policies.probe.accepted_suites`, the same one `lbsim run` builds its policy matrix with),
run on demand in a thread, off the event loop that serves the listener.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.errors import LbsimError
from simulator.faces.console.markup import Markup, join, tag, textarea
from simulator.faces.console.markup import form as html_form
from simulator.faces.console.markup import table as html_table
from simulator.faces.console.server import Context, Page, parse_form, redirect
from simulator.faces.http import Request
from simulator.policies import VERSIONS

if TYPE_CHECKING:
    from simulator.faces.console.app import ConsoleServer


@dataclass
class ProbeRun:
    state: str = "running"  # running | done | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    observed: dict[str, list[str]] | None = None
    error: str | None = None
    version_built: float | None = None  # which configuration was probed


class PolicyPages:
    def __init__(self, console: ConsoleServer):
        self.console = console
        self.runs: dict[str, ProbeRun] = {}  # by listener key
        self._tasks: set[asyncio.Task] = set()

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/policy", self.page), ("POST", "/policy/{port}/probe", self.probe)]

    def expected(self, listener: Any) -> tuple[dict[str, list[str]], str]:
        version = listener.active or listener.pending
        spec = version.spec
        cert_id = version.certificate_ids.get(spec.server_certificate, spec.server_certificate)
        key_type = self.console.lab.store.describe(cert_id).key_type
        return spec.policy.negotiable(key_type), key_type

    def matrix(self, expected: dict[str, list[str]], observed: dict[str, list[str]] | None) -> Markup:
        suites: list[str] = []
        for source in (expected, observed or {}):
            for v in VERSIONS:
                for s in source.get(v, []):
                    if s not in suites:
                        suites.append(s)
        rows = []
        for s in suites:
            cells: list[Any] = [tag("code", s)]
            for v in VERSIONS:
                want = s in expected.get(v, [])
                if observed is None:
                    cells.append(tag("span", "allowed" if want else "", class_="expected" if want else None))
                    continue
                got = s in observed.get(v, [])
                word, css = {(True, True): ("negotiates", "ok"), (False, True): ("beyond the policy", "bad"),
                             (True, False): ("refused", "bad"), (False, False): ("", None)}[(want, got)]
                cells.append(tag("span", word, class_=css))
            rows.append(cells)
        return html_table(["Suite", *VERSIONS], rows, class_="matrix") if rows else tag("p", "No suite negotiates.")

    def section(self, listener: Any, ctx: Context) -> Markup:
        version = listener.active or listener.pending
        if version is None:
            return Markup("")
        spec = version.spec
        expected, key_type = self.expected(listener)
        run = self.runs.get(listener.key)
        observed = run.observed if run and run.state == "done" else None
        if run is None:
            state = tag("p", "Not probed yet: the table shows what the policy allows.", class_="muted")
        elif run.state == "running":
            state = tag("p", "Probing...", class_="probing", data_probing="1")
        elif run.state == "failed":
            state = tag("p", f"The probe failed: {run.error}", class_="error-message")
        else:
            match = observed == expected
            stale = " (the listener changed since)" if run.version_built != (listener.active.built if listener.active else None) else ""
            state = tag("p", join([f"Probed {time.strftime('%H:%M:%S', time.localtime(run.finished))}{stale}: ",
                                   tag("strong", "what negotiates matches the policy" if match else
                                       "what negotiates differs from the policy", class_="ok" if match else "bad")]),
                        class_="probe-result", data_match=str(match).lower())
        needs_client = spec.mutual and spec.ssl_verify_client == "on"
        probe_fields = join([
            textarea("client_cert", "Client certificate (PEM) its CA trusts", "", {}, rows=3),
            textarea("client_key", "Its private key (PEM)", "", {}, rows=3),
        ]) if needs_client else ""
        probe = html_form(f"/policy/{self.console.lab.ref(listener)}/probe", join([
            tag("p", "A mutual listener with verification on refuses a probe without a client certificate from its "
                     "CA.", class_="muted") if needs_client else "",
            probe_fields,
            tag("button", "Run the probe", type="submit", id=f"probe-{self.console.lab.ref(listener)}",
                disabled=bool(run and run.state == "running"))]), ctx.csrf, multipart=needs_client, class_="inline-block")
        head = f"{listener.name} :{self.console.lab.ref(listener)}"
        return tag("section", join([
            tag("h2", head),
            tag("p", join([f"{spec.profile}, policy ", tag("strong", spec.policy.name), f", {key_type} certificate, "
                           f"status {listener.status}"] + ([" ", tag("em", "(custom)")] if spec.policy.custom else []))),
            state, self.matrix(expected, observed), probe,
        ]), class_="policy", id=f"policy-{self.console.lab.ref(listener)}")

    async def page(self, request: Request, ctx: Context) -> Page:
        listeners = list(self.console.lab.registry.listeners.values())
        sections = join(self.section(l, ctx) for l in listeners)
        running = any(r.state == "running" for r in self.runs.values())
        body = join([
            tag("p", "Rows: the suites the policy allows with this certificate, and any the probe found beyond them. "
                     "The probe offers every suite this OpenSSL knows, per version, and takes out each one the "
                     "listener picks until it refuses (its connections show in the log and traffic).", class_="muted"),
            # Without JavaScript the page reloads itself while a probe runs.
            Markup('<noscript><meta http-equiv="refresh" content="2"></noscript>') if running else "",
            tag("div", sections, id="policies", data_refresh="/policy" if running else None, data_every="2",
                data_select="#policies"),
        ])
        return self.console.page("TLS policy", body, "/policy")

    async def probe(self, request: Request, ctx: Context) -> Page:
        port = request.params["port"]
        try:
            listener = self.console.lab.get_listener(port)  # a port, or address:port
        except LbsimError as e:
            return self.console.error_page(404, "Listener not found", e.message)
        if listener.status == "stopped" or not self.console.lab.serving(listener):
            run = ProbeRun(state="failed", error=f"the listener is {listener.status}, not serving: start it first")
            run.finished = time.time()
            self.runs[listener.key] = run
            return redirect(f"/policy#policy-{self.console.lab.ref(listener)}")
        if listener.key in self.runs and self.runs[listener.key].state == "running":
            return redirect(f"/policy#policy-{self.console.lab.ref(listener)}")
        data = parse_form(request)
        kwargs: dict[str, Any] = {}
        if data.get("client_cert").strip():
            kwargs = {"client_cert_pem": data.get("client_cert").encode(), "client_key_pem": data.get("client_key").encode()}
        run = self.runs[listener.key] = ProbeRun(version_built=listener.active.built if listener.active else None)
        task = asyncio.get_running_loop().create_task(self._run(run, listener.address, listener.port, kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return redirect(f"/policy#policy-{self.console.lab.ref(listener)}")

    async def _run(self, run: ProbeRun, address: str, port: int, kwargs: dict[str, Any]) -> None:
        from simulator.policies.probe import accepted_suites

        try:
            run.observed = await asyncio.to_thread(accepted_suites, address, port, **kwargs)
            run.state = "done"
        except Exception as e:  # shown on the page; a probe never takes the console down
            run.state, run.error = "failed", f"{type(e).__name__}: {e}"
        run.finished = time.time()

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
