"""Listeners: status with the activation countdown, create and change with the vendor's own fields, start,
stop, delete; backend servers and their health; the load balancers holding them (read-only).

A form becomes the same mapping `POST /v1/listeners` takes and goes through `lab.spec_from_api`, then
`lab.add_listener` / `lab.reconfigure`: the model validates, the console shows its errors on the fields.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from simulator.errors import LbsimError
from simulator.faces.console.markup import (Errors, Markup, button, checkbox, esc, field_errors, form, hidden, join,
                                            select, tag, text_input, void)
from simulator.faces.console.markup import table as html_table
from simulator.faces.console.server import Context, Form, Page, parse_form, redirect
from simulator.faces.console.vendor import VendorForm, profiles, vendor_form
from simulator.faces.http import Request
from simulator.model.config import ListenerSpec

if TYPE_CHECKING:
    from simulator.faces.console.app import ConsoleServer

SNI_ROWS = 3  # empty SNI rows offered by the form
NOTICES = {"created": "Created.", "changed": "Changed: the new configuration serves after the activation delay.",
           "started": "Starting: it serves after the activation delay.", "stopped": "Stopped.", "deleted": "Deleted."}
# Where the model's field paths are shown on the form (`listener.tls_policy.versions[0]` -> tls_versions).
FIELD_PREFIXES = (("tls_policy.versions", "tls_versions"), ("tls_policy.ciphers", "tls_ciphers"),
                  ("tls_policy.ssl_ciphers", "tls_ciphers"), ("tls_policy", "tls_policy"),
                  ("backend_servers", "backend"), ("sni", "sni"))
FORM_FIELDS = ("name", "port", "server_certificate", "ca_certificate", "ssl_verify_client", "http2", "scheduler",
               "idle_timeout", "request_timeout", "activation_delay", "start", "profile")


def form_field(path: str | None) -> str:
    """The form field an error of the model concerns (`form` when the form has no such field)."""
    f = (path or "").removeprefix("listener.")
    for prefix, name in FIELD_PREFIXES:
        if f == prefix or f.startswith((prefix + ".", prefix + "[")):
            return name
    head = re.split(r"[.\[]", f)[0]
    return head if head in FORM_FIELDS else "form"


def number(text: str) -> Any:
    """A number typed in a form; anything else goes to the model as typed, which names what it expects."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def spec_data(spec: ListenerSpec) -> dict[str, Any]:
    """A spec as the API mapping (what the form does not show is kept as it is on a change)."""
    data: dict[str, Any] = {
        "name": spec.name, "profile": spec.profile, "server_certificate": spec.server_certificate,
        "tls_policy": spec.policy, "http2": spec.http2, "scheduler": spec.scheduler,
        "backend_servers": [{"backend": b.backend, "weight": b.weight} for b in spec.backend_servers],
        "health_check": {**dataclasses.asdict(spec.health_check), "http_code": list(spec.health_check.http_code)},
        "idle_timeout": spec.idle_timeout, "request_timeout": spec.request_timeout,
        "headers": {**dataclasses.asdict(spec.headers), "client_cert_names": dict(spec.headers.client_cert_names)},
        "billing_model": spec.billing_model, "lb_id": spec.lb_id,
    }
    if spec.ca_certificate:
        data["ca_certificate"] = spec.ca_certificate
        data["ssl_verify_client"] = spec.ssl_verify_client
    if spec.sticky_session:
        data["sticky_session"] = dataclasses.asdict(spec.sticky_session)
    if spec.sni:
        data["sni"] = dict(spec.sni)
    if spec.activation_delay is not None:
        data["activation_delay"] = spec.activation_delay
    data["health_check"] = {k: v for k, v in data["health_check"].items() if v is not None}
    return data


