"""Certificates: the list, upload (server or CA), the pre-flight check, rename, replace and delete.

Every action is the store call the management API makes (`lab.store`); what the store refuses comes back as
findings, each shown under the field it concerns, in the vendor's wording with lbsim's hint.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from simulator.certs import PROFILES as CERT_PROFILES, check
from simulator.errors import LbsimError
from simulator.faces.console.markup import (Errors, Markup, button, checkbox, field_errors, form, join, select,
                                            tag, text_input, textarea, void)
from simulator.faces.console.markup import table as html_table
from simulator.faces.console.server import Context, Form, Page, parse_form, redirect
from simulator.faces.console.vendor import vendor_form
from simulator.faces.http import Request

if TYPE_CHECKING:
    from simulator.faces.console.app import ConsoleServer

NOTICES = {"uploaded": "Uploaded.", "renamed": "Renamed.", "replaced": "Replaced: listeners using it switch after "
           "their activation delay.", "deleted": "Deleted."}


def errors_from(e: LbsimError, default: str = "form") -> Errors:
    """Findings (or the one error) by form field: `cert`, `key`, `name`, ... else `form`."""
    out: Errors = {}
    findings = e.details.get("findings") if isinstance(e.details, dict) else None
    if findings:
        for f in findings:
            out.setdefault(f.get("field") or "cert", []).append(f)
    else:
        item = e.to_dict()
        field = e.field if e.field in ("cert", "key", "name", "type", "profile") else default
        out.setdefault(field, []).append(item)
    return out


def days_left(when: dt.datetime) -> int:
    return (when - dt.datetime.now(dt.timezone.utc)).days


class CertificatePages:
    def __init__(self, console: ConsoleServer):
        self.console = console

    @property
    def store(self) -> Any:
        return self.console.lab.store

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/certificates", self.list),
            ("POST", "/certificates", self.upload),
            ("GET", "/certificates/check", self.preflight),
            ("POST", "/certificates/check", self.preflight),
            ("GET", "/certificates/{ref}", self.detail),
            ("POST", "/certificates/{ref}/rename", self.rename),
            ("POST", "/certificates/{ref}/replace", self.replace),
            ("POST", "/certificates/{ref}/delete", self.delete),
        ]

    # ---- list and upload -------------------------------------------------------------------------------------

    def table(self) -> Markup:
        rows = []
        for info in self.store.list():
            left = days_left(info.not_after)
            expiry = join([info.not_after.strftime("%Y-%m-%d"), tag("br"),
                           tag("span", "expired" if info.expired else f"{left} days left",
                               class_="bad" if info.expired or left < 30 else "muted")])
            users = self.store.users(info.id)
            rows.append([
                tag("a", info.name, href=f"/certificates/{info.id}"), tag("code", info.id), info.type,
                info.profile, tag("span", info.subject, class_="subject"), join(info.sans, ", "),
                info.issuer, expiry, f"{info.key_type} {info.key_size}",
                join([tag("code", f"SHA1 {info.fingerprint}"), tag("br"),
                      tag("code", f"SHA256 {info.fingerprint_sha256}")], ""),
                join(users, ", ") if users else tag("span", "none", class_="muted"),
            ])
        if not rows:
            return tag("p", "No certificates yet.", class_="muted")
        return tag("div", html_table(
            ["Name", "ID", "Type", "Profile", "Subject", "SANs", "Issuer", "Expires", "Key", "Fingerprints",
             "Used by listeners"], rows, id="certificates"), class_="scroll")

    def upload_form(self, ctx: Context, values: dict[str, str], errors: Errors, action: str = "/certificates",
                    submit: str = "Upload") -> Markup:
        profile = values.get("profile") or self.console.lab.config.profile
        rule = vendor_form(profile).cert_name_rule if profile in CERT_PROFILES else None
        kind = values.get("type") or "server"
        body = join([
            field_errors(errors, "form"),
            select("type", "Type", [("server", "server certificate (chain and private key)"),
                                    ("ca", "CA certificate (verifies clients of mutual listeners)")], kind, errors),
            text_input("name", "Name", values.get("name"), errors, help=rule),
            select("profile", "Vendor profile (whose rules it is checked against)",
                   [(p, p) for p in CERT_PROFILES], profile, errors),
            textarea("cert", "Certificate (PEM: the server certificate first, then intermediates)", values.get("cert"),
                     errors, rows=6, spellcheck="false"),
            void("input", type="file", name="cert_file", id="f-cert_file", accept=".pem,.crt,.cer,.txt",
                 aria_label="or choose the certificate file"),
            textarea("key", "Private key (PEM; server certificates only)", values.get("key"), errors, rows=6,
                     spellcheck="false"),
            void("input", type="file", name="key_file", id="f-key_file", accept=".pem,.key,.txt",
                 aria_label="or choose the key file"),
            checkbox("strict", "Strict: warnings (expired, missing intermediate, ...) refuse too",
                     values.get("strict") == "on", errors),
            tag("button", submit, type="submit", id="upload-submit"),
        ])
        return form(action, body, ctx.csrf, multipart=True, class_="card", id="upload-form")

    async def list(self, request: Request, ctx: Context, values: dict[str, str] | None = None,
                   errors: Errors | None = None, status: int = 200) -> Page:
        notice = NOTICES.get(request.query.get("notice", ""))
        body = join([
            tag("p", notice, class_="notice", role="status") if notice and not errors else "",
            self.table(),
            tag("h2", "Upload a certificate"),
            tag("p", join(["Checked by the vendor profile's rules before it is stored. ",
                           tag("a", "Only check it (uploads nothing)", href="/certificates/check")])),
            self.upload_form(ctx, values or {}, errors or {}),
        ])
        return self.console.page("Certificates", body, "/certificates", status)

    async def upload(self, request: Request, ctx: Context) -> Page:
        data = parse_form(request)
        values = {k: data.get(k) for k in ("type", "name", "profile", "cert", "key", "strict")}
        try:
            info = self._upload(values)
        except LbsimError as e:
            return await self.list(request, ctx, values, self._all_errors(e, values), status=422)
        return redirect(f"/certificates/{info.id}?notice=uploaded")

    def _all_errors(self, e: LbsimError, v: dict[str, str]) -> Errors:
        """The store stops at its first refusal (a bad name before the content): the content's findings are
        added from the same check the store runs, so every field shows what is wrong with it at once."""
        errors = errors_from(e)
        if "findings" not in e.details and v["profile"] in CERT_PROFILES and v["type"] in ("server", "ca"):
            result = check(v["profile"], v["type"], v["cert"].encode() or None,
                           (v["key"].encode() or None) if v["type"] == "server" else None, strict=v["strict"] == "on")
            for f in result.findings:
                errors.setdefault(f.field or "cert", []).append(f.to_dict())
        return errors

    def _upload(self, v: dict[str, str]) -> Any:
        """The management API's upload (POST /v1/certificates), from form fields."""
        kind, profile, strict = v["type"] or "server", v["profile"] or self.console.lab.config.profile, v["strict"] == "on"
        cert = v["cert"].encode() if v["cert"].strip() else None
        if kind == "server":
            key = v["key"].encode() if v["key"].strip() else None
            return self.store.upload_server(v["name"], cert, key, profile=profile, strict=strict)
        if kind == "ca":
            if v["key"].strip():
                raise LbsimError("UnexpectedPrivateKey", "a CA certificate is uploaded without a private key", field="key")
            return self.store.upload_ca(v["name"], cert, profile=profile, strict=strict)
        raise LbsimError("InvalidField", f"unknown type {kind!r}; expected server or ca", field="type")

    # ---- pre-flight ------------------------------------------------------------------------------------------

    async def preflight(self, request: Request, ctx: Context) -> Page:
        values: dict[str, str] = {}
        errors: Errors = {}
        verdict: Any = ""
        if request.method == "POST":
            data = parse_form(request)
            values = {k: data.get(k) for k in ("type", "name", "profile", "cert", "key", "strict")}
            profile = values["profile"] or self.console.lab.config.profile
            try:
                result = check(profile, values["type"] or "server", values["cert"] or None,
                               values["key"] or None, strict=values["strict"] == "on")
            except LbsimError as e:
                errors = errors_from(e)
            else:
                for f in result.findings:
                    errors.setdefault(f.field or "cert", []).append(f.to_dict())
                words = (f"{profile} would accept this certificate" if result.ok else
                         f"{profile} would refuse this certificate: {len(result.errors)} error(s)")
                if result.warnings:
                    words += f", {len(result.warnings)} warning(s)"
                facts: list[Any] = []
                if result.info is not None:
                    i = result.info
                    facts = [tag("dl", join([tag("dt", "Subject"), tag("dd", i.subject), tag("dt", "SANs"),
                                             tag("dd", ", ".join(i.sans)), tag("dt", "Issuer"), tag("dd", i.issuer),
                                             tag("dt", "Expires"), tag("dd", f"{i.not_after:%Y-%m-%d} "
                                                                       f"({days_left(i.not_after)} days left)"),
                                             tag("dt", "Key"), tag("dd", f"{i.key_type} {i.key_size}")]))]
                verdict = tag("div", join([tag("p", words, class_="verdict"), *facts]),
                              class_=f"card {'ok' if result.ok else 'refused'}", id="verdict", role="status")
        body = join([
            tag("p", "Runs the vendor profile's checks on a certificate and key and stores nothing."),
            verdict,
            self.upload_form(ctx, values, errors, action="/certificates/check", submit="Check"),
        ])
        return self.console.page("Would the vendor accept this?", body, "/certificates")

    # ---- one certificate -------------------------------------------------------------------------------------

    async def detail(self, request: Request, ctx: Context, errors: Errors | None = None,
                     values: dict[str, str] | None = None, status: int = 200) -> Page:
        errors, values = errors or {}, values or {}
        try:
            info = self.store.describe(request.params["ref"])
        except LbsimError as e:
            return self.console.error_page(404, "Certificate not found", e.message)
        users = self.store.users(info.id)
        left = days_left(info.not_after)
        facts = [("ID", tag("code", info.id)), ("Name", info.name), ("Type", info.type), ("Profile", info.profile),
                 ("Subject", tag("span", info.subject, class_="subject")), ("SANs", ", ".join(info.sans)),
                 ("Issuer", info.issuer), ("Serial", info.serial),
                 ("Valid", f"{info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC "
                           f"({'expired' if info.expired else f'{left} days left'})"),
                 ("Key", f"{info.key_type} {info.key_size}"), ("Chain length", info.chain_length),
                 ("SHA-1 fingerprint", tag("code", info.fingerprint)),
                 ("SHA-256 fingerprint", tag("code", info.fingerprint_sha256)), ("Revision", info.revision),
                 ("Used by listeners", ", ".join(users) or "none")]
        warnings = [tag("li", join([tag("strong", w.code), ": ", w.message] + ([" (hint: ", w.hint, ")"] if w.hint else [])))
                    for w in info.warnings]
        notice = NOTICES.get(request.query.get("notice", ""))
        ref = info.id
        body = join([
            tag("p", notice, class_="notice", role="status") if notice and not errors else "",
            tag("dl", join(join([tag("dt", k), tag("dd", v)]) for k, v in facts), class_="facts", id="facts"),
            tag("div", join([tag("h2", "Warnings"), tag("ul", join(warnings))]), class_="warnings") if warnings else "",
            tag("h2", "Rename"),
            form(f"/certificates/{ref}/rename", join([text_input("name", "New name", values.get("name", info.name),
                                                                 errors), tag("button", "Rename", type="submit")]),
                 ctx.csrf, class_="card", id="rename-form"),
            tag("h2", "Replace the content"),
            tag("p", "Same id, next revision; listeners using it switch after their activation delay. "
                     "Leave the key empty to keep the current one.", class_="muted"),
            form(f"/certificates/{ref}/replace", join([
                textarea("cert", "Certificate (PEM)", values.get("cert"), errors, rows=5, spellcheck="false"),
                void("input", type="file", name="cert_file", aria_label="or choose the certificate file"),
                textarea("key", "Private key (PEM)", values.get("key"), errors, rows=5, spellcheck="false")
                if info.type == "server" else "",
                void("input", type="file", name="key_file", aria_label="or choose the key file")
                if info.type == "server" else "",
                checkbox("strict", "Strict", values.get("strict") == "on", errors),
                tag("button", "Replace", type="submit")]), ctx.csrf, multipart=True, class_="card", id="replace-form"),
            tag("h2", "Delete"),
            tag("div", join([field_errors(errors, "delete"),
                             button(f"/certificates/{ref}/delete", "Delete this certificate", ctx.csrf, danger=True,
                                    id="delete-certificate")]), class_="card", id="delete-box"),
        ])
        return self.console.page(f"Certificate {info.name}", body, "/certificates", status)

    async def rename(self, request: Request, ctx: Context) -> Page:
        name = parse_form(request).get("name")
        try:
            info = self.store.rename(request.params["ref"], name)
        except LbsimError as e:
            return await self.detail(request, ctx, {"name": [e.to_dict()]}, {"name": name}, 422)
        return redirect(f"/certificates/{info.id}?notice=renamed")

    async def replace(self, request: Request, ctx: Context) -> Page:
        data: Form = parse_form(request)
        values = {k: data.get(k) for k in ("cert", "key", "strict")}
        try:
            info = self.store.replace(request.params["ref"], values["cert"].encode() or None,
                               values["key"].encode() if values["key"].strip() else None, strict=values["strict"] == "on")
        except LbsimError as e:
            return await self.detail(request, ctx, errors_from(e, "cert"), values, 422)
        return redirect(f"/certificates/{info.id}?notice=replaced")

    async def delete(self, request: Request, ctx: Context) -> Page:
        try:
            self.store.delete(request.params["ref"])
        except LbsimError as e:
            return await self.detail(request, ctx, {"delete": [e.to_dict()]}, status=409)
        return redirect("/certificates?notice=deleted")
