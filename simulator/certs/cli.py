"""`lbsim cert ...`: check, upload-server, upload-ca, list, describe, rename, replace, delete, mint.

A thin layer over `simulator.certs`: read files, call the API, print text or ``--json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from simulator import vendors
from simulator.certs.mint import CLIENT_STATES, DEFAULT_SERVER_NAMES, LabPKI
from simulator.certs.parse import MAX_FIELD_BYTES
from simulator.certs.store import CertificateStore, CertInfo
from simulator.certs.validate import CERT_TYPES, PROFILES, CheckResult, check
from simulator.errors import LbsimError
from simulator.output import dump_json


def register(subparsers: Any) -> None:
    cert = subparsers.add_parser("cert", help="certificates: pre-flight check, store, lab PKI",
                                 description=__doc__)
    sub = cert.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    store = argparse.ArgumentParser(add_help=False, parents=[common])
    store.add_argument("--home", type=Path, help="store directory (default: $LBSIM_HOME or ~/.local/share/lbsim)")
    vendor = argparse.ArgumentParser(add_help=False)
    vendor.add_argument("--profile", choices=sorted(PROFILES), default=vendors.DEFAULT,
                        help=f"vendor profile (default: {vendors.DEFAULT})")
    vendor.add_argument("--strict", action="store_true", help="treat warnings (expired, missing intermediate, "
                        "RSA under 2048 bits) as rejections")

    p = sub.add_parser("check", parents=[common, vendor], help="would the vendor accept this certificate?",
                       description="Exit 0 if the vendor would accept the upload, 1 if it would not.")
    p.add_argument("--type", choices=CERT_TYPES, default="server", help="server (default) or ca")
    p.add_argument("--cert", required=True, help="PEM file: certificate chain (- for stdin)")
    p.add_argument("--key", help="PEM file: private key (server certificates)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("upload-server", parents=[store, vendor], help="store a server certificate and its key")
    p.add_argument("--name", required=True)
    p.add_argument("--cert", required=True, help="PEM file: server certificate, then intermediates")
    p.add_argument("--key", required=True, help="PEM file: private key")
    p.set_defaults(func=cmd_upload_server)

    p = sub.add_parser("upload-ca", parents=[store, vendor], help="store a CA certificate (client CA)")
    p.add_argument("--name", required=True)
    p.add_argument("--cert", required=True, help="PEM file: CA certificate(s)")
    p.set_defaults(func=cmd_upload_ca)

    p = sub.add_parser("list", parents=[store], help="list certificates (metadata only)")
    p.add_argument("--type", choices=CERT_TYPES)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", parents=[store], help="show one certificate (metadata only)")
    p.add_argument("ref", help="certificate id, or a name held by one certificate")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("rename", parents=[store], help="rename a certificate")
    p.add_argument("ref")
    p.add_argument("new_name")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("replace", parents=[store], help="new content, same id: listeners pick it up")
    p.add_argument("ref")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", help="new private key (default: keep the current one)")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(func=cmd_replace)

    p = sub.add_parser("delete", parents=[store], help="delete a certificate no listener uses")
    p.add_argument("ref")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("mint", parents=[common], help="write a lab PKI as PEM files ready for upload")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--key-type", choices=("rsa", "ecdsa"), default="rsa", help="rsa (default) or ecdsa")
    p.add_argument("--server", action="append", metavar="NAME[,NAME...]",
                   help="one server certificate for these names (repeatable; default: "
                   + ",".join(DEFAULT_SERVER_NAMES) + ")")
    p.add_argument("--intermediate", action="store_true", help="issue server certificates from an intermediate CA")
    p.add_argument("--clients", default="", metavar="STATE,...",
                   help="client certificates to issue: " + ",".join(CLIENT_STATES))
    p.set_defaults(func=cmd_mint)


# --- commands --------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    cert = read_input(args.cert, "cert")
    key = read_input(args.key, "key") if args.key else None
    result = check(args.profile, args.type, cert, key, strict=args.strict)
    if args.json:
        _dump(result.to_dict())
    else:
        print(render_check(result))
    return 0 if result.ok else 1


def cmd_upload_server(args: argparse.Namespace) -> int:
    with _all_findings(args):
        info = _store(args).upload_server(args.name, read_input(args.cert, "cert"), read_input(args.key, "key"),
                                          profile=args.profile, strict=args.strict)
    return _show(args, info)


def cmd_upload_ca(args: argparse.Namespace) -> int:
    with _all_findings(args):
        info = _store(args).upload_ca(args.name, read_input(args.cert, "cert"), profile=args.profile,
                                      strict=args.strict)
    return _show(args, info)


def cmd_list(args: argparse.Namespace) -> int:
    infos = _store(args).list(args.type)
    if args.json:
        _dump([i.to_dict() for i in infos])
        return 0
    rows = [("ID", "NAME", "TYPE", "PROFILE", "KEY", "NOT AFTER", "FLAGS")]
    for i in infos:
        flags = ",".join(f for f, on in (("expired", i.expired), ("not-yet-valid", i.not_yet_valid),
                                         ("warnings", bool(i.warnings))) if on)
        rows.append((i.id, i.name, i.type, i.profile, f"{i.key_type}-{i.key_size}",
                     i.not_after.strftime("%Y-%m-%d"), flags or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    return _show(args, _store(args).describe(args.ref))


def cmd_rename(args: argparse.Namespace) -> int:
    return _show(args, _store(args).rename(args.ref, args.new_name))


def cmd_replace(args: argparse.Namespace) -> int:
    key = read_input(args.key, "key") if args.key else None
    with _all_findings(args):
        info = _store(args).replace(args.ref, read_input(args.cert, "cert"), key, strict=args.strict)
    return _show(args, info)


def cmd_delete(args: argparse.Namespace) -> int:
    store = _store(args)
    cert_id = store.describe(args.ref).id
    store.delete(cert_id)
    if args.json:
        _dump({"deleted": cert_id})
    else:
        print(f"deleted {cert_id}")
    return 0


def cmd_mint(args: argparse.Namespace) -> int:
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    for state in clients:
        if state not in CLIENT_STATES:
            raise LbsimError("InvalidClientState", f"unknown client certificate state {state!r}", field="clients",
                             hint="one of: " + ",".join(CLIENT_STATES))
    pki = LabPKI(args.key_type)
    files = pki.write(args.out, servers=args.server or [DEFAULT_SERVER_NAMES], clients=clients,
                      intermediate=args.intermediate)
    if args.json:
        _dump({role: str(path) for role, path in files.items()})
    else:
        width = max(len(role) for role in files)
        for role, path in files.items():
            print(f"{role.ljust(width)}  {path}")
    return 0


# --- helpers ---------------------------------------------------------------------------------

def read_input(path: str, field: str) -> bytes:
    """A file's bytes (``-`` is stdin), reading at most one byte past the limit: `check` reports the size."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(MAX_FIELD_BYTES + 1)
        with open(path, "rb") as f:
            return f.read(MAX_FIELD_BYTES + 1)
    except OSError as e:
        raise LbsimError("FileNotReadable", f"cannot read {path}: {e.strerror}", field=field) from None