def form_values(spec: ListenerSpec) -> dict[str, Any]:
    """What the form shows for an existing listener."""
    policy = spec.policy
    custom = policy.custom
    return {
        "name": spec.name, "port": str(spec.port), "server_certificate": spec.server_certificate,
        "ca_certificate": spec.ca_certificate or "", "ssl_verify_client": spec.ssl_verify_client,
        "tls_policy": ("custom" if custom and policy.cipher_string is not None else "__keep__") if custom else policy.name,
        "tls_versions": list(policy.versions), "tls_ciphers": policy.cipher_string or ":".join(policy.ciphers),
        "http2": spec.http2, "scheduler": spec.scheduler,
        "backend": [b.backend for b in spec.backend_servers],
        **{f"weight_{b.backend}": str(b.weight) for b in spec.backend_servers},
        "idle_timeout": str(spec.idle_timeout), "request_timeout": str(spec.request_timeout),
        "sni": list(spec.sni), "activation_delay": "" if spec.activation_delay is None else str(spec.activation_delay),
    }


class ListenerPages:
    def __init__(self, console: ConsoleServer):
        self.console = console

    @property
    def lab(self) -> Any:
        return self.console.lab

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/listeners", self.list),
            ("GET", "/listeners/table", self.table_fragment),
            ("GET", "/listeners/loadbalancers", self.loadbalancers_fragment),
            ("GET", "/listeners/new", self.new),
            ("POST", "/listeners/new", self.create),
            ("GET", "/listeners/{port}/edit", self.edit),
            ("POST", "/listeners/{port}/edit", self.change),
            ("POST", "/listeners/{port}/start", self.start),
            ("POST", "/listeners/{port}/stop", self.stop),
            ("POST", "/listeners/{port}/delete", self.delete),
            ("POST", "/backends/{name}/health", self.set_health),
        ]

    # ---- the list --------------------------------------------------------------------------------------------

    def status_cell(self, view: dict[str, Any], listener: Any) -> Markup:
        status = view["status"]
        parts = [tag("span", status, class_=f"status {status}", data_status=status)]
        if status == "configuring" and listener.activates_at:
            parts.append(join([" activates in ", tag("span", f"{view['activates_in']:.1f} s", class_="countdown",
                                                    data_until=f"{listener.activates_at:.3f}")]))
        return join(parts)

    def table(self, ctx: Context) -> Markup:
        rows = []
        for listener in list(self.lab.registry.listeners.values()):
            view = self.lab.view(listener)
            port = self.lab.ref(listener)  # `address:port` when two load balancers share the port
            certs = [join(["server: ", view.get("server_certificate")])]
            for domain, ref in (view.get("sni") or {}).items():
                certs.append(join(["SNI ", tag("code", domain), ": ", ref]))
            if view.get("ca_certificate"):
                certs.append(join(["client CA: ", view["ca_certificate"], f" (verify {view.get('ssl_verify_client')})"]))
            backends = [join([tag("span", "healthy" if b["healthy"] else "unhealthy",
                                  class_="ok" if b["healthy"] else "bad"), " ", b["name"], f" ({b['address']}, weight ",
                              str(b["weight"]), ")"]) for b in view.get("backend_servers", [])]
            running = view["status"] != "stopped"
            actions = join([
                tag("a", "Change", href=f"/listeners/{port}/edit", class_="button"),
                button(f"/listeners/{port}/{'stop' if running else 'start'}", "Stop" if running else "Start",
                       ctx.csrf, id=f"{'stop' if running else 'start'}-{port}"),
                button(f"/listeners/{port}/delete", "Delete", ctx.csrf, danger=True, id=f"delete-{port}"),
            ], " ")
            rows.append([tag("strong", listener.name), port, view.get("profile"), self.status_cell(view, listener),
                         join([view.get("tls_policy"), tag("br"), tag("small", " ".join(view.get("tls_versions") or []))]),
                         join(certs, Markup("<br>")), join(backends, Markup("<br>")) or tag("span", "none", class_="muted"),
                         view.get("connections"), actions])
        if not rows:
            return tag("p", "No listeners.", class_="muted")
        return html_table(["Name", "Port", "Profile", "Status", "TLS policy", "Certificates", "Backend servers",
                           "Open connections", ""], rows, id="listeners-table")

    def loadbalancers_table(self) -> Markup:
        """Each load balancer (`lab.loadbalancers`) with its listeners. The lab file's listeners sit under the
        load balancers their `lb_id` names (`lb-lbsim` by default, on 127.0.0.1), which may hold listeners of
        both vendors: the vendor column names the profiles of its listeners."""
        by_lb: dict[str, list[Any]] = {}
        for listener in list(self.lab.registry.listeners.values()):
            if listener.spec is not None:
                by_lb.setdefault(listener.spec.lb_id, []).append(listener)
        rows = []
        for lb in self.lab.loadbalancers.list():
            listeners = sorted(by_lb.get(lb.id, []), key=lambda l: l.port)
            profiles_of = sorted({l.spec.profile for l in listeners} or {lb.profile})
            items = [tag("li", join([self.status_cell(self.lab.view(l), l), " ", tag("strong", l.name), " port ",
                                     tag("a", str(l.port), href=f"#{l.port}")]), data_port=l.port) for l in listeners]
            rows.append([tag("code", lb.id), lb.name, join([", ".join(profiles_of), tag("br"),
                                                           tag("small", "lab file" if lb.from_lab_file else
                                                               "vendor API", class_="muted")]),
                         tag("code", lb.address),
                         tag("ul", join(items), class_="lb-listeners") if items else tag("span", "none", class_="muted")])
        if not rows:
            return tag("p", "No load balancers.", class_="muted")
        return html_table(["Load balancer", "Name", "Vendor", "Address", "Listeners"], rows, id="loadbalancers-table")

    def backends_table(self, ctx: Context) -> Markup:
        rows = []
        for name, (host, port) in self.lab.addresses.items():
            mock = self.lab.backends.get(name)
            if mock is None:
                rows.append([name, f"{host}:{port}", "external", "-", ""])
                continue
            state = "down" if mock.down else ("healthy" if mock.healthy else "failing health checks")
            actions = join([
                form(f"/backends/{name}/health", join([hidden("healthy", "false" if mock.healthy else "true"),
                     tag("button", "Fail health checks" if mock.healthy else "Pass health checks", type="submit")]),
                     ctx.csrf, class_="inline"),
                form(f"/backends/{name}/health", join([hidden("down", "false" if mock.down else "true"),
                     tag("button", "Bring up" if mock.down else "Take down", type="submit")]), ctx.csrf, class_="inline"),
            ], " ")
            rows.append([name, f"{host}:{port}", "mock", tag("span", state, class_="ok" if state == "healthy" else "bad"),
                         actions])
        return html_table(["Backend", "Address", "Kind", "State", ""], rows, id="backends-table")

    async def list(self, request: Request, ctx: Context) -> Page:
        notice = NOTICES.get(request.query.get("notice", ""))
        error = request.query.get("error")
        new = join((tag("a", f"New {p} listener", href=f"/listeners/new?profile={p}", class_="button") for p in profiles()), " ")
        body = join([
            tag("p", notice, class_="notice", role="status") if notice else "",
            tag("p", error, class_="error-message", role="alert") if error else "",
            tag("p", new),
            tag("div", self.table(ctx), id="listeners", data_refresh="/listeners/table", data_every="1"),
            tag("h2", "Load balancers"),
            tag("p", "Read-only here: load balancers are created and deleted through the vendor APIs "
                "(docs/vendor-apis.md); the lab file's listeners are under the load balancer their lb_id names.",
                class_="muted"),
            tag("div", self.loadbalancers_table(), id="loadbalancers", data_refresh="/listeners/loadbalancers",
                data_every="1"),
            tag("h2", "Backends"),
            tag("p", "The lab's backends; mock ones can be made to fail health checks or go down.", class_="muted"),
            self.backends_table(ctx),
        ])
        return self.console.page("Listeners", body, "/listeners")

    async def table_fragment(self, request: Request, ctx: Context) -> Page:
        return Page(200, self.table(ctx))

    async def loadbalancers_fragment(self, request: Request, ctx: Context) -> Page:
        return Page(200, self.loadbalancers_table())

    # ---- the form --------------------------------------------------------------------------------------------

    def listener_form(self, ctx: Context, vf: VendorForm, values: dict[str, Any], errors: Errors, action: str,
                      creating: bool) -> Markup:
        certs = self.lab.store.list()
        server = [(c.name, f"{c.name} ({c.key_type} {c.key_size}, {c.id})") for c in certs if c.type == "server"]
        cas = [("", "none: one-way TLS")] + [(c.name, f"{c.name} ({c.id})") for c in certs if c.type == "ca"]
        policies = [(p, vf.policy_label(p) + (" (default)" if p == vf.default_policy else "")) for p in vf.policies]
        if vf.custom_policy:
            policies.append(("custom", "custom: protocols and cipher string"))
        if values.get("tls_policy") == "__keep__":
            policies.append(("__keep__", "the current custom policy (unchanged)"))
        parts: list[Any] = [
            field_errors(errors, "form"),
            hidden("profile", vf.profile),
            text_input("name", "Listener name", values.get("name"), errors, help="empty: https-<port>"),
            text_input("port", "Frontend port", values.get("port", "0"), errors, help="1-65535; 0 = any free port",
                       readonly=not creating),
            select("server_certificate", "Server certificate", [("", "choose one")] + server,
                   values.get("server_certificate"), errors),
            select("tls_policy", "TLS security policy", policies, values.get("tls_policy", vf.default_policy), errors),
        ]
        if vf.custom_policy:
            chosen = set(values.get("tls_versions") or vf.default_versions)
            boxes = join(join([Markup(f'<label class="check">'), Markup(
                f'<input type="checkbox" name="tls_versions" value="{esc(v)}"{" checked" if v in chosen else ""}> '),
                v, Markup("</label>")]) for v in vf.versions)
            parts.append(tag("fieldset", join([tag("legend", "Custom policy (SSLProtocols, SSLCiphers)"),
                                                tag("div", join([tag("span", "Protocols", class_="label"), boxes,
                                                                 field_errors(errors, "tls_versions")]),
                                                    class_="field", data_field="tls_versions"),
                                                text_input("tls_ciphers", "Cipher string (OpenSSL syntax)",
                                                           values.get("tls_ciphers") or vf.default_ciphers, errors)]),
                             class_="custom-policy"))
        if vf.sni:
            rows = list(values.get("sni") or [])
            rows += [("", "")] * max(1, SNI_ROWS - len(rows))
            cells = []
            for i, (domain, ref) in enumerate(rows):
                cells.append(tag("div", join([
                    void_input(f"sni_domain_{i}", domain, "domain, e.g. www.example.com"),
                    tag("select", join(tag("option", text, value=v, selected=v == ref) for v, text in
                                       [("", "certificate")] + server), name=f"sni_cert_{i}", aria_label="its certificate"),
                ], " "), class_="sni-row"))
            parts.append(tag("fieldset", join([tag("legend", "SNI: domains with their own certificate"), *cells,
                                                field_errors(errors, "sni")]), data_field="sni"))
        parts.append(select("ca_certificate", "Client CA certificate (mutual TLS)", cas, values.get("ca_certificate"), errors))
        if len(vf.verify_choices) > 1:
            parts.append(select("ssl_verify_client", "Client verification (SSLVerifyClient)",
                                [(v, v) for v in vf.verify_choices], values.get("ssl_verify_client", "on"), errors,
                                help="mutual listeners only"))
        parts += [
            checkbox("http2", "HTTP/2", bool(values.get("http2")), errors),
            select("scheduler", "Scheduling", [(s, s) for s in vf.schedulers], values.get("scheduler", "wrr"), errors),
            tag("fieldset", join([tag("legend", "Backend servers"), *[
                tag("div", join([Markup('<label class="check">'),
                                 Markup(f'<input type="checkbox" name="backend" value="{esc(n)}"'
                                        f'{" checked" if n in (values.get("backend") or []) else ""}> '), n,
                                 Markup("</label>"), " weight ",
                                 void_input(f"weight_{n}", values.get(f"weight_{n}", "100"), "0-100", size="4")]))
                for n in self.lab.addresses], field_errors(errors, "backend")]), data_field="backend"),
            text_input("idle_timeout", "Idle timeout (s)", values.get("idle_timeout", ""), errors, help="1-60; empty: 15"),
            text_input("request_timeout", "Request timeout (s)", values.get("request_timeout", ""), errors,
                       help="1-180; empty: 60"),
            text_input("activation_delay", "Activation delay (lab seconds before time_scale)",
                       values.get("activation_delay", ""), errors,
                       help=f"empty: drawn like the vendor's 1-3 minutes; this lab's time_scale is {self.lab.config.time_scale:g}"),
        ]
        if creating:
            parts.append(select("start", "After creating", [("", "the vendor's default"), ("true", "start it"),
                                                             ("false", "leave it stopped")], values.get("start", ""), errors))
        parts.append(tag("button", "Create" if creating else "Change", type="submit", id="listener-submit"))
        return form(action, join(parts), ctx.csrf, class_="card", id="listener-form")

    def data_from(self, data: Form, vf: VendorForm, base: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(API mapping, what the form shows again) from a posted form; `base`: the listener's current mapping."""
        values: dict[str, Any] = {k: data.get(k) for k in FORM_FIELDS}
        values["http2"] = data.has("http2")
        values["tls_policy"] = data.get("tls_policy")
        values["tls_versions"] = data.all("tls_versions")
        values["tls_ciphers"] = data.get("tls_ciphers")
        values["backend"] = data.all("backend")
        values["sni"] = []
        for i in range(32):
            if not data.has(f"sni_domain_{i}"):
                break
            domain, ref = data.get(f"sni_domain_{i}").strip(), data.get(f"sni_cert_{i}")
            if domain or ref:
                values["sni"].append((domain, ref))
        for n in self.lab.addresses:
            values[f"weight_{n}"] = data.get(f"weight_{n}", "100")

        api: dict[str, Any] = dict(base or {})
        api["profile"] = vf.profile
        api["name"] = values["name"].strip()
        if base is None:
            api["port"] = number(values["port"]) if values["port"].strip() else None
        api["server_certificate"] = values["server_certificate"] or None
        if values["ca_certificate"]:
            api["ca_certificate"] = values["ca_certificate"]
            if data.has("ssl_verify_client"):
                api["ssl_verify_client"] = values["ssl_verify_client"]
        else:
            api.pop("ca_certificate", None)
            api.pop("ssl_verify_client", None)
        policy = values["tls_policy"]
        if policy == "custom":
            api["tls_policy"] = {"versions": values["tls_versions"], "ciphers": values["tls_ciphers"]}
        elif policy != "__keep__":
            api["tls_policy"] = policy or None
        api["http2"] = values["http2"]
        api["scheduler"] = values["scheduler"] or None
        api["backend_servers"] = [{"backend": n, "weight": number(values[f"weight_{n}"])} for n in values["backend"]]
        for key in ("idle_timeout", "request_timeout", "activation_delay"):
            if values[key].strip():
                api[key] = number(values[key])
            else:
                api.pop(key, None)
        if values["sni"]:
            api["sni"] = {domain: ref for domain, ref in values["sni"]}
        else:
            api.pop("sni", None)
        return api, values

    def _start_flag(self, values: dict[str, Any]) -> bool | None:
        return {"true": True, "false": False}.get(values.get("start") or "")

    async def new(self, request: Request, ctx: Context) -> Page:
        profile = request.query.get("profile", self.lab.config.profile)
        if profile not in profiles():
            return self.console.error_page(404, "Unknown profile", f"no profile {profile!r}; expected one of {', '.join(profiles())}")
        vf = vendor_form(profile)
        body = self.listener_form(ctx, vf, {"tls_policy": vf.default_policy, "backend": list(self.lab.addresses)}, {},
                                  "/listeners/new", creating=True)
        return self.console.page(f"New {profile} listener", body, "/listeners")

    async def create(self, request: Request, ctx: Context) -> Page:
        data = parse_form(request)
        profile = data.get("profile")
        if profile not in profiles():
            return self.console.error_page(400, "Unknown profile", f"no profile {profile!r}")
        vf = vendor_form(profile)
        api, values = self.data_from(data, vf, None)
        try:
            spec = self.lab.spec_from_api(api)
            listener = await self.lab.add_listener(spec, start=self._start_flag(values))
        except LbsimError as e:
            errors = {form_field(e.field): [e.to_dict()]}
            body = self.listener_form(ctx, vf, values, errors, "/listeners/new", creating=True)
            return self.console.page(f"New {profile} listener", body, "/listeners", 422)
        return redirect(f"/listeners?notice=created#{self.lab.ref(listener)}")

    def _listener(self, request: Request) -> Any:
        port = request.params["port"]
        return self.lab.get_listener(port)  # a port, or address:port

    async def edit(self, request: Request, ctx: Context) -> Page:
        try:
            listener = self._listener(request)
        except LbsimError as e:
            return self.console.error_page(404, "Listener not found", e.message)
        spec = listener.spec
        vf = vendor_form(spec.profile)
        body = self.listener_form(ctx, vf, form_values(spec), {}, f"/listeners/{self.lab.ref(listener)}/edit", creating=False)
        return self.console.page(f"Change listener {listener.name}", body, "/listeners")

    async def change(self, request: Request, ctx: Context) -> Page:
        try:
            listener = self._listener(request)
        except LbsimError as e:
            return self.console.error_page(404, "Listener not found", e.message)
        vf = vendor_form(listener.spec.profile)
        api, values = self.data_from(parse_form(request), vf, spec_data(listener.spec))
        values["port"] = str(listener.port)
        try:
            self.lab.reconfigure(listener, self.lab.spec_from_api(api, port=listener.port))
        except LbsimError as e:
            body = self.listener_form(ctx, vf, values, {form_field(e.field): [e.to_dict()]},
                                      f"/listeners/{self.lab.ref(listener)}/edit", creating=False)
            return self.console.page(f"Change listener {listener.name}", body, "/listeners", 422)
        return redirect("/listeners?notice=changed")

    async def _act(self, request: Request, action: Any, notice: str) -> Page:
        try:
            await action(self._listener(request).key)
        except LbsimError as e:
            return redirect("/listeners?" + urlencode({"error": f"{e.code}: {e.message}"}))
        return redirect(f"/listeners?notice={notice}")

    async def start(self, request: Request, ctx: Context) -> Page:
        return await self._act(request, lambda port: self.lab.set_running(port, True), "started")

    async def stop(self, request: Request, ctx: Context) -> Page:
        return await self._act(request, lambda port: self.lab.set_running(port, False), "stopped")

    async def delete(self, request: Request, ctx: Context) -> Page:
        return await self._act(request, self.lab.remove_listener, "deleted")

    async def set_health(self, request: Request, ctx: Context) -> Page:
        """What `POST /v1/backends/{name}/health` does."""
        mock = self.lab.backends.get(request.params["name"])
        if mock is None:
            return self.console.error_page(404, "Backend not found", f"no mock backend named {request.params['name']!r}")
        data = parse_form(request)
        for key in ("healthy", "down"):
            if data.get(key) in ("true", "false"):
                setattr(mock, key, data.get(key) == "true")
        return redirect("/listeners")


def void_input(name: str, value: Any, placeholder: str, **attrs: Any) -> Markup:
    return void("input", type="text", name=name, value=value or "", placeholder=placeholder, aria_label=placeholder, **attrs)
