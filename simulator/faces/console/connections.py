"""The connection log: the lab's recent connection records, filterable, and one record with its byte split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from simulator.faces.console.charts import fmt, record_key
from simulator.faces.console.markup import join, select, tag
from simulator.faces.console.markup import table as html_table
from simulator.faces.console.server import Context, Page
from simulator.faces.http import Request
from simulator.metering.meter import CATEGORIES, DIRECTIONS

if TYPE_CHECKING:
    from simulator.faces.console.app import ConsoleServer

LIMIT = 200  # rows shown, newest first
# Filter name -> how a record's value is read as text.
FILTERS = {
    "listener": lambda r: record_key(r),  # address:port: load balancers may share a port
    "tls_verify_status": lambda r: str(r.get("tls_verify_status")),
    "protocol": lambda r: str(r.get("tls_protocol")),
    "cipher": lambda r: str(r.get("tls_cipher")),
    "resumed": lambda r: str(r.get("resumed")).lower(),
    "closed_by": lambda r: str(r.get("closed_by")),
}


class ConnectionPages:
    def __init__(self, console: ConsoleServer):
        self.console = console

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/connections", self.list), ("GET", "/connections/record", self.detail)]

    async def list(self, request: Request, ctx: Context) -> Page:
        records = list(self.console.lab.registry.recent)
        lab = self.console.lab
        names = {record_key(r): f"{r.get('listener')} {record_key(r)}" for r in records}
        names.update({l.key: f"{l.name} :{lab.ref(l)}" for l in lab.registry.listeners.values()})
        wanted = {k: request.query.get(k, "") for k in FILTERS}
        controls = []
        for key, read in FILTERS.items():
            seen = sorted({read(r) for r in records})
            options = [("", "any")] + [(v, names.get(v, v) if key == "listener" else v) for v in seen]
            if wanted[key] and wanted[key] not in seen:
                options.append((wanted[key], wanted[key]))
            controls.append(select(key, key.replace("_", " "), options, wanted[key], {}))
        filters = tag("form", join([*controls, tag("button", "Filter", type="submit")]), method="get",
                      action="/connections", class_="filters", id="filters")
        shown = [r for r in records if all(not v or FILTERS[k](r) == v for k, v in wanted.items())]
        rows = []
        for r in reversed(shown[-LIMIT:]):
            t = r.get("traffic") or {}
            wire = sum(t[d]["wire"] for d in DIRECTIONS) if t else None
            link = "/connections/record?" + urlencode({"client": r.get("client"), "time": r.get("time")})
            rows.append([tag("a", r.get("time"), href=link), f"{r.get('listener')} :{r.get('listener_port')}",
                         r.get("client"), r.get("sni") or "", r.get("tls_protocol") or "", r.get("tls_cipher") or "",
                         {True: "yes", False: "no"}.get(r.get("resumed"), ""), r.get("tls_verify_status"),
                         r.get("closed_by") or "", r.get("requests"), fmt(wire),
                         fmt((r.get("billed") or {}).get("billed_bytes"))])
        table = html_table(["Time", "Listener", "Client", "SNI", "Protocol", "Cipher", "Resumed", "tls_verify_status",
                            "Closed by", "Requests", "Wire bytes", "Billed bytes"], rows, id="connections-table") \
            if rows else tag("p", "No connections match.", class_="muted", id="connections-table")
        body = join([tag("p", f"{len(shown)} of the lab's last {len(records)} connections (newest first, at most "
                              f"{LIMIT} shown).", class_="muted", id="connections-count"), filters, table])
        return self.console.page("Connection log", body, "/connections")

    async def detail(self, request: Request, ctx: Context) -> Page:
        client, when = request.query.get("client"), request.query.get("time")
        record = next((r for r in reversed(self.console.lab.registry.recent)
                       if r.get("client") == client and r.get("time") == when), None)
        if record is None:
            return self.console.error_page(404, "Connection not found", "no such connection among the lab's recent "
                                           "records (the log keeps the last 10,000)")
        facts = [(k, v) for k, v in record.items() if k not in ("traffic", "billed")]
        t = record.get("traffic")
        parts: list[Any] = [tag("dl", join(join([tag("dt", k), tag("dd", "" if v is None else v)]) for k, v in facts),
                                class_="facts", id="record")]
        if t:
            rows = [[d.replace("_", " "), *(fmt(t[d][c]) for c in CATEGORIES), fmt(t[d]["wire"])] for d in DIRECTIONS]
            rows.append(["both", *(fmt(sum(t[d][c] for d in DIRECTIONS)) for c in CATEGORIES),
                         fmt(sum(t[d]["wire"] for d in DIRECTIONS))])
            parts += [tag("h2", "Bytes on the wire"),
                      html_table(["Direction", *(c.replace("_", " ") for c in CATEGORIES), "wire (sum)"], rows,
                                 id="byte-split"),
                      tag("p", "handshake: TLS handshake records; record overhead: the 5-byte headers, MACs, padding "
                               "and explicit IVs of application data records; payload: the HTTP bytes; closure: "
                               "close_notify alerts.", class_="muted")]
            billed = record.get("billed") or {}
            if billed:
                parts.append(tag("dl", join(join([tag("dt", k), tag("dd", fmt(v) if isinstance(v, (int, float)) else v)])
                                            for k, v in billed.items()), class_="facts", id="billed"))
        else:
            parts.append(tag("p", "Not metered (metering off, or the client left before its ClientHello).", class_="muted"))
        parts.append(tag("p", tag("a", "Back to the log", href="/connections")))
        return self.console.page(f"Connection {client}", join(parts), "/connections")