def render_check(result: CheckResult) -> str:
    """What was checked (the first certificate: subject, SANs, issuer, validity, key), one line per finding
    (severity, code, field, message, hint), then the verdict. `--json` has the same under `info`."""
    lines = describe_checked(result)
    for f in result.findings:
        where = f"{f.field}: " if f.field else ""
        hint = f" (hint: {f.hint})" if f.hint else ""
        lines.append(f"{f.severity}: {f.code}: {where}{f.message}{hint}")
    verdict = "would accept" if result.ok else "would reject"
    counts = f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)"
    lines.append(f"{result.profile} {verdict} this {result.type} certificate: {counts}")
    return "\n".join(lines)


def describe_checked(result: CheckResult) -> list[str]:
    """The certificate the verdict is about, as `check` read it (nothing when it could not be parsed)."""
    meta = result.info
    if meta is None:
        return []
    now = dt.datetime.now(dt.timezone.utc)
    days = (meta.not_after - meta.not_before).days
    state = (f"expired {(now - meta.not_after).days} day(s) ago" if meta.not_after < now else
             "not valid yet" if meta.not_before > now else f"{(meta.not_after - now).days} day(s) left")
    chain = f"{result.chain_length} certificate(s) in the file"
    signed = f", signed with {meta.signature_hash}" if meta.signature_hash else ""
    rows = [("subject", meta.subject), ("SANs", ", ".join(meta.sans) or "-"),
            ("issuer", meta.issuer + (" (self-signed)" if meta.self_signed else "") + f"; {chain}"),
            ("validity", f"{_day(meta.not_before)} to {_day(meta.not_after)} ({days} days; {state})"),
            ("key", f"{meta.key_type}-{meta.key_size}{signed}" + ("; a CA certificate" if meta.is_ca else ""))]
    return [f"{label + ':':10}{value}" for label, value in rows]


def _day(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render_info(info: CertInfo) -> str:
    d = info.to_dict()
    warnings = d.pop("warnings")
    d["sans"] = ", ".join(d["sans"]) or "-"
    width = max(len(k) for k in d)
    lines = [f"{k.ljust(width)}  {v}" for k, v in d.items()]
    lines += [f"warning: {w['code']}: {w['message']}" for w in warnings]
    return "\n".join(lines)


@contextmanager
def _all_findings(args: argparse.Namespace) -> Iterator[None]:
    """A rejected upload raises its first error (printed by the dispatcher); print the other findings
    first, so one run shows everything to fix. JSON output carries them in error.details."""
    try:
        yield
    except LbsimError as err:
        if not args.json:
            first = err.to_dict()
            for f in err.details.get("findings", []):
                if (f["code"], f["message"]) != (first["code"], first["message"]):
                    print(f"{f['severity']}: {f['code']}: {f['field']}: {f['message']} (hint: {f['hint']})",
                          file=sys.stderr)
        raise


def _store(args: argparse.Namespace) -> CertificateStore:
    return CertificateStore(args.home)


def _show(args: argparse.Namespace, info: CertInfo) -> int:
    if args.json:
        _dump(info.to_dict())
    else:
        print(render_info(info))
    return 0


def _dump(obj: Any) -> None:
    dump_json(obj)
